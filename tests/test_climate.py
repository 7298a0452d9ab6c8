"""Extreme-weather case: builders at several sizes (the published one included), the box
convention and its grid encoding, VOC average precision on hand-made cases, the readers on
malformed files, the generator's physics, patch extraction, netCDF input, the detection loss's
mask of unlabelled images, and short trainings clearly above chance."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import modelzoo
from modelzoo.climate import boxes as B
from modelzoo.climate.detection import (
    average_precision,
    bootstrap_map,
    mean_average_precision,
)
from modelzoo.climate.generator import (
    Grid,
    atmospheric_river,
    background,
    extratropical_cyclone,
    generate_extreme_weather,
    tropical_cyclone,
)
from modelzoo.climate.reader import CHANNELS, open_extreme_weather, open_patches
from modelzoo.errors import ConfigError, DataError

REGION = {"height": 64, "width": 96, "lat_range": (0.0, 60.0), "lon_range": (140.0, 260.0)}


@pytest.fixture(scope="module")
def images_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("climate") / "images.h5"
    return generate_extreme_weather(path, n_images=24, seed=3, progress=False, **REGION).path


# ---------------------------------------------------------------------------------------------
# Builders


@pytest.mark.parametrize("shape, classes", [((32, 32, 8), 2), ((148, 224, 2), 2),
                                            ((27, 60, 3), 2), ((32, 32, 16), 5)])
def test_patch_cnn_presets_build_with_two_conv_pool_stages(shape, classes):
    import modelzoo

    model = modelzoo.get("climate_patch_cnn", input_shape=shape, num_classes=classes)
    assert model.input_shape == (None, *shape)
    assert model.output_shape == (None, classes)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 2 and kinds.count("MaxPooling2D") == 2


@pytest.mark.parametrize("shape, filters, grid", [((96, 144, 16), (16, 32, 64), (12, 18)),
                                                  ((64, 96, 16), (8, 16), (16, 24)),
                                                  ((64, 128, 4), (8, 8, 8, 8), (4, 8))])
def test_detector_outputs_the_grid_and_the_reconstruction(shape, filters, grid):
    import modelzoo

    channels = ["PSL", "TMQ", "U850", "V850"] if shape[-1] == 4 else None
    model = modelzoo.get("climate_detector", input_shape=shape, filters=filters,
                         channels=channels)
    out = model(np.zeros((2, *shape), np.float32))
    assert tuple(out["detection"].shape) == (2, *grid, 6 + 4)
    assert tuple(out["reconstruction"].shape) == (2, *shape)
    assert (np.asarray(out["detection"])[..., :4] >= 0).all()  # ReLU box


def test_published_detector_builds_at_768_by_1152():
    import modelzoo

    model = modelzoo.get("climate_detector")
    assert model.input_shape == (None, 768, 1152, 16)
    assert model.get_layer("detection").output.shape[1:] == (12, 18, 10)
    assert model.get_layer("reconstruction").output.shape[1:] == (768, 1152, 16)
    encoder = [model.get_layer(f"enc{k}") for k in range(1, 7)]
    assert [layer.filters for layer in encoder] == [128, 256, 512, 768, 1024, 1280]
    assert all(layer.strides == (2, 2) and layer.kernel_size == (5, 5) for layer in encoder)
    # 5 x 5 kernels: 25 * sum(in * out) weights + biases in the encoder.
    widths = [16, 128, 256, 512, 768, 1024, 1280]
    expected = sum(25 * a * b + b for a, b in zip(widths, widths[1:]))
    assert sum(layer.count_params() for layer in encoder) == expected


def test_detector_finer_cells_join_the_code_with_encoder_features():
    import modelzoo

    coarse = modelzoo.get("climate_detector", input_shape=(64, 96, 16), filters=(16, 32, 64))
    fine = modelzoo.get("climate_detector", input_shape=(64, 96, 16), filters=(16, 32, 64),
                        cell_layers=1)
    assert coarse.get_layer("detection").output.shape[1:] == (8, 12, 10)
    assert fine.get_layer("detection").output.shape[1:] == (32, 48, 10)
    # The 64-channel code upsampled x4 next to the 16-channel stride-2 features.
    assert fine.get_layer("fine_features").output.shape[1:] == (32, 48, 64 + 16)
    assert fine.get_layer("reconstruction").output.shape[1:] == (64, 96, 16)
    with pytest.raises(ConfigError, match="cell_layers must be 1..3"):
        modelzoo.get("climate_detector", input_shape=(64, 96, 16), filters=(16, 32, 64),
                      cell_layers=0)


def test_detector_coarse_head_reads_the_code_on_its_own_grid():
    import modelzoo

    both = modelzoo.get("climate_detector", input_shape=(64, 96, 16), filters=(16, 32, 64),
                        cell_layers=1, coarse_head=True)
    assert both.get_layer("detection").output.shape[1:] == (32, 48, 10)
    assert both.get_layer("detection_coarse").output.shape[1:] == (8, 12, 10)
    assert sorted(both.output_names) == ["detection", "detection_coarse", "reconstruction"]
    with pytest.raises(ConfigError, match="coarse_head needs cell_layers below 3"):
        modelzoo.get("climate_detector", input_shape=(64, 96, 16), filters=(16, 32, 64),
                     coarse_head=True)


def test_each_head_is_given_the_boxes_of_its_classes():
    from modelzoo.climate.task import encode_targets, head_classes

    fine, coarse = head_classes({"coarse_classes": [3, 2]})
    assert (fine, coarse) == ([0, 1], [2, 3])
    table = np.full((2, 15, 5), -1.0)
    table[0, 0] = (8, 16, 12, 20, 1)  # a cyclone: the fine head's
    table[0, 1] = (0, 0, 16, 64, 3)  # a river: the coarse head's
    table[1, 0] = (40, 8, 56, 40, 2)  # image 1 holds only an extratropical cyclone
    small = encode_targets(table, (64, 96), 2, classes=fine)
    large = encode_targets(table, (64, 96), 8, classes=coarse)
    assert small.shape == (2, 32, 48, 7) and large.shape == (2, 8, 12, 7)
    assert small[0, ..., 0].sum() == 1 and small[0, 5, 9, 0] == 1 and small[0, 5, 9, 5] == 1
    assert large[0, ..., 0].sum() == 1 and large[0, 1, 4, 5] == 3
    assert large[0, 1, 4, 3:5].tolist() == [2, 8]  # 16 x 64 pixels in 8-pixel cells
    # Image 1 is labelled for both heads: its empty fine grid says "no object" everywhere.
    assert small[1, ..., 0].sum() == 0 and small[1, ..., 6].min() == 1
    assert large[1, ..., 0].sum() == 1 and large[1, 6, 3, 5] == 2


def test_coarse_classes_need_their_cell_and_the_head(tmp_path):
    from modelzoo import training

    images = generate_extreme_weather(tmp_path / "i.h5", n_images=8, seed=3, progress=False,
                                      **REGION).path
    fine = {"input_shape": [64, 96, 16], "filters": [16, 32, 64], "cell_layers": 1}
    common = {"train.epochs": 1, "train.batch_size": 8, "data.val_fraction": 0.0,
              "data.grid_cell": 2}
    with pytest.raises(ConfigError, match="needs data.coarse_cell"):
        training.train("climate_detector", images, run_dir=str(tmp_path / "a"), verbose=0,
                       overrides={**common, "data.coarse_classes": [3]},
                       model_config={**fine, "coarse_head": True})
    with pytest.raises(ConfigError, match="go together"):
        training.train("climate_detector", images, run_dir=str(tmp_path / "b"), verbose=0,
                       overrides={**common, "data.coarse_classes": [3], "data.coarse_cell": 8},
                       model_config=fine)


def test_detector_refuses_a_size_the_encoder_cannot_halve():
    import modelzoo

    with pytest.raises(ConfigError, match="not a multiple of 64"):
        modelzoo.get("climate_detector", input_shape=(100, 1152, 16))


# ---------------------------------------------------------------------------------------------
# Boxes and their grid encoding


@pytest.mark.parametrize("size", B.BOX_SIZES)
def test_grid_encoding_round_trip_is_exact(size):
    rng = np.random.default_rng(0)
    cell, grid = 8, (12, 18)
    cells = rng.choice(grid[0] * grid[1], size=15, replace=False)
    rows = []
    for index in cells:
        i, j = divmod(int(index), grid[1])
        cy, cx = i * cell + rng.integers(0, 16) / 2, j * cell + rng.integers(0, 16) / 2
        h, w = rng.integers(1, 40, size=2)
        rows.append((cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2, rng.integers(0, 4)))
    table = np.asarray(rows)
    target = B.encode(table, grid, cell, size)
    assert target[..., 0].sum() == 15
    back = B.target_boxes(target, cell, size)
    if size == "sqrt":  # a square root and its square: exact to rounding
        back = np.round(back, 9)
    order = np.lexsort((table[:, 1], table[:, 0]))
    back_order = np.lexsort((back[:, 1], back[:, 0]))
    np.testing.assert_array_equal(back[back_order], table[order])  # exact, not approximate


def test_encoding_puts_a_box_in_the_cell_of_its_centre():
    target = B.encode(np.array([[10, 20, 30, 60, 2], [-1, -1, -1, -1, -1]]), (4, 8), 16)
    # centre (20, 40): cell (1, 2), offsets (0.25, 0.5), size (20/16, 40/16)
    assert np.argwhere(target[..., 0] == 1).tolist() == [[1, 2]]
    np.testing.assert_array_equal(target[1, 2], [1, 0.25, 0.5, 1.25, 2.5, 2])
    # a centre on the far edge belongs to the last cell; the larger of two boxes in a cell wins
    edge = B.encode(np.array([[60, 120, 64, 128, 1], [62, 124, 63, 125, 0]]), (4, 8), 16)
    assert np.argwhere(edge[..., 0] == 1).tolist() == [[3, 7]]
    assert edge[3, 7, 5] == 1
    # YOLO v1's square-root size: (20/16, 40/16) -> (sqrt 1.25, sqrt 2.5)
    root = B.encode(np.array([[10, 20, 30, 60, 2]]), (4, 8), 16, size="sqrt")
    np.testing.assert_allclose(root[1, 2, 3:5], np.sqrt([1.25, 2.5]))


def test_hur_detect_box_order_is_read_as_the_published_one():
    published = np.array([[10.0, 20.0, 30.0, 60.0, 3.0]])
    converter = published[:, [1, 3, 0, 2, 4]]  # xmin, xmax, ymin, ymax, class
    np.testing.assert_array_equal(B.reorder_boxes(converter, "xmin_xmax_ymin_ymax"), published)


def test_detections_of_a_perfect_grid_are_its_boxes():
    table = np.array([[8, 16, 24, 40, 1], [40, 80, 56, 120, 3]], float)
    target = B.encode(table, (8, 16), 8)
    prediction = np.zeros((8, 16, 10))
    prediction[..., :4] = target[..., 1:5]
    prediction[..., 4], prediction[..., 5] = 1 - target[..., 0], target[..., 0]
    prediction[..., 6] = 1.0
    cls = target[..., 5].astype(int)
    prediction[..., 6:] = np.eye(4)[cls]
    found = B.detections(prediction, 8, score_threshold=0.5)
    np.testing.assert_array_equal(found[np.argsort(found[:, 0])][:, :5], table)
    assert (found[:, 5] == 1).all()


# ---------------------------------------------------------------------------------------------
# Average precision on hand-made cases


def _det(*rows):
    return np.array(rows, float).reshape(-1, 6)


def test_average_precision_known_answers():
    truth = [np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 0], [40, 40, 50, 50, 0]], float)]
    perfect = [_det(*(list(t[:4]) + [0, 0.9] for t in truth[0]))]
    assert average_precision(perfect, truth, 0) == 1.0
    assert average_precision([_det()], truth, 0) == 0.0
    # Ranked TP, FP, TP, FP, TP: precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/3 .. 1;
    # the VOC envelope gives (1 + 2/3 + 3/5) / 3.
    ranked = _det([0, 0, 10, 10, 0, 0.9], [60, 60, 70, 70, 0, 0.8], [20, 20, 30, 30, 0, 0.7],
                  [80, 80, 90, 90, 0, 0.6], [40, 40, 50, 50, 0, 0.5])
    assert average_precision([ranked], truth, 0) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # A second detection of a matched box is a false positive.
    double = _det([0, 0, 10, 10, 0, 0.9], [0, 0, 10, 10, 0, 0.8])
    assert average_precision([double], [truth[0][:1]], 0) == 1.0
    assert average_precision([double[::-1] * [1, 1, 1, 1, 1, 1]], [truth[0][:1]], 0) == 1.0
    one = [np.array([[0, 0, 10, 10, 0]], float)]
    fp_first = _det([50, 50, 60, 60, 0, 0.9], [0, 0, 10, 10, 0, 0.8])
    assert average_precision([fp_first], one, 0) == pytest.approx(0.5)


def test_bootstrap_ap_equals_the_ap_of_each_resampled_image_list():
    """Each replicate of bootstrap_map is the AP of the images it drew, duplicates counted as
    separate images; the draws are shared by the sets, so a set against itself differs by 0."""
    truth = [np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 1]], float),
             np.array([[0, 0, 10, 10, 0]], float), np.array([[40, 40, 50, 50, 1]], float),
             np.array([[5, 5, 15, 15, 0]], float)]
    found = [_det([0, 0, 10, 10, 0, 0.9], [21, 21, 30, 30, 1, 0.35]),
             _det([30, 30, 40, 40, 0, 0.8], [0, 0, 10, 10, 0, 0.3]),
             _det([40, 40, 50, 50, 1, 0.6], [0, 0, 9, 9, 0, 0.5]),
             _det([5, 5, 15, 15, 0, 0.45])]
    draws = bootstrap_map([found, found], truth, 2, 0.5, replicates=20, seed=3)
    rng = np.random.default_rng(3)
    for r in range(20):
        rows = rng.integers(0, 4, 4)
        want = [average_precision([found[i] for i in rows], [truth[i] for i in rows], c)
                for c in (0, 1)]
        np.testing.assert_allclose(draws[0, r, :2], want)
        assert draws[0, r, 2] == pytest.approx(np.nanmean(want))
    np.testing.assert_array_equal(draws[0], draws[1])
    assert len(np.unique(draws[0, :, 2])) > 3  # the resampling moves the score


def test_a_detection_whose_best_box_is_taken_is_a_false_positive():
    # Boxes A and B overlap (IoU 0.43). The first detection is A; the second overlaps A by IoU
    # 0.74 and B by 0.6. The VOC devkit scores it against A, already taken: a false positive
    # (TP, FP on 2 boxes: AP 1/2). COCO-style greedy matching would give it B (AP 1).
    truth = [np.array([[0, 0, 10, 10, 0], [0, 4, 10, 14, 0]], float)]
    found = [_det([0, 0, 10, 10, 0, 0.9], [0, 1.5, 10, 11.5, 0, 0.8])]
    assert average_precision(found, truth, 0) == pytest.approx(0.5)
    # Alone, the second detection is a true positive of A.
    assert average_precision([found[0][1:]], truth, 0) == pytest.approx(0.5)
    assert average_precision([found[0][1:]], [truth[0][1:]], 0) == 1.0


def test_iou_threshold_decides_a_loose_box():
    truth = [np.array([[0, 0, 10, 10, 1]], float)]
    loose = [_det([0, 0, 10, 30, 1, 0.9])]  # IoU 1/3
    assert average_precision(loose, truth, 1, 0.5) == 0.0
    assert average_precision(loose, truth, 1, 0.1) == 1.0
    wrong_class = [_det([0, 0, 10, 10, 2, 0.9])]
    assert average_precision(wrong_class, truth, 1) == 0.0


def test_map_averages_the_classes_present_over_images():
    truth = [np.array([[0, 0, 10, 10, 0]], float), np.array([[0, 0, 10, 10, 3]], float)]
    found = [_det([0, 0, 10, 10, 0, 0.9]), _det([50, 50, 60, 60, 3, 0.9])]
    m_ap, per_class = mean_average_precision(found, truth, 4)
    assert per_class[0] == 1.0 and per_class[3] == 0.0
    assert np.isnan(per_class[1]) and np.isnan(per_class[2])
    assert m_ap == 0.5


# ---------------------------------------------------------------------------------------------
# Readers on good and malformed files


def _write(path, images=None, boxes=None, **attrs):
    with h5py.File(path, "w") as f:
        if images is not None:
            f["images"] = images
        if boxes is not None:
            f["boxes"] = boxes
        f.attrs.update(attrs)
    return str(path)


def _good(n=4, h=16, w=24):
    images = np.random.default_rng(0).normal(size=(n, 16, h, w)).astype(np.float32)
    boxes = np.full((n, 15, 5), -1, np.int32)
    boxes[0, 0] = (2, 3, 10, 20, 1)
    boxes[1, 0] = (0, 0, 16, 24, 3)
    return images, boxes


def test_reader_accepts_the_generator_and_finds_unlabelled_images(tmp_path, images_file):
    images = open_extreme_weather(images_file)
    assert images.image_shape == (64, 96, 16) and images.channels == CHANNELS
    fields = images.fields(images.source.read(0, 2))
    assert fields.shape == (2, 64, 96, 16) and fields.dtype == np.float32
    assert fields.max() > 1e4  # physical units (pressures in Pa)
    model = modelzoo.get("climate_detector", input_shape=(64, 96, 16), filters=(4, 4, 4))
    assert abs(float(np.mean(model.get_layer("standardize")(fields)))) < 3
    im, bx = _good()
    opened = open_extreme_weather(_write(tmp_path / "a.h5", im, bx.astype(np.float32)))
    assert opened.labelled((0, 4)).tolist() == [True, True, False, False]


@pytest.mark.parametrize("case, message", [
    ("no_images", "missing dataset 'images'"),
    ("no_boxes", "missing dataset 'boxes'"),
    ("images_3d", "dataset 'images' has shape"),
    ("boxes_4", "dataset 'boxes' has shape"),
    ("lengths", "differ in length"),
    ("nan", "dataset 'images' has NaN"),
    ("ymin_after_ymax", "dataset 'boxes' row 0 box 0"),
    ("outside", "dataset 'boxes' row 1 box 0"),
    ("class", "a class in 0..3"),
    ("padding", "padding row"),
    ("channels", "attribute 'channels'"),
    ("fifteen", "has 15 channels"),
    ("truncated", "truncated"),
])
def test_reader_refuses_each_malformed_file_naming_file_and_dataset(tmp_path, case, message):
    im, bx = _good()
    path = tmp_path / f"{case}.h5"
    if case == "no_images":
        _write(path, None, bx)
    elif case == "no_boxes":
        _write(path, im, None)
    elif case == "images_3d":
        _write(path, im[:, 0], bx)
    elif case == "boxes_4":
        _write(path, im, bx[..., :4])
    elif case == "lengths":
        _write(path, im, bx[:3])
    elif case == "nan":
        im[2, 5, 3, 3] = np.nan
        _write(path, im, bx)
    elif case == "ymin_after_ymax":
        bx[0, 0] = (10, 3, 2, 20, 1)
        _write(path, im, bx)
    elif case == "outside":
        bx[1, 0] = (0, 0, 17, 24, 3)
        _write(path, im, bx)
    elif case == "class":
        bx[0, 0, 4] = 7
        _write(path, im, bx)
    elif case == "padding":
        bx[2, 0] = (1, 1, 3, 3, -1)
        _write(path, im, bx)
    elif case == "channels":
        _write(path, im, bx, channels=["PSL"] * 15 + ["BOGUS"])
    elif case == "fifteen":
        _write(path, im[:, :15], bx)
    elif case == "truncated":
        _write(path, im, bx)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=message) as err:
        open_extreme_weather(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_reader_reads_the_converter_order_when_told_and_hints_at_it(tmp_path):
    im, bx = _good()
    bx[0, 0] = (3, 20, 2, 10, 1)  # xmin, xmax, ymin, ymax of the published (2, 3, 10, 20)
    bx[1, 0] = (0, 24, 0, 16, 3)
    path = _write(tmp_path / "hur.h5", im, bx)
    with pytest.raises(DataError, match="xmin_xmax_ymin_ymax would be valid"):
        open_extreme_weather(path)
    opened = open_extreme_weather(path, box_order="xmin_xmax_ymin_ymax")
    np.testing.assert_array_equal(opened.boxes((0, 1))[0, 0], [2, 3, 10, 20, 1])


def test_patch_reader_accepts_label_columns_and_floats_and_refuses_fractions(tmp_path):
    images = np.zeros((6, 2, 8, 8), np.float32)
    for labels in (np.array([0, 1, 0, 1, 1, 0], np.uint8), np.array([[0.0], [1], [0], [1], [1],
                                                                     [0]]),
                   np.array([0, 1, 0, 1, 1, 0], bool)):
        path = tmp_path / f"p{labels.dtype}{labels.ndim}.h5"
        with h5py.File(path, "w") as f:
            f["images"], f["labels"] = images, labels
            f.attrs["channels"] = ["TMQ", "LANDFRAC"]
        patches = open_patches(path)
        assert patches.patch_shape == (8, 8, 2)
        assert patches.to_example(patches.source.read(0, 6))[1].tolist() == [0, 1, 0, 1, 1, 0]
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["images"], f["labels"] = images, np.array([0, 0.5, 1, 0, 1, 0])
        f.attrs["channels"] = ["TMQ", "LANDFRAC"]
    with pytest.raises(DataError, match=r"'labels' row 1 holds \[0.5\], expected class labels"):
        open_patches(tmp_path / "bad.h5")


# ---------------------------------------------------------------------------------------------
# The generator's physics and its layout


def _blank(lat0=20.0):
    grid = Grid(96, 144, (0.0, 60.0), (140.0, 260.0))
    fields = background(np.random.default_rng(0), grid, np.zeros((96, 144)))
    return grid, fields, {k: v.copy() for k, v in fields.items()}


@pytest.mark.parametrize("lat0", [20.0, -20.0])
def test_tropical_cyclone_box_is_centred_on_the_low_in_the_published_convention(lat0):
    grid = Grid(96, 144, (-40.0, 40.0), (140.0, 260.0))
    fields = background(np.random.default_rng(0), grid, np.zeros((96, 144)))
    before = {k: v.copy() for k, v in fields.items()}
    ymin, xmin, ymax, xmax, cls = tropical_cyclone(np.random.default_rng(1), grid, fields,
                                                   lat0, 200.0)
    assert cls == 1
    deficit = before["PSL"] - fields["PSL"]
    y, x = np.unravel_index(np.argmax(deficit), deficit.shape)
    # y is the latitude (first) axis, x the longitude axis; the low is in the box's middle.
    assert abs((ymin + ymax) / 2 - (y + 0.5)) <= 1 and abs((xmin + xmax) / 2 - (x + 0.5)) <= 1
    assert abs(grid.lat[y] - lat0) < grid.dlat and abs(grid.lon[x] - 200.0) < grid.dlon
    # the box is square in km, not in pixels
    km_tall = (ymax - ymin) * grid.dlat * 111.2
    km_wide = (xmax - xmin) * grid.dlon * 111.2 * np.cos(np.radians(lat0))
    assert km_tall == pytest.approx(km_wide, rel=0.25)
    # cyclonic: counter-clockwise in the north (northward wind east of the centre)
    east_v = (fields["V850"] - before["V850"])[y, min(x + 2, 143)]
    assert np.sign(east_v) == np.sign(lat0)
    # warm core aloft and a moisture bulge
    assert (fields["T500"] - before["T500"])[y, x] > 1.0
    assert (fields["TMQ"] - before["TMQ"])[y, x] > 5.0
    speed = np.hypot(fields["U850"] - before["U850"], fields["V850"] - before["V850"])
    assert speed.max() > 25  # tropical-storm force and more


def test_atmospheric_river_meets_the_length_width_and_transport_criteria():
    grid, fields, before = _blank()
    for seed in range(5):
        box, stats = atmospheric_river(np.random.default_rng(seed), grid, fields, 20.0, 160.0)
        assert box is not None and box[4] == 3
        assert stats["length_km"] >= 2000 and stats["width_km"] < 1000
        assert stats["length_km"] / stats["width_km"] > 2
        assert stats["core_ivt"] >= 250  # kg/m/s


def test_extratropical_cyclone_has_a_warm_sector_east_of_its_cold_front():
    grid, fields, before = _blank()
    box = extratropical_cyclone(np.random.default_rng(0), grid, fields, 45.0, 200.0)
    assert box[4] == 2
    anomaly = fields["TREFHT"] - before["TREFHT"]
    cy, cx = int((45.0 - 0) / grid.dlat), int((200.0 - 140) / grid.dlon)
    south_east, north_west = anomaly[cy - 4, cx + 4], anomaly[cy + 4, cx - 4]
    assert south_east > north_west + 2.0
    assert (before["PSL"] - fields["PSL"])[cy, cx] > 1000


def test_generator_is_seeded_and_independent_of_process_count(tmp_path):
    a = generate_extreme_weather(tmp_path / "a.h5", n_images=6, seed=5, progress=False,
                                 **REGION).path
    b = generate_extreme_weather(tmp_path / "b.h5", n_images=6, seed=5, processes=2,
                                 progress=False, **REGION).path
    with h5py.File(a) as fa, h5py.File(b) as fb:
        np.testing.assert_array_equal(fa["images"][()], fb["images"][()])
        np.testing.assert_array_equal(fa["boxes"][()], fb["boxes"][()])
        assert fa["images"].shape == (6, 16, 64, 96) and fa["boxes"].shape == (6, 15, 5)
        assert fa["images"].dtype == np.float32 and fa["boxes"].dtype == np.int32
        assert list(fa.attrs["channels"]) == list(CHANNELS)


def test_labelled_fraction_and_the_supervised_subset(tmp_path):
    full = generate_extreme_weather(tmp_path / "f.h5", n_images=10, labelled_fraction=0.3,
                                    seed=2, progress=False, **REGION).path
    only = generate_extreme_weather(tmp_path / "o.h5", n_images=10, labelled_fraction=0.3,
                                    drop_unlabelled=True, seed=2, progress=False, **REGION).path
    labelled = open_extreme_weather(full).labelled((0, 10))
    assert labelled.sum() == 3
    with h5py.File(full) as ff, h5py.File(only) as fo:
        np.testing.assert_array_equal(fo["images"][()], ff["images"][()][labelled])
        np.testing.assert_array_equal(fo["boxes"][()], ff["boxes"][()][labelled])


# ---------------------------------------------------------------------------------------------
# Patches and netCDF


def test_tropical_cyclone_patches_are_centred_on_the_storms(tmp_path, images_file):
    from modelzoo.climate.patches import extract_patches

    path = extract_patches(images_file, tmp_path / "tc.h5", patch_size=(16, 16), seed=1,
                           progress=False).path
    patches = open_patches(path)
    assert patches.patch_shape == (16, 16, 8) and patches.class_names == ("no_event",
                                                                          "tropical_cyclone")
    with h5py.File(path) as f:
        psl, labels = f["images"][:, 0], f["labels"][()]
    assert 0.3 < labels.mean() < 0.7
    # the pressure minimum of an event patch lies near its middle
    lows = [np.unravel_index(np.argmin(p), p.shape) for p in psl[labels == 1]]
    near = [abs(y - 7.5) <= 4 and abs(x - 7.5) <= 4 for y, x in lows]
    assert np.mean(near) > 0.8
    river = extract_patches(images_file, tmp_path / "ar.h5", event="atmospheric_river",
                            patch_size=(24, 32), progress=False).path
    assert open_patches(river).channels == ("TMQ", "LANDFRAC")
    with pytest.raises(ConfigError, match="does not fit"):
        extract_patches(images_file, tmp_path / "x.h5", event="atmospheric_river",
                        progress=False)  # 148 x 224 on a 64 x 96 grid


def test_netcdf_model_output_becomes_an_unlabelled_file(tmp_path):
    import xarray as xr

    from modelzoo.climate.netcdf import netcdf_to_extreme_weather

    lat, lon = np.linspace(60, -60, 8), np.arange(12) * 30.0  # descending, like ERA5
    rng = np.random.default_rng(0)
    variables = {("Z1000" if name == "Z100" else name):
                 (("time", "lat", "lon"), rng.normal(size=(3, 8, 12)).astype(np.float32))
                 for name in CHANNELS}
    ds = xr.Dataset(variables, coords={"time": [0, 6, 12], "lat": lat, "lon": lon})
    ds["PSL"].attrs.update(units="Pa", standard_name="air_pressure_at_mean_sea_level")
    ds.to_netcdf(tmp_path / "cam5.nc")
    out = netcdf_to_extreme_weather([tmp_path / "cam5.nc"], tmp_path / "cam5.h5").path
    images = open_extreme_weather(out)
    assert images.num_images == 3 and images.image_shape == (8, 12, 16)
    assert not images.labelled((0, 3)).any()
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["images"][1, 2], ds["PSL"].values[1, ::-1])
    ds.drop_vars("TMQ").to_netcdf(tmp_path / "no_tmq.nc")
    with pytest.raises(DataError, match=r"no_tmq.nc: missing variable 'TMQ'"):
        netcdf_to_extreme_weather([tmp_path / "no_tmq.nc"], tmp_path / "x.h5")
    assert not list(tmp_path.glob("x.h5*"))  # a refused conversion leaves nothing behind


# ---------------------------------------------------------------------------------------------
# The loss mask and short trainings


def test_detection_loss_ignores_unlabelled_images_and_vanishes_on_the_truth():
    from modelzoo.climate.task import encode_targets, yolo_loss

    table = np.full((2, 15, 5), -1.0)
    table[0, 0] = (8, 16, 24, 40, 1)
    targets = encode_targets(table, (32, 64), 8)  # image 1 has no boxes: unlabelled
    assert targets[0, ..., 6].min() == 1 and targets[1, ..., 6].max() == 0
    truth = np.zeros((2, 4, 8, 10), np.float32)
    truth[..., :4] = targets[..., 1:5]
    truth[..., 4], truth[..., 5] = 1 - targets[..., 0], targets[..., 0]
    truth[..., 6:] = np.eye(4)[targets[..., 5].astype(int)]
    loss = yolo_loss()
    perfect = np.asarray(loss(targets, truth))
    assert perfect.shape == (2,) and np.all(perfect < 1e-4)
    wrong = truth.copy()
    wrong[..., 4], wrong[..., 5] = 0.5, 0.5
    value = np.asarray(loss(targets, wrong))
    assert value[1] == 0 and value[0] > 1  # only the labelled image counts ...
    # ... and it counts as the batch's mean: 2 x its own loss over the 2 images
    single = np.asarray(loss(targets[:1], wrong[:1]))[0]
    assert value[0] == pytest.approx(2 * single)


@pytest.mark.slow
def test_patch_classifier_trains_far_above_chance(tmp_path):
    from modelzoo import training
    from modelzoo.climate.patches import extract_patches

    images = generate_extreme_weather(tmp_path / "i.h5", n_images=120, seed=11, progress=False,
                                      processes=2, **REGION).path
    patches = extract_patches(images, tmp_path / "tc.h5", patch_size=(16, 16), seed=1,
                              progress=False).path
    result = training.train("climate_patch_cnn", patches, run_dir=str(tmp_path / "run"),
                            verbose=0, overrides={"train.epochs": 8, "train.batch_size": 16},
                            model_config={"input_shape": [16, 16, 8]})
    metrics = training.evaluate(result.run_dir, patches, split="val")
    assert metrics["accuracy"] > 0.9 > metrics["chance_accuracy"] + 0.25, metrics
    assert (tmp_path / "run" / "confusion.png").exists()


# AP@0.5 on tropical cyclones of the superseded climate_detector.synthetic_v1 (8-pixel cells,
# 15 epochs) on its 64-image evaluation set, measured when it shipped (0.092 [0.062, 0.144] on
# the 256 images of the present entry's set); only default entries ship now.
COARSE_CELLS_TC_AP5 = 0.026


@pytest.mark.slow
def test_detector_finds_synthetic_storms(tmp_path):
    """A short run with the shipped entry's heads (2-pixel cells for depressions and cyclones,
    8-pixel cells for extratropical cyclones and rivers) places tropical cyclones better
    (AP@0.5) than the 8-pixel-cell entry it replaced did after its full training."""
    from modelzoo import training

    train = generate_extreme_weather(tmp_path / "t.h5", n_images=160, seed=21, progress=False,
                                     processes=2, **REGION).path
    test = generate_extreme_weather(tmp_path / "e.h5", n_images=24, seed=22, progress=False,
                                    **REGION).path
    result = training.train(
        "climate_detector", train, run_dir=str(tmp_path / "run"), verbose=0,
        overrides={"train.epochs": 10, "train.batch_size": 8, "data.grid_cell": 2,
                   "data.coarse_cell": 8, "data.coarse_classes": [2, 3],
                   "data.val_fraction": 0.0, "loss.reconstruction_weight": 1.0},
        model_config={"input_shape": [64, 96, 16], "filters": [16, 32, 64], "cell_layers": 1,
                      "coarse_head": True})
    metrics = training.evaluate(result.run_dir, test, output_dir=str(tmp_path / "eval"))
    assert metrics["map_5"] > 0.1 and metrics["map_1"] > metrics["map_5"], metrics
    assert metrics["ap_5_tropical_cyclone"] > COARSE_CELLS_TC_AP5, metrics
    assert (tmp_path / "eval" / "detections.png").exists()


def test_data_command_writes_images_and_patches(tmp_path, capsys):
    from modelzoo.cli import main

    images, patches = str(tmp_path / "i.h5"), str(tmp_path / "p.h5")
    assert main(["data", "climate", "images", "--output", images, "--images", "4", "--height",
                 "32", "--width", "48", "--lat-range", "0", "60", "--lon-range", "140", "260",
                 "--labelled-fraction", "0.5", "--seed", "1"]) == 0
    assert "wrote 4 images" in capsys.readouterr().err
    assert open_extreme_weather(images).labelled((0, 4)).sum() == 2
    assert main(["data", "climate", "patches", "--input", images, "--output", patches,
                 "--event", "weather_front", "--patch-size", "8", "16"]) == 0
    assert open_patches(patches).patch_shape == (8, 16, 3)
    assert main(["data", "climate", "patches", "--input", images, "--output", patches,
                 "--event", "atmospheric_river"]) == 2  # 148 x 224 does not fit: one line
    assert "does not fit" in capsys.readouterr().err

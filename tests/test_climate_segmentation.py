"""DeepCAM segmentation: the DeepLabv3+ builder at DeepCAM's size, its input scaling and loss,
DeepCAM's files read exactly and rejected with one line, sharding by file, physics masks of
hand-placed storms and rivers, IoU on hand-made masks, the threshold baseline, and a short
training that beats the all-background prediction."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from modelzoo.climate import deepcam
from modelzoo.climate.deepcam import (
    DEEPCAM_CHANNELS,
    generate_deepcam,
    open_deepcam,
    write_stats,
)
from modelzoo.climate.generator import Grid, atmospheric_river, background, tropical_cyclone
from modelzoo.climate.masks import ATMOSPHERIC_RIVER, GALE_WIND, TROPICAL_CYCLONE
from modelzoo.climate.segmentation import (
    DEEPCAM_FREQUENCIES,
    class_weights,
    confusion_counts,
    iou_from_counts,
    iou_table,
    threshold_baseline,
    weighted_crossentropy,
)
from modelzoo.errors import ConfigError, DataError

REGION = {"height": 64, "width": 96, "lat_range": (0.0, 60.0), "lon_range": (140.0, 260.0)}


# ---------------------------------------------------------------------------------------------
# Builder, scaling, loss


def test_segmenter_builds_at_deepcam_size_with_aspp_and_low_level_decoder():
    import modelzoo

    model = modelzoo.get("climate_segmenter")
    assert model.input_shape == (None, 768, 1152, 16)
    assert model.output_shape == (None, 768, 1152, 3)
    assert model.get_layer("stage2_add").output.shape[1:3] == (192, 288)  # stride 4, low level
    assert model.get_layer("stage4_add").output.shape[1:3] == (48, 72)  # output stride 16
    rates = sorted(layer.dilation_rate[0] for layer in model.layers
                   if layer.name.startswith("aspp_rate") and hasattr(layer, "dilation_rate"))
    assert rates == [6, 12, 18]
    assert model.get_layer("aspp_pool_up").output.shape[1:3] == (48, 72)
    concat = model.get_layer("decoder_concat").output.shape
    assert concat[1:] == (192, 288, 128 + 32)  # ASPP (upsampled x4) + low-level projection


def test_segmenter_small_grid_gives_probabilities_and_rejects_bad_sizes():
    import modelzoo

    model = modelzoo.get("climate_segmenter", input_shape=(32, 48, 16), atrous_rates=(1, 2))
    out = np.asarray(model(np.zeros((2, 32, 48, 16), np.float32)))
    assert out.shape == (2, 32, 48, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="multiple of the output stride 16"):
        modelzoo.get("climate_segmenter", input_shape=(40, 48, 16))
    with pytest.raises(ConfigError, match="channel_shift and channel_scale"):
        modelzoo.get("climate_segmenter", input_shape=(32, 48, 4))


def test_input_scaling_layer_applies_the_stats_file_min_max_scaling():
    import keras

    import modelzoo

    shift, scale = [1.0, -2.0, 100.0], [2.0, 4.0, 1e-3]
    model = modelzoo.get("climate_segmenter", input_shape=(16, 16, 3), atrous_rates=(1,),
                         channel_shift=shift, channel_scale=scale)
    scaling = keras.Model(model.input, model.get_layer("input_scaling").output)
    x = np.full((1, 16, 16, 3), [3.0, 2.0, 100.002], np.float32)
    np.testing.assert_allclose(np.asarray(scaling(x))[0, 0, 0], [1.0, 1.0, 2.0], rtol=1e-3)


def test_weighted_crossentropy_matches_a_hand_computation():
    weights = class_weights()
    np.testing.assert_allclose(weights, [f ** -0.125 for f in DEEPCAM_FREQUENCIES])
    assert weights[1] > weights[2] > weights[0]  # cyclones rarest
    probs = np.array([[[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]]], np.float32)  # (1, 1, 2, 3)
    labels = np.array([[[0, 2]]], np.int32)
    expected = (-weights[0] * np.log(0.7) - weights[2] * np.log(0.3)) / 2
    got = float(np.asarray(weighted_crossentropy(weights)(labels, probs))[0])
    assert got == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# DeepCAM's files


def _hand_folder(tmp_path, n=3, shape=(16, 32, 16)):
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    samples = []
    for k in range(n):
        data = rng.normal(size=shape).astype(np.float32)
        labels = rng.integers(0, 3, size=shape[:2]).astype(np.int32)
        with h5py.File(folder / f"data-2000-01-0{k + 1}-00-1.h5", "w") as f:  # as published
            f["climate/data"], f["climate/labels_0"] = data, labels
        samples.append((data, labels))
    channels = shape[2]
    write_stats(tmp_path / "stats.h5", n, np.zeros(channels), np.ones(channels),
                np.full(channels, -5.0), np.arange(channels) + 1.0)
    return folder, samples


def test_hand_written_deepcam_folder_reads_exactly_with_stats_one_folder_up(tmp_path):
    folder, samples = _hand_folder(tmp_path)
    opened = open_deepcam(folder)
    assert opened.num_rows == 3 and opened.sample_shape == (16, 32, 16)
    assert opened.channels == DEEPCAM_CHANNELS
    block = opened.read(1, 3)
    np.testing.assert_array_equal(block["data"], np.stack([s[0] for s in samples[1:]]))
    np.testing.assert_array_equal(block["labels"], np.stack([s[1] for s in samples[1:]]))
    shift, scale = opened.scaling()
    assert shift == [-5.0] * 16 and scale == list(np.arange(16) + 6.0)


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.__delitem__("climate/labels_0"), "missing dataset 'climate/labels_0'"),
    (lambda f: (f.__delitem__("climate/labels_0"),
                f.create_dataset("climate/labels_0", data=np.zeros((16, 31), np.int32))),
     r"dataset 'climate/labels_0' has shape \(16, 31\) dtype int32, expected \(16, 32\)"),
    (lambda f: (f.__delitem__("climate/data"),
                f.create_dataset("climate/data", data=np.zeros((16, 32, 15), np.float32))),
     r"dataset 'climate/data' has shape \(16, 32, 15\), expected \(16, 32, 16\)"),
    (lambda f: f["climate/labels_0"].__setitem__((0, 0), 3), "holds 3; expected labels 0"),
    (lambda f: f["climate/data"].__setitem__((0, 0, 0), np.nan), "has NaN or Inf"),
])
def test_bad_sample_gives_one_line_naming_file_and_dataset(tmp_path, damage, message):
    folder, _ = _hand_folder(tmp_path)
    bad = sorted(folder.iterdir())[2]
    with h5py.File(bad, "r+") as f:
        damage(f)
    with pytest.raises(DataError, match=message) as err:
        open_deepcam(folder).read(0, 3)
    assert str(err.value).startswith(str(bad)) and "\n" not in str(err.value)


def test_folder_errors_name_what_is_expected(tmp_path):
    folder, _ = _hand_folder(tmp_path)
    with pytest.raises(DataError, match="no data-\\*.h5 sample files.*'train' folder: point"):
        open_deepcam(tmp_path)
    with h5py.File(tmp_path / "stats.h5", "r+") as f:
        del f["climate/maxval"]
    with pytest.raises(DataError, match="stats.h5: missing dataset 'climate/maxval'"):
        open_deepcam(folder)


def test_stream_shards_by_file_and_opens_only_its_own(tmp_path, monkeypatch):
    from modelzoo.distributed import ProcessGroup
    from modelzoo.tasks import shard_rows, split_streams

    folder, samples = _hand_folder(tmp_path, n=6)
    opened = open_deepcam(folder)
    seen: list[str] = []
    real_open = deepcam._open_sample
    monkeypatch.setattr(deepcam, "_open_sample", lambda p: seen.append(p) or real_open(p))
    group = ProcessGroup(rank=1, size=2)
    assert shard_rows((0, 6), group) == (3, 6)
    data = split_streams(opened, lambda b: (b["data"], b["labels"]), (0, 6), (6, 6),
                         batch_size=1, group=group, seed=0, first_epoch=0, shuffle=False,
                         path=str(folder), noun="samples", block_rows=1)
    got = [labels for _, labels in data.train.take(3).as_numpy_iterator()]
    np.testing.assert_array_equal(np.concatenate(got), np.stack([s[1] for s in samples[3:]]))
    assert sorted(set(seen)) == opened.files[3:]


# ---------------------------------------------------------------------------------------------
# Masks from the physics


def _gale_radius_km(dp: float, rmax: float, b: float, lat: float) -> float:
    """R17 of the generator's Holland profile, by bisection on its gradient wind."""
    from scipy.optimize import brentq

    f = 2 * 7.292e-5 * np.sin(np.radians(lat))

    def wind(r):
        rs = np.sqrt(r**2 + (0.2 * rmax) ** 2)
        x = (rmax / rs) ** b
        rf = rs * 1e3 * f / 2
        return np.sqrt(b * dp / 1.15 * x * np.exp(-x) + rf**2) - rf - GALE_WIND

    return brentq(wind, 1.5 * rmax, 5000.0)


@pytest.mark.parametrize("seed", [3, 11])
def test_hand_placed_cyclone_mask_is_its_gale_force_disc(seed):
    grid = Grid(768, 1152)  # DeepCAM's grid: ~26 km pixels
    fields = background(np.random.default_rng(0), grid, np.zeros((768, 1152)))
    draws = np.random.default_rng(seed)
    dp, rmax, b = draws.uniform(2000.0, 7000.0), draws.uniform(30.0, 70.0), draws.uniform(1.2, 1.8)
    labels = np.zeros((768, 1152), np.int32)
    tropical_cyclone(np.random.default_rng(seed), grid, fields, 20.0, 150.0, labels=labels)
    radius = _gale_radius_km(dp, rmax, b, 20.0)
    pixel_km2 = (grid.dlat * 111.2) * (grid.dlon * 111.2 * np.cos(np.radians(20.0)))
    area = (labels == TROPICAL_CYCLONE).sum() * pixel_km2
    assert area == pytest.approx(np.pi * radius**2, rel=0.15)
    assert set(np.unique(labels)) == {0, TROPICAL_CYCLONE}
    depression = np.zeros_like(labels)
    tropical_cyclone(np.random.default_rng(seed), grid, fields, -15.0, 60.0, depression=True,
                     labels=depression)
    assert not depression.any()  # depressions are background in DeepCAM's classes


def test_river_mask_covers_its_axis_and_stays_inside_the_filament():
    grid = Grid(384, 576)
    fields = background(np.random.default_rng(1), grid, np.zeros((384, 576)))
    labels = np.zeros((384, 576), np.int32)
    box, diag = atmospheric_river(np.random.default_rng(5), grid, fields, 22.0, 200.0,
                                  labels=labels)
    river = labels == ATMOSPHERIC_RIVER
    assert diag["core_ivt"] > 250 and river.any()
    rows, cols = np.nonzero(river)
    ymin, xmin, ymax, xmax, _ = box
    assert rows.min() >= ymin and rows.max() < ymax and cols.min() >= xmin and cols.max() < xmax
    # Its length along the axis: the mask spans most of the drawn length.
    km_north = (rows.max() - rows.min()) * grid.dlat * 111.2
    km_east = (cols.max() - cols.min()) * grid.dlon * 111.2 * np.cos(np.radians(35.0))
    assert np.hypot(km_north, km_east) > 0.7 * diag["length_km"]
    # Its width: pixels per unit length near the drawn full width at half maximum or wider
    # (the IVT threshold sits below half the core's IVT).
    pixel_km2 = grid.dlat * 111.2 * grid.dlon * 111.2 * np.cos(np.radians(35.0))
    width = river.sum() * pixel_km2 / diag["length_km"]
    assert 0.6 * diag["width_km"] < width < 2.5 * diag["width_km"]


def test_generated_folder_has_both_classes_in_deepcam_layout(tmp_path):
    path = generate_deepcam(tmp_path / "dc", n_samples=4, height=192, width=288, seed=0,
                            processes=2, progress=False).path
    opened = open_deepcam(path)
    block = opened.read(0, 4)
    assert block["data"].shape == (4, 192, 288, 16)
    counts = np.bincount(block["labels"].ravel(), minlength=3)
    assert counts[TROPICAL_CYCLONE] > 0 and counts[ATMOSPHERIC_RIVER] > 0
    assert counts[0] > 0.9 * block["labels"].size  # events are rare, as in CAM5
    tmq = block["data"][..., DEEPCAM_CHANNELS.index("TMQ")]
    assert tmq[block["labels"] == ATMOSPHERIC_RIVER].mean() > tmq.mean() + 10  # moist filaments
    stats = opened.stats
    np.testing.assert_allclose(stats["minval"], block["data"].min(axis=(0, 1, 2)))
    np.testing.assert_allclose(stats["maxval"], block["data"].max(axis=(0, 1, 2)))
    with pytest.raises(ConfigError, match="not an empty folder"):
        generate_deepcam(path, n_samples=1, height=32, width=32, progress=False)


# ---------------------------------------------------------------------------------------------
# IoU and the baseline


def test_iou_of_hand_made_masks():
    truth = np.zeros((2, 4, 4), int)
    truth[0, :2, :2] = 1  # 4 cyclone pixels
    truth[1, :, 0] = 2  # 4 river pixels
    predicted = np.zeros_like(truth)
    predicted[0, :2, :1] = 1  # 2 of them
    predicted[1, :, :2] = 2  # 8, covering the 4
    counts = confusion_counts(truth, predicted)
    np.testing.assert_array_equal(counts[0, :, 1], [2, 4])
    np.testing.assert_array_equal(counts[1, :, 2], [4, 8])
    iou = iou_from_counts(counts)
    np.testing.assert_allclose(iou, [(32 - 4 - 4 - 4) / (32 - 2 - 4), 0.5, 0.5])
    table = iou_table(counts, replicates=200)
    assert table["mean_iou"] == pytest.approx(iou.mean())
    assert table["mean_iou_events"] == pytest.approx(0.5)
    low, high = table["iou_tropical_cyclone_interval"]
    assert low <= 0.5 <= high
    perfect = iou_table(confusion_counts(truth, truth), replicates=50)
    assert perfect["mean_iou"] == 1.0 and perfect["mean_iou_interval"] == [1.0, 1.0]
    # Paired against the perfect prediction: the differences, resampled in pairs.
    versus = iou_table(counts, replicates=200, other=confusion_counts(truth, truth))
    assert versus["iou_tropical_cyclone"] == pytest.approx(-0.5)
    assert versus["mean_iou"] == pytest.approx(iou.mean() - 1)
    low, high = versus["mean_iou_interval"]
    assert low <= iou.mean() - 1 <= high < 0


def test_threshold_baseline_finds_a_cyclone_and_a_river():
    grid = Grid(192, 288, (0.0, 60.0), (140.0, 260.0))
    fields = background(np.random.default_rng(2), grid, np.zeros((192, 288)))
    labels = np.zeros((192, 288), np.int32)
    tropical_cyclone(np.random.default_rng(4), grid, fields, 18.0, 170.0, labels=labels)
    atmospheric_river(np.random.default_rng(6), grid, fields, 20.0, 215.0, labels=labels)
    data = np.stack([fields[c] for c in DEEPCAM_CHANNELS], axis=-1)[None]
    found = threshold_baseline(data, DEEPCAM_CHANNELS, grid.lat_range, grid.lon_range)
    iou = iou_from_counts(confusion_counts(labels[None], found))
    assert iou[TROPICAL_CYCLONE] > 0.5
    # The river is found (IVT >= 250 along it); thresholds also catch humid background flow,
    # which is why the river IoU of the baseline is low.
    assert (found[0][labels == ATMOSPHERIC_RIVER] == ATMOSPHERIC_RIVER).mean() > 0.8


@pytest.mark.slow
def test_short_training_beats_all_background_on_mean_iou(tmp_path):
    from modelzoo import training

    train = generate_deepcam(tmp_path / "train", n_samples=32, seed=1, progress=False,
                             **REGION).path
    test = generate_deepcam(tmp_path / "test", n_samples=8, seed=2, progress=False,
                            **REGION).path
    training.train("climate_segmenter", train, run_dir=str(tmp_path / "run"), verbose=0,
                   overrides={"train.epochs": 8, "train.batch_size": 4,
                              "optimizer.learning_rate": 3e-3, "data.val_fraction": 0.0},
                   model_config={"atrous_rates": [1, 2], "filters": [16, 32, 64, 64],
                                 "stem_filters": 16, "aspp_filters": 32,
                                 "decoder_filters": 32, "low_level_filters": 16})
    result = training.evaluate(str(tmp_path / "run"), test, output_dir=str(tmp_path / "eval"),
                               overrides={"data.bootstrap_replicates": 200})
    assert result["mean_iou_interval"][0] > result["all_background_mean_iou"] + 0.1
    assert result["iou_atmospheric_river"] > 0.3
    assert (tmp_path / "eval" / "masks.png").exists()


def test_shipped_weights_take_the_file_arrays_and_explain(tmp_path):
    """The contract: the arrays of a DeepCAM file go into the shipped model as they are, and
    give what `modelzoo predict` writes; `modelzoo explain` runs on the same folder."""
    import modelzoo
    from modelzoo import manifest, training
    from modelzoo.cli import main

    entry = next(e for e in manifest.load_manifest().values()
                 if e["model"] == "climate_segmenter" and e["default"])
    h, w, _ = entry["config"]["input_shape"]
    folder = generate_deepcam(tmp_path / "dc", n_samples=2, height=h, width=w, seed=77,
                              progress=False).path
    written = tmp_path / "predicted.h5"
    training.predict("climate_segmenter", "default", folder, str(written))
    raw = open_deepcam(folder).read(0, 2)["data"]
    direct = modelzoo.get("climate_segmenter", weights="default").predict(raw, verbose=0)
    with h5py.File(written, "r") as f:
        np.testing.assert_allclose(f["probabilities"][()], direct, atol=1e-5)
        np.testing.assert_array_equal(f["labels"][()], direct.argmax(-1))
    assert main(["explain", "climate_segmenter", "--weights", "default", "--data", folder,
                 "--method", "saliency", "--rows", "1", "--output", str(tmp_path / "ex")]) == 0
    assert (tmp_path / "ex" / "saliency.png").exists()

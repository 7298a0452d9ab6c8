"""The LHC HDF5 reader: both published layouts, streaming, and one clear error per bad file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import write_acat, write_benchmark

from modelzoo.hdf5 import DataError, shard_range
from modelzoo.lhc.reader import open_lhc


def _collect(images, rows, **kw):
    xs, ys, ws = [], [], []
    for x, y, w in images.dataset(rows, batch_size=10, **kw):
        xs.append(x.numpy()), ys.append(y.numpy()), ws.append(w.numpy())
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


@pytest.mark.parametrize("layout", ["benchmark", "benchmark_nhwc", "acat"])
def test_layouts_give_the_same_nhwc_examples(tmp_path, toy_arrays, layout):
    path = tmp_path / "f.h5"
    if layout == "acat":
        write_acat(path, toy_arrays)
    else:
        write_benchmark(path, toy_arrays, nhwc=layout.endswith("nhwc"))
    images = open_lhc(path)
    assert images.layout == layout.split("_")[0]
    assert images.image_shape == (16, 16, 3)
    assert images.has_selection
    x, y, w = _collect(images, (0, 64))
    np.testing.assert_array_equal(x, np.transpose(toy_arrays["data"], (0, 2, 3, 1)))
    np.testing.assert_array_equal(y, toy_arrays["label"])
    np.testing.assert_array_equal(w, toy_arrays["weight"])


def test_the_model_compresses_the_energies_the_reader_gives_as_stored(benchmark_file, toy_arrays):
    import modelzoo

    x, _, _ = _collect(open_lhc(benchmark_file), (0, 8))
    np.testing.assert_array_equal(x, np.transpose(toy_arrays["data"][:8], (0, 2, 3, 1)))
    model = modelzoo.get("lhc_cnn", input_shape=(16, 16, 3), filters=4, dense_units=8)
    seen = model.get_layer("log1p")(x - 1.0)  # negative noise is clipped to zero energy
    np.testing.assert_allclose(seen, np.log1p(np.maximum(x - 1.0, 0.0)), rtol=1e-6)


def test_shuffled_stream_is_a_reproducible_permutation(benchmark_file, toy_arrays):
    images = open_lhc(benchmark_file)
    _, _, w1 = _collect(images, (0, 64), shuffle=True, seed=3, block_rows=16)
    x2, _, w2 = _collect(images, (0, 64), shuffle=True, seed=3, block_rows=16)
    x3, _, _ = _collect(images, (0, 64), shuffle=True, seed=4, block_rows=16)
    np.testing.assert_array_equal(w1, w2)
    assert not np.array_equal(x2, x3)
    # Same multiset of events: sort by the image sums.
    sums = np.sort(x2.sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(sums, np.sort(toy_arrays["data"].sum(axis=(1, 2, 3))), rtol=1e-5)


def test_shard_ranges_are_disjoint_and_cover():
    for n, size in [(10, 3), (64, 2), (5, 8)]:
        ranges = [shard_range(n, r, size) for r in range(size)]
        covered = np.concatenate([np.arange(*r) for r in ranges])
        np.testing.assert_array_equal(covered, np.arange(n))


def test_arrays_without_images(benchmark_file, toy_arrays):
    arrays = open_lhc(benchmark_file).arrays((10, 20))
    np.testing.assert_array_equal(arrays["label"], toy_arrays["label"][10:20])
    np.testing.assert_array_equal(arrays["passes_selection"], toy_arrays["psr"][10:20])


def _mutate(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)
    return path


@pytest.mark.parametrize(
    "mutation, message",
    [
        (lambda f: f.__delitem__("label"), "missing dataset 'label'"),
        (lambda f: (f.__delitem__("data"), f.create_dataset("data", data=np.zeros((64, 3, 16)))),
         "dataset 'data' has shape (64, 3, 16), expected (N, C, H, W) NCHW or (N, H, W, C) NHWC"),
        (lambda f: (f.__delitem__("weight"), f.create_dataset("weight", data=np.zeros(63))),
         "datasets differ in length"),
        (lambda f: (f.__delitem__("label"), f.create_dataset("label", data=np.zeros(64, "S3"))),
         "dataset 'label' has dtype |S3, expected class labels (N) or (N, 1), values in {0, 1}"),
        (lambda f: f["data"].__setitem__((5, 0, 0, 0), np.nan),
         "dataset 'data' has NaN or Inf (first at row 5)"),
        (lambda f: f["label"].__setitem__(3, 7),
         "dataset 'label' row 3 holds [7], expected class labels (N) or (N, 1), values in {0, 1}"),
    ],
)
def test_malformed_benchmark_files(benchmark_file, mutation, message):
    _mutate(benchmark_file, mutation)
    with pytest.raises(DataError) as err:
        open_lhc(benchmark_file)
    assert benchmark_file in str(err.value)
    assert message in str(err.value)


def test_malformed_acat_file(acat_file):
    _mutate(acat_file, lambda f: f["all_events"].__delitem__("histEM"))
    with pytest.raises(DataError, match="only one of 'all_events/histEM' and "
                       "'all_events/histtrack'"):
        open_lhc(acat_file)
    _mutate(acat_file, lambda f: f["all_events"].__delitem__("hist"))
    with pytest.raises(DataError, match="missing dataset 'all_events/hist'; expected"):
        open_lhc(acat_file)


def _relabel(path, labels, group=""):
    with h5py.File(path, "a") as f:
        del f[f"{group}y" if group else "label"]
        f[f"{group}y" if group else "label"] = labels


@pytest.mark.parametrize("stored", [
    lambda y: y.astype(np.float32),                 # 0.0 / 1.0, as many analysis scripts write
    lambda y: y.astype(np.float64)[:, None],        # a column, shape (N, 1)
    lambda y: y.astype(np.uint8),
    lambda y: y.astype(bool),
    lambda y: y.astype(np.int64)[:, None],
])
@pytest.mark.parametrize("layout", ["acat", "benchmark", "benchmark_nhwc"])
def test_labels_as_real_files_store_them(tmp_path, toy_arrays, stored, layout):
    if layout == "acat":
        path = write_acat(tmp_path / "acat.h5", toy_arrays)
        _relabel(path, stored(toy_arrays["label"]), group="all_events/")
    else:
        path = write_benchmark(tmp_path / "bench.h5", toy_arrays, nhwc=layout.endswith("nhwc"))
        _relabel(path, stored(toy_arrays["label"]))
    with h5py.File(path, "a") as f:  # datasets the reader does not know are ignored
        f["run_number"] = np.arange(len(toy_arrays["label"]))
    images = open_lhc(path)
    _, y, _ = _collect(images, (0, 64))
    np.testing.assert_array_equal(y, toy_arrays["label"])
    np.testing.assert_array_equal(images.arrays((0, 64))["label"], toy_arrays["label"])


@pytest.mark.parametrize("bad, row, shown", [(0.5, 7, "0.5"), (2.0, 9, "2.0"),
                                             (np.nan, 11, "nan")])
def test_non_class_labels_are_refused_with_the_row(tmp_path, toy_arrays, bad, row, shown):
    path = write_acat(tmp_path / "acat.h5", toy_arrays)
    labels = toy_arrays["label"].astype(np.float32)
    labels[row] = bad
    _relabel(path, labels, group="all_events/")
    with pytest.raises(DataError) as err:
        open_lhc(path)
    message = str(err.value)
    assert "'all_events/y'" in message and f"row {row}" in message and shown in message.lower()


def test_one_channel_acat_file_trains_a_one_channel_model(tmp_path, toy_arrays):
    from modelzoo import training

    path = write_acat(tmp_path / "acat.h5", toy_arrays)
    with h5py.File(path, "a") as f:
        del f["all_events/histEM"], f["all_events/histtrack"]
    images = open_lhc(path)
    assert images.image_shape == (16, 16, 1)
    x, _, _ = _collect(images, (0, 4))
    np.testing.assert_array_equal(x[..., 0], toy_arrays["data"][:4, 0])
    result = training.train("lhc_cnn", path, run_dir=str(tmp_path / "run"), verbose=0,
                            overrides={"train.epochs": 1, "train.batch_size": 16},
                            model_config={"filters": 4, "dense_units": 8})
    assert result.model.input_shape == (None, 16, 16, 1)


def test_truncated_file(benchmark_file, tmp_path):
    data = open(benchmark_file, "rb").read()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        open_lhc(truncated)
    assert str(truncated) in str(err.value) and "truncated" in str(err.value)


def test_not_an_lhc_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((2, 3))
    with pytest.raises(DataError, match="found images"):
        open_lhc(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot be opened"):
        open_lhc(tmp_path / "nope.h5")


def _cylinder_images(image: np.ndarray) -> list[np.ndarray]:
    """Every image the detector's symmetries make of one (phi, eta, C) image."""
    out = []
    for shift in range(image.shape[0]):
        rolled = np.roll(image, -shift, axis=0)
        for phi_flip in (False, True):
            for eta_flip in (False, True):
                x = rolled[::-1] if phi_flip else rolled
                out.append(x[:, ::-1] if eta_flip else x)
    return out


def test_symmetry_augmentation_moves_only_training_images_and_resumes(benchmark_file):
    from modelzoo.distributed import ProcessGroup
    from modelzoo.errors import ConfigError
    from modelzoo.lhc.task import LHCClassification, detector_symmetries

    task, group = LHCClassification(), ProcessGroup()
    cfg = {"val_fraction": 0.25,
           "augment": ["phi_rotation", "phi_reflection", "eta_reflection"]}

    def streams(data_cfg: dict, first_epoch: int = 0):
        return task.datasets(benchmark_file, dict(data_cfg), 8, group, seed=3,
                             first_epoch=first_epoch)

    plain_cfg = {k: v for k, v in cfg.items() if k != "augment"}
    augmented, plain = streams(cfg), streams(plain_cfg)
    assert augmented.steps_per_epoch == 6  # 48 training events of the 64
    straight = [b for b in augmented.train.take(18)]
    originals = [b for b in plain.train.take(6)]
    shifts = set()
    for (xa, ya, wa), (xo, yo, wo) in zip(straight[:6], originals, strict=True):
        np.testing.assert_array_equal(ya, yo)
        np.testing.assert_array_equal(wa, wo)
        for a, o in zip(xa.numpy(), xo.numpy(), strict=True):
            matches = [i for i, g in enumerate(_cylinder_images(o)) if np.array_equal(a, g)]
            assert matches, "an augmented image is not a symmetry of its original"
            shifts.add(matches[0] // 4)
    assert len(shifts) > 4  # the phi shifts are drawn, not fixed
    # Validation is never augmented.
    for (xa, _, _), (xo, _, _) in zip(augmented.validation, plain.validation, strict=True):
        np.testing.assert_array_equal(xa, xo)
    # A run resumed at epoch 2 sees the batches of the uninterrupted run.
    resumed = [b for b in streams(cfg, first_epoch=2).train.take(6)]
    for (xa, _, _), (xr, _, _) in zip(straight[12:], resumed, strict=True):
        np.testing.assert_array_equal(xa, xr)
    # One symmetry alone: a phi rotation keeps every column's pixel sums.
    only_rotation = detector_symmetries(["phi_rotation"])(originals[0][0], np.array([1, 2]))
    np.testing.assert_allclose(only_rotation.numpy().sum(axis=1),
                               originals[0][0].numpy().sum(axis=1), rtol=1e-6)
    assert not np.array_equal(only_rotation.numpy(), originals[0][0].numpy())
    with pytest.raises(ConfigError, match="phi_boost"):
        streams({**cfg, "augment": "phi_rotation,phi_boost"})

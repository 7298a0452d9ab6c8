"""CosmoFlow: the published architecture's layers and parameter count (by hand), the transform
inside the model, the MLPerf TFRecord layout read bit-exactly (and refused when malformed), the
generator's physics (power spectrum, lognormal one-point distribution, Poisson counts), and a
short training that must beat predicting the mean."""

from __future__ import annotations

import gzip
import json
import os

import h5py
import numpy as np
import pytest

import modelzoo
from modelzoo.cosmology import cosmoflow_generator as gen
from modelzoo.cosmology import cosmoflow_reader as reader
from modelzoo.cosmology import cosmoflow_statistics as st
from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError, DataError


def test_published_configuration_layers_and_parameter_count():
    model = modelzoo.get("cosmoflow")
    assert model.input_shape == (None, 128, 128, 128, 4)
    assert model.output_shape == (None, 4)
    # Five Conv3D k=3 blocks, filters 32, 64, 128, 256, 512, each halved by pooling: 128 -> 4.
    sides, filters = [128, 64, 32, 16, 8], [32, 64, 128, 256, 512]
    for i, (side, n) in enumerate(zip(sides, filters), start=1):
        assert model.get_layer(f"conv{i}").output.shape[1:] == (side, side, side, n)
        assert model.get_layer(f"pool{i}").output.shape[1:] == (side // 2,) * 3 + (n,)
    assert model.get_layer("flatten").output.shape[1:] == (4 * 4 * 4 * 512,)
    assert [model.get_layer(f"fc{i}").units for i in (1, 2)] == [128, 64]
    assert [model.get_layer(f"fc{i}_dropout").rate for i in (1, 2)] == [0.5, 0.5]
    # By hand: a Conv3D has 27 * in * out weights + out biases; a Dense in * out + out.
    conv = (27 * 4 * 32 + 32) + (27 * 32 * 64 + 64) + (27 * 64 * 128 + 128) \
        + (27 * 128 * 256 + 256) + (27 * 256 * 512 + 512)
    dense = (32768 * 128 + 128) + (128 * 64 + 64) + (64 * 4 + 4)
    assert conv + dense == 8_907_556
    assert model.count_params() == conv + dense


def test_every_width_depth_and_input_size_is_configurable():
    small = modelzoo.get("cosmoflow", input_shape=(16, 16, 16, 2), conv_filters=4,
                         conv_layers=3, dense_units=(8,), num_outputs=3, dropout=0.0)
    assert small.output_shape == (None, 3)
    assert small.get_layer("conv3").output.shape[1:] == (4, 4, 4, 16)
    assert small.count_params() == ((27 * 2 * 4 + 4) + (27 * 4 * 8 + 8) + (27 * 8 * 16 + 16)
                                    + (2 * 2 * 2 * 16 * 8 + 8) + (8 * 3 + 3))
    with pytest.raises(ValueError, match="multiples of 2"):
        modelzoo.get("cosmoflow", input_shape=(24, 24, 24, 4))


def test_log_transform_travels_with_the_weights():
    """The model takes int16 counts as stored; without its LogCounts layer the same weights
    need log(1 + counts) given by hand."""
    config = dict(input_shape=(16, 16, 16, 4), conv_filters=4, conv_layers=2, dropout=0.0)
    with_log = modelzoo.get("cosmoflow", **config)
    plain = modelzoo.get("cosmoflow", log_counts=False, **config)
    plain.set_weights(with_log.get_weights())
    counts = np.random.default_rng(0).poisson(5.0, (3, 16, 16, 16, 4)).astype(np.int16)
    np.testing.assert_allclose(with_log.predict(counts, verbose=0),
                               plain.predict(np.log1p(counts.astype(np.float32)), verbose=0),
                               rtol=1e-5, atol=1e-6)
    outputs = with_log.predict(np.full((1, 16, 16, 16, 4), 10**4, np.int16), verbose=0)
    assert np.abs(outputs).max() <= 1.2


def _example(x_bytes: bytes | None, y: list[float] | None, y_kind: str = "float") -> bytes:
    import tensorflow as tf

    feature = {}
    if x_bytes is not None:
        feature["x"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[x_bytes]))
    if y is not None:
        feature["y"] = (tf.train.Feature(float_list=tf.train.FloatList(value=y))
                        if y_kind == "float" else
                        tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in y])))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_records(path, records: list[bytes], compress: bool = True) -> str:
    """TFRecord framing by TensorFlow's writer, uncompressed; gzip by Python's own gzip."""
    import tensorflow as tf

    raw = f"{path}.raw"
    with tf.io.TFRecordWriter(raw) as writer:
        for record in records:
            writer.write(record)
    with open(raw, "rb") as fh:
        data = fh.read()
    os.remove(raw)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(data) if compress else data)
    return str(path)


def test_hand_written_tfrecord_in_the_published_layout_reads_bit_exactly(tmp_path):
    rng = np.random.default_rng(1)
    shape = (8, 8, 8, 4)
    volumes = rng.integers(0, 32768, size=(3, *shape)).astype("<i2")  # the int16 range >= 0
    targets = rng.uniform(-1, 1, size=(3, 4)).astype(np.float32)
    (tmp_path / "train").mkdir()
    (tmp_path / "validation").mkdir()
    for i in range(2):  # one sample per file, as published
        _write_records(tmp_path / "train" / f"u{i}.tfrecord",
                       [_example(volumes[i].tobytes(), targets[i].tolist())])
    _write_records(tmp_path / "validation" / "u2.tfrecord",
                   [_example(volumes[2].tobytes(), targets[2].tolist())], compress=False)
    opened = reader.open_volumes(str(tmp_path), {})
    assert opened.sample_shape == shape
    assert (opened.num_volumes("train"), opened.num_volumes("val")) == (2, 1)
    assert opened.compression[opened.val_files[0]] == ""
    x, y = opened.read("all", (0, 3))
    assert x.dtype == np.int16
    np.testing.assert_array_equal(x, volumes)
    np.testing.assert_array_equal(y, targets)
    batches = list(opened.dataset("train", 2, ProcessGroup(), seed=0, shuffle=False,
                                  repeat=False))
    np.testing.assert_array_equal(batches[0][0].numpy(), volumes[:2])
    np.testing.assert_array_equal(batches[0][1].numpy(), targets[:2])


def test_files_are_sharded_across_ranks_and_epochs_are_reproducible(tmp_path):
    shape = (2, 2, 2, 4)
    for i in range(6):
        _write_records(tmp_path / f"v{i}.tfrecord",
                       [_example(np.full(shape, i, "<i2").tobytes(), [0.0, 0.0, 0.0, i / 10])])
    opened = reader.open_volumes(str(tmp_path), {"val_fraction": 0.0})
    seen = []
    for rank in range(2):
        group = ProcessGroup(rank=rank, size=2)
        ds = opened.dataset("train", 1, group, seed=3, shuffle=True, repeat=True,
                            first_epoch=0, steps_per_epoch=3)
        values = [int(x.numpy()[0, 0, 0, 0, 0]) for x, _ in ds.take(6)]
        assert sorted(values[:3]) == sorted(values[3:]) == list(range(rank, 6, 2))
        resumed = opened.dataset("train", 1, group, seed=3, shuffle=True, repeat=True,
                                 first_epoch=1, steps_per_epoch=3)
        assert [int(x.numpy()[0, 0, 0, 0, 0]) for x, _ in resumed.take(3)] == values[3:]
        seen += values[:3]
    assert sorted(seen) == list(range(6))


_ZEROS = np.zeros(2 * 2 * 2 * 4, "<i2").tobytes()


@pytest.mark.parametrize("record, message", [
    (_example(None, [0.1] * 4), "feature 'x' missing"),
    (_example(_ZEROS, None), "feature 'y' missing"),
    (_example(_ZEROS, [0.1] * 3), "feature 'y' is a float_list of 3"),
    (_example(_ZEROS, [1, 0, 0, 0], "int"), "feature 'y' is a int64_list"),
    (_example(_ZEROS, [3.0, 0, 0, 0]), "scaled to \\[-1, 1\\]"),
    (_example(np.zeros(2 * 2 * 3 * 4, "<i2").tobytes(), [0.1] * 4), "feature 'x' has 96 bytes"),
    (_example(np.full(2 * 2 * 2 * 4, -3, "<i2").tobytes(), [0.1] * 4), "negative count \\(-3\\)"),
])
def test_malformed_records_are_refused_in_one_line(tmp_path, record, message):
    good = _example(np.zeros((2, 2, 2, 4), "<i2").tobytes(), [0.1] * 4)
    path = _write_records(tmp_path / "bad.tfrecord", [good, record])
    with pytest.raises(DataError, match=message) as err:
        reader.open_volumes(path, {})
    assert f"{path}: record 1" in str(err.value) and "\n" not in str(err.value)


def test_truncated_files_and_wrong_shapes_are_refused(tmp_path):
    good = _example(np.zeros((2, 2, 2, 4), "<i2").tobytes(), [0.1] * 4)
    path = _write_records(tmp_path / "cut.tfrecord", [good, good])
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.tfrecord: record .* cannot be read"):
        reader.open_volumes(path, {})
    other = _write_records(tmp_path / "one.tfrecord", [good])
    with pytest.raises(DataError, match="feature 'x' has 64 bytes, expected 256"):
        reader.open_volumes(other, {"sample_shape": [4, 4, 2, 4]})
    h5 = tmp_path / "volumes.h5"
    with h5py.File(h5, "w") as fh:
        fh["x"] = np.zeros((3, 4, 4, 4), np.int16)
        fh["y"] = np.zeros((3, 4), np.float32)
    with pytest.raises(DataError, match="dataset 'x' has shape"):
        reader.open_volumes(str(h5), {})
    with h5py.File(h5, "w") as fh:
        fh["x"] = np.zeros((3, 2, 2, 2, 4), np.int16) - np.arange(3)[:, None, None, None, None]
        fh["y"] = np.zeros((3, 4), np.float32)
    with pytest.raises(DataError, match="dataset 'x' row 1 is invalid; expected particle counts"):
        reader.open_volumes(str(h5), {})


def test_lognormal_volumes_keep_the_input_power_spectrum_within_sample_variance():
    k_h, table = gen.power_table((0.3, 0.8, 0.96, 0.7))
    grid = gen.Grid(16, 256.0)
    fields = np.stack([gen.lognormal_fields(k_h, table, grid, np.random.default_rng([5, i]))
                       for i in range(100)])
    edges = st.k_bins(16, 256.0, 6)
    _, measured, modes = st.power_spectrum(fields, 256.0, edges)
    k = st.mode_k(16, 256.0).ravel()
    index = np.digitize(k, edges) - 1
    for z in range(4):
        expected = gen.grid_power(k_h, table[z], grid).ravel()
        binned = np.array([expected[(index == b) & (k > 0)].mean() for b in range(6)])
        ratio = measured[:, z] / binned
        error = ratio.std(axis=0) / np.sqrt(len(ratio))  # the sample variance of the mean
        assert np.all(np.abs(ratio.mean(axis=0) - 1) < 4 * error + 0.01), (z, ratio.mean(0))
    # Growth: fluctuations grow towards z = 0, with one set of phases at every redshift.
    variances = fields.var(axis=(0, 2, 3, 4))
    assert np.all(np.diff(variances) < 0)
    assert np.corrcoef(fields[:, 0].ravel(), fields[:, 3].ravel())[0, 1] > 0.8


def test_one_point_distribution_is_lognormal_and_counts_are_poisson():
    k_h, table = gen.power_table((0.3, 0.8, 0.96, 0.7))
    grid = gen.Grid(32, 128.0)
    # The generator's own stream for volume 0 of seed 0: its density field, then its counts.
    delta = gen.lognormal_fields(k_h, table, grid, np.random.default_rng([0, 0, 2]))[1]
    log_field = np.log1p(delta).ravel()
    centred = log_field - log_field.mean()
    skew = (centred**3).mean() / centred.std() ** 3
    assert abs(skew) < 0.1  # log(1 + delta) is Gaussian...
    assert ((delta - delta.mean()) ** 3).mean() / delta.std() ** 3 > 2.0  # ...delta is not
    assert abs(log_field.mean() + log_field.var() / 2) < 0.05  # <1 + delta> = 1
    counts = gen.draw_volume(0, 0, k_h, table, grid)
    assert counts.dtype == np.int16 and counts.shape == (32, 32, 32, 4)
    mean = grid.mean_count
    assert abs(counts[..., 1].mean() / mean - 1) < 0.05
    # Poisson sampling of this field: Var(counts) = n_bar + n_bar^2 Var(delta).
    np.testing.assert_allclose(counts[..., 1].var(), mean + mean**2 * delta.var(), rtol=0.05)


def test_generator_writes_both_layouts_seeded_and_independent_of_processes(tmp_path):
    args = dict(n_volumes=6, npix=8, box_side=64.0, val_fraction=0.34, seed=4, progress=False)
    gen.generate_volumes(tmp_path / "a", processes=1, **args)
    gen.generate_volumes(tmp_path / "b", processes=2, **args)
    opened = reader.open_volumes(str(tmp_path / "a"), {})
    assert (opened.num_volumes("train"), opened.num_volumes("val")) == (4, 2)
    x, y = opened.read("all", (0, 6))
    with h5py.File(tmp_path / "a" / "volumes.h5") as fh:
        np.testing.assert_array_equal(fh["x"][:], x)
        np.testing.assert_array_equal(fh["y"][:], y)
        np.testing.assert_allclose(gen.from_unit(fh["y"][:]), fh["parameters"][:], rtol=1e-5)
    with h5py.File(tmp_path / "b" / "volumes.h5") as fh:
        np.testing.assert_array_equal(fh["x"][:], x)
    assert np.abs(y).max() <= 1.0
    lo, hi = np.array(gen.RANGES).T
    assert np.all((gen.from_unit(y) >= lo - 1e-6) & (gen.from_unit(y) <= hi + 1e-6))


def test_errors_and_intervals_resample_whole_cosmologies():
    from modelzoo.cosmology.cosmoflow_task import error_table, spectrum_baseline

    truth = np.repeat(np.linspace(-0.9, 0.9, 10)[:, None] * np.ones(4), 3, axis=0)  # 10 x 3
    result = error_table(truth, {"a": truth + 0.1, "b": truth - 0.3}, resamples=50)
    assert result["mae_sigma_8_a"] == pytest.approx(0.1)
    assert result["rmse_average_b"] == pytest.approx(0.3)
    assert result["mae_average_a_lo"] == pytest.approx(0.1)  # every resample errs by 0.1
    assert result["mae_average_a_minus_b"] == pytest.approx(-0.2)
    # Out of fold by cosmology: a feature that only names the cosmology predicts nothing.
    features = np.eye(10)[np.repeat(np.arange(10), 3)]
    predicted = spectrum_baseline(features, truth)
    assert np.abs(predicted - truth).mean() > 0.3


@pytest.fixture(scope="module")
def small_volumes(tmp_path_factory):
    """640 volumes of 16^3 x 4 (8 Mpc/h voxels, 512 particles each on average), 16 per
    cosmology; the last 20% of cosmologies validate."""
    path = tmp_path_factory.mktemp("cosmoflow") / "volumes"
    gen.generate_volumes(path, n_volumes=640, npix=16, volumes_per_cosmology=16, val_fraction=0.2,
                         seed=1, processes=2, progress=False, formats=("tfrecord",))
    return str(path)


_SMALL = {"conv_filters": 8, "conv_layers": 4, "dropout": 0.0, "count_scale": 512.0}
_SHORT = {"train.epochs": 8, "train.batch_size": 16, "optimizer.learning_rate": 0.02,
          "lr_schedule.warmup_epochs": 1, "lr_schedule.decay_epochs": [],
          "lr_schedule.decay_factors": []}


@pytest.mark.slow
def test_short_training_beats_predicting_the_mean(small_volumes, tmp_path):
    from modelzoo import training

    run = tmp_path / "run"
    training.train("cosmoflow", small_volumes, run_dir=str(run), overrides=_SHORT,
                   model_config=_SMALL, verbose=0)
    result = training.evaluate(str(run), small_volumes, split="val",
                               overrides={"data.bootstrap": 200})
    assert result["volumes"] == 128 and result["split"] == "val"
    # sigma_8 sets the amplitude of every fluctuation: the CNN must find it well beyond chance,
    # and beat the training mean on average over the four parameters.
    assert result["mae_sigma_8_cnn"] < 0.75 * result["mae_sigma_8_train_mean"], result
    assert result["mae_average_cnn"] < result["mae_average_train_mean"], result
    # The power spectrum is a strong baseline on lognormal fields (their information is
    # nearly all in P(k)); it must beat the mean too.
    assert result["mae_sigma_8_power_spectrum"] < 0.5 * result["mae_sigma_8_train_mean"]
    assert (run / "metrics.json").exists() and (run / "parameters.png").exists()


def test_training_mean_of_a_separate_evaluation_file_is_out_of_fold():
    from modelzoo.cosmology.cosmoflow_task import out_of_fold_mean

    # Two cosmologies: each is predicted by the other's targets only, never by its own.
    truth = np.repeat([[0.5] * 4, [-0.5] * 4], 3, axis=0)
    np.testing.assert_allclose(out_of_fold_mean(truth), -truth)


def _write_volumes(path, targets, seed):
    """Poisson counts (8^3 x 4, mean 64) whose spectra say nothing of ``targets``."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as fh:
        fh["x"] = rng.poisson(64, (len(targets), 8, 8, 8, 4)).astype(np.int16)
        fh["y"] = np.asarray(targets, np.float32)
    return str(path)


def _tiny_cosmoflow():
    return modelzoo.get("cosmoflow", input_shape=[8, 8, 8, 4], conv_filters=2, conv_layers=3,
                        dense_units=[4], count_scale=64.0)


def test_baselines_fit_on_the_training_file_not_the_evaluated_volumes(tmp_path):
    from modelzoo import distributed
    from modelzoo.cosmology.cosmoflow_task import CosmoFlowRegression

    # Every training volume has targets 0.5 (the last quarter validates and is not fitted on);
    # the evaluated volumes belong to two cosmologies at -0.5 and -0.3. Fitted on the training
    # volumes, both baselines predict 0.5 everywhere: MAE (1.0 + 0.8) / 2 = 0.9. Fitted on the
    # evaluated volumes (out of fold: each cosmology by the other's), the training mean would
    # err by 0.2, and the ridge regression by about as much.
    train = _write_volumes(tmp_path / "train.h5", [[0.5] * 4] * 12 + [[-0.9] * 4] * 4, 1)
    evaluated = _write_volumes(tmp_path / "eval.h5", [[-0.5] * 4] * 4 + [[-0.3] * 4] * 4, 2)
    task, model, group = CosmoFlowRegression(), _tiny_cosmoflow(), distributed.init()
    data_cfg = {"val_fraction": 0.25, "box_side": 64.0, "baseline_bins": 3, "bootstrap": 20}
    out = tmp_path / "out"
    out.mkdir()
    fitted = task.evaluate(model, evaluated, {**data_cfg, "baseline_train": train}, "all",
                           str(out), group)
    assert fitted["baseline_fitted_on"] == "the 12 training volumes of train.h5"
    for method in ("power_spectrum", "train_mean"):
        assert fitted[f"mae_average_{method}"] == pytest.approx(0.9, abs=1e-6), method
    unfitted = task.evaluate(model, evaluated, data_cfg, "all", None, group)
    assert unfitted["mae_average_train_mean"] == pytest.approx(0.2)
    # The fit written beside the metrics scores the same volumes identically without the
    # training file (what verify does with the manifest's copy).
    stored = task.evaluate(model, evaluated, {**data_cfg, "baseline_fit": str(
        out / "baseline_fit.json")}, "all", None, group)
    assert stored == fitted
    with pytest.raises(ConfigError, match="fitted on volumes with .*'bins': 3.* has .*'bins': 4"):
        task.evaluate(model, evaluated, {**data_cfg, "baseline_bins": 4, "baseline_fit": str(
            out / "baseline_fit.json")}, "all", None, group)


def test_a_stored_fit_predicts_as_the_fitted_pipeline():
    from modelzoo.cosmology.cosmoflow_task import (
        _spectrum_regression,
        fit_baselines,
        fitted_predictions,
    )

    rng = np.random.default_rng(3)
    features = rng.normal(2.0, 3.0, (60, 12))
    targets = np.tanh(features[:, :4] * 0.2 + rng.normal(0, 0.1, (60, 4)))
    fit = fit_baselines(features, targets, npix=8, box_side=64.0, bins=3, fitted_on="test")
    test = rng.normal(2.0, 3.0, (20, 12))
    ridge, mean = fitted_predictions(json.loads(json.dumps(fit)), test)
    expected = _spectrum_regression().fit(features, targets).predict(test)
    np.testing.assert_allclose(ridge, np.clip(expected, -1.2, 1.2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mean[0], targets.mean(axis=0))


def test_verify_rescores_a_stored_fit_without_simulating_the_training_set(tmp_path, monkeypatch):
    from modelzoo import reproduce
    from modelzoo.cosmology.cosmoflow_task import fit_baselines

    evaluated = _write_volumes(tmp_path / "eval.h5", [[-0.5] * 4] * 4 + [[-0.3] * 4] * 4, 2)
    made = []

    def generate(kind, path, args):
        made.append(args["split"])
        if not os.path.exists(path):
            os.symlink(evaluated, path)
        return os.fspath(path)

    monkeypatch.setattr(reproduce, "generate", generate)
    fit = fit_baselines(np.zeros((4, 12)), np.full((4, 4), 0.5), npix=8, box_side=64.0, bins=3,
                        fitted_on="the 4 training volumes of a file")
    entry = {"data_recipe": {"generator": "cosmology", "check": {"seed": 1, "split": "check"},
                             "train": {"seed": 0, "split": "train"}},
             "recipe": {"task": "cosmoflow_regression",
                        "data": {"box_side": 64.0, "baseline_bins": 3, "bootstrap": 20}},
             "baseline_fit": fit}
    measured = reproduce.evaluate_model(_tiny_cosmoflow(), entry, tmp_path, "check")
    assert made == ["check"]
    assert measured["baseline_fitted_on"] == "the 4 training volumes of a file"
    assert measured["mae_average_train_mean"] == pytest.approx(0.9)

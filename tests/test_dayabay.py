"""Daya Bay case: models, corruption, reader (both datasets, malformed files), generator physics,
the masked-pixel and separation analysis, and short trainings through the one training path."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from modelzoo.dayabay import analysis, generator
from modelzoo.dayabay.models import PMTPreprocess
from modelzoo.dayabay.reader import CLASS_NAMES, channel_indices, open_dayabay
from modelzoo.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("dayabay") / "pairs.h5"
    generator.generate_dayabay(path, n_ibd=600, n_accidental=600, n_muon=100, n_flasher=100,
                               seed=3, progress=False)
    return str(path)


# --------------------------------------------------------------------------------------------
# Models


def test_dae_shapes_code_and_layers():
    from modelzoo.dayabay.models import dayabay_dae, encode

    model = dayabay_dae(filters=8)
    x = np.random.default_rng(0).random((5, 8, 24, 4)).astype(np.float32)
    assert model.output_shape == (None, 8, 24, 4)
    assert model.get_layer("code").units == 16
    assert encode(model, x).shape == (5, 16)
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    deconvs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2DTranspose"]
    assert [c.kernel_size for c in convs] == [(5, 5), (3, 3)] and len(deconvs) == 3
    two = dayabay_dae(channels=(0, 2), code_size=10, filters=8)
    assert two.output_shape == (None, 8, 24, 2) and two.get_layer("code").units == 10


def test_grid_must_pool_twice():
    from modelzoo.dayabay.models import dayabay_dae

    with pytest.raises(ConfigError, match="multiples of 4"):
        dayabay_dae(rings=6)


@pytest.mark.parametrize("fraction", [1 / 3, 0.5, 0.0])
def test_corruption_zeroes_exactly_the_fraction_while_training_only(fraction):
    from modelzoo.dayabay.models import PixelCorruption

    layer = PixelCorruption(fraction, seed=1)
    x = np.ones((6, 8, 24, 4), np.float32)
    corrupted = np.asarray(layer(x, training=True))
    zeros = (corrupted == 0).reshape(6, -1).sum(1)
    assert (zeros == round(fraction * 768)).all()
    assert set(np.unique(corrupted)) <= {0.0, 1.0}
    # a different set of values in each example, and the identity at inference
    if fraction:
        assert not np.array_equal(corrupted[0], corrupted[1])
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_azimuthal_pad_wraps_columns_and_zero_pads_rings():
    from modelzoo.dayabay.models import AzimuthalPad

    x = np.arange(8 * 24, dtype=np.float32).reshape(1, 8, 24, 1)
    padded = np.asarray(AzimuthalPad(1)(x))[0, ..., 0]
    assert padded.shape == (10, 26)
    np.testing.assert_array_equal(padded[1:-1, 0], x[0, :, -1, 0])
    np.testing.assert_array_equal(padded[1:-1, -1], x[0, :, 0, 0])
    assert (padded[0] == 0).all() and (padded[-1] == 0).all()


# --------------------------------------------------------------------------------------------
# Analysis helpers


def test_corruption_mask_count_and_neighbour_fill_by_hand():
    mask = analysis.corruption_mask((4, 8, 24, 4), 1 / 3, seed=0)
    assert (mask.reshape(4, -1).sum(1) == 256).all()
    x = np.zeros((1, 8, 24, 1), np.float32)
    x[0, 3, :, 0] = 6.0  # a bright ring
    masked = np.zeros_like(x, bool)
    masked[0, 3, 5, 0] = True  # inside the ring: neighbours 6,6 in the ring, zeros above/below
    masked[0, 0, 0, 0] = True  # corner: wraps to column 23, not to ring 7
    x[0, 0, 23, 0] = 3.0
    x[0, 7, 0, 0] = 100.0
    filled = analysis.neighbour_fill(x, masked)
    assert filled[0, 3, 5, 0] == pytest.approx(12.0 / 8)
    assert filled[0, 0, 0, 0] == pytest.approx(3.0 / 5)  # 5 neighbours: rings 0-1, wrapped
    np.testing.assert_array_equal(filled[~masked], x[~masked])


def test_separation_scores_see_separated_and_mixed_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    apart = rng.standard_normal((200, 4)) + 4.0 * labels[:, None]
    mixed = rng.standard_normal((200, 4))
    good = analysis.separation_scores(apart, labels)
    bad = analysis.separation_scores(mixed, labels)
    assert good["knn_accuracy"] > 0.95 and good["logistic_accuracy"] > 0.95
    assert good["silhouette"] > 0.4
    assert bad["logistic_accuracy"] < 0.7 and abs(bad["silhouette"]) < 0.1


# --------------------------------------------------------------------------------------------
# Reader


def _write_rows(path, **datasets) -> str:
    with h5py.File(path, "w") as fh:
        for name, data in datasets.items():
            fh[name] = data
    return str(path)


def _rows(n: int, value: float, extra: int = 3) -> np.ndarray:
    rows = np.full((n, 768 + extra), value, np.float32)
    rows[:, 768:] = -1.0  # metadata columns, ignored
    return rows


def test_reader_merges_both_datasets_into_one_interleaved_labelled_stream(tmp_path):
    path = _write_rows(tmp_path / "p.h5", ibd_pair_data=_rows(30, 2.0),
                       accidentals_bg_data=_rows(10, 5.0), something_else=np.zeros(3))
    pairs = open_dayabay(path)
    assert pairs.num_events == 40 and pairs.class_counts == {"ibd": 30, "accidental": 10}
    arrays = pairs.arrays((0, 40))
    labels = arrays["label"]
    assert (np.bincount(labels) == [30, 10]).all()
    # every quarter of the stream holds both classes in proportion
    for q in range(4):
        assert 2 <= (labels[10 * q : 10 * q + 10] == 1).sum() <= 3
    raw = arrays["maps"]
    assert raw.shape == (40, 4, 8, 24)
    assert (raw[labels == 0] == 2.0).all() and (raw[labels == 1] == 5.0).all()
    assert arrays["inputs"].shape == (40, 8, 24, 4)


def test_reader_accepts_4d_maps_int_rows_and_one_class(tmp_path):
    path = _write_rows(tmp_path / "p.h5", ibd_pair_data=np.ones((7, 4, 8, 24), np.int16))
    pairs = open_dayabay(path)
    assert pairs.num_events == 7 and (pairs.arrays((0, 7))["label"] == 0).all()
    assert pairs.arrays((0, 7))["inputs"].shape == (7, 8, 24, 4)
    assert channel_indices("charge") == (0, 2)


def test_preprocess_logs_charge_and_centres_hit_times():
    maps = np.zeros((1, 4, 8, 24), np.float32)
    maps[0, 0, 0, :3] = [1.0, 3.0, 7.0]  # three hit PMTs
    maps[0, 1, 0, :3] = [100.0, 110.0, 130.0]
    maps[0, 1, 5, 5] = 999.0  # a time without charge is not a hit
    x = np.asarray(PMTPreprocess()(np.transpose(maps, (0, 2, 3, 1))))
    np.testing.assert_allclose(x[0, 0, :3, 0], np.log1p([1.0, 3.0, 7.0]))
    np.testing.assert_allclose(x[0, 0, :3, 1], [-1.0, 0.0, 2.0])
    assert x[0, 5, 5, 1] == 0.0 and (x[..., 2:] == 0).all()
    maps[0, 0, 0, 3], maps[0, 1, 0, 3] = 2.0, 150.0  # four hits: the mean of the middle two
    x = np.asarray(PMTPreprocess()(np.transpose(maps, (0, 2, 3, 1))))
    np.testing.assert_allclose(x[0, 0, :4, 1], [-2.0, -1.0, 1.0, 3.0])


@pytest.mark.parametrize("case,match", [
    ("no_class", "expected dataset 'ibd_pair_data'"),
    ("short_rows", "'ibd_pair_data' has shape \\(5, 700\\), expected \\(N, >= 768\\)"),
    ("nan", "'accidentals_bg_data' has NaN"),
    ("empty", "'ibd_pair_data' is empty"),
    ("group", "'ibd_pair_data' is a group"),
    ("string", "'ibd_pair_data' has dtype"),
    ("not_hdf5", "cannot be opened as HDF5"),
    ("truncated", "cannot be opened as HDF5|cannot be read|truncated"),
    ("missing", "no such file"),
])
def test_reader_refuses_malformed_files_naming_file_and_dataset(tmp_path, case, match):
    path = tmp_path / f"{case}.h5"
    if case == "no_class":
        _write_rows(path, data=_rows(4, 1.0))
    elif case == "short_rows":
        _write_rows(path, ibd_pair_data=np.ones((5, 700), np.float32))
    elif case == "nan":
        bad = _rows(6, 1.0)
        bad[4, 10] = np.nan
        _write_rows(path, ibd_pair_data=_rows(6, 1.0), accidentals_bg_data=bad)
    elif case == "empty":
        _write_rows(path, ibd_pair_data=np.zeros((0, 768), np.float32))
    elif case == "group":
        with h5py.File(path, "w") as fh:
            fh.create_group("ibd_pair_data")
    elif case == "string":
        _write_rows(path, ibd_pair_data=np.array([["x"] * 768] * 2, dtype="S1"))
    elif case == "not_hdf5":
        path.write_text("not an HDF5 file")
    elif case == "truncated":
        _write_rows(path, ibd_pair_data=_rows(2000, 1.0))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=match) as err:
        open_dayabay(path)
    assert str(path) in str(err.value)


def test_reader_names_a_required_class_that_is_missing(tmp_path):
    path = _write_rows(tmp_path / "p.h5", ibd_pair_data=_rows(4, 1.0))
    with pytest.raises(DataError, match="missing dataset 'accidentals_bg_data'"):
        open_dayabay(path, classes=("ibd", "accidental"))
    with pytest.raises(ConfigError, match="data.channels"):
        channel_indices("colour")


# --------------------------------------------------------------------------------------------
# Generator


def test_generator_writes_the_layout_and_is_independent_of_processes(tmp_path, pair_file):
    other = tmp_path / "two.h5"
    generator.generate_dayabay(other, n_ibd=600, n_accidental=600, n_muon=100, n_flasher=100,
                               seed=3, processes=2, progress=False)
    with h5py.File(pair_file) as a, h5py.File(other) as b:
        assert sorted(a) == ["accidentals_bg_data", "flasher_data", "ibd_pair_data", "muon_data"]
        for name in a:
            assert a[name].shape[1] == 768 + len(generator.METADATA_NAMES)
            np.testing.assert_array_equal(a[name][:], b[name][:])
        assert a["ibd_pair_data"].attrs["0"] == "dt_us"
        assert a["ibd_pair_data"].attrs["energy_delayed_mev"] == 2
    pairs = open_dayabay(pair_file)
    assert pairs.class_counts == {"ibd": 600, "accidental": 600, "muon": 100, "flasher": 100}


def _class_arrays(path: str, dataset: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with h5py.File(path) as fh:
        rows = fh[dataset][:]
    meta = {name: rows[:, 768 + k] for k, name in enumerate(generator.METADATA_NAMES)}
    return rows[:, :768].reshape(-1, 4, 8, 24), meta


def _centroid(charge: np.ndarray) -> np.ndarray:
    """Charge-weighted PMT position (x, y, z) of each map (n, 8, 24)."""
    pos = generator.pmt_positions()[0].reshape(8, 24, 3)
    return np.einsum("nrc,rck->nk", charge, pos) / charge.sum((1, 2))[:, None]


def test_ibd_pairs_are_closer_in_space_and_time_than_accidentals(pair_file):
    ibd_maps, ibd = _class_arrays(pair_file, "ibd_pair_data")
    acc_maps, acc = _class_arrays(pair_file, "accidentals_bg_data")

    def truth_distance(m):
        return np.linalg.norm(np.column_stack([m["x_prompt_mm"] - m["x_delayed_mm"],
                                               m["y_prompt_mm"] - m["y_delayed_mm"],
                                               m["z_prompt_mm"] - m["z_delayed_mm"]]), axis=1)

    assert np.median(truth_distance(ibd)) < 300 < np.median(truth_distance(acc))
    assert np.median(ibd["dt_us"]) < 30 < 80 < np.median(acc["dt_us"])
    # and the maps carry it: the light centroids of prompt and delayed are closer for IBD
    def map_distance(maps):
        return np.linalg.norm(_centroid(maps[:, 0]) - _centroid(maps[:, 2]), axis=1)

    assert np.median(map_distance(ibd_maps)) < 0.6 * np.median(map_distance(acc_maps))
    # the delayed IBD trigger is the ~8 MeV Gd capture
    assert 7.0 < np.median(ibd["energy_delayed_mev"]) < 8.1


def test_charge_scales_with_energy():
    rng = np.random.default_rng(0)
    vertices = np.zeros((400, 3))
    low, _ = generator._point_event(vertices, np.full(400, 2.0), rng)
    high, _ = generator._point_event(vertices, np.full(400, 8.0), rng)
    ratio = high.sum(1).mean() / low.sum(1).mean()
    assert ratio == pytest.approx(4.0, rel=0.05)
    # the light yield: total charge per MeV at the centre
    assert high.sum(1).mean() / 8.0 == pytest.approx(generator.LIGHT_YIELD_PE_PER_MEV, rel=0.05)
    # and across the generated IBD prompts (any vertex) charge follows the energy
    pairs = generator.ibd_pairs(2000, np.random.default_rng(1))
    assert pairs.maps.shape == (2000, 4, 192)
    assert np.corrcoef(pairs.maps[:, 0].sum(1), pairs.energy_prompt)[0, 1] > 0.9


def test_inverse_square_and_angular_response():
    near = np.array([[1.5, 0.0, generator.RING_Z_M[4]]])  # close to column 0 / ring 4 PMTs
    mu, dist = generator.expected_pe(near, np.array([5.0]))
    mu = mu.reshape(8, 24)
    assert np.unravel_index(mu.argmax(), mu.shape) in ((4, 0), (4, 23))
    assert mu[4, 0] > 10 * mu[4, 12]  # the far wall gets far less light
    # from the centre every PMT of a ring sees the same light (azimuthal symmetry)
    g, _ = generator._geometric_response(np.array([[0.0, 0.0, 0.0]]))
    assert (g > 0).all() and np.ptp(g.reshape(8, 24), axis=1).max() < 1e-12


def test_autoencoder_trains_on_clean_inputs_without_labels(pair_file):
    from modelzoo import distributed
    from modelzoo.dayabay.task import DayaBayClassification, DayaBayDenoising

    group = distributed.init()
    streams = DayaBayDenoising().datasets(pair_file, {}, 16, group, seed=0, first_epoch=0)
    x, target = next(iter(streams.train))
    assert x.shape == (16, 8, 24, 4)
    # the target is the input as the network sees it
    np.testing.assert_array_equal(np.asarray(PMTPreprocess()(x)), target.numpy())
    assert streams.num_validation == 350  # the last quarter of every class
    _, labels = next(iter(DayaBayClassification().datasets(pair_file, {}, 16, group, 0, 0).train))
    assert labels.shape == (16,) and set(labels.numpy()) <= {0, 1, 2, 3}


def test_predict_gives_per_pair_outputs_in_stream_order(pair_file, monkeypatch):
    from modelzoo import distributed
    from modelzoo.dayabay import task
    from modelzoo.dayabay.models import dayabay_cnn, dayabay_dae

    monkeypatch.setattr(task, "PREDICT_BLOCK", 500)  # several blocks per shard
    group = distributed.init()
    pairs = open_dayabay(pair_file)
    out = task.DayaBayDenoising().predict(dayabay_dae(filters=4), pair_file, {}, group)
    assert out["code"].shape == (1400, 16) and out["reconstruction"].shape == (1400, 8, 24, 4)
    np.testing.assert_array_equal(out["label"], pairs.source.labels)
    out = task.DayaBayClassification().predict(dayabay_cnn(filters=4), pair_file, {}, group)
    assert out["probabilities"].shape == (1400, 4)
    np.testing.assert_array_equal(out["label"], pairs.source.labels)


# --------------------------------------------------------------------------------------------
# Training through the one training path


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("dayabay_train") / "train.h5"
    generator.generate_dayabay(path, n_ibd=1500, n_accidental=1500, seed=21, progress=False)
    return str(path)


@pytest.mark.slow
def test_short_dae_training_fills_masked_pixels_and_its_code_separates_ibd(train_file, tmp_path):
    from modelzoo.training import evaluate, train

    run = tmp_path / "dae"
    train("dayabay_dae", train_file, run_dir=str(run), verbose=0,
          overrides={"train.epochs": 12, "train.batch_size": 32,
                     "lr_schedule.base_batch_size": 32, "optimizer.learning_rate": 2e-3,
                     "data.eval_max_events": 1000, "data.tsne_max_points": 300},
          model_config={"filters": 32})
    metrics = evaluate(str(run), train_file, split="val")
    assert metrics["events"] == 750
    # Twelve epochs on 2,250 pairs bring the fill to neighbour averaging's level: the ratio
    # was 0.89-1.02 over seven seeds and two CPUs. That the full recipe beats it (0.84x) is
    # checked on the shipped weights, whose metrics test_pretrained reproduces (1% of an MSE).
    assert metrics["dae_masked_mse"] < 1.15 * metrics["neighbour_masked_mse"]
    assert metrics["dae_masked_mse"] < 0.25 * metrics["zero_masked_mse"]  # leaving the holes
    assert metrics["code_logistic_accuracy_ibd_vs_accidental"] > 0.8
    assert metrics["code_knn_accuracy_ibd_vs_accidental"] > 0.8
    assert metrics["code_silhouette_ibd_vs_accidental"] > 0
    assert (run / "dayabay_tsne_codes.png").stat().st_size > 1000
    assert (run / "dayabay_reconstruction.png").exists()


@pytest.mark.slow
def test_short_cnn_training_classifies_pairs(pair_file, tmp_path):
    from modelzoo.training import evaluate, train

    run = tmp_path / "cnn"
    train("dayabay_cnn", pair_file, run_dir=str(run), verbose=0,
          overrides={"train.epochs": 4, "train.batch_size": 32}, model_config={"filters": 8})
    metrics = evaluate(str(run), pair_file, split="val")
    assert metrics["accuracy"] > 0.85
    assert set(CLASS_NAMES) <= {k.removeprefix("accuracy_") for k in metrics}
    assert (run / "dayabay_confusion.png").exists()

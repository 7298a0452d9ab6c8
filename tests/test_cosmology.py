"""Cosmology mass maps: builders against the seed's layer counts, the binomial corruption, the
generator's physics (power spectrum, lognormal shift, degeneracy pair), the reader on malformed
files, interpretability on models with known answers, and short trainings that must beat the
identity (DCAE) and chance (CNN)."""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np
import pytest

import modelzoo
from modelzoo.cosmology import generator as gen
from modelzoo.cosmology import statistics as st
from modelzoo.errors import ConfigError, DataError


def test_registered_with_recipes_and_tasks():
    assert modelzoo.list_models("cosmo*") == ["cosmo_cnn", "cosmo_cnn_regression", "cosmo_dcae",
                                              "cosmoflow"]
    from modelzoo.training import load_recipe

    tasks = {name: load_recipe(name)["task"] for name in modelzoo.list_models("cosmo*")}
    assert tasks == {"cosmo_cnn": "cosmo_classification",
                     "cosmo_cnn_regression": "cosmo_regression",
                     "cosmo_dcae": "cosmo_reconstruction",
                     "cosmoflow": "cosmoflow_regression"}


def _count(model, kind: str) -> int:
    return sum(type(layer).__name__ == kind for layer in model.layers)


def test_dcae_has_four_conv_two_dense_four_deconv_layers():
    model = modelzoo.get("cosmo_dcae")
    assert model.input_shape == (None, 128, 128, 1)
    assert model.output_shape == (None, 128, 128, 1)
    assert (_count(model, "Conv2D"), _count(model, "Dense"), _count(model, "Conv2DTranspose")) \
        == (4, 2, 4)
    assert model.get_layer("conv4").output.shape[1:3] == (8, 8)  # four halvings of 128
    with pytest.raises(ValueError, match="bottleneck_units"):
        modelzoo.get("cosmo_dcae", bottleneck_units=(64, 100))


def test_dcae_convolutional_bottleneck_keeps_the_grid():
    model = modelzoo.get("cosmo_dcae", bottleneck="conv", bottleneck_units=(32, 32))
    assert (_count(model, "Conv2D"), _count(model, "Dense"), _count(model, "Conv2DTranspose")) \
        == (6, 0, 4)
    assert model.get_layer("code").output.shape[1:] == (8, 8, 32)
    assert model.output_shape == (None, 128, 128, 1)
    encoder = 5 * 5 * (1 * 16 + 16 * 32 + 32 * 64 + 64 * 32) + 16 + 32 + 64 + 32
    bottleneck = 2 * (3 * 3 * 32 * 32 + 32)
    decoder = 5 * 5 * (32 * 64 + 64 * 32 + 32 * 16 + 16 * 1) + 64 + 32 + 16 + 1
    assert model.count_params() == encoder + bottleneck + decoder
    with pytest.raises(ValueError, match="bottleneck must be"):
        modelzoo.get("cosmo_dcae", bottleneck="pca")


def test_cnn_has_four_hidden_layers_and_a_softmax_over_n_cosmologies():
    model = modelzoo.get("cosmo_cnn")
    assert model.input_shape == (None, 128, 128, 1)
    assert model.output_shape == (None, 2)
    hidden = _count(model, "Conv2D") + _count(model, "Dense") - 1
    assert (_count(model, "Conv2D"), hidden) == (3, 4)
    assert modelzoo.get("cosmo_cnn", num_classes=5).output_shape == (None, 5)


def test_regression_head_predicts_parameters_in_physical_units():
    model = modelzoo.get("cosmo_cnn_regression")
    assert model.output_shape == (None, 2)
    head = model.get_layer("standardised_parameters")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    out = model.predict(np.zeros((2, 128, 128, 1)), verbose=0)
    np.testing.assert_allclose(out, [[0.3, 0.8]] * 2, rtol=1e-6)


def test_corruption_keeps_the_expected_fraction():
    from modelzoo.cosmology.task import corrupt, fixed_corruption

    maps = np.ones((20, 64, 64, 1), np.float32)
    kept = corrupt(maps, 0.7, np.random.default_rng(0))
    n = maps.size
    assert set(np.unique(kept)) == {0.0, 1.0}
    assert abs(kept.mean() - 0.7) < 4 * np.sqrt(0.7 * 0.3 / n)
    # Evaluation masks follow each map's content: same masks in any order or batching.
    varied = np.random.default_rng(1).normal(size=(6, 16, 16, 1)).astype(np.float32)
    once = fixed_corruption(varied, 0.5, seed=3)
    np.testing.assert_array_equal(fixed_corruption(varied[::-1], 0.5, seed=3)[::-1], once)
    np.testing.assert_array_equal(fixed_corruption(varied[2:4], 0.5, seed=3), once[2:4])
    with pytest.raises(ConfigError):
        corrupt(maps, 0.0, np.random.default_rng(0))


def test_training_batches_are_changed_statelessly_and_a_resumed_run_sees_the_same(tmp_path):
    """Every augmenting map task: the batches of epoch 2 of an uninterrupted stream equal those
    of a stream resumed at epoch 2; the corruption, the symmetries and the fresh noise change
    every epoch."""
    from modelzoo.cosmology.task import CosmologyClassification, MapReconstruction
    from modelzoo.distributed import ProcessGroup

    good = _good(40, 16)
    plain = _write(tmp_path / "maps.h5", **good)
    noisy = _write(tmp_path / "noisy.h5", **good, kappa_clean=0.5 * good["kappa"])
    group = ProcessGroup()
    for task, cfg, path in ((CosmologyClassification(), {"augment": ["dihedral"]}, plain),
                            (MapReconstruction(), {"keep_fraction": 0.5}, plain),
                            (MapReconstruction(), {"keep_fraction": 1.0}, noisy)):  # fresh noise
        cfg = {**cfg, "val_fraction": 0.2, "shuffle": False}

        def inputs(first_epoch: int, count: int, task=task, cfg=cfg,
                   path=path) -> list[np.ndarray]:
            streams = task.datasets(path, dict(cfg), 8, group, seed=1, first_epoch=first_epoch)
            assert streams.steps_per_epoch == 4
            return [b[0].numpy() for b in streams.train.take(count)]

        straight, resumed = inputs(0, 12), inputs(2, 4)
        for a, b in zip(straight[8:], resumed, strict=True):
            np.testing.assert_array_equal(a, b)
        # Same rows in every epoch (no shuffling here), changed differently each time.
        assert not np.array_equal(straight[0], straight[4])


@pytest.mark.parametrize("lognormal", [False, True])
def test_maps_reproduce_the_input_power_spectrum(lognormal):
    survey = gen.Survey(npix=64, side_deg=1.75, shape_noise=False, smoothing_arcmin=0.0,
                        lognormal=lognormal)
    model = gen.field_model(gen.Cosmology(0.3, 0.8), survey)
    rng = np.random.default_rng(0)
    maps = np.stack([model.draw(rng) for _ in range(200)])
    edges = st.ell_bins(64, survey.pixel_arcmin, 8)
    _, measured = st.binned_power_spectrum(maps, survey.pixel_arcmin, edges)
    # The expectation of the estimator: the input C_ell averaged over each bin's modes.
    mode_cl = gen._mode_cl(gen.Cosmology(0.3, 0.8), survey)
    index = np.digitize(st.mode_ell(64, survey.pixel_arcmin), edges) - 1
    expected = np.array([mode_cl[index == b].mean() for b in range(len(edges) - 1)])
    standard_error = measured.std(axis=0) / np.sqrt(len(maps))  # sample variance of the mean
    pull = (measured.mean(axis=0) - expected) / standard_error
    assert np.all(np.abs(pull) < 4) and np.mean(pull**2) < 3, pull
    # Where the bins hold many modes, the agreement is at the per-cent level.
    many = st.modes_per_bin(64, survey.pixel_arcmin, edges) > 300
    assert np.all(np.abs(measured.mean(axis=0)[many] / expected[many] - 1) < 0.03)
    # Gaussian sample variance of one map's bins: 2 / modes (each mode counted with its mirror).
    if not lognormal:
        gaussian = np.sqrt(2.0 / st.modes_per_bin(64, survey.pixel_arcmin, edges))
        np.testing.assert_allclose(measured.std(axis=0) / expected, gaussian, rtol=0.35)


def test_lognormal_maps_carry_non_gaussian_information_at_equal_variance():
    survey = gen.Survey(npix=64, side_deg=1.75, shape_noise=False)
    fiducial = gen.Cosmology(0.3, 0.8)
    partner = gen.degenerate_partner(fiducial, 0.2, survey)
    assert partner.sigma_8 > 0.9  # the degeneracy: lower Omega_m needs a higher sigma_8
    assert gen.smoothed_variance(partner, survey) == pytest.approx(
        gen.smoothed_variance(fiducial, survey), rel=0.01)
    # The shift (-kappa_min, the empty-beam convergence) grows with Omega_m ...
    assert gen.empty_beam_convergence(partner, survey) > gen.empty_beam_convergence(
        fiducial, survey)
    # ... so at equal variance the lower-Omega_m maps are more skewed.
    skew = []
    for cosmo in (fiducial, partner):
        model, rng = gen.field_model(cosmo, survey), np.random.default_rng(0)
        skew.append(st.moments(np.stack([model.draw(rng) for _ in range(100)]))[:, 1].mean())
    assert skew[1] > 1.15 * skew[0] > 0.2


def test_shape_noise_and_smoothing_follow_the_survey():
    survey = gen.Survey(npix=64, galaxies_per_arcmin2=10.0, sigma_e=0.3, smoothing_arcmin=0.0)
    assert survey.noise_sigma == pytest.approx(0.3 / np.sqrt(10.0 * survey.pixel_arcmin**2))
    quiet = gen.Survey(npix=64, shape_noise=False, smoothing_arcmin=0.0)
    noisy_std = gen.field_model(gen.Cosmology(), survey).draw(np.random.default_rng(0)).std()
    quiet_std = gen.field_model(gen.Cosmology(), quiet).draw(np.random.default_rng(0)).std()
    assert noisy_std**2 == pytest.approx(quiet_std**2 + survey.noise_sigma**2, rel=0.1)


def test_generator_is_seeded_and_independent_of_processes(tmp_path, capsys):
    kwargs = dict(setting="sigma8", maps_per_class=10, npix=32, side_deg=0.875, seed=4,
                  chunk_maps=4)
    gen.generate_mass_maps(tmp_path / "a.h5", processes=1, **kwargs)
    gen.generate_mass_maps(tmp_path / "b.h5", processes=2, **kwargs)
    assert f"cosmology: wrote 20 maps to {tmp_path / 'b.h5'} in " in capsys.readouterr().err
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        for key in ("kappa", "label", "omega_m", "sigma_8"):
            np.testing.assert_array_equal(a[key][()], b[key][()])
        assert a["kappa"].shape == (20, 32, 32) and a["kappa"].dtype == np.float32
        assert sorted(np.bincount(a["label"][()])) == [10, 10]
        omega_m, sigma_8 = (a[k][()].astype(float).round(4) for k in ("omega_m", "sigma_8"))
        assert set(zip(omega_m, sigma_8)) == {(0.3, 0.8), (0.3, 0.75)}
        assert a.attrs["pixel_arcmin"] == pytest.approx(0.875 * 60 / 32)
        assert len(json.loads(a.attrs["cosmologies"])) == 2
    from modelzoo.cosmology.reader import open_mass_maps

    maps = open_mass_maps(tmp_path / "a.h5", need=("label", "parameters"))
    assert maps.num_maps == 20 and maps.map_shape == (32, 32) and maps.has_parameters


def test_parameters_setting_covers_the_box_and_cli_writes_custom_pairs(tmp_path):
    cosmologies = gen.setting_cosmologies("parameters", gen.Survey(), seed=0, num_cosmologies=8)
    omega = sorted(c.omega_m for c in cosmologies)
    assert len(set(omega)) == 8 and omega[0] < 0.225 and omega[-1] > 0.375  # one per eighth
    parser = argparse.ArgumentParser()
    gen.add_arguments(parser)
    args = parser.parse_args(["--output", str(tmp_path / "c.h5"), "--cosmology", "0.25,0.9",
                              "--cosmology", "0.3,0.8", "--cosmology", "0.35,0.7",
                              "--maps-per-class", "2", "--npix", "16", "--side-deg", "0.5"])
    gen.run(args)
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["kappa"].shape == (6, 16, 16) and f.attrs["setting"] == "custom"
        assert sorted(set(f["label"][()])) == [0, 1, 2]


def _write(path, **datasets):
    attrs = datasets.pop("attrs", {"pixel_arcmin": 2.0})
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f[key] = value
        f.attrs.update(attrs)
    return str(path)


def _good(n: int = 8, size: int = 16) -> dict:
    rng = np.random.default_rng(0)
    return {"kappa": rng.normal(0, 0.01, (n, size, size)).astype(np.float32),
            "label": (np.arange(n) % 2).astype(np.int32),
            "omega_m": np.full(n, 0.3, np.float32), "sigma_8": np.full(n, 0.8, np.float32)}


def test_reader_accepts_what_real_files_contain(tmp_path):
    from modelzoo.cosmology.reader import open_mass_maps

    good = _good()
    variants = {
        "channel": {**good, "kappa": good["kappa"][..., None]},
        "float_labels": {**good, "label": good["label"].astype(np.float64)[:, None]},
        "bool_labels": {**good, "label": good["label"].astype(bool)},
        "unsigned": {**good, "label": good["label"].astype(np.uint8), "extra": np.zeros(3)},
        "params_column": {**good, "omega_m": good["omega_m"][:, None]},
    }
    for name, datasets in variants.items():
        maps = open_mass_maps(_write(tmp_path / f"{name}.h5", **datasets),
                              need=("label", "parameters"))
        block = maps.source.read(0, 8)
        assert maps.maps(block).shape == (8, 16, 16, 1), name
        np.testing.assert_array_equal(maps.columns((0, 8), ("label",))["label"],
                                      np.arange(8) % 2)
    # Labels are not needed to reconstruct; the pixel scale can come from the recipe.
    unlabelled = {k: v for k, v in good.items() if k == "kappa"}
    maps = open_mass_maps(_write(tmp_path / "u.h5", attrs={}, **unlabelled), pixel_arcmin=1.5)
    assert not maps.has_labels and maps.require_pixel_scale() == 1.5


@pytest.mark.parametrize("change, need, message", [
    ({"kappa": None}, (), "missing dataset 'kappa'"),
    ({"kappa": np.zeros((8, 16, 16, 3), np.float32)}, (), r"'kappa' has shape \(8, 16, 16, 3\)"),
    ({"kappa": np.zeros((8, 16), np.float32)}, (), r"'kappa' has shape \(8, 16\)"),
    ({"label": np.arange(7)}, ("label",), "differ in length"),
    ({"label": None}, ("label",), "missing dataset 'label'"),
    ({"label": np.linspace(0, 1, 8)}, ("label",), "whole numbers"),
    ({"label": np.array([b"a"] * 8)}, ("label",), "'label' has dtype"),
    ({"omega_m": None}, ("parameters",), "missing dataset 'omega_m'"),
    ({"sigma_8": np.zeros(8)}, ("parameters",), "'sigma_8' has values <= 0"),
    ({"kappa": np.full((8, 16, 16), np.nan, np.float32)}, (), "NaN or Inf"),
])
def test_reader_refuses_malformed_files(tmp_path, change, need, message):
    from modelzoo.cosmology.reader import open_mass_maps

    datasets = {k: v for k, v in {**_good(), **change}.items() if v is not None}
    path = _write(tmp_path / "bad.h5", **datasets)
    with pytest.raises(DataError, match=message) as err:
        open_mass_maps(path, need=need)
    assert "bad.h5" in str(err.value)


def test_reader_refuses_truncated_and_scaleless_files(tmp_path):
    from modelzoo.cosmology.reader import open_mass_maps

    path = _write(tmp_path / "whole.h5", **_good(64, 32))
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        open_mass_maps(truncated)
    maps = open_mass_maps(_write(tmp_path / "noscale.h5", attrs={}, **_good()))
    with pytest.raises(DataError, match="'pixel_arcmin' missing"):
        maps.require_pixel_scale()
    with pytest.raises(DataError, match="pixel_arcmin"):
        open_mass_maps(_write(tmp_path / "neg.h5", attrs={"pixel_arcmin": -1.0}, **_good()))


def test_saliency_of_a_linear_model_is_its_weights(tmp_path):
    import keras

    from modelzoo import interpret

    rng = np.random.default_rng(0)
    inputs = keras.Input((6, 6, 1))
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    x = rng.normal(size=(5, 6, 6, 1)).astype(np.float32)
    kernel = model.layers[-1].get_weights()[0]  # (36, 3)
    for unit in range(3):
        grad = interpret.saliency(model, x, target=unit)
        np.testing.assert_allclose(grad, np.broadcast_to(kernel[:, unit].reshape(6, 6, 1),
                                                         x.shape), rtol=1e-5, atol=1e-6)
    summed = interpret.saliency(model, x, target="sum", path=tmp_path / "s.png")
    np.testing.assert_allclose(summed[0], kernel.sum(axis=1).reshape(6, 6, 1), rtol=1e-5,
                               atol=1e-6)
    assert (tmp_path / "s.png").stat().st_size > 1000
    with pytest.raises(ConfigError):
        interpret.saliency(model, x, target=3)


def test_saliency_of_a_class_is_taken_before_the_softmax():
    # A confident softmax is flat in its input; the class score before it is w_c . x.
    import keras

    from modelzoo import interpret

    inputs = keras.Input((4,))
    last = keras.layers.Dense(2, activation="softmax", name="out")
    model = keras.Model(inputs, last(inputs))
    kernel = np.array([[30.0, -30.0], [1.0, 2.0], [0.0, 5.0], [-4.0, 4.0]], np.float32)
    last.set_weights([kernel, np.zeros(2, np.float32)])
    x = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)  # p(class 0) = 1 - 1e-26
    np.testing.assert_allclose(interpret.saliency(model, x, target=0)[0], kernel[:, 0])
    assert last.activation is keras.activations.softmax  # restored
    np.testing.assert_allclose(model.predict(x, verbose=0)[0], [1.0, 0.0], atol=1e-6)


def test_embedding_gives_one_point_per_sample_and_separates_classes(tmp_path):
    from modelzoo import interpret

    rng = np.random.default_rng(0)
    labels = np.arange(80) % 2
    features = rng.normal(size=(80, 20)) + 4.0 * labels[:, None]
    points = interpret.embed(features, labels, path=tmp_path / "e.png")
    assert points.shape == (80, 2)
    assert (tmp_path / "e.png").stat().st_size > 1000
    centres = [points[labels == c].mean(axis=0) for c in (0, 1)]
    spread = max(points[labels == c].std(axis=0).max() for c in (0, 1))
    assert np.linalg.norm(centres[0] - centres[1]) > 2 * spread
    assert interpret.embed(features[:3], method="pca").shape == (3, 2)


@pytest.fixture(scope="module")
def easy_pair(tmp_path_factory):
    """Two cosmologies whose 64 x 64 maps differ clearly in amplitude (sigma_8 0.8 vs 0.6)."""
    path = tmp_path_factory.mktemp("cosmo") / "pair.h5"
    gen.generate_mass_maps(path, cosmologies=[(0.3, 0.8), (0.3, 0.6)], maps_per_class=160,
                           npix=64, side_deg=1.75, seed=1, processes=2, progress=False)
    return str(path)


@pytest.mark.slow
def test_short_cnn_training_beats_chance_and_explains(easy_pair, tmp_path):
    from modelzoo import interpret, training

    run = tmp_path / "cnn"
    training.train("cosmo_cnn", easy_pair, run_dir=str(run), verbose=0,
                   overrides={"train.epochs": 4, "data.eval_max_maps": 64},
                   model_config={"input_shape": (64, 64, 1)})
    result = training.evaluate(str(run), easy_pair, split="val",
                               overrides={"data.embedding_max_maps": 40})
    assert result["maps"] == 64
    assert result["accuracy_cnn"] > 0.75 > result["chance"], result
    assert result["accuracy_power_spectrum"] > 0.75  # amplitude is in the power spectrum
    for figure in ("tsne.png", "comparison.png", "metrics.json"):
        assert (run / figure).exists()
    parser = argparse.ArgumentParser()
    interpret.add_arguments(parser)
    args = parser.parse_args(["cosmo_cnn", "--weights", str(run), "--data", easy_pair,
                              "--method", "saliency", "--rows", "3",
                              "--output", str(tmp_path / "explain")])
    assert interpret.run(args) == 0
    numbers = np.load(tmp_path / "explain" / "saliency.npz")
    assert numbers["saliency"].shape == (3, 64, 64, 1)
    assert (tmp_path / "explain" / "saliency.png").exists()


@pytest.mark.slow
def test_short_dcae_training_beats_the_identity(tmp_path):
    """On smoothed noiseless maps (the seed's kind), half the pixels zeroed."""
    from modelzoo import training

    path = str(tmp_path / "smooth.h5")
    gen.generate_mass_maps(path, maps_per_class=200, npix=32, side_deg=1.75, shape_noise=False,
                           smoothing_arcmin=4.92, seed=2, processes=2, progress=False)
    run = tmp_path / "dcae"
    training.train("cosmo_dcae", path, run_dir=str(run), verbose=0,
                   overrides={"train.epochs": 20, "data.keep_fraction": 0.5},
                   model_config={"input_shape": (32, 32, 1), "bottleneck_units": (128, 128)})
    result = training.evaluate(str(run), path, split="val")
    assert result["mse_dcae"] < 0.8 * result["mse_corrupted_input"], result
    assert result["fraction_maps_improved"] > 0.8
    assert (run / "reconstruction.png").exists() and (run / "saliency.png").exists()


def test_dcae_is_scored_against_the_noiseless_map(tmp_path):
    """With shape noise the generator keeps each noiseless map beside the noisy one (the same
    noisy maps as without it); the evaluation scores against it, next to the noisy map itself
    and a Gaussian filter of the DCAE's input."""
    from modelzoo.cosmology.task import MapReconstruction
    from modelzoo.distributed import ProcessGroup

    path = str(tmp_path / "noisy.h5")
    gen.generate_mass_maps(path, maps_per_class=40, npix=32, side_deg=1.75, seed=2,
                           progress=False)
    plain = gen.field_model(gen.Cosmology(0.3, 0.8), gen.Survey(npix=32, side_deg=1.75))
    np.testing.assert_array_equal(plain.draw(np.random.default_rng(1)),
                                  plain.draw_pair(np.random.default_rng(1))[0])
    with h5py.File(path) as fh:
        noise = fh["kappa"][64:] - fh["kappa_clean"][64:]  # the validation rows
    data_cfg = {"keep_fraction": 1.0, "val_fraction": 0.2}
    model = modelzoo.get("cosmo_dcae", input_shape=(32, 32, 1), bottleneck_units=(128, 128))
    result = MapReconstruction().evaluate(model, path, data_cfg, "val", None, ProcessGroup())
    assert result["target"].startswith("noiseless")
    np.testing.assert_allclose(result["mse_noisy_input"], (noise.astype(np.float64) ** 2).mean(),
                               rtol=1e-4)
    assert result["mse_gaussian_filter"] < 0.8 * result["mse_noisy_input"], result
    assert result["mse_ratio_to_noisy_lo"] < result["mse_ratio_to_noisy"] < \
        result["mse_ratio_to_noisy_hi"]


def test_fresh_noise_is_each_maps_own_noise_moved():
    """Training inputs on files with noiseless maps: noiseless map + its own noise field under
    a periodic shift and a symmetry of the square (a permutation of the same values), new
    every step, the same for the same step seed."""
    import tensorflow as tf

    from modelzoo.cosmology.task import MapReconstruction

    rng = np.random.default_rng(0)
    clean = rng.normal(size=(6, 16, 16, 1)).astype(np.float32)
    noise = rng.normal(size=(6, 16, 16, 1)).astype(np.float32)
    change = MapReconstruction().training_change({"keep_fraction": 1.0})
    both = tf.constant(np.concatenate([clean + noise, clean], axis=-1))
    first = change(both, tf.constant([1, 0], tf.int64)).numpy()
    moved = first - clean
    assert first.shape == clean.shape
    for i in range(6):
        np.testing.assert_allclose(np.sort(moved[i].ravel()), np.sort(noise[i].ravel()),
                                   atol=1e-5)
    assert not np.allclose(moved, noise)
    np.testing.assert_array_equal(change(both, tf.constant([1, 0], tf.int64)).numpy(), first)
    assert not np.allclose(change(both, tf.constant([1, 1], tf.int64)).numpy(), first)
    # The shift is periodic: a field's neighbour pairs (with wrap-around) are kept.
    pairs = sorted(np.round(noise[0, :, :, 0] * np.roll(noise[0, :, :, 0], 1, 0), 4).ravel())
    m = moved[0, :, :, 0]
    assert any(np.allclose(sorted(np.round(m * np.roll(m, 1, ax), 4).ravel()), pairs, atol=1e-3)
               for ax in (0, 1))


def test_mse_ratio_interval_covers_a_known_ratio():
    from modelzoo.cosmology.task import mse_ratio_interval

    rng = np.random.default_rng(0)
    denominator = rng.chisquare(4, size=400)
    numerator = 0.5 * denominator * rng.uniform(0.9, 1.1, size=400)  # ratio of means 0.5
    lo, hi = mse_ratio_interval(numerator, denominator)
    assert lo < 0.5 < hi and hi - lo < 0.02


@pytest.mark.slow
def test_short_dcae_training_denoises_shape_noise(tmp_path):
    """The convolutional bottleneck, with fresh shape noise every step, learns to denoise in a
    short run: against the noiseless map the DCAE beats the noisy map it was given, the whole
    95% interval below 0.9 (64 x 64 maps at the default pixel size, 320 training maps, 20
    epochs: ratio 0.73-0.74 over three training seeds; the dense bottleneck of the published
    configuration: 0.96 with fresh noise, 1.22 without; README)."""
    from modelzoo import training

    path = str(tmp_path / "noisy.h5")
    gen.generate_mass_maps(path, maps_per_class=200, npix=64, side_deg=1.75, seed=3,
                           processes=2, progress=False)
    run = tmp_path / "dcae"
    training.train("cosmo_dcae", path, run_dir=str(run), verbose=0,
                   overrides={"train.epochs": 20, "data.keep_fraction": 1.0},
                   model_config={"input_shape": (64, 64, 1), "kappa_scale": 0.01,
                                 "bottleneck": "conv", "bottleneck_units": (32, 32)})
    result = training.evaluate(str(run), path, split="val")
    assert result["target"].startswith("noiseless")
    assert result["mse_ratio_to_noisy_hi"] < 0.9, result
    assert result["fraction_maps_better_than_noisy"] > 0.8, result


def _white_maps(path, amplitudes, labels, omega_m, sigma_8, npix=64, seed=0):
    """Hand-made maps: white noise of the given amplitude per map (its power spectrum is the
    amplitude squared at every ell), with the given labels and parameters."""
    rng = np.random.default_rng(seed)
    kappa = (np.asarray(amplitudes)[:, None, None] * 0.01
             * rng.standard_normal((len(amplitudes), npix, npix))).astype(np.float32)
    return _write(path, kappa=kappa, label=np.asarray(labels, np.int32),
                  omega_m=np.asarray(omega_m, np.float32), sigma_8=np.asarray(sigma_8, np.float32))


def test_classification_baselines_fit_on_the_training_file_not_the_evaluated_maps(tmp_path):
    """The evaluation file labels the maps the other way round from the training file: a
    baseline fitted on the training maps (as the CNN was trained) gets them all wrong; one that
    saw the evaluated maps would get them right (the out-of-fold fallback does)."""
    from modelzoo.cosmology.task import CosmologyClassification
    from modelzoo.distributed import ProcessGroup

    labels = np.tile([0, 1], 40)
    train = _white_maps(tmp_path / "train.h5", 1.0 + labels, labels, [0.3] * 80, [0.8] * 80)
    evaluated = _white_maps(tmp_path / "eval.h5", 1.0 + labels, 1 - labels, [0.3] * 80,
                            [0.8] * 80, seed=1)
    model = modelzoo.get("cosmo_cnn", input_shape=(64, 64, 1))
    data_cfg = {"baselines": ["power_spectrum"], "bootstrap": 200}
    fitted = CosmologyClassification().evaluate(
        model, evaluated, {**data_cfg, "baseline_train": train}, "all", None, ProcessGroup())
    assert fitted["baseline_fitted_on"] == "the 64 training maps of train.h5"
    assert fitted["accuracy_power_spectrum"] < 0.1, fitted
    alone = CosmologyClassification().evaluate(model, evaluated, data_cfg, "all", None,
                                               ProcessGroup())
    assert alone["baseline_fitted_on"].startswith("out of fold")
    assert alone["accuracy_power_spectrum"] > 0.9, alone
    assert (alone["accuracy_power_spectrum_lo"] <= alone["accuracy_power_spectrum"]
            <= alone["accuracy_power_spectrum_hi"])
    assert alone["accuracy_cnn_minus_power_spectrum"] == pytest.approx(
        alone["accuracy_cnn"] - alone["accuracy_power_spectrum"])
    with pytest.raises(ConfigError, match="baseline_train .*expected the training file"):
        small = _white_maps(tmp_path / "small.h5", [1.0] * 4, [0, 1] * 2, [0.3] * 4, [0.8] * 4,
                            npix=32)
        CosmologyClassification().evaluate(model, evaluated, {**data_cfg, "baseline_train": small},
                                           "all", None, ProcessGroup())


def test_regression_baselines_fit_on_the_training_file_or_on_other_cosmologies(tmp_path):
    """Amplitude rises with sigma_8 in the training file and falls in the evaluated one: fitted
    on the training maps, the baseline's sigma_8 runs against the truth; out of fold over the
    evaluated file no fit sees the cosmology it predicts, so a feature that only names the
    cosmology (here: none other) cannot be learnt from the map's own cosmology."""
    from modelzoo.cosmology import baseline
    from modelzoo.cosmology.task import ParameterRegression
    from modelzoo.distributed import ProcessGroup

    sigma_8 = np.repeat(np.linspace(0.65, 0.95, 6), 10)
    omega_m = np.repeat(np.linspace(0.2, 0.4, 6), 10)
    train = _white_maps(tmp_path / "train.h5", 10 * sigma_8, 0 * sigma_8, omega_m, sigma_8)
    evaluated = _white_maps(tmp_path / "eval.h5", 10 * (1.6 - sigma_8), 0 * sigma_8, omega_m,
                            sigma_8, seed=1)
    model = modelzoo.get("cosmo_cnn_regression", input_shape=(64, 64, 1))
    data_cfg = {"baselines": ["power_spectrum"], "bootstrap": 200, "val_fraction": 0.0}
    fitted = ParameterRegression().evaluate(
        model, evaluated, {**data_cfg, "baseline_train": train}, "all", None, ProcessGroup())
    alone = ParameterRegression().evaluate(model, evaluated, data_cfg, "all", None,
                                           ProcessGroup())
    assert fitted["cosmologies"] == 6 and fitted["maps"] == 60
    assert fitted["rmse_sigma_8_power_spectrum"] > 0.15, fitted  # the reversed relation
    assert alone["rmse_sigma_8_power_spectrum"] < 0.05, alone  # learnt from other cosmologies
    assert fitted["rmse_sigma_8_cnn_minus_power_spectrum"] == pytest.approx(
        fitted["rmse_sigma_8_cnn"] - fitted["rmse_sigma_8_power_spectrum"])
    for fit_rows, scored in baseline.folds(np.stack([omega_m, sigma_8], 1), classify=False):
        assert not set(sigma_8[fit_rows]) & set(sigma_8[scored])
    for fit_rows, scored in baseline.folds(np.tile([0, 1], 30), classify=True):
        assert not set(fit_rows) & set(scored) and len(set(np.tile([0, 1], 30)[scored])) == 2


def test_verify_hands_a_task_the_entrys_training_set(tmp_path, monkeypatch):
    """modelzoo.reproduce.evaluate_model generates the entry's training set and names it under
    the task's training_file_key, so that the baselines are fitted as in the manifest."""
    from modelzoo import registry, reproduce
    from modelzoo.cosmology.task import CosmologyClassification

    seen = {}

    class Recording(CosmologyClassification):
        def evaluate(self, model, path, data_cfg, split, output_dir, group):
            seen.update(data_cfg, path=path)
            return {}

    monkeypatch.setattr(registry, "get_task", lambda name: Recording())
    monkeypatch.setattr(reproduce, "generate", lambda kind, path, args: str(path))
    entry = {"recipe": {"task": "cosmo_classification", "data": {"val_fraction": 0.2}},
             "data_recipe": {"generator": "cosmology", "train": {"seed": 0},
                             "eval": {"seed": 100}}}
    reproduce.evaluate_model(None, entry, tmp_path)
    assert "-eval-seed100-" in seen["path"] and "-train-seed0-" in seen["baseline_train"]
    assert seen["val_fraction"] == 0.2


def test_claims_orient_differences_towards_the_model_and_word_them_by_the_interval():
    from modelzoo.cosmology import claims

    assert [claims.verdict(*i) for i in ((0.01, 0.02), (-0.01, 0.02), (-0.02, -0.01))] == \
        ["ahead", "tied", "behind"]
    metrics = {"maps": 10, "cosmologies": 5, "baseline_fitted_on": "x"}
    for p in ("omega_m", "sigma_8"):
        for b in ("cnn", "power_spectrum", "peaks"):
            metrics.update({f"rmse_{p}_{b}": 0.05, f"rmse_{p}_{b}_lo": 0.04,
                            f"rmse_{p}_{b}_hi": 0.06})
        for b in ("power_spectrum", "peaks"):  # the CNN's error is lower by 0.01 [0.005, 0.02]
            metrics.update({f"rmse_{p}_cnn_minus_{b}": -0.01, f"rmse_{p}_cnn_minus_{b}_lo": -0.02,
                            f"rmse_{p}_cnn_minus_{b}_hi": -0.005})
    out = claims.entry_claims("cosmo_cnn_regression", metrics)
    first = out["comparisons"][0]
    assert first["difference"] == 0.01 and first["interval"] == [0.005, 0.02]
    assert first["verdict"] == "ahead" and out["intervals"]["rmse_sigma_8_peaks"] == [0.04, 0.06]
    assert out["eval_size"] == "10 maps of 5 cosmologies unseen in training"

"""Every case's files as other tools write them: big-endian (FITS, IDL, Java, a big-endian
machine), float64, labels as a column (N, 1), labels beyond the model's classes.

Each variant is written with h5py from a file of the case's own generator; what arrives in
TensorFlow (the first training and validation batches of the task's streams) must equal what
the generator's own file gives, and one epoch of training on the variant must give the same
weights as on the original. Out-of-range labels are refused in one line naming the file, the
dataset, the row and the count expected, before a run folder exists.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import toy_lhc_arrays, write_benchmark

REGION = {"height": 64, "width": 128, "lat_range": (0.0, 60.0), "lon_range": (140.0, 260.0)}


def _lhc(path):
    return write_benchmark(path, toy_lhc_arrays(n=64, size=16))


def _galaxy(path):
    from modelzoo.galaxy.generator import GalaxyConfig, generate_galaxies

    cfg = GalaxyConfig.population("default")
    generate_galaxies(path, 24, seed=3, config=cfg, chunk_size=8)
    return str(path)


def _climate_images(path):
    from modelzoo.climate.generator import generate_extreme_weather

    return generate_extreme_weather(path, n_images=12, seed=3, progress=False, **REGION).path


def _climate_patches(path):
    from modelzoo.climate.generator import generate_climate

    return generate_climate(path, kind="patches", n_images=8, seed=3, patch_size=(16, 16),
                            **REGION).path


def _cosmology(path):
    from modelzoo.cosmology.generator import generate_mass_maps

    generate_mass_maps(path, cosmologies=[(0.3, 0.8), (0.3, 0.6)], maps_per_class=24, npix=32,
                       side_deg=0.9, seed=1, progress=False)
    return str(path)


def _ecog(path):
    from modelzoo.ecog.generator import generate_ecog

    return generate_ecog(path, n_trials=120, n_channels=6, n_samples=20, seed=2,
                         progress=False).path


def _dayabay(path):
    from modelzoo.dayabay.generator import generate_dayabay

    generate_dayabay(path, n_ibd=60, n_accidental=60, n_muon=20, n_flasher=20, seed=4,
                     progress=False)
    return str(path)


# model, generator, builder keywords that fit the tiny files, label dataset(s) to corrupt
CASES = {
    "lhc_cnn": (_lhc, {"input_shape": [16, 16, 3]}, "label"),
    "galaxy_vae": (_galaxy, {}, None),
    "climate_detector": (_climate_images, {}, "boxes"),
    "climate_patch_cnn": (_climate_patches, {}, "labels"),
    "cosmo_cnn": (_cosmology, {"input_shape": [32, 32, 1]}, "label"),
    "cosmo_dcae": (_cosmology, {"input_shape": [32, 32, 1]}, None),
    "ecog_mlp": (_ecog, {"n_channels": 6, "n_samples": 20}, "y"),
    "dayabay_cnn": (_dayabay, {}, None),
    "dayabay_dae": (_dayabay, {}, None),
}
OVERRIDES = {"train.batch_size": 8, "train.epochs": 1}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("originals")
    made = {}
    for make, _, _ in CASES.values():
        if make not in made:
            made[make] = make(folder / f"{make.__name__.strip('_')}.h5")
    return {model: made[make] for model, (make, _, _) in CASES.items()}


def _rewrite(source: str, target, change) -> str:
    """A copy of ``source`` with every dataset passed through ``change(name, array)``;
    attributes kept."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        dst.attrs.update(src.attrs)

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                array = change(name, obj[()])
                dst.create_dataset(name, data=array, dtype=array.dtype)
                dst[name].attrs.update(obj.attrs)
            else:
                dst.require_group(name).attrs.update(obj.attrs)

        src.visititems(copy)
    return str(target)


def big_endian(name, array):
    return array.astype(array.dtype.newbyteorder(">")) if array.dtype.kind in "iuf" else array


def float64(name, array):
    return array.astype(np.float64) if array.dtype.kind == "f" else array


def _batches(model: str, path: str) -> list[np.ndarray]:
    """The first training batch and the first validation batch of ``model``'s task on
    ``path``, as numpy arrays: what TensorFlow receives."""
    from modelzoo import distributed, training

    cfg, task = training.resolve(model, path, overrides=OVERRIDES,
                                 model_config=CASES[model][1])
    data = task.datasets(path, cfg.get("data", {}), 8, distributed.init(), 0, 0)
    import tensorflow as tf

    return [np.asarray(t) for stream in (data.train, data.validation) if stream is not None
            for t in tf.nest.flatten(next(iter(stream)))]


@pytest.mark.parametrize("variant", [big_endian, float64], ids=["big_endian", "float64"])
@pytest.mark.parametrize("model", list(CASES))
def test_every_reader_hands_tensorflow_the_same_numbers(model, variant, originals, tmp_path):
    original = originals[model]
    changed = _rewrite(original, tmp_path / "variant.h5", variant)
    with h5py.File(changed, "r") as fh:  # the variant really is stored differently
        kinds = {fh[k].dtype.str for k in fh if isinstance(fh[k], h5py.Dataset)}
    assert any(k.startswith(">") for k in kinds) if variant is big_endian else "<f8" in kinds
    expected, got = _batches(model, original), _batches(model, changed)
    assert len(got) == len(expected) > 0
    for want, have in zip(expected, got):
        assert have.dtype == want.dtype and have.dtype.isnative
        np.testing.assert_array_equal(_no_subnormals(have), _no_subnormals(want))


def _no_subnormals(array: np.ndarray) -> np.ndarray:
    """``array`` with subnormal floats (below 1.2e-38 in float32) as zero: TensorFlow's threads
    flush them to zero, so a float64 value converted there may arrive as 0 where the float32
    file's own subnormal passes untouched."""
    if array.dtype.kind != "f":
        return array
    return np.where(np.abs(array) < np.finfo(array.dtype).tiny, 0, array)


def _labels_column(name, array):
    return array.reshape(-1, 1) if name in ("label", "labels", "y") else array


@pytest.mark.parametrize("model", ["cosmo_cnn", "ecog_mlp", "climate_patch_cnn", "lhc_cnn"])
def test_labels_stored_as_a_column_read_like_a_vector(model, originals, tmp_path):
    changed = _rewrite(originals[model], tmp_path / "column.h5", _labels_column)
    for want, have in zip(_batches(model, originals[model]), _batches(model, changed)):
        np.testing.assert_array_equal(have, want)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cosmo_cnn", "lhc_cnn", "ecog_mlp"])
def test_one_epoch_on_a_big_endian_file_trains_exactly_as_on_the_original(model, originals,
                                                                          tmp_path):
    from modelzoo import training

    changed = _rewrite(originals[model], tmp_path / "big.h5", big_endian)
    weights = []
    for name, path in (("a", originals[model]), ("b", changed)):
        result = training.train(model, path, run_dir=str(tmp_path / name), overrides=OVERRIDES,
                                model_config=CASES[model][1], verbose=0)
        weights.append([np.asarray(v) for v in result.model.weights])
    for a, b in zip(*weights):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    # evaluation, prediction and explain read the same numbers too
    run = str(tmp_path / "a")
    predicted = []
    for name, path in (("a", originals[model]), ("b", changed)):
        out = str(tmp_path / f"{name}_predictions.h5")
        training.predict(model, run, path, out)
        with h5py.File(out) as fh:
            predicted.append({k: fh[k][()] for k in fh})
    for key in predicted[0]:
        np.testing.assert_array_equal(predicted[1][key], predicted[0][key])
    assert (training.evaluate(run, changed, output_dir=str(tmp_path / "eb"))
            == training.evaluate(run, originals[model], output_dir=str(tmp_path / "eo")))
    cfg, task = training.resolve(model, changed, overrides=OVERRIDES,
                                 model_config=CASES[model][1])
    inputs = [task.inputs(p, cfg.get("data", {}), (0, 8)) for p in (originals[model], changed)]
    for key in inputs[0]:
        np.testing.assert_array_equal(inputs[1][key], inputs[0][key])


def _out_of_range(dataset: str, row: int, value: int):
    def change(name, array):
        if name == dataset:
            array = array.copy()
            array.reshape(len(array), -1)[row] = value
        return array
    return change


@pytest.mark.parametrize("model, value, expected", [
    ("cosmo_cnn", 5, "row 7 holds label 5; expected a class of the model, 0..1 (2 classes); "
                     "to train a model of more classes add --model-config num_classes=K"),
    ("ecog_mlp", 57, "row 7 holds label 57; expected a class of the model, 0..56 (57 classes)"),
    ("climate_patch_cnn", 2, "holds class 2; expected 0..1"),
    ("lhc_cnn", 2, "row 7 holds [2], expected class labels (N) or (N, 1), values in {0, 1}"),
    ("climate_detector", 9, "row 7 box 0 is [9, 9, 9, 9, 9]; expected a class in 0..3 or -1 "
                            "padding"),
])
def test_labels_beyond_the_model_are_refused_before_a_run_folder_exists(
        model, value, expected, originals, tmp_path, capsys):
    from modelzoo import cli

    dataset = CASES[model][2]
    bad = _rewrite(originals[model], tmp_path / "bad.h5", _out_of_range(dataset, 7, value))
    run = tmp_path / "run"
    config = [f"--model-config={k}={v}" for k, v in CASES[model][1].items()]
    code = cli.main(["train", model, "--data", bad, "--output", str(run), "--epochs", "1",
                     "--batch-size", "8", *config])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"modelzoo: error: {bad}: dataset '{dataset}'")
    assert expected in err[0]
    assert not run.exists()


def test_a_class_the_file_does_not_name_is_refused(originals, tmp_path):
    from modelzoo.climate.reader import open_patches
    from modelzoo.errors import DataError

    path = _rewrite(originals["climate_patch_cnn"], tmp_path / "named.h5", lambda n, a: a)
    with h5py.File(path, "a") as fh:
        fh.attrs["class_names"] = ["no_event"]
    with pytest.raises(DataError, match=r"holds class 1; expected 0\.\.0 \(attribute "
                                        r"'class_names' = \['no_event'\]\)"):
        open_patches(path)


def test_dayabay_classes_beyond_the_model_are_refused_naming_the_dataset(originals, tmp_path,
                                                                         capsys):
    from modelzoo import cli

    run = tmp_path / "run"
    code = cli.main(["train", "dayabay_cnn", "--data", originals["dayabay_cnn"], "--output",
                     str(run), "--epochs", "1", "--batch-size", "8", "--model-config",
                     "num_classes=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "dataset 'muon_data' row 0 holds label 2; expected a class of the model, 0..1" in err[0]
    assert not run.exists()


@pytest.mark.parametrize("model, dataset", [("cosmo_cnn", "label"), ("ecog_mlp", "y"),
                                            ("climate_patch_cnn", "labels")])
def test_missing_or_one_hot_labels_are_described_as_labels(model, dataset, originals, tmp_path):
    from modelzoo import distributed, training
    from modelzoo.errors import DataError

    def one_hot(name, array):
        if name != dataset:
            return array
        return np.eye(int(array.max()) + 2, dtype=np.float32)[array.reshape(-1).astype(int)]

    missing = tmp_path / "missing.h5"
    with h5py.File(originals[model], "r") as src, h5py.File(missing, "w") as dst:
        dst.attrs.update(src.attrs)
        for name in src:
            if name != dataset:
                src.copy(name, dst)
    hot = _rewrite(originals[model], tmp_path / "hot.h5", one_hot)
    cfg, task = training.resolve(model, originals[model], overrides=OVERRIDES)
    for path, expected in ((str(missing), f"missing dataset '{dataset}'"),
                           (hot, "one-hot labels: store their argmax")):
        with pytest.raises(DataError) as err:
            task.datasets(path, cfg.get("data", {}), 8, distributed.init(), 0, 0)
        message = str(err.value)
        assert expected in message and "class labels (N) or (N, 1)" in message, message
        assert "float" not in message

"""The ECoG speech case: builders, generator, reader, splits, the dendrogram, training and the
paper's evaluation (Livezey, Bouchard & Chang 2019)."""

from __future__ import annotations

import json

import h5py
import keras
import numpy as np
import pytest

from modelzoo import distributed, interpret, registry, training
from modelzoo.ecog import phonetics
from modelzoo.ecog.generator import generate_ecog, make_subject
from modelzoo.ecog.models import Standardize, ecog_logreg, ecog_mlp
from modelzoo.ecog.reader import open_ecog
from modelzoo.ecog.task import split_indices
from modelzoo.errors import ConfigError, DataError

SMALL = {"n_channels": 40}


# ---------------------------------------------------------------------------------- builders


def _dense(model: keras.Model) -> list[keras.layers.Dense]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_mlp_follows_the_paper_shapes_and_layers():
    model = ecog_mlp()
    assert model.input_shape == (None, 85, 258)
    assert model.output_shape == (None, 57)
    dense = _dense(model)
    assert [d.units for d in dense] == [500, 57]
    assert dense[0].activation.__name__ == "tanh"
    assert dense[-1].activation.__name__ == "softmax"
    assert dense[0].kernel.shape == (85 * 258, 500)
    assert model.get_layer("input_dropout").rate == pytest.approx(0.2)
    assert isinstance(model.get_layer("standardize"), Standardize)
    assert model.count_params() - 2 * 85 * 258 == 85 * 258 * 500 + 500 + 500 * 57 + 57


@pytest.mark.parametrize("layers,activation", [(0, "tanh"), (2, "relu"), (3, "sigmoid")])
def test_mlp_hidden_layers_and_activations(layers, activation):
    model = ecog_mlp(n_channels=10, n_samples=20, hidden_layers=layers, activation=activation,
                     units_1=30, units_2=20, units_3=10, weight_decay=1e-3)
    dense = _dense(model)
    assert [d.units for d in dense] == [30, 20, 10][:layers] + [57]
    assert all(d.activation.__name__ == activation for d in dense[:-1])
    assert len([x for x in model.layers if isinstance(x, keras.layers.Dropout)]) == layers + 1
    assert all(d.kernel_regularizer is not None for d in dense)


def test_logreg_is_one_softmax_layer():
    model = ecog_logreg()
    dense = _dense(model)
    assert len(dense) == 1 and dense[0].units == 57
    assert dense[0].kernel.shape == (85 * 258, 57)


@pytest.mark.parametrize("config", [{"hidden_layers": 4}, {"activation": "elu"},
                                    {"dropout": 1.0}, {"weight_decay": -1.0}])
def test_mlp_refuses_bad_settings(config):
    with pytest.raises(ConfigError):
        ecog_mlp(n_channels=4, n_samples=4, **config)


def test_registration_declares_the_published_search_space():
    space = registry.get_spec("ecog_mlp").search_space
    assert (space["model.hidden_layers"]["low"], space["model.hidden_layers"]["high"]) == (1, 3)
    assert (space["model.units_1"]["low"], space["model.units_1"]["high"]) == (57, 1000)
    assert space["model.activation"]["choices"] == ["tanh", "relu", "sigmoid"]
    assert (space["model.weight_decay"]["low"], space["model.weight_decay"]["high"]) == (1e-7, 1)
    assert "model.hidden_layers" not in registry.get_spec("ecog_logreg").search_space


# ------------------------------------------------------------------------------- phonetics


def test_syllable_labels_follow_the_published_order():
    assert len(phonetics.SYLLABLES) == 57
    assert phonetics.SYLLABLES[0] == "ba" and phonetics.SYLLABLES[-1] == "zu"
    assert phonetics.SYLLABLES[3 * phonetics.CONSONANTS.index("sh") + 1] == "ʃi"
    assert set(phonetics.MAJOR_ARTICULATOR) == set(phonetics.CONSONANTS)


# ------------------------------------------------------------------------------- generator


@pytest.fixture(scope="module")
def cv_file(tmp_path_factory):
    """570 trials (10 per syllable) of 40 electrodes, less noise and jitter than the default."""
    path = tmp_path_factory.mktemp("ecog") / "cv.h5"
    return generate_ecog(path, n_trials=570, noise=0.2, jitter_ms=15.0, seed=7, progress=False,
                         n_channels=SMALL["n_channels"]).path


def test_generator_writes_the_published_layout(cv_file):
    with h5py.File(cv_file) as fh:
        assert set(fh) == {"X", "y", "y_consonant", "y_vowel"}
        assert fh["X"].shape == (570, 40, 258) and fh["X"].dtype == np.float32
        y = fh["y"][:]
        np.testing.assert_array_equal(fh["y_consonant"][:] * 3 + fh["y_vowel"][:], y)
        assert np.bincount(y, minlength=57).tolist() == [10] * 57
        assert fh.attrs["sampling_rate_hz"] == 200.0
        assert list(fh.attrs["syllables"]) == list(phonetics.SYLLABLES)


def test_generator_is_the_same_for_any_process_count(tmp_path):
    one = generate_ecog(tmp_path / "a.h5", n_trials=300, n_channels=8, n_samples=50, seed=2,
                        processes=1, progress=False).path
    two = generate_ecog(tmp_path / "b.h5", n_trials=300, n_channels=8, n_samples=50, seed=2,
                        processes=2, progress=False).path
    other = generate_ecog(tmp_path / "c.h5", n_trials=300, n_channels=8, n_samples=50, seed=3,
                          progress=False).path
    with h5py.File(one) as a, h5py.File(two) as b, h5py.File(other) as c:
        np.testing.assert_array_equal(a["X"][:], b["X"][:])
        np.testing.assert_array_equal(a["y"][:], b["y"][:])
        assert not np.array_equal(a["X"][:], c["X"][:])


def test_consonants_of_one_articulator_share_their_cortical_pattern():
    """Somatotopy: the consonant maps of one major articulator correlate more with each other
    than with other articulators' (what the dendrogram should find again)."""
    maps = make_subject(1, 85).consonant_maps
    corr = np.corrcoef(maps)
    groups = np.array([phonetics.ARTICULATORS.index(phonetics.MAJOR_ARTICULATOR[c])
                       for c in phonetics.CONSONANTS])
    same = groups[:, None] == groups[None, :]
    off_diagonal = ~np.eye(len(groups), dtype=bool)
    assert corr[same & off_diagonal].mean() > corr[~same].mean() + 0.3


# ---------------------------------------------------------------------------------- reader


def _write(path, **datasets):
    with h5py.File(path, "w") as fh:
        for name, value in datasets.items():
            fh[name] = value
    return path


def _good(n=6, channels=3, samples=5):
    rng = np.random.default_rng(0)
    return {"X": rng.normal(size=(n, channels, samples)).astype(np.float32),
            "y": np.arange(n) % 57}


def test_reader_accepts_what_real_files_contain(tmp_path):
    data = _good()
    variants = {
        "plain": data,
        "float_labels_column": {"X": data["X"], "y": data["y"].astype(np.float64)[:, None]},
        "conv2d_layout": {"X": data["X"][:, :, None, :], "y": data["y"].astype(np.uint8)},
        "extra_datasets": {**data, "X_aug": data["X"], "y_vowel": data["y"] % 3},
    }
    for name, datasets in variants.items():
        trials = open_ecog(_write(tmp_path / f"{name}.h5", **datasets))
        x, y = trials.to_example(trials.source.read(0, 6))
        assert x.shape == (6, 3, 5) and x.dtype == np.float32, name
        np.testing.assert_array_equal(y, data["y"])


@pytest.mark.parametrize("case,message", [
    ("missing_x", "missing dataset 'X'"),
    ("missing_y", "missing dataset 'y'"),
    ("x_rank", "dataset 'X' has shape (6, 15)"),
    ("length", "differ in length"),
    ("nan", "NaN or Inf"),
    ("fractional_labels", "row 0 holds [0.5], expected class labels (N) or (N, 1), whole "
                          "numbers 0, 1, ..."),
    ("negative_labels", "holds [-1], expected class labels"),
    ("string_labels", "dataset 'y' has dtype"),
    ("truncated", "cannot be"),
    ("not_hdf5", "cannot be opened as HDF5"),
])
def test_reader_refuses_malformed_files_with_one_message(tmp_path, case, message):
    data = _good()
    path = tmp_path / f"{case}.h5"
    if case == "missing_x":
        _write(path, y=data["y"])
    elif case == "missing_y":
        _write(path, X=data["X"])
    elif case == "x_rank":
        _write(path, X=data["X"].reshape(6, 15), y=data["y"])
    elif case == "length":
        _write(path, X=data["X"], y=data["y"][:5])
    elif case == "nan":
        data["X"][2, 1, 1] = np.nan
        _write(path, **data)
    elif case == "fractional_labels":
        _write(path, X=data["X"], y=data["y"] + 0.5)
    elif case == "negative_labels":
        _write(path, X=data["X"], y=data["y"] - 1)
    elif case == "string_labels":
        _write(path, X=data["X"], y=np.array([b"ba"] * 6))
    elif case == "truncated":
        big = _good(n=400, channels=20, samples=50)
        _write(path, **big)
        content = path.read_bytes()
        path.write_bytes(content[: len(content) // 2])
    else:
        path.write_bytes(b"not an HDF5 file at all")
    with pytest.raises(DataError) as err:
        open_ecog(path)
    assert str(path) in str(err.value) and message in str(err.value)


# ---------------------------------------------------------------------------------- splits


def test_ten_folds_are_disjoint_and_rotate_the_test_block():
    cfg = {"folds": 10, "split_seed": 20141210}
    tests = []
    for fold in range(10):
        split = split_indices(2000, {**cfg, "fold": fold})
        parts = [split["train"], split["val"], split["test"]]
        assert [len(p) for p in parts] == [1600, 200, 200]
        assert len(np.unique(np.concatenate(parts))) == 2000
        tests.append(split["test"])
    assert len(np.unique(np.concatenate(tests))) == 2000  # every trial tested exactly once
    with pytest.raises(ConfigError):
        split_indices(100, {"folds": 10, "fold": 10})


# ------------------------------------------------------------------------------ dendrogram


def test_dendrogram_recovers_a_block_structured_confusion_matrix(tmp_path):
    rng = np.random.default_rng(0)
    blocks = np.repeat([0, 1, 2, 3], [5, 7, 3, 6])
    order = rng.permutation(len(blocks))  # classes of one block are not neighbours
    blocks = blocks[order]
    confusion = np.where(blocks[:, None] == blocks[None, :], 8.0, 0.5)
    confusion += np.eye(len(blocks)) * 20 + rng.uniform(0, 1, confusion.shape)
    path = tmp_path / "dendrogram.png"
    tree = interpret.confusion_dendrogram(confusion, [f"c{i}" for i in range(len(blocks))],
                                          path, groups=blocks)
    assert tree["linkage"].shape == (len(blocks) - 1, 4)
    assert sorted(tree["order"]) == list(range(len(blocks)))
    scores = interpret.cluster_agreement(tree["linkage"], blocks)
    assert scores == {"purity": 1.0, "adjusted_rand": 1.0}
    assert path.stat().st_size > 10_000
    shuffled = interpret.cluster_agreement(tree["linkage"], rng.permutation(blocks))
    assert shuffled["adjusted_rand"] < 0.5


def test_dendrogram_refuses_rows_without_trials():
    with pytest.raises(ConfigError):
        interpret.confusion_dendrogram(np.array([[1.0, 0.0], [0.0, 0.0]]))


# ----------------------------------------------------------------------- training and evaluation


@pytest.mark.slow
def test_short_training_is_far_above_chance_and_evaluates_like_the_paper(cv_file, tmp_path):
    run = tmp_path / "run"
    result = training.train("ecog_mlp", cv_file, run_dir=str(run), verbose=0,
                            overrides={"train.epochs": 8, "train.batch_size": 16,
                                       "data.folds": 0, "data.val_fraction": 0.2},
                            model_config={**SMALL, "units_1": 64})
    layer = result.model.get_layer("standardize")
    assert np.abs(layer.mean.numpy()).max() > 0  # statistics of the training rows
    metrics = training.evaluate(str(run), cv_file, split="val", output_dir=str(tmp_path / "ev"))
    assert metrics["trials"] == 114
    # 8 training trials per syllable and 8 epochs: far from converged, far above chance.
    assert metrics["accuracy"] > 5 * metrics["chance"]
    assert metrics["vowel_accuracy"] > 2 * metrics["vowel_chance"]
    assert metrics["consonant_accuracy"] > 3 * metrics["consonant_chance"]
    for figure in ("confusion.png", "per_class_accuracy.png"):
        assert (tmp_path / "ev" / figure).stat().st_size > 10_000
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"]
    # The standardisation travels with the weights, however they are restored: by Keras, or
    # by variable path as the zoo's pretrained loader does.
    again = training.evaluate(str(run), cv_file, split="val")
    assert again["accuracy"] == metrics["accuracy"]
    fresh = ecog_mlp(**SMALL, units_1=64)
    for target, source in zip(fresh.weights, result.model.weights):
        target.assign(source)
    task = registry.get_task("ecog_classification")
    reassigned = task.evaluate(fresh, cv_file, {"folds": 0, "val_fraction": 0.2}, "val", None,
                               distributed.init())
    assert reassigned["accuracy"] == metrics["accuracy"]


def test_training_refuses_a_file_of_another_electrode_count(cv_file, tmp_path):
    with pytest.raises(DataError, match="40 channels"):
        training.train("ecog_logreg", cv_file, run_dir=str(tmp_path / "run"), verbose=0,
                       overrides={"train.epochs": 1})

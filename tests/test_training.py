"""The single-process training path: run folder, resume, evaluation, CLI errors."""

from __future__ import annotations

import csv
import json
import os

import h5py
import numpy as np
import pytest
from conftest import toy_lhc_arrays, write_benchmark

from modelzoo import training
from modelzoo.cli import main

TINY = {"input_shape": (16, 16, 3), "filters": 8, "dense_units": 16, "dropout": 0.0}
QUICK = {
    "train.batch_size": 16, "lr_schedule.warmup_epochs": 0, "data.val_fraction": 0.25,
    "optimizer.learning_rate": 4e-3,
}


@pytest.fixture
def toy_file(tmp_path):
    return write_benchmark(tmp_path / "toy.h5", toy_lhc_arrays(n=128))


def _history_rows(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as fh:
        return list(csv.DictReader(fh))


def test_train_writes_run_folder_and_resumes(toy_file, tmp_path):
    run_dir = str(tmp_path / "run")
    result = training.train(
        "lhc_cnn", toy_file, run_dir=run_dir, model_config=TINY,
        overrides={**QUICK, "train.epochs": 2}, verbose=0,
    )
    assert (result.epochs_run, result.final_epoch, result.resumed_from) == (2, 2, 0)
    for name in ("config.json", "model.weights.h5", "history.csv", "checkpoints/latest.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["model"] == {"config": {**TINY, "input_shape": [16, 16, 3]}, "name": "lhc_cnn"}
    assert len(_history_rows(run_dir)) == 2
    # Weights files hold the model's variables only (the optimizer state, which Adam makes
    # twice the model's size, is in each checkpoint's optimizer.npz and nowhere else).
    parameters = sum(int(np.prod(w.shape)) for w in result.model.weights)
    def stored_values(path: str) -> int:
        sizes = []
        with h5py.File(os.path.join(run_dir, path)) as fh:
            assert "optimizer" not in fh, path
            fh.visititems(lambda _, obj: sizes.append(obj.size)
                          if isinstance(obj, h5py.Dataset) else None)
        return sum(sizes)

    for path in ("model.weights.h5", "checkpoints/epoch-0002/model.weights.h5"):
        assert stored_values(path) == parameters, path

    # Same command with a later final epoch continues from the checkpoint.
    resumed = training.train(
        "lhc_cnn", toy_file, run_dir=run_dir, model_config=TINY,
        overrides={**QUICK, "train.epochs": 3}, verbose=0,
    )
    assert (resumed.resumed_from, resumed.epochs_run, resumed.final_epoch) == (2, 1, 3)
    assert [r["epoch"] for r in _history_rows(run_dir)] == ["0", "1", "2"]
    kept = sorted(d for d in os.listdir(os.path.join(run_dir, "checkpoints")) if d.startswith("e"))
    assert kept == ["epoch-0002", "epoch-0003"]

    # A different architecture in the same folder is refused rather than mixed.
    with pytest.raises(ValueError, match="different model configuration"):
        training.train("lhc_cnn", toy_file, run_dir=run_dir,
                       model_config={**TINY, "dense_units": 8},
                       overrides={**QUICK, "train.epochs": 4}, verbose=0)

    metrics = training.evaluate(run_dir, toy_file, split="val")
    assert metrics["events"] == 32
    # The weighted AUC of the run's own scores on the validation rows, computed independently.
    from sklearn.metrics import roc_auc_score

    net, _ = training._load_run(run_dir)
    with h5py.File(toy_file) as fh:
        images = np.transpose(fh["data"][-32:], (0, 2, 3, 1))  # the model applies log1p
        labels, weights = fh["label"][-32:], fh["weight"][-32:]
    scores = net.predict(images, verbose=0)[:, 1]
    assert metrics["auc_weighted"] == pytest.approx(
        roc_auc_score(labels, scores, sample_weight=weights), abs=1e-6)
    # The toy's selection keeps signal only: no background fixes an FPR, so no operating point.
    assert metrics["background_passing_selection"] == 0
    assert "an operating point needs at least 10" in metrics["operating_point_refused"]
    assert "cnn_tpr_at_selection_fpr" not in metrics
    assert os.path.exists(os.path.join(run_dir, "roc.png"))


def test_learns_an_easy_toy_problem(toy_file, tmp_path):
    run_dir = str(tmp_path / "run")
    training.train(
        "lhc_cnn", toy_file, run_dir=run_dir, model_config=TINY,
        overrides={**QUICK, "train.epochs": 6}, verbose=0,
    )
    metrics = training.evaluate(run_dir, toy_file, split="val")
    assert metrics["auc_unweighted"] > 0.9


def test_overrides_must_name_existing_sections():
    recipe = training.load_recipe("lhc_cnn")
    assert training.apply_overrides(recipe, {"train.epochs": 1})["train"]["epochs"] == 1
    with pytest.raises(ValueError, match="no section 'trian'"):
        training.apply_overrides(recipe, {"trian.epochs": 1})


def test_recipe_values_read_exponent_floats():
    # PyYAML's YAML 1.1 would give the string "1e-5", and the optimizer a string learning rate.
    for text, value in [("1e-5", 1e-5), ("2.5E+3", 2500.0), ("-3e2", -300.0), ("7", 7),
                        ("[1e-3, 0.1]", [1e-3, 0.1]), ("e5", "e5"), ("1e", "1e")]:
        assert training.load_yaml(text) == value, text
    assert type(training.load_yaml("7")) is int


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    arrays = toy_lhc_arrays(n=32)
    arrays["data"][3, 0, 0, 0] = np.inf
    write_benchmark(bad, arrays)
    code = main(["train", "lhc_cnn", "--data", str(bad), "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"modelzoo: error: {bad}: dataset 'data' has NaN or Inf")


def test_fine_tuning_starts_from_the_given_weights(toy_file, tmp_path):
    first = str(tmp_path / "first")
    training.train("lhc_cnn", toy_file, run_dir=first, model_config=TINY,
                   overrides={**QUICK, "train.epochs": 1}, verbose=0)
    tuned = str(tmp_path / "tuned")
    # No epochs: the run's weights are exactly where fine-tuning starts.
    training.train("lhc_cnn", toy_file, run_dir=tuned, model_config=TINY,
                   overrides={**QUICK, "train.epochs": 0, "model.init_weights": first}, verbose=0)
    source, _ = training._load_run(first)
    start, _ = training._load_run(tuned)
    for a, b in zip(source.weights, start.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fresh = str(tmp_path / "fresh")
    training.train("lhc_cnn", toy_file, run_dir=fresh, model_config=TINY,
                   overrides={**QUICK, "train.epochs": 0, "train.seed": 5}, verbose=0)
    assert not np.array_equal(np.asarray(training._load_run(fresh)[0].weights[0]),
                              np.asarray(source.weights[0]))

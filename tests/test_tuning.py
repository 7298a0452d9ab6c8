"""``modelzoo tune``: search spaces, sampled configurations, the best recipe, and a real search
by two worker processes on one study that is killed and resumed without losing or repeating a
trial."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from modelzoo import training, tuning
from modelzoo.ecog.generator import generate_ecog
from modelzoo.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

SPACE = {
    "model.hidden_layers": {"type": "int", "low": 1, "high": 3},
    "model.units_2": {"type": "int", "low": 57, "high": 500, "when": "model.hidden_layers >= 2"},
    "model.activation": {"type": "categorical", "choices": ["tanh", "relu"]},
    "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
}


@pytest.mark.parametrize("space,message", [
    ({}, "empty"),
    ({"learning_rate": {"type": "float", "low": 0.1, "high": 1}}, "section.key"),
    ({"model.x": {"type": "normal"}}, "type one of"),
    ({"model.x": {"type": "int", "low": 3, "high": 1}}, "low <= high"),
    ({"model.x": {"type": "float", "low": 0.0, "high": 1, "log": True}}, "low > 0"),
    ({"model.x": {"type": "categorical", "choices": []}}, "non-empty choices"),
    ({"model.x": {"type": "int", "low": 1, "high": 2, "when": "model.y >= 1"}}, "not declared"),
    ({"model.x": {"type": "int", "low": 1, "high": 2, "when": "model.x ~ 1"}}, "operators"),
])
def test_bad_search_spaces_are_refused(space, message):
    with pytest.raises(ConfigError, match=message):
        tuning.validate_space(space)


def test_conditional_parameters_are_sampled_only_when_their_condition_holds():
    deep = optuna.trial.FixedTrial({"model.hidden_layers": 2, "model.units_2": 99,
                                    "model.activation": "relu",
                                    "optimizer.learning_rate": 0.01})
    assert tuning.suggest(deep, SPACE) == {"model.hidden_layers": 2, "model.units_2": 99,
                                           "model.activation": "relu",
                                           "optimizer.learning_rate": 0.01}
    shallow = optuna.trial.FixedTrial({"model.hidden_layers": 1, "model.activation": "tanh",
                                       "optimizer.learning_rate": 0.001})
    assert "model.units_2" not in tuning.suggest(shallow, SPACE)


def test_sampling_stays_inside_the_declared_ranges():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(50):
        trial = study.ask()
        values = tuning.suggest(trial, SPACE)
        assert 1 <= values["model.hidden_layers"] <= 3
        assert ("model.units_2" in values) == (values["model.hidden_layers"] >= 2)
        assert 1e-4 <= values["optimizer.learning_rate"] <= 1e-1
        study.tell(trial, 0.0)


def test_builder_keywords_and_recipe_keys_are_told_apart():
    overrides, model_config = tuning.split_params({"model.units_1": 64, "train.batch_size": 32,
                                                   "optimizer.learning_rate": 0.01})
    assert overrides == {"train.batch_size": 32, "optimizer.learning_rate": 0.01}
    assert model_config == {"units_1": 64}


def test_best_recipe_is_a_recipe_train_accepts(tmp_path):
    cfg = tuning.best_recipe("ecog_mlp", {"model.units_1": 77, "optimizer.learning_rate": 0.02},
                             {"model.n_channels": 8, "train.epochs": 3})
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = training.load_recipe(str(path))
    assert loaded["model"]["config"] == {"n_channels": 8, "units_1": 77}
    assert loaded["optimizer"]["learning_rate"] == 0.02 and loaded["train"]["epochs"] == 3
    assert loaded["task"] == "ecog_classification"


def test_declared_space_or_a_space_file(tmp_path):
    assert tuning.load_space("ecog_mlp")["model.units_1"]["high"] == 1000
    path = tmp_path / "space.yaml"
    path.write_text("optimizer.learning_rate: {type: float, low: 1e-4, high: 1e-2, log: true}\n")
    assert tuning.load_space("lhc_cnn", str(path))["optimizer.learning_rate"]["low"] == 1e-4
    assert tuning.default_monitor("ecog_mlp") == "val_cross_entropy"


# ----------------------------------------------------------------------------- a real search

TRIALS, EPOCHS = 3, 4


def _tune_command(data: Path, output: Path, space: Path) -> list[str]:
    return [sys.executable, "-m", "modelzoo.tuning", "ecog_logreg", "--data", str(data),
            "--trials", str(TRIALS), "--workers", "2", "--output", str(output),
            "--space", str(space), "--epochs", str(EPOCHS), "--heartbeat", "1",
            "--set", "model.n_channels=8", "--set", "model.n_samples=60",
            "--set", "data.folds=0", "--set", "data.val_fraction=0.2",
            "--set", "train.batch_size=16"]


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _study(output: Path) -> optuna.Study:
    return optuna.load_study(study_name="ecog_logreg",
                             storage=f"sqlite:///{output / tuning.STUDY_FILE}")


def _running_with_checkpoint(output: Path) -> optuna.trial.FrozenTrial | None:
    try:
        trials = _study(output).get_trials(deepcopy=False)
    except (KeyError, Exception):  # study or tables not created yet
        return None
    for trial in trials:
        run_dir = trial.user_attrs.get("run_dir")
        latest = Path(run_dir or "/nonexistent") / "checkpoints" / "latest.json"
        if trial.state == optuna.trial.TrialState.RUNNING and latest.exists():
            if json.loads(latest.read_text())["epoch"] < EPOCHS - 1:
                return trial
    return None


@pytest.mark.slow
def test_two_workers_killed_and_resumed_lose_and_repeat_no_trial(tmp_path):
    data = generate_ecog(tmp_path / "cv.h5", n_trials=456, n_channels=8, n_samples=60, seed=4,
                         progress=False).path
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "model.input_dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    }))
    output = tmp_path / "tune"
    first = subprocess.Popen(_tune_command(data, output, space), env=_env(), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        deadline, victim = time.monotonic() + 120, None
        while victim is None and time.monotonic() < deadline and first.poll() is None:
            victim = _running_with_checkpoint(output)
            time.sleep(0.05)
        assert victim is not None, "no trial reached a checkpoint to kill it at"
        host, pid = victim.user_attrs["worker"].rsplit(":", 1)
        os.kill(int(pid), signal.SIGKILL)  # one worker dies mid-trial ...
        time.sleep(0.5)
        os.killpg(first.pid, signal.SIGKILL)  # ... then the whole search is stopped
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    interrupted = [t for t in _study(output).get_trials()
                   if t.state == optuna.trial.TrialState.RUNNING]
    assert victim.number in [t.number for t in interrupted]

    resumed = subprocess.run(_tune_command(data, output, space), env=_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]

    trials = _study(output).get_trials()
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                 optuna.trial.TrialState.PRUNED)]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(finished) == TRIALS  # none lost, none extra
    assert sorted(t.number for t in failed) == sorted(t.number for t in interrupted)
    run_dirs = [t.user_attrs["run_dir"] for t in finished]
    assert len(set(run_dirs)) == TRIALS  # every finished trial trained its own configuration
    for dead in failed:  # each interrupted trial was retried once, with its parameters
        retries = [t for t in finished if t.user_attrs["run_dir"] == dead.user_attrs["run_dir"]]
        assert len(retries) == 1 and retries[0].params == dead.params
    retry_of_victim = next(t for t in finished
                           if t.user_attrs["run_dir"] == victim.user_attrs["run_dir"])
    assert retry_of_victim.user_attrs["resumed_from_epoch"] >= 1  # continued its checkpoint
    for run_dir in run_dirs:  # and no epoch of any trial was trained twice
        with open(Path(run_dir) / "history.csv", newline="") as fh:
            epochs = [int(row["epoch"]) for row in csv.DictReader(fh)]
        assert epochs == list(range(len(epochs)))

    best = yaml.safe_load((output / "best_recipe.yaml").read_text())
    assert best["model"]["config"]["n_channels"] == 8
    assert training.load_recipe(str(output / "best_recipe.yaml"))["task"] == "ecog_classification"
    with open(output / "trials.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(trials)
    summary = json.loads((output / "best.json").read_text())
    assert summary["states"]["COMPLETE"] + summary["states"].get("PRUNED", 0) == TRIALS


def test_the_command_line_refuses_an_unknown_model(tmp_path):
    parser = argparse.ArgumentParser()
    tuning.add_arguments(parser)
    args = parser.parse_args(["no_such_model", "--data", "x.h5", "--output", str(tmp_path)])
    with pytest.raises(Exception, match="no_such_model"):
        tuning.run(args)


@pytest.mark.timeout(120)  # the bug this guards against is a hang
def test_waiting_retries_are_run_even_when_they_fill_the_trial_count(tmp_path, monkeypatch):
    """One finished trial and two waiting retries of dead workers' trials make the count of
    three: a worker must run the two, not wait for someone else to (a resumed search hung so)."""
    import argparse

    from modelzoo import tuning

    parser = argparse.ArgumentParser()
    tuning.add_arguments(parser)
    args = parser.parse_args(["ecog_logreg", "--data", "unused.h5", "--trials", "3",
                              "--output", str(tmp_path / "tune"), "--heartbeat", "1"])
    (tmp_path / "tune").mkdir()
    study = tuning.open_study(args)
    done = study.ask()
    study.tell(done, 1.0)
    params = {"optimizer.learning_rate": 1e-3}
    study.enqueue_trial(params, skip_if_exists=False)
    study.enqueue_trial(params, skip_if_exists=False)
    monkeypatch.setattr(tuning, "run_trial", lambda *a, **k: 0.5)
    assert tuning.work(args) == 2
    states = [t.state for t in _study(tmp_path / "tune").get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE] * 3

"""Every user mistake of issue 30 ends in one line naming what is wrong (run as the command, in
this process), and a bug keeps its traceback."""

from __future__ import annotations

import argparse
import importlib.util

import pytest
from conftest import toy_lhc_arrays, write_benchmark

from modelzoo import cli


def _one_line(capsys, argv: list[str]) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("modelzoo: error: ")
    return err[0][len("modelzoo: error: "):]


@pytest.fixture
def events(tmp_path) -> str:
    return write_benchmark(tmp_path / "events.h5", toy_lhc_arrays(n=32, size=16))


def test_a_missing_recipe_file(capsys, events, tmp_path):
    line = _one_line(capsys, ["train", "lhc_cnn", "--data", events, "--recipe",
                              str(tmp_path / "nope.yaml"), "--output", str(tmp_path / "run")])
    assert line == f"recipe {tmp_path / 'nope.yaml'}: cannot be read (No such file or directory)"
    assert not (tmp_path / "run").exists()


def test_a_malformed_recipe_file(capsys, events, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("task: lhc_classification\ntrain: {batch_size: 8\nepochs: 1\n")
    line = _one_line(capsys, ["train", "lhc_cnn", "--data", events, "--recipe", str(recipe)])
    assert line.startswith(f"recipe {recipe}: not valid YAML at line ")
    recipe.write_text("- just\n- a list\n")
    line = _one_line(capsys, ["train", "lhc_cnn", "--data", events, "--recipe", str(recipe)])
    assert line == (f"recipe {recipe}: expected sections (task, model, data, optimizer, "
                    "train, ...), got list")


def test_a_recipe_missing_a_required_key_names_it_and_the_recipe_to_start_from(capsys, events,
                                                                               tmp_path):
    from modelzoo.registry import get_spec

    recipe = tmp_path / "short.yaml"
    recipe.write_text("optimizer: {name: adam}\ntrain: {epochs: 1}\n")
    line = _one_line(capsys, ["train", "lhc_cnn", "--data", events, "--recipe", str(recipe),
                              "--output", str(tmp_path / "run")])
    assert line.startswith(f"{recipe}: lacks task, ")
    assert "train.batch_size" in line
    assert line.endswith(f"start from the model's own recipe, {get_spec('lhc_cnn').recipe}")
    assert not (tmp_path / "run").exists()


def test_verify_given_a_model_name_lists_its_entries(capsys):
    from modelzoo import pretrained

    line = _one_line(capsys, ["pretrained", "verify", "lhc_cnn"])
    entries = sorted(k for k, e in pretrained.load_manifest().items() if e["model"] == "lhc_cnn")
    assert line == ("'lhc_cnn' is a model, not a manifest entry; its entries: "
                    f"{', '.join(entries)} (all entries: modelzoo pretrained list)")
    assert _one_line(capsys, ["pretrained", "verify", "lhc_cnn.pythia_v2x"]).startswith(
        "no manifest entry 'lhc_cnn.pythia_v2x'; did you mean lhc_cnn.")


@pytest.mark.parametrize("recipe, expected", [
    ('{"generator": "lhc", train: 1}', "--data-recipe: not valid JSON (Expecting property name "
                                       "enclosed in double quotes at character 21)"),
    ('["lhc"]', "--data-recipe: expected a JSON object {...}"),
    ('{"generator": "lhc"}', "the data recipe lacks 'train', 'eval'"),
])
def test_publish_refuses_bad_json_before_doing_anything(recipe, expected, capsys, tmp_path):
    line = _one_line(capsys, ["pretrained", "publish", "lhc_cnn", "--tag", "t", "--data-recipe",
                              recipe, "--work-dir", str(tmp_path / "work")])
    assert line.startswith(expected), line
    assert not (tmp_path / "work").exists()


def test_tune_without_optuna_says_how_to_install_it(capsys, monkeypatch, events, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna" else real(name, *a))
    line = _one_line(capsys, ["tune", "lhc_cnn", "--data", events, "--output",
                              str(tmp_path / "tune")])
    assert line == ("modelzoo tune needs Optuna, which is not installed here: pip install "
                    "optuna (or pip install 'modelzoo[science]')")


def _tune_args(tmp_path, events, trials: int = 2) -> argparse.Namespace:
    from modelzoo import tuning

    parser = argparse.ArgumentParser()
    tuning.add_arguments(parser)
    args = parser.parse_args(["ecog_logreg", "--data", events, "--trials", str(trials),
                              "--output", str(tmp_path / "tune"), "--heartbeat", "1"])
    args.monitor = "val_loss"
    return args


def test_a_bug_in_a_trial_stops_the_search_with_its_traceback(monkeypatch, events, tmp_path):
    from modelzoo import tuning

    def buggy(*args, **kwargs):
        raise ZeroDivisionError("a bug, not a bad configuration")

    monkeypatch.setattr(tuning, "run_trial", buggy)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        tuning.work(_tune_args(tmp_path, events))


def test_an_impossible_configuration_fails_its_trial_and_the_search_goes_on(monkeypatch, events,
                                                                            tmp_path, capsys):
    import optuna

    from modelzoo import tuning
    from modelzoo.errors import ConfigError

    calls = []

    def impossible_first(args, trial, space, fixed):
        calls.append(trial.number)
        if len(calls) == 1:
            raise ConfigError("32 training events cannot fill one batch of 64")
        return 0.5

    monkeypatch.setattr(tuning, "run_trial", impossible_first)
    assert tuning.work(_tune_args(tmp_path, events)) == 2
    assert "trial 0 failed: 32 training events cannot fill one batch of 64" in \
        capsys.readouterr().err
    study = optuna.load_study(study_name="ecog_logreg",
                              storage=tuning.storage_url(_tune_args(tmp_path, events)))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] + \
        [optuna.trial.TrialState.COMPLETE] * 2


def test_tuning_uses_optunas_public_api_only():
    source = open(importlib.util.find_spec("modelzoo.tuning").origin).read()
    assert "._storage" not in source and "._trial_id" not in source


def test_every_command_that_writes_creates_its_folder(tmp_path, capsys):
    card = tmp_path / "new" / "cards" / "lhc_cnn.md"
    assert cli.main(["card", "lhc_cnn", "--output", str(card)]) == 0
    assert card.read_text().startswith("#")


def test_a_refusal_after_the_run_folder_was_made_leaves_nothing_behind(capsys, tmp_path):
    from modelzoo.ecog.generator import generate_ecog

    trials = generate_ecog(tmp_path / "trials.h5", n_trials=120, n_channels=6, n_samples=20,
                           progress=False).path
    run = tmp_path / "run"
    line = _one_line(capsys, ["train", "ecog_mlp", "--data", trials, "--output", str(run),
                              "--epochs", "1", "--model-config", "n_channels=7",
                              "--model-config", "n_samples=20"])
    assert "holds trials of 6 channels x 20 samples, the model expects 7 x 20" in line
    assert not run.exists()
    run.mkdir()  # a folder the user made is theirs: left as it was
    _one_line(capsys, ["train", "ecog_mlp", "--data", trials, "--output", str(run), "--epochs",
                       "1", "--model-config", "n_channels=7", "--model-config", "n_samples=20"])
    assert run.is_dir()

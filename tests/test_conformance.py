"""The zoo's contract, checked for every registered model and every shipped entry (as keras-hub's
``run_backbone_test`` and timm's ``tests/test_models.py`` do for theirs).

A model gets all of it by registering: the checks read what it declares, ``ModelSpec.sample``
(generator arguments for a few-row file in its layout, a tiny builder config, recipe overrides
to train that tiny model), its recipe's :class:`~modelzoo.tasks.Task` (``inputs``,
``model_outputs``) and the manifest. Nothing here names a model.

Without files (fast): builds with defaults and with the tiny config, weights round trips by
variable path (full precision and the float16 compact format), the bfloat16 policy builds and
runs. On a file the case's generator wrote (slow: the generators are simulators), cached per
session: one training step through the zoo's training path; every shipped entry takes the
file's arrays as they are (after only the documented layout change) and ``model.predict``
equals what ``modelzoo predict`` writes, row for row in the file's order; ``modelzoo explain``
works for every model with its default weights.
"""

from __future__ import annotations

import argparse
import json

import h5py
import keras
import numpy as np
import pytest

import modelzoo
from modelzoo import interpret, manifest, pretrained, registry, reproduce, training

MODELS = modelzoo.list_models()
ENTRIES = manifest.list_pretrained()
DEFAULTS = {name: key for key, entry in manifest.load_manifest().items()
            for name in [entry["model"]] if entry.get("default")}


def _spec(name: str) -> modelzoo.ModelSpec:
    spec = modelzoo.get_spec(name)
    missing = {"data", "config", "recipe"} - set(spec.sample)
    assert not missing, (f"{name}: ModelSpec.sample must declare {sorted(missing)} (see "
                         "modelzoo.registry.ModelSpec)")
    return spec


def _variables(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: np.asarray(v) for v in model.weights}


@pytest.fixture(scope="session")
def sample_file(tmp_path_factory):
    """``sample_file(name)``: the model's sample file, written once per session by its case's
    generator (models that declare the same arguments share the file)."""
    folder = tmp_path_factory.mktemp("conformance_data")

    def make(name: str) -> str:
        spec = _spec(name)
        path = reproduce.data_path(folder, spec.case, "sample", {"seed": 0, **spec.sample["data"]})
        return reproduce.generate(spec.case, path, spec.sample["data"])

    return make


def _recipe(name: str) -> dict:
    """The recipe that goes with the model's default weights (its own without them)."""
    if name in DEFAULTS:
        return training.with_defaults(manifest.load_manifest()[DEFAULTS[name]]["recipe"])
    return training.load_recipe(name)


# --- without files ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_builds_with_defaults_and_with_a_tiny_config(name):
    spec = _spec(name)
    full = modelzoo.get(name)
    tiny = modelzoo.get(name, **spec.sample["config"])
    for model in (full, tiny):
        assert isinstance(model, keras.Model) and model.count_params() > 0
        assert all(np.isfinite(a).all() for a in _variables(model).values())
    assert tiny.count_params() <= full.count_params()
    assert modelzoo.info(name)["defaults"].keys() == spec.defaults.keys()
    with pytest.raises(modelzoo.ConfigError, match="unknown config key"):
        modelzoo.get(name, no_such_keyword=1)


@pytest.mark.parametrize("name", MODELS)
def test_weights_round_trip_by_variable_path(name, tmp_path):
    config = _spec(name).sample["config"]
    model = modelzoo.get(name, **config)
    folder = modelzoo.save_pretrained(model, tmp_path / "full")
    again = modelzoo.get(name, weights=folder)
    saved = _variables(model)
    assert _variables(again).keys() == saved.keys()
    for path, array in _variables(again).items():
        np.testing.assert_array_equal(array, saved[path], err_msg=path)

    compact = tmp_path / "compact.float16.h5"
    pretrained.write_compact(model, compact)
    fresh = modelzoo.get(name, weights=compact, **config)
    for path, array in _variables(fresh).items():
        np.testing.assert_allclose(array, saved[path].astype(np.float16), rtol=1e-3, atol=1e-4,
                                   err_msg=path)
        assert array.dtype == saved[path].dtype


@pytest.mark.parametrize("name", MODELS)
def test_the_bfloat16_policy_builds_and_runs(name):
    with training.dtype_policy("mixed_bfloat16"):
        model = modelzoo.get(name, **_spec(name).sample["config"])
    assert any(layer.compute_dtype == "bfloat16" for layer in model.layers)
    assert all(v.dtype == "float32" for v in model.trainable_weights)  # variables stay float32
    inputs = [np.ones((2, *t.shape[1:]), np.float32) for t in model.inputs]
    outputs = model(inputs[0] if len(inputs) == 1 else inputs, training=False)
    for out in keras.tree.flatten(outputs):
        assert np.isfinite(np.asarray(out, np.float32)).all()


def test_every_model_declares_a_sample_and_every_task_the_contract():
    for name in MODELS:
        spec = _spec(name)
        assert spec.case and spec.case in registry.cases(), name
        task = registry.get_task(training.load_recipe(name)["task"])
        assert task.name and task.model_outputs, (name, type(task).__name__)
    with pytest.raises(TypeError, match="subclass of modelzoo.tasks.Task"):
        registry.register_task("not_a_task", object)
    # One instance per run: nothing one run keeps on its task reaches the next.
    assert registry.get_task("lhc_classification") is not registry.get_task("lhc_classification")


# --- on a file the case's generator wrote -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_through_the_zoo(name, sample_file, tmp_path):
    spec = _spec(name)
    result = training.train(
        name, sample_file(name), run_dir=str(tmp_path / "run"), verbose=0, resume=False,
        model_config=spec.sample["config"],
        overrides={**spec.sample["recipe"], "train.epochs": 1},
    )
    assert result.epochs_run == 1 and np.isfinite(result.history["loss"]).all()
    assert (tmp_path / "run" / "model.weights.h5").exists()
    trained = modelzoo.get(name, weights=str(tmp_path / "run"))
    assert _variables(trained).keys() == _variables(result.model).keys()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_a_resumed_run_sees_the_batches_of_an_uninterrupted_one(name, sample_file):
    """Epoch 1 of a stream started at epoch 0 equals a stream resumed at epoch 1, batch by
    batch, inputs and targets: shuffling, augmentation and corruption are drawn from (seed,
    epoch, step), never from state a restart loses."""
    from modelzoo.distributed import ProcessGroup

    spec = _spec(name)
    cfg = training.apply_overrides(training.load_recipe(name), spec.sample["recipe"])
    task, batch = registry.get_task(cfg["task"]), int(cfg["train"]["batch_size"])

    def batches(first_epoch: int, count: int) -> tuple[int, list]:
        data = task.datasets(sample_file(name), dict(cfg["data"]), batch, ProcessGroup(),
                             seed=3, first_epoch=first_epoch)
        return data.steps_per_epoch, [keras.tree.map_structure(np.asarray, b)
                                      for b in data.train.take(count)]

    steps, _ = batches(0, 1)
    _, straight = batches(0, 2 * steps)
    _, resumed = batches(1, steps)
    for a, b in zip(straight[steps:], resumed, strict=True):
        keras.tree.map_structure(np.testing.assert_array_equal, a, b)


@pytest.mark.slow
@pytest.mark.parametrize("key", ENTRIES)
def test_shipped_weights_take_the_file_arrays_as_they_are(key, sample_file, tmp_path):
    """``get(name, weights=...).predict(x)`` with ``x`` the file's arrays (after only the
    documented layout change: ``Task.inputs``) equals ``modelzoo predict`` on the file."""
    entry = manifest.load_manifest()[key]
    name = entry["model"]
    recipe = training.with_defaults(entry["recipe"])
    task = registry.get_task(recipe["task"])
    if not task.model_outputs:
        pytest.fail(f"{type(task).__name__}.model_outputs names no dataset of `modelzoo "
                    "predict` as a model output")
    path = sample_file(name)
    model = modelzoo.get(name, weights=entry["tag"])
    batch = task.inputs(path, recipe["data"], (0, 10**9))
    direct = model.predict(batch["inputs"], verbose=0)
    out = tmp_path / "predictions.h5"
    assert modelzoo_cli(["predict", name, "--weights", entry["tag"], "--data", path,
                         "--output", str(out)]) == 0
    with h5py.File(out) as written:
        for dataset, which in task.model_outputs.items():
            expected = direct if which is None else direct[which]
            got = written[dataset][()]
            assert len(got) == len(batch["inputs"])
            np.testing.assert_allclose(got, np.asarray(expected).reshape(got.shape), rtol=1e-4,
                                       atol=1e-5, err_msg=f"{key}: {dataset}")


def modelzoo_cli(argv: list[str]) -> int:
    from modelzoo.cli import main

    return main(argv)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_explain_works_with_the_default_weights(name, sample_file, tmp_path):
    """Saliency and embedding for every model, reconstruction for those whose task names what a
    reconstruction aims at (``targets``): the PNG and finite numbers."""
    path = sample_file(name)
    recipe = _recipe(name)
    methods = ["saliency", "embedding"]
    if "targets" in registry.get_task(recipe["task"]).inputs(path, recipe["data"], (0, 2)):
        methods.append("reconstruction")
    parser = argparse.ArgumentParser()
    interpret.add_arguments(parser)
    weights = ["--weights", "default"] if name in DEFAULTS else []
    ran = []
    for method in methods:
        out = tmp_path / method
        argv = [name, "--data", path, "--method", method, "--output", str(out), "--rows", "8"]
        assert interpret.run(parser.parse_args(argv + weights)) == 0
        assert (out / f"{method}.png").stat().st_size > 0
        with np.load(out / f"{method}.npz") as numbers:
            assert all(np.isfinite(numbers[k]).all() for k in numbers.files
                       if np.issubdtype(numbers[k].dtype, np.number))
        ran.append(method)
    _record_explained(name, ran)


def _record_explained(name: str, methods: list[str]) -> None:
    """Which methods ran per model, for the closing note (``MODELZOO_EXPLAIN_LOG``)."""
    import os

    log = os.environ.get("MODELZOO_EXPLAIN_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"model": name, "methods": methods}) + "\n")

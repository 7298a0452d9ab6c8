"""Publishing, verifying and re-creating the shipped pretrained entries.

Each manifest entry records how it was made: the synthetic data recipe (generator, sizes,
seeds), the training recipe and the metrics on a fixed evaluation set. From that,

* :func:`export` turns a finished run into a shipped entry (compact float16 weights, metrics
  measured on the evaluation set *after* the float16 round trip, so they reproduce exactly);
* :func:`verify` regenerates the evaluation set and checks the shipped weights still give the
  manifest's metrics, each within its own tolerance (:func:`verify_tolerance`: a few samples of
  a fraction's denominator, a relative share of a scale), by default on the entry's ``check``
  set where it has one (an evaluation set large enough for the published comparison can take
  many minutes to simulate; the check set is sized to re-measure the headline comparison too);
* :func:`recreate` regenerates the training data, retrains by the recipe and checks the new
  metrics land within the entry's tolerance of the manifest.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelzoo import manifest, pretrained, registry, training
from modelzoo.errors import ConfigError


def manifest_entry(key: str) -> dict[str, Any]:
    """The manifest entry ``key`` (e.g. ``lhc_cnn.pythia_presel_v2``); a model name or an
    unknown key is refused naming the entries there are."""
    entries = manifest.load_manifest()
    if key in entries:
        return entries[key]
    own = sorted(k for k, e in entries.items() if e["model"] == key)
    if own:
        raise ConfigError(f"{key!r} is a model, not a manifest entry; its entries: "
                          f"{', '.join(own)} (all entries: modelzoo pretrained list)")
    close = difflib.get_close_matches(key, list(entries), n=3)
    raise ConfigError(f"no manifest entry {key!r}"
                      + (f"; did you mean {', '.join(close)}?" if close else "")
                      + " (all entries: modelzoo pretrained list)")


# Recipe settings that size or seed a data set without changing what its rows look like.
_SIZE_KEYS = ("seed", "processes", "maps_per_class", "num_cosmologies", "count")


def generator_flags(kind: str, settings: dict[str, Any], output: str = "FILE") -> list[str]:
    """The words after ``modelzoo data kind`` that write ``settings`` (a data recipe's generator
    arguments) to ``output``: the subcommand the recipe's ``kind`` names, if any, ``--output``,
    then a flag for each setting the command has one for (``key=value`` where it has none)."""
    import argparse

    case = registry.cases()[kind]
    parser = argparse.ArgumentParser()
    importlib.import_module(case.data_command).add_arguments(parser)
    words: list[str] = []
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subcommands and settings.get("kind") in subcommands[0].choices:  # e.g. climate images
        words.append(settings["kind"])
        parser = subcommands[0].choices[settings["kind"]]
    words += ["--output", output]
    options = parser._option_string_actions
    for key, value in settings.items():
        if key == "kind" and subcommands:
            continue
        flag = key.replace("_", "-")
        bare = flag[2:] if flag.startswith("n-") else flag
        if isinstance(value, bool):
            found = f"--{flag}" if value else f"--no-{flag}"
            words.append(found if found in options else f"{key}={value}")
            continue
        found = next((f for f in (f"--{flag}", f"--{bare}", f"--{bare}s") if f in options), None)
        if found is None:
            words.append(f"{key}={json.dumps(value)}")
        elif isinstance(value, (list, tuple)):
            words += [found, *(str(v) for v in value)]
        else:
            words += [found, str(value)]
    return words


def data_commands(key: str) -> dict[str, str]:
    """For each set of entry ``key``'s data recipe (train, eval, check), the ``modelzoo data``
    command that writes it, to paste into a shell: the generator's own flags
    (:func:`generator_flags`) where every setting has one, else ``--from-entry``."""
    import shlex

    recipe = manifest_entry(key).get("data_recipe") or {}
    commands = {}
    for split, settings in recipe.items():
        if split == "generator":
            continue
        words = generator_flags(recipe["generator"], settings, f"{split}.h5")
        if any(not w.startswith("-") and "=" in w for w in words):  # a setting without a flag
            words = ["--from-entry", key, "--entry-split", split, "--output", f"{split}.h5"]
        else:
            words.insert(0, recipe["generator"])
        commands[split] = shlex.join(["modelzoo", "data", *words])
    return commands


def _same(a: Any, b: Any) -> bool:
    """Equal settings, numbers compared as numbers (a CLI's 60.0 is a recipe's 60)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def unlike_training(key: str, path: str | os.PathLike) -> str | None:
    """Why ``path`` is unlike the data shipped entry ``key`` was trained and evaluated on, by
    the generator settings the file records (``generator_arguments``, written by every
    ``modelzoo data`` command), with the command that writes matching data; None when they
    agree or the file does not say how it was made."""
    import h5py

    recipe = manifest_entry(key).get("data_recipe") or {}
    wanted = {k: v for k, v in (recipe.get("eval") or {}).items() if k not in _SIZE_KEYS
              and not k.startswith("n_")}
    try:
        with h5py.File(path, "r") as fh:
            made = json.loads(fh.attrs.get("generator_arguments", "{}"))
    except (OSError, ValueError):
        return None  # the reader says what is wrong with the file
    differ = {k: v for k, v in wanted.items() if k in made and not _same(made[k], v)}
    if not differ:
        return None
    has = ", ".join(f"{k}={json.dumps(made[k])}" for k in differ)
    trained = ", ".join(f"{k}={json.dumps(v)}" for k, v in differ.items())
    flags = " ".join(generator_flags(recipe["generator"], wanted))
    return (f"{os.fspath(path)} was made with {has}; {key} was trained and evaluated on data "
            f"made with {trained}, so its numbers here do not measure it. Matching data: "
            f"modelzoo data {recipe['generator']} {flags} (or modelzoo data "
            f"--from-entry {key} --output FILE)")


def generate(kind: str, path: str | os.PathLike, args: dict[str, Any]) -> str:
    """Write the synthetic data set of case ``kind`` with ``args`` to ``path`` (skipped if it
    exists)."""
    generators = {name: case.generator for name, case in registry.cases().items()
                  if case.generator}
    if kind not in generators:
        raise ConfigError(f"unknown generator {kind!r}; known: {', '.join(sorted(generators))}")
    if not os.path.exists(path):
        module, _, function = generators[kind].partition(":")
        getattr(importlib.import_module(module), function)(path, progress=False, **args)
    return os.fspath(path)


def data_path(data_dir: str | os.PathLike, generator: str, split: str,
              args: dict[str, Any]) -> Path:
    """Where the ``split`` set of ``generator`` with ``args`` is written in ``data_dir``: the
    name carries a hash of the arguments, so that entries whose sets share a seed but differ in
    size or selection never read each other's file from a shared folder."""
    digest = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:10]
    return Path(data_dir) / f"{generator}-{split}-seed{args['seed']}-{digest}.h5"


def evaluate_model(model, entry: dict[str, Any], data_dir: str | os.PathLike,
                   split: str = "eval") -> dict[str, float]:
    """Metrics of ``model`` on the entry's ``eval`` (or ``check``) set, generated into
    ``data_dir``."""
    from modelzoo import distributed

    data = entry["data_recipe"]
    eval_path = data_path(data_dir, data["generator"], split, data[split])
    generate(data["generator"], eval_path, data[split])
    task = registry.get_task(entry["recipe"]["task"])
    data_cfg = dict(entry["recipe"].get("data", {}))
    # A task whose baselines fit on the model's own training set is handed that set, under the
    # data key it names, so that they are measured as the model is; or, where the entry
    # carries the fit made on it at claim time (``baseline_fit``), that fit, so that a training
    # set too large to re-simulate for a check is not.
    key = getattr(task, "training_file_key", None)
    fitted_key = getattr(task, "fitted_baseline_key", None)
    if fitted_key and entry.get("baseline_fit"):
        data_cfg[fitted_key] = entry["baseline_fit"]
    elif key and "train" in data:
        train_path = data_path(data_dir, data["generator"], "train", data["train"])
        data_cfg[key] = str(generate(data["generator"], train_path, data["train"]))
    return task.evaluate(model, str(eval_path), data_cfg, "all", None, distributed.init())


def export(
    run_dir: str,
    key: str,
    data_recipe: dict[str, Any],
    *,
    default: bool = True,
    tolerance: dict[str, float] | None = None,
    data_dir: str | None = None,
    description: str = "",
) -> dict[str, Any]:
    """Ship run ``run_dir`` as manifest entry ``key`` (``model.tag``)."""
    model, cfg = training._load_run(run_dir)
    name = cfg["model"]["name"]
    if not key.startswith(f"{name}."):
        raise ConfigError(f"entry key {key!r} must start with the model name {name!r}")
    manifest.PRETRAINED_DIR.mkdir(parents=True, exist_ok=True)
    weights = manifest.PRETRAINED_DIR / f"{key}{pretrained.COMPACT_SUFFIX}"
    pretrained.write_compact(model, weights)
    recipe = {k: v for k, v in cfg.items() if k not in ("data_file", "world_size")}
    entry: dict[str, Any] = {
        "model": name,
        "tag": key.split(".", 1)[1],
        "default": default,
        "description": description,
        "file": weights.name,
        "sha256": pretrained.sha256_of(weights),
        "bytes": weights.stat().st_size,
        "dtype": "float16",
        "config": cfg["model"].get("config", {}),
        "recipe": recipe,
        "data_recipe": data_recipe,
        "tolerance": tolerance or {},
        **pretrained.versions(),
    }
    reloaded = pretrained._load_into(training._load_run(run_dir)[0], weights)
    with tempfile.TemporaryDirectory() as tmp:
        entry["metrics"] = evaluate_model(reloaded, entry, data_dir or tmp)
        if "check" in data_recipe:
            entry["check_metrics"] = evaluate_model(reloaded, entry, data_dir or tmp, "check")
    entries = manifest.load_manifest()
    if default:
        for other in entries.values():
            if other["model"] == name:
                other["default"] = False
    entries[key] = entry
    path = manifest.PRETRAINED_DIR / manifest.MANIFEST
    path.write_text(json.dumps(entries, indent=2, sort_keys=True, default=float) + "\n")
    return entry


# Metrics that describe the run, not the model: never compared.
UNTIMED = frozenset({"seconds"})

# Words naming a fraction of samples (an accuracy, a rate, an AP): such a metric moves in steps
# of one sample over its denominator, so its verify tolerance counts samples, not digits.
FRACTION_WORDS = frozenset({"accuracy", "fraction", "purity", "auc", "tpr", "fpr", "recall",
                            "ap", "map", "chance"})
# Words naming what a case's evaluation set counts; an integer metric built from one of these
# and a group name (``events_ibd``, ``isolated_stamps``) is that group's denominator.
SAMPLE_WORDS = frozenset({"events", "stamps", "patches", "images", "maps", "trials", "boxes"})


def _is_fraction(metric: str, value: float) -> bool:
    return (0.0 <= value <= 1.0 and not isinstance(value, bool)
            and bool(FRACTION_WORDS & set(metric.split("_"))))


def _denominator(metric: str, expected: dict[str, Any]) -> int | None:
    """Samples a fraction ``metric`` is measured on: the smallest matching group count
    (``fraction_vae_better_isolated`` over ``isolated_stamps``, ``ap_5_tropical_cyclone`` over
    ``boxes_tropical_cyclone``), else the whole set's (``events``, ``stamps``, ...)."""
    whole, groups = None, []
    for name, count in expected.items():
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            continue
        words = name.split("_")
        if name in SAMPLE_WORDS:
            whole = count if whole is None else max(whole, count)
        elif SAMPLE_WORDS & set(words):
            group = "_".join(w for w in words if w not in SAMPLE_WORDS)
            if metric.endswith(f"_{group}"):
                groups.append(count)
    return min(groups) if groups else whole


def verify_tolerance(metric: str, want: float, expected: dict[str, Any], *, flips: int = 2,
                     relative: float = 1e-2) -> float:
    """Absolute difference allowed between a re-measured metric and the manifest's.

    A fraction of ``n`` samples (accuracy, AUC, AP, ...) may move by ``flips / n``: a score on
    a threshold can land on the other side on another CPU (oneDNN, vector width), and a real
    regression moves many samples. A count may move by ``flips``. Any other number (an MSE, a
    log-probability, a ratio) is a scale and may move by ``relative`` of itself: regenerating a
    set moves a mean over it by up to ~2e-3 (cosmo_dcae's corrupted-input MSE, which no weight
    touches: 0.13%), while a degraded model moves it by tens of percent."""
    if isinstance(want, int) and not isinstance(want, bool):
        return float(flips)
    if _is_fraction(metric, want):
        n = _denominator(metric, expected)
        if n:
            return flips / n
    return relative * abs(want)


def compare(measured: dict[str, float], expected: dict[str, float],
            allowed: Callable[[str, float], float]) -> list[str]:
    """Human-readable differences beyond ``allowed(metric, manifest value)`` (empty when
    everything agrees)."""
    problems = [f"{metric}: in the manifest, not measured" for metric in expected
                if metric not in measured and metric not in UNTIMED]
    for metric, want in expected.items():
        if not isinstance(want, (int, float)) or metric not in measured or metric in UNTIMED:
            continue
        tol = allowed(metric, want)
        if not abs(measured[metric] - want) <= tol:
            problems.append(f"{metric}: measured {measured[metric]:.6g}, manifest {want:.6g} "
                            f"(allowed difference {tol:.3g})")
    return problems


def verify(key: str, data_dir: str | None = None, *, flips: int = 2, relative: float = 1e-2,
           full: bool = False) -> dict[str, Any]:
    """Shipped weights on the regenerated evaluation set must give the manifest metrics: the
    ``check`` set and ``check_metrics`` where the entry has them, unless ``full`` (the whole
    evaluation set, regenerated from the entry's data recipe, against ``metrics``).

    Tolerances are per metric (:func:`verify_tolerance`): ``flips`` samples of a fraction's
    denominator, ``relative`` of a scale."""
    entry = manifest_entry(key)
    split = "check" if "check_metrics" in entry and not full else "eval"
    model = pretrained._shipped_model(entry["model"], entry["tag"], {})
    with tempfile.TemporaryDirectory() as tmp:
        measured = evaluate_model(model, entry, data_dir or tmp, split)
    expected = entry["check_metrics" if split == "check" else "metrics"]
    problems = compare(measured, expected, lambda metric, want: verify_tolerance(
        metric, want, expected, flips=flips, relative=relative))
    return {"metrics": measured, "split": split, "problems": problems}


def _train(model: str, data: dict[str, Any], work_dir: str, **train_args: Any) -> str:
    """Generate the training set of data recipe ``data`` and train ``model`` on it."""
    os.makedirs(work_dir, exist_ok=True)
    train_path = data_path(work_dir, data["generator"], "train", data["train"])
    generate(data["generator"], train_path, data["train"])
    run_dir = os.path.join(work_dir, "run")
    training.train(model, str(train_path), run_dir=run_dir, resume=False, verbose=2,
                   **train_args)
    return run_dir


def publish(
    model: str,
    tag: str,
    data_recipe: dict[str, Any],
    work_dir: str,
    *,
    overrides: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    description: str = "",
    tolerance: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Generate data, train ``model`` by its recipe (with ``overrides``) and ship it as
    ``model.tag``, the default entry for ``model``."""
    missing = [k for k in ("generator", "train", "eval") if k not in data_recipe]
    if missing:
        raise ConfigError(f"the data recipe lacks {', '.join(map(repr, missing))}; expected "
                          '{"generator": CASE, "train": {generator arguments}, "eval": {...}}')
    registry.get_spec(model)  # an unknown model is refused before any data is generated
    run_dir = _train(model, data_recipe, work_dir, overrides=overrides,
                     model_config=model_config)
    return export(run_dir, f"{model}.{tag}", data_recipe, description=description,
                  tolerance=tolerance, data_dir=work_dir)


def recreate(key: str, work_dir: str) -> dict[str, Any]:
    """Regenerate the training data, retrain by the entry's recipe, compare with the manifest."""
    entry = manifest_entry(key)
    run_dir = _train(entry["model"], entry["data_recipe"], work_dir, recipe=entry["recipe"])
    model, _ = training._load_run(run_dir)
    measured = evaluate_model(model, entry, work_dir)
    # A retrained model differs by its training's randomness: the entry's tolerance per metric,
    # absolute below 1 and relative above.
    tolerance = entry.get("tolerance", {})
    problems = compare(measured, entry["metrics"], lambda metric, want: tolerance.get(
        metric, 0.05) * max(1.0, abs(want)))
    return {"metrics": measured, "problems": problems, "run_dir": run_dir}

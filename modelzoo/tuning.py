"""Hyperparameter search for any registered model: ``modelzoo tune`` (Optuna).

Each trial trains the model through the one training path (:func:`modelzoo.training.train`)
with sampled recipe overrides and builder keywords, reports the validation loss after every
epoch, and is stopped early when it is clearly worse than the trials before it (median
pruning). Parameters are sampled by TPE (Bergstra et al., NeurIPS 2011; Akiba et al., KDD 2019).

Search space
------------
Declared with the model's registration (``ModelSpec.search_space``) or given as a YAML file
(``--space``), a mapping from recipe keys to distributions; ``model.<keyword>`` is a builder
keyword, any other ``section.key`` a recipe key::

    model.hidden_layers: {type: int, low: 1, high: 3}
    model.units_2: {type: int, low: 57, high: 500, when: "model.hidden_layers >= 2"}
    model.activation: {type: categorical, choices: [tanh, relu, sigmoid]}
    optimizer.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}

``when`` makes a parameter conditional on one sampled before it (declaration order).

Study storage and workers
-------------------------
The study lives in ``<output>/study.db`` (SQLite) unless ``--storage`` names another database
URL (``postgresql://...`` shared by several machines, each running the same command). ``--workers
W`` starts W worker processes on this machine. Every worker keeps a heartbeat for its running
trial; a trial whose worker died (killed, node lost) goes stale after a grace period, is marked
failed and re-queued with the same parameters, and its retry continues from the dead trial's
last checkpoint (the trial folder is the original trial's). The search stops when ``--trials``
trials have finished (completed or pruned); re-running the command resumes an interrupted
search and runs only the trials still missing. Workers on one machine take new trials under a
file lock, so the count is exact; workers on several machines sharing a database may overshoot
by at most one trial per extra machine.

Output (``--output``): ``study.db``, ``trials/trial-NNNN/`` (each a run folder),
``trials.csv``, ``best_recipe.yaml`` (a recipe ``modelzoo train --recipe`` accepts),
``best.json`` and ``importance.png`` (parameter importances by Optuna's default evaluator,
PED-ANOVA, Watanabe et al., IJCAI 2023).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import importlib.util
import json
import math
import operator
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelzoo.errors import ConfigError, ZooError

STUDY_FILE = "study.db"
TRIALS_DIR = "trials"
MAX_FAILURES_IN_A_ROW = 3
SPACE_TYPES = ("int", "float", "categorical")
_CONDITIONS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
               ">": operator.gt, "<": operator.lt}


# ----------------------------------------------------------------------------------------------
# Search spaces


def _parse_condition(key: str, text: str) -> tuple[str, Any, Any]:
    for symbol in sorted(_CONDITIONS, key=len, reverse=True):
        left, sep, right = text.partition(symbol)
        if sep:
            from modelzoo.training import load_yaml

            return left.strip(), _CONDITIONS[symbol], load_yaml(right.strip())
    raise ConfigError(f"search space {key}: condition {text!r} must look like "
                      "'section.key >= value' (operators: >=, <=, ==, !=, >, <)")


def validate_space(space: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``space`` checked: every key ``section.key``, a known type with its bounds or choices,
    conditions naming parameters declared before them. Raises :class:`ConfigError`."""
    if not isinstance(space, dict) or not space:
        raise ConfigError("the search space is empty: declare ModelSpec.search_space or pass "
                          "--space FILE")
    seen: list[str] = []
    for key, spec in space.items():
        if "." not in key:
            raise ConfigError(f"search space key {key!r} must look like section.key "
                              "(model.<builder keyword>, optimizer.learning_rate, ...)")
        if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
            raise ConfigError(f"search space {key}: needs type one of {SPACE_TYPES}, got {spec!r}")
        if spec["type"] == "categorical":
            if not spec.get("choices"):
                raise ConfigError(f"search space {key}: categorical needs non-empty choices")
        else:
            if "low" not in spec or "high" not in spec or not spec["low"] <= spec["high"]:
                raise ConfigError(f"search space {key}: needs low <= high, got {spec!r}")
            if spec.get("log") and spec["low"] <= 0:
                raise ConfigError(f"search space {key}: a log range needs low > 0")
        if "when" in spec:
            name, _, _ = _parse_condition(key, spec["when"])
            if name not in seen:
                raise ConfigError(f"search space {key}: condition on {name!r}, which is not "
                                  f"declared before it (declared: {', '.join(seen) or 'none'})")
        seen.append(key)
    return space


def load_space(model: str, path: str | None = None) -> dict[str, dict[str, Any]]:
    """The search space of ``model``: the YAML file ``path`` if given, else the registration's."""
    if path:
        from modelzoo.training import load_yaml

        with open(path) as fh:
            space = load_yaml(fh)
        return validate_space(space)
    from modelzoo.registry import get_spec

    return validate_space(get_spec(model).search_space)


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One configuration drawn for ``trial`` (an ``optuna.Trial``), as {key: value}; parameters
    whose condition does not hold are left out."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if "when" in spec:
            name, compare, bound = _parse_condition(key, spec["when"])
            if name not in values or not compare(values[name], bound):
                continue
        if spec["type"] == "int":
            values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]),
                                            log=bool(spec.get("log", False)))
        elif spec["type"] == "float":
            values[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]),
                                              log=bool(spec.get("log", False)))
        else:
            values[key] = trial.suggest_categorical(key, list(spec["choices"]))
    return values


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(recipe overrides, builder keywords): ``model.X`` keys are builder keyword ``X``."""
    overrides, model_config = {}, {}
    for key, value in params.items():
        section, _, name = key.partition(".")
        if section == "model" and name != "config":
            model_config[name] = value
        else:
            overrides[key] = value
    return overrides, model_config


def best_recipe(model: str, params: dict[str, Any], fixed: dict[str, Any],
                recipe: str | None = None) -> dict[str, Any]:
    """The model's recipe (or ``recipe``) with ``fixed`` and then ``params`` applied: what
    ``modelzoo train MODEL --recipe best_recipe.yaml`` trains."""
    from modelzoo import training

    cfg = training.load_recipe(recipe or model)
    overrides, model_config = split_params({**fixed, **params})
    cfg = training.apply_overrides(cfg, overrides)
    cfg.setdefault("model", {}).setdefault("config", {})
    cfg["model"]["config"] = {**(cfg["model"]["config"] or {}), **model_config}
    return cfg


# ----------------------------------------------------------------------------------------------
# One worker


def _keras_pruning_callback(trial, monitor: str):
    """A Keras callback reporting ``monitor`` after each epoch to ``trial`` and stopping the
    fit once the pruner says so (the objective then reports the trial as pruned)."""
    import keras

    class _Report(keras.callbacks.Callback):
        pruned_at: int | None = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            value = (logs or {}).get(monitor)
            if value is None:
                raise ConfigError(f"tuning monitors {monitor!r}, which training did not log "
                                  f"(logged: {', '.join(sorted(logs or {}))}); does the data "
                                  "have a validation split?")
            value = float(value)
            trial.report(value if math.isfinite(value) else float("inf"), epoch)
            if trial.should_prune():
                self.pruned_at = epoch
                self.model.stop_training = True

    return _Report()


@contextlib.contextmanager
def _heartbeat(storage, trial_id: int, interval: float) -> Iterator[None]:
    """Record the trial's heartbeat every ``interval`` seconds while its training runs."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def storage_url(args: argparse.Namespace) -> str:
    return args.storage or f"sqlite:///{Path(args.output).resolve() / STUDY_FILE}"


def open_storage(args: argparse.Namespace):
    """The study database of ``args`` (an ``optuna.storages.RDBStorage``), with heartbeats and
    retry of dead workers' trials."""
    import warnings

    import optuna

    # The retry callback is marked experimental; it is what recovers killed workers' trials.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Workers run the heartbeat themselves (around ask/tell), not through Study.optimize.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

    url = storage_url(args)
    # SQLite: writers wait for each other's locks instead of failing at once.
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(
        url, engine_kwargs=engine, heartbeat_interval=max(1, int(args.heartbeat)),
        grace_period=max(2, int(3 * args.heartbeat)),
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=3, inherit_intermediate_values=True),
    )


def open_study(args: argparse.Namespace, sampler_seed: int | None = None, storage=None):
    """The study of ``args`` (created if new) in ``storage`` (default: :func:`open_storage`)."""
    import optuna

    storage = storage or open_storage(args)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=args.prune_after, n_warmup_steps=1)
              if args.prune_after >= 0 else optuna.pruners.NopPruner())
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True,
                                         n_startup_trials=args.startup_trials)
    return optuna.create_study(study_name=args.study_name or f"{args.model}", storage=storage,
                               sampler=sampler, pruner=pruner, direction="minimize",
                               load_if_exists=True)


def _counts(study) -> tuple[int, int, int]:
    """(finished trials, finished + running + waiting, waiting)."""
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    waiting = sum(s == TrialState.WAITING for s in states)
    active = finished + waiting + sum(s == TrialState.RUNNING for s in states)
    return finished, active, waiting


def _fixed(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--set`` assignments (values parsed as YAML) and ``--epochs``."""
    from modelzoo.training import load_yaml

    fixed = {}
    for assignment in args.set:
        key, sep, value = assignment.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {assignment!r} must look like section.key=value")
        fixed[key] = load_yaml(value)
    if args.epochs is not None:
        fixed["train.epochs"] = args.epochs
    return fixed


def _trial_folder(output: str, trial) -> str:
    """A retried trial inherits the user attributes of the trial it retries, and so continues
    in its folder from its last checkpoint."""
    return trial.user_attrs.get("run_dir") or os.path.join(output, TRIALS_DIR,
                                                           f"trial-{trial.number:04d}")


def run_trial(args: argparse.Namespace, trial, space: dict, fixed: dict) -> float:
    """Train one sampled configuration; its final validation loss is the objective."""
    import optuna

    from modelzoo import training

    params = suggest(trial, space)
    overrides, model_config = split_params({**fixed, **params})
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    run_dir = _trial_folder(args.output, trial)
    trial.set_user_attr("run_dir", run_dir)
    report = _keras_pruning_callback(trial, args.monitor)
    result = training.train(args.model, args.data, run_dir=run_dir, recipe=args.recipe,
                            overrides=overrides, model_config=model_config,
                            verbose=0, callbacks=[report])
    trial.set_user_attr("resumed_from_epoch", result.resumed_from)
    history = result.history
    for name in ("val_accuracy", "accuracy"):
        if history.get(name):
            trial.set_user_attr(f"final_{name}", float(history[name][-1]))
    if report.pruned_at is not None:
        raise optuna.TrialPruned(f"pruned after epoch {report.pruned_at + 1}")
    values = history.get(args.monitor)
    if not values:  # resumed after its last epoch: the value is in the run's history
        values = _history_column(run_dir, args.monitor)
    value = float(values[-1])
    return value if math.isfinite(value) else float("inf")


def _history_column(run_dir: str, column: str) -> list[float]:
    with open(os.path.join(run_dir, "history.csv"), newline="") as fh:
        return [float(row[column]) for row in csv.DictReader(fh)]


def work(args: argparse.Namespace, worker_index: int = 0) -> int:
    """One worker: take trials until ``args.trials`` have finished. Returns trials run."""
    import optuna
    import tensorflow as tf

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.model, args.space)
    fixed = _fixed(args)
    os.makedirs(args.output, exist_ok=True)
    lock = Path(args.output) / ".ask.lock"
    with _lock(lock):  # sampler seed: distinct per worker and per resumption, reproducible
        study = open_study(args, None)
        seed = args.seed * 1000 + worker_index + 100 * len(study.get_trials(deepcopy=False))
    storage = open_storage(args)
    study = open_study(args, seed, storage)
    study_id = storage.get_study_id_from_name(study.study_name)
    ran, failures_in_a_row = 0, 0
    while True:
        with _lock(lock):
            optuna.storages.fail_stale_trials(study)  # dead workers' trials -> retried
            finished, active, waiting = _counts(study)
            # A waiting trial (the retry of a dead worker's) is taken even when the count is
            # reached: it is part of that count, and nobody else would ever run it.
            trial = study.ask() if active < args.trials or waiting else None
            if trial is not None:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id,
                                                                           trial.number)
                # Before the lock is released: a worker killed between taking a trial and its
                # first heartbeat would otherwise leave a RUNNING trial that never goes stale,
                # and the resumed search would wait for it forever.
                storage.record_heartbeat(trial_id)
        if trial is None:
            if finished >= args.trials:
                return ran
            time.sleep(args.heartbeat)  # others' trials still running (or going stale)
            continue
        with _heartbeat(storage, trial_id, args.heartbeat):
            try:
                value = run_trial(args, trial, space, fixed)
            except optuna.TrialPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            except (ZooError, tf.errors.ResourceExhaustedError) as err:
                # A sampled configuration can be impossible (a batch larger than the training
                # split, a model too large for the memory): that trial fails and the search
                # goes on, unless trials keep failing, which points at the data or the setup
                # instead. Anything else is a bug, and stops the search with its traceback.
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                failures_in_a_row += 1
                print(f"tune: worker {worker_index}: trial {trial.number} failed: {err}",
                      file=sys.stderr, flush=True)
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    raise
                continue
            else:
                study.tell(trial, value)
        ran, failures_in_a_row = ran + 1, 0
        frozen = study.get_trials(deepcopy=False)[trial.number]
        value = "pruned" if frozen.value is None else f"{args.monitor} {frozen.value:.4g}"
        print(f"tune: worker {worker_index} finished trial {trial.number} ({value}; "
              + ", ".join(f"{k}={_short(v)}" for k, v in frozen.params.items()) + ")",
              file=sys.stderr, flush=True)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------------------------
# Results


def write_results(args: argparse.Namespace) -> dict[str, Any]:
    """trials.csv, best_recipe.yaml, best.json and importance.png from the study."""
    import optuna
    import yaml
    from optuna.trial import TrialState

    study = open_study(args)
    trials = study.get_trials(deepcopy=False)
    output = Path(args.output)
    keys = sorted({k for t in trials for k in t.params})
    attrs = sorted({k for t in trials for k in t.user_attrs})
    with open(output / "trials.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["number", "state", args.monitor, "epochs_reported", "seconds", *keys,
                         *attrs])
        for t in trials:
            seconds = ((t.datetime_complete - t.datetime_start).total_seconds()
                       if t.datetime_complete and t.datetime_start else "")
            writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                             len(t.intermediate_values), seconds,
                             *[t.params.get(k, "") for k in keys],
                             *[t.user_attrs.get(k, "") for k in attrs]])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    summary: dict[str, Any] = {
        "study": study.study_name, "storage": storage_url(args), "model": args.model,
        "monitor": args.monitor,
        "states": {s.name: sum(t.state == s for t in trials) for s in TrialState
                   if any(t.state == s for t in trials)},
    }
    if not complete:
        summary["best"] = None
    else:
        best = study.best_trial
        cfg = best_recipe(args.model, best.params, _fixed(args), args.recipe)
        with open(output / "best_recipe.yaml", "w") as fh:
            fh.write(f"# Best of {len(complete)} completed trials of study {study.study_name!r} "
                     f"({args.monitor} {best.value:.4g}, trial {best.number}).\n"
                     f"# modelzoo train {args.model} --recipe {output / 'best_recipe.yaml'} "
                     "--data FILE\n")
            yaml.safe_dump(json.loads(json.dumps(cfg)), fh, sort_keys=False)
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                           "user_attrs": best.user_attrs}
        importances = {}
        if len(complete) >= 2:
            try:
                importances = optuna.importance.get_param_importances(study)
            except (RuntimeError, ValueError) as err:  # e.g. no parameter varies
                summary["importance_error"] = str(err)
        summary["importance"] = importances
        if importances:
            _plot_importance(importances, output / "importance.png",
                             f"{args.model}: {len(complete)} completed trials")
    with open(output / "best.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    return summary


def _plot_importance(importances: dict[str, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="0.35")
    ax.set_xlabel("importance (PED-ANOVA, normalised)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Command line: modelzoo tune MODEL --data FILE --trials N --workers W


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``modelzoo tune``."""
    parser.add_argument("model", help="registered model, e.g. ecog_mlp")
    parser.add_argument("--data", required=True, help="HDF5 file (its validation split scores)")
    parser.add_argument("--trials", type=int, default=20,
                        help="finished trials the study should have (resuming counts old ones)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes here")
    parser.add_argument("--output", default=None, help="folder (default runs/tune-MODEL)")
    parser.add_argument("--storage", help="database URL shared by several machines "
                        "(default: sqlite in --output)")
    parser.add_argument("--study-name", help="default: the model name")
    parser.add_argument("--space", help="YAML search space (default: the model's declared one)")
    parser.add_argument("--recipe", help="YAML recipe to start from (default: the model's)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="fixed for every trial, e.g. --set model.n_channels=64")
    parser.add_argument("--epochs", type=int, help="epochs per trial (train.epochs)")
    parser.add_argument("--monitor", help="logged metric minimised and reported per epoch "
                        "(default: the task's tune_monitor, else val_loss)")
    parser.add_argument("--prune-after", type=int, default=4,
                        help="median pruning once this many trials finished; -1: never prune")
    parser.add_argument("--startup-trials", type=int, default=8,
                        help="random trials before TPE models the results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heartbeat", type=float, default=10.0,
                        help="seconds; a trial without a heartbeat for 3x this is retried")
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)


def default_monitor(model: str, recipe: str | None = None) -> str:
    """What a search minimises unless told: the task's ``tune_monitor`` (a task whose
    ``val_loss`` includes penalties names its pure validation loss there), else ``val_loss``."""
    from modelzoo.registry import get_task
    from modelzoo.training import load_recipe

    return get_task(load_recipe(recipe or model)["task"]).tune_monitor


def _worker_command(argv: list[str], index: int) -> list[str]:
    return [sys.executable, "-m", "modelzoo.tuning", *argv, "--worker-index", str(index)]


def _argv(args: argparse.Namespace) -> list[str]:
    """``args`` back as command-line options for the worker processes."""
    argv = [args.model, "--data", args.data, "--trials", str(args.trials), "--output",
            args.output, "--monitor", args.monitor, "--prune-after", str(args.prune_after),
            "--startup-trials", str(args.startup_trials), "--seed", str(args.seed),
            "--heartbeat", str(args.heartbeat)]
    for option in ("storage", "study_name", "space", "recipe", "epochs"):
        value = getattr(args, option)
        if value is not None:
            argv += [f"--{option.replace('_', '-')}", str(value)]
    for assignment in args.set:
        argv += ["--set", assignment]
    return argv


def run(args: argparse.Namespace) -> int:
    """``modelzoo tune``: start the workers, wait, write the results."""
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("modelzoo tune needs Optuna, which is not installed here: "
                          "pip install optuna (or pip install 'modelzoo[science]')")
    args.output = args.output or os.path.join("runs", f"tune-{args.model}")
    args.monitor = args.monitor or default_monitor(args.model, args.recipe)
    if args.trials < 1 or args.workers < 1:
        raise ConfigError(f"--trials and --workers must be >= 1, got {args.trials}, "
                          f"{args.workers}")
    load_space(args.model, args.space)  # refuse a bad space before starting anyone
    os.makedirs(args.output, exist_ok=True)
    if args.worker_index is not None:  # one of the processes started below
        work(args, args.worker_index)
        return 0
    open_study(args)  # created once here, before workers race to create it
    failed = []
    if args.workers == 1:
        work(args, 0)
    else:
        procs = [subprocess.Popen(_worker_command(_argv(args), i)) for i in range(args.workers)]
        with open(os.path.join(args.output, "workers.json"), "w") as fh:
            json.dump({"pids": [p.pid for p in procs]}, fh)
        try:
            codes = [p.wait() for p in procs]
        except KeyboardInterrupt:
            for p in procs:
                p.send_signal(signal.SIGINT)
            raise
        failed = [(i, c) for i, c in enumerate(codes) if c != 0]
    summary = write_results(args)
    best = summary.get("best")
    print(f"tune: {args.model}: {summary['states']}; best "
          + (f"trial {best['number']} ({args.monitor} {best['value']:.4g}); "
             f"recipe {os.path.join(args.output, 'best_recipe.yaml')}" if best else "none yet"),
          flush=True)
    if failed:
        print(f"tune: worker(s) {', '.join(f'{i} (exit {c})' for i, c in failed)} stopped "
              "early; run the same command again to resume", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelzoo tune", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

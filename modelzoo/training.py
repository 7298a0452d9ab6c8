"""The one training path, used by the CLI, the notebooks and the tests, on one process or many.

A run is a folder::

    config.json            the resolved recipe: model name and config, data, optimizer, schedule
    model.weights.h5       final weights (rank 0; the model's variables, no optimizer state)
    history.csv            per-epoch metrics, averaged over ranks
    checkpoints/           epoch-NNNN/{model.weights.h5, optimizer.npz, state.json}, latest.json
    tensorboard/           TensorBoard logs

Recipes are YAML files (``modelzoo/<case>/recipes/<model>.yaml``, the MLPerf CosmoFlow
convention) with sections ``task``, ``model``, ``data``, ``optimizer``, ``lr_schedule`` and
``train`` (a case may add its own, e.g. ``loss``); any key the recipe has can be overridden, and
a key it does not have is refused with the valid ones listed. Re-running ``train`` on a folder
with checkpoints resumes from the latest one and continues to the requested final epoch.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import difflib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import keras
import numpy as np
import yaml

from modelzoo import distributed, pretrained, tasks
from modelzoo.errors import ConfigError, PretrainedError
from modelzoo.parallel import machine_failures
from modelzoo.pretrained import write_weights
from modelzoo.registry import build, get_spec, get_task
from modelzoo.tasks import evaluate_into

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"


class _RecipeLoader(yaml.SafeLoader):
    """YAML with 1.2's floats: PyYAML follows YAML 1.1, which reads ``1e-5`` (no dot) as a
    string, and a learning rate written that way would fail deep inside the optimizer."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str | IO[str]) -> Any:
    """A recipe file (an open stream) or a ``--set`` value (a string) parsed as YAML, with
    exponent-only floats such as ``1e-5`` read as numbers."""
    return yaml.load(text, Loader=_RecipeLoader)  # a SafeLoader: no arbitrary objects


# Keys of the training path itself, valid in every recipe with these defaults.
CORE_DEFAULTS: dict[str, dict[str, Any]] = {
    "lr_schedule": {"base_batch_size": None, "scaling": "linear", "warmup_epochs": 0,
                    "decay_epochs": [], "decay_factors": []},
    "train": {"seed": 0, "fp16_allreduce": False, "allreduce_bucket_mb": 4.0,
              "keep_checkpoints": 2, "jit_compile": "auto", "precision": "global"},
}
# Sections whose keys are passed on to code that validates them itself: the optimizer's keyword
# arguments (Keras names the unknown ones) and the builder's config (the registry does).
OPEN_SECTIONS = ("optimizer", "model")


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """A recipe by model name (``lhc_cnn``) or YAML path, with the training path's defaults
    filled in."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        spec = get_spec(name_or_path)
        if spec.recipe is None:
            raise ConfigError(f"model {name_or_path!r} has no training recipe")
        path = Path(spec.recipe)
    try:
        with open(path) as fh:
            recipe = load_yaml(fh)
    except OSError as err:
        raise ConfigError(f"recipe {path}: cannot be read ({err.strerror})") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"recipe {path}: not valid YAML{line} "
                          f"({getattr(err, 'problem', None) or err})") from None
    if not isinstance(recipe, dict):
        raise ConfigError(f"recipe {path}: expected sections (task, model, data, optimizer, "
                          f"train, ...), got {type(recipe).__name__}")
    return with_defaults(recipe)


def with_defaults(recipe: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` with the sections and keys of :data:`CORE_DEFAULTS` it does not set."""
    result = copy.deepcopy(recipe)
    result.setdefault("model", {})
    for section, defaults in CORE_DEFAULTS.items():
        result[section] = {**defaults, **(result.get(section) or {})}
    return result


def apply_overrides(recipe: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Copy of ``recipe`` with dotted keys (``train.epochs``) replaced. A key the recipe does not
    have raises, listing the keys it does have (except in the optimizer's and model's sections,
    whose keys Keras and the builder check)."""
    result = copy.deepcopy(recipe)
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override {dotted!r} must look like section.key")
        if section not in result or not isinstance(result[section], dict):
            sections = ", ".join(k for k, v in result.items() if isinstance(v, dict))
            raise ConfigError(f"override {dotted!r}: the recipe has no section {section!r}; "
                              f"sections: {sections}")
        target = result[section]
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        if section not in OPEN_SECTIONS and leaf not in target:
            close = difflib.get_close_matches(leaf, list(target), n=1)
            hint = f" Did you mean {section}.{close[0]}?" if close else ""
            raise ConfigError(
                f"override {dotted!r}: the recipe has no key {leaf!r} in {section!r}.{hint} "
                f"Valid keys: {', '.join(f'{section}.{k}' for k in target)}"
            )
        target[leaf] = value
    return result


@dataclass
class TrainResult:
    run_dir: str
    epochs_run: int
    final_epoch: int
    history: dict[str, list[float]]
    seconds: float
    examples_per_second: float
    resumed_from: int
    model: keras.Model | None = None  # the trained model (identical on every rank)


def make_optimizer(
    cfg: dict[str, Any], global_batch: int, steps_per_epoch: int
) -> keras.optimizers.Optimizer:
    """Optimizer with the learning rate scaled to the global batch and warmed up linearly."""
    opt_cfg = dict(cfg["optimizer"])
    sched = cfg.get("lr_schedule", {})
    name = opt_cfg.pop("name", "adam")
    base_lr = opt_cfg.pop("learning_rate", 1e-3)
    peak = distributed.scaled_learning_rate(
        base_lr, global_batch, sched.get("base_batch_size") or global_batch,
        sched.get("scaling", "linear"),
    )
    schedule = distributed.WarmupSchedule(
        peak,
        warmup_steps=int(sched.get("warmup_epochs", 0) * steps_per_epoch),
        decay_steps=tuple(int(e * steps_per_epoch) for e in sched.get("decay_epochs", ())),
        decay_factors=tuple(sched.get("decay_factors", ())),
    )
    config = {**opt_cfg, "learning_rate": schedule}
    return keras.optimizers.get({"class_name": name, "config": config})


class _Checkpoint(keras.callbacks.Callback):
    """Atomic per-epoch checkpoints on rank 0: written to a temporary folder, flushed to disk,
    renamed, and only then named in ``latest.json`` (itself replaced atomically). A kill at any
    moment leaves the previous checkpoint intact and referenced."""

    def __init__(self, run_dir: str, keep: int, model_name: str, model_config: dict,
                 world_size: int) -> None:
        super().__init__()
        self.world_size = world_size
        self.dir = os.path.join(run_dir, "checkpoints")
        self.keep = max(1, keep)
        # The uncompiled copy write_weights carries the variables through, built once per run
        # instead of once per epoch.
        self.plain = build(model_name, **model_config)
        self.model_name, self.model_config = model_name, model_config

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        os.makedirs(self.dir, exist_ok=True)
        name = f"epoch-{epoch + 1:04d}"
        final, tmp = os.path.join(self.dir, name), os.path.join(self.dir, f".{name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(os.path.dirname(self.dir))
        kept = (f"the checkpoint of epoch {previous[1]} is unchanged and a resumed run starts "
                "from it" if previous else "no checkpoint was written")
        with machine_failures(final, kept=kept,
                              cleanup=lambda: shutil.rmtree(tmp, ignore_errors=True)):
            os.makedirs(tmp)
            write_weights(self.model, os.path.join(tmp, WEIGHTS_FILE), name=self.model_name,
                          config=self.model_config, plain=self.plain)
            # Keyed by variable path, so that a resumed run restores each slot into its own
            # variable, whatever order the optimizer creates them in.
            np.savez(os.path.join(tmp, "optimizer.npz"),
                     **{_slot(v): np.asarray(v) for v in self.model.optimizer.variables})
            _write_json(os.path.join(tmp, "state.json"),
                        {"epoch": epoch + 1, "world_size": self.world_size,
                         "logs": _floats(logs)})
            _fsync_tree(tmp)  # contents on disk before the rename can make them visible
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(self.dir)
        _write_json(os.path.join(self.dir, "latest.json"), {"checkpoint": name, "epoch": epoch + 1})
        # Keep the newest `keep` epochs up to this one. Judged by epoch number, not by name order:
        # folders of higher epochs are leftovers of an earlier run in this folder (--no-resume, or
        # a kill before latest.json moved on), and name order would delete the checkpoint just
        # written instead of them.
        for entry in os.listdir(self.dir):
            if not entry.startswith("epoch-"):
                continue
            number = int(entry.split("-")[1])
            if not epoch + 1 - self.keep < number <= epoch + 1:
                shutil.rmtree(os.path.join(self.dir, entry), ignore_errors=True)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: str) -> None:
    for name in os.listdir(path):
        with open(os.path.join(path, name), "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(path)


def _truncate_history(path: str, epochs_done: int) -> None:
    """Keep the rows of ``history.csv`` for epochs before ``epochs_done`` (its ``epoch`` column
    counts from 0), so that a resumed run appends each later epoch exactly once."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or "epoch" not in rows[0]:
        return
    col = rows[0].index("epoch")
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[col]) < epochs_done]
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(kept)
    os.replace(tmp, path)


def _floats(logs: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}


def _write_json(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, default=float)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def latest_checkpoint(run_dir: str) -> tuple[str, int] | None:
    """(checkpoint folder, completed epochs) of the newest complete checkpoint, if any."""
    pointer = os.path.join(run_dir, "checkpoints", "latest.json")
    if not os.path.exists(pointer):
        return None
    with open(pointer) as fh:
        latest = json.load(fh)
    return os.path.join(run_dir, "checkpoints", latest["checkpoint"]), int(latest["epoch"])


def _slot(variable) -> str:
    """An optimizer variable's path without the optimizer's own name, which Keras numbers per
    process (``adam``, ``adam_1``, ...): e.g. ``fc_kernel_momentum``, ``iteration``."""
    return variable.path.split("/", 1)[-1]


def _restore_optimizer(optimizer: keras.optimizers.Optimizer, checkpoint: str,
                       steps_per_epoch: int, world_size: int) -> None:
    """The optimizer's state from ``checkpoint``, by variable path. A run resumed on a different
    number of ranks takes different steps per epoch: the step counter is set to the completed
    epochs times the new steps per epoch, so that warm-up and decay stay where the recipe puts
    them in epochs."""
    with np.load(os.path.join(checkpoint, "optimizer.npz")) as saved:
        values = {k: saved[k] for k in saved.files}
    variables = {_slot(v): v for v in optimizer.variables}
    missing, extra = sorted(set(variables) - set(values)), sorted(set(values) - set(variables))
    if missing or extra:
        raise ConfigError(
            f"{checkpoint}: its optimizer state does not fit this optimizer (missing "
            f"{', '.join(missing[:4]) or 'none'}; unexpected {', '.join(extra[:4]) or 'none'}); "
            "was the recipe's optimizer changed since the checkpoint? Use --no-resume or "
            "another --output folder"
        )
    for path, var in variables.items():
        if tuple(var.shape) != values[path].shape:
            raise ConfigError(f"{checkpoint}: optimizer variable {path} has shape "
                              f"{values[path].shape}, the optimizer's {tuple(var.shape)}")
        var.assign(values[path])
    with open(os.path.join(checkpoint, "state.json")) as fh:
        state = json.load(fh)
    if state.get("world_size", world_size) != world_size:
        optimizer.iterations.assign(int(state["epoch"]) * steps_per_epoch)
        print(f"modelzoo: resuming a run of {state['world_size']} ranks on {world_size}: the "
              f"step counter restarts at epoch {state['epoch']} x {steps_per_epoch} steps, so "
              "the learning-rate schedule continues in epochs", flush=True)


class _Throughput(keras.callbacks.Callback):
    def __init__(self, examples_per_epoch: int) -> None:
        super().__init__()
        self.examples_per_epoch = examples_per_epoch
        self.epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)


PRECISIONS = ("global", "float32", "mixed_bfloat16", "mixed_float16", "auto")


def bf16_hardware() -> bool:
    """Whether this machine computes bfloat16 natively: a GPU of compute capability 8.0 or
    later, or a CPU with AVX512-BF16 or AMX (where ``mixed_bfloat16`` trained the zoo's
    convolutional models 1.5-1.8x faster; on other CPUs it is emulated and slower)."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        if tf.config.experimental.get_device_details(gpu).get("compute_capability", (0,)) >= (8,):
            return True
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_policy(cfg: dict[str, Any]) -> str:
    """The Keras dtype policy recipe ``cfg`` trains under (``train.precision``): ``global``
    keeps Keras's global policy (float32 unless the user set another), ``auto`` picks
    ``mixed_bfloat16`` on bfloat16 hardware (:func:`bf16_hardware`) and float32 elsewhere."""
    name = cfg["train"].get("precision", "global")
    if name not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "global":
        return keras.config.dtype_policy().name
    if name == "auto":
        return "mixed_bfloat16" if bf16_hardware() else "float32"
    return name


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras's global dtype policy set to ``name`` while models are built inside (a layer keeps
    the policy it was built with)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def resolve(
    model: str,
    data: str,
    *,
    recipe: dict[str, Any] | str | None = None,
    overrides: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """The resolved recipe of training ``model`` on ``data`` (the model's own recipe, or
    ``recipe``, with ``overrides`` and the builder keywords the data file decides) and its task;
    what :func:`train` runs, and what ``benchmarks`` compares it with."""
    cfg = load_recipe(model) if recipe is None else (
        load_recipe(recipe) if isinstance(recipe, str) else with_defaults(recipe))
    if recipe is not None:
        _check_complete(cfg, model, recipe if isinstance(recipe, str) else "the recipe")
    cfg = apply_overrides(cfg, overrides or {})
    cfg["model"]["name"] = model
    cfg["model"].setdefault("config", {})
    cfg["model"]["config"].update(model_config or {})
    task = get_task(cfg["task"])
    cfg["model"]["config"] = {**task.model_config(data, cfg.get("data", {})),
                              **cfg["model"]["config"]}
    return cfg, task


def _class_count_key(model: str) -> str | None:
    """The builder keyword that sets a classifier's class count, if it has one."""
    defaults = get_spec(model).defaults
    return next((k for k in ("num_classes", "n_classes") if k in defaults), None)


def _check_complete(cfg: dict[str, Any], model: str, source: str) -> None:
    """Refuse a recipe that lacks a key the model's own recipe sets in its ``task``, ``data``
    and ``train`` sections (the task and the training path read them all)."""
    spec_recipe = get_spec(model).recipe
    own = load_recipe(model) if spec_recipe else {"task": None, "train": {"batch_size": 0,
                                                                         "epochs": 0}}
    missing = [] if cfg.get("task") else ["task"]
    for section in ("data", "train"):
        have = cfg.get(section) or {}
        missing += [f"{section}.{key}" for key in (own.get(section) or {}) if key not in have]
    if missing:
        start = f"; start from the model's own recipe, {spec_recipe}" if spec_recipe else ""
        raise ConfigError(f"{source}: lacks {', '.join(missing)}{start}")


def compile_model(net: keras.Model, cfg: dict[str, Any], task: Any, steps_per_epoch: int,
                  group: distributed.ProcessGroup) -> None:
    """Compile ``net`` by ``task`` with resolved recipe ``cfg``'s optimizer (learning rate
    scaled to the global batch and warmed up, gradients averaged over ``group``)."""
    train_cfg = cfg["train"]
    optimizer = make_optimizer(cfg, int(train_cfg["batch_size"]) * group.size, steps_per_epoch)
    optimizer = distributed.distributed_optimizer(
        optimizer, group, fp16_compression=bool(train_cfg.get("fp16_allreduce", False)),
        bucket_mb=float(train_cfg.get("allreduce_bucket_mb", 4.0)),
    )
    task.compile(net, optimizer, cfg)
    # XLA: "auto" leaves Keras's choice (off on a machine without an accelerator); true or false
    # decides. Measured per model by `python -m benchmarks` (benchmarks/README.md).
    jit_compile = train_cfg.get("jit_compile", "auto")
    if jit_compile != "auto":
        net.jit_compile = bool(jit_compile)


def train(
    model: str,
    data: str,
    *,
    run_dir: str | None = None,
    recipe: dict[str, Any] | str | None = None,
    overrides: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    resume: bool = True,
    verbose: int = 1,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Train registered ``model`` on HDF5 file ``data`` following its recipe.

    Run under ``horovodrun`` it trains data-parallel: each rank reads its shard, gradients are
    averaged every step, the learning rate follows the global batch, and only rank 0 writes.

    Args:
        model: registry name.
        data: HDF5 file in the layout the model's reader expects.
        run_dir: output folder (default ``runs/<model>``); an existing one with checkpoints is
            resumed when ``resume`` is true.
        recipe: a recipe dict or YAML path; default is the model's own recipe.
        overrides: dotted recipe keys to replace, e.g. ``{"train.epochs": 3}``.
        model_config: builder keyword overrides (merged over the recipe's ``model`` section).
        resume: continue from the latest checkpoint in ``run_dir`` if there is one.
        verbose: Keras progress-bar verbosity on rank 0 (other ranks are silent).
        callbacks: extra Keras callbacks, run on every rank after the zoo's own (so they see
            metrics already averaged over ranks).
    """
    group = distributed.init()
    cfg, task = resolve(model, data, recipe=recipe, overrides=overrides,
                        model_config=model_config)
    policy = precision_policy(cfg)
    if group.size > 1 and policy == "mixed_float16":
        # Keras wraps the optimizer in a LossScaleOptimizer whose apply step, where the gradient
        # allreduce happens, runs only where that rank's gradients are finite: ranks would
        # disagree on whether to step and the job would hang in the allreduce.
        raise ConfigError(
            "the mixed_float16 policy cannot train under Horovod (per-rank loss scaling can "
            "skip a step on some ranks only); use mixed_bfloat16, which needs no loss scaling, "
            "or float32"
        )
    train_cfg = cfg["train"]
    run_dir = run_dir or os.path.join("runs", model)
    seed = int(train_cfg.get("seed", 0))
    keras.utils.set_random_seed(seed)
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        with open(os.path.join(run_dir, CONFIG_FILE)) as fh:
            previous = json.load(fh)
        as_saved = json.loads(json.dumps(cfg["model"]))  # tuples become lists in JSON
        if previous["model"] != as_saved or previous["task"] != cfg["task"]:
            raise ConfigError(
                f"{run_dir} holds a checkpoint of a different model configuration "
                f"({previous['model']}); use another --output folder or --no-resume"
            )
    # Rank 0 restores and broadcasts, so its view of the run folder decides where every rank
    # starts (a node-local folder, or one rank looking before another, must not split the job).
    first_epoch = group.broadcast_int(checkpoint[1] if checkpoint else 0, name="first_epoch")

    batch_size = int(train_cfg["batch_size"])
    datasets = task.datasets(data, cfg.get("data", {}), batch_size, group, seed, first_epoch)
    restoring = first_epoch > 0 and group.is_root
    init_weights = cfg["model"].get("init_weights")
    with dtype_policy(policy):
        if init_weights and first_epoch == 0:
            # Fine-tuning: start from trained weights (a shipped tag, a file, a model or run
            # folder) instead of the builder's initialisation; rank 0's copy is broadcast below.
            net = pretrained._with_weights(model, init_weights, cfg["model"]["config"])
        else:
            net = build(model, **cfg["model"]["config"])
    # Before the run folder exists: a refused file leaves nothing behind.
    tasks.check_labels_fit(task, net, data, cfg.get("data", {}), _class_count_key(model))
    if restoring:  # before compiling: the weights file has no optimizer for Keras to look for
        net.load_weights(os.path.join(checkpoint[0], WEIGHTS_FILE))
    compile_model(net, cfg, task, datasets.steps_per_epoch, group)
    if not net.optimizer.built:
        net.optimizer.build(net.trainable_variables)
    if restoring:
        _restore_optimizer(net.optimizer, checkpoint[0], datasets.steps_per_epoch, group.size)
    distributed.sync_initial_state(net, group)

    epochs = int(train_cfg["epochs"])
    throughput = _Throughput(datasets.steps_per_epoch * batch_size * group.size)
    all_callbacks: list[keras.callbacks.Callback] = [
        distributed.AverageState(group), distributed.AverageMetrics(group), throughput]
    if group.is_root:
        os.makedirs(run_dir, exist_ok=True)
        _write_json(os.path.join(run_dir, CONFIG_FILE), {**cfg, "data_file": os.path.abspath(data),
                                                         "world_size": group.size})
        history_csv = os.path.join(run_dir, "history.csv")
        if first_epoch > 0:
            _truncate_history(history_csv, first_epoch)
        # The history row goes first: a kill between it and the checkpoint re-runs that epoch,
        # and the truncation above then drops the row instead of leaving a gap.
        all_callbacks += [
            keras.callbacks.CSVLogger(history_csv, append=first_epoch > 0),
            _Checkpoint(run_dir, int(train_cfg.get("keep_checkpoints", 2)), model,
                        cfg["model"]["config"], group.size),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")),
        ]
    all_callbacks += task.callbacks(net, data, cfg.get("data", {}), group, seed)
    all_callbacks += list(callbacks or [])
    start = time.perf_counter()
    history = {}
    if first_epoch < epochs:
        fit = net.fit(
            datasets.train,
            steps_per_epoch=datasets.steps_per_epoch,
            validation_data=datasets.validation,
            validation_steps=datasets.validation_steps,
            epochs=epochs,
            initial_epoch=first_epoch,
            shuffle=False,  # the readers shuffle (reproducibly, per epoch); Keras cannot
            callbacks=all_callbacks,
            verbose=verbose if group.is_root else 0,
        )
        history = fit.history
    seconds = time.perf_counter() - start
    stats = task.finalize(net, data, cfg.get("data", {}), group, seed)
    if group.is_root:
        if stats:
            _write_json(os.path.join(run_dir, "finalize.json"), stats)
        write_weights(net, os.path.join(run_dir, WEIGHTS_FILE), name=model,
                      config=cfg["model"]["config"])
    group.barrier()
    epochs_run = epochs - min(first_epoch, epochs)
    # Steady-state rate: the first epoch of a run includes graph tracing.
    timed = throughput.epoch_seconds[1:] or throughput.epoch_seconds
    rate = throughput.examples_per_epoch * len(timed) / sum(timed) if timed else 0.0
    return TrainResult(run_dir, epochs_run, epochs, history, seconds, rate, first_epoch, net)


def _model_config(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The builder keywords among dotted recipe ``overrides`` (``model.config.KEY``): they
    must reach the model before it is built, not the recipe after."""
    prefix = "model.config."
    return {k[len(prefix):]: v for k, v in (overrides or {}).items() if k.startswith(prefix)}


def _load_run(run_dir: str, model_config: dict[str, Any] | None = None
              ) -> tuple[keras.Model, dict[str, Any]]:
    """The trained model of a run folder (its final weights, else its latest checkpoint: what
    ``modelzoo.get(name, weights=run_dir)`` loads), built with the run's builder keywords
    updated by ``model_config``, and the run's resolved recipe."""
    config_path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise PretrainedError(f"{run_dir}: no {CONFIG_FILE}; is this a modelzoo run folder?")
    with open(config_path) as fh:
        cfg = json.load(fh)
    return pretrained._from_folder(run_dir, model_config), cfg


def _model_and_recipe(name: str, weights: str | os.PathLike,
                      model_config: dict[str, Any] | None = None
                      ) -> tuple[keras.Model, dict[str, Any]]:
    """Model ``name`` with ``weights`` (built with ``model_config`` over the builder keywords the
    weights came with) and the recipe to evaluate it with: a run folder's own recipe, a shipped
    entry's training recipe, else the model's default recipe (a weights file or a model
    folder)."""
    source = os.fspath(weights)
    if os.path.isfile(os.path.join(source, CONFIG_FILE)):
        with open(os.path.join(source, CONFIG_FILE)) as fh:
            if "task" in json.load(fh):  # a run folder
                net, cfg = _load_run(source, model_config)
                if cfg["model"]["name"] != name:
                    raise PretrainedError(f"{source} is a run of {cfg['model']['name']!r}, "
                                          f"not {name!r}")
                return net, cfg
    net = pretrained._with_weights(name, source, model_config or {})
    if os.path.exists(source):
        return net, load_recipe(name)
    _, entry = pretrained.resolve(name, source)
    return net, with_defaults(entry["recipe"])


def predict(name: str, weights: str | os.PathLike, data: str, output: str, *,
            overrides: dict[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    """Per-row outputs of model ``name`` with ``weights`` on every row of ``data``, written to the
    HDF5 file ``output`` in ``data``'s row order (rank 0 writes); returns dataset shapes."""
    import h5py

    group = distributed.init()
    net, cfg = _model_and_recipe(name, weights, _model_config(overrides))
    cfg = apply_overrides(cfg, overrides or {})
    task = get_task(cfg["task"])
    tasks.check_labels_fit(task, net, data, cfg.get("data", {}))
    outputs = task.predict(net, data, cfg.get("data", {}), group)
    if group.is_root:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        tmp = f"{output}.tmp{os.getpid()}"
        with machine_failures(output, cleanup=lambda: Path(tmp).unlink(missing_ok=True)):
            with h5py.File(tmp, "w") as fh:
                for key, array in outputs.items():
                    fh.create_dataset(key, data=array)
                fh.attrs.update(model=name, weights=os.fspath(weights),
                                data_file=os.path.abspath(data), modelzoo_task=cfg["task"])
            os.replace(tmp, output)
    group.barrier()
    return {k: tuple(v.shape) for k, v in outputs.items()}


def evaluate_model(
    name: str, weights: str | os.PathLike, data: str, *, split: str = "all",
    output_dir: str | None = None, overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The case's evaluation of model ``name`` with ``weights`` (``"default"``, a tag, a weights
    file, a model or run folder) on ``data``; figures and ``metrics.json`` in ``output_dir``."""
    group = distributed.init()
    net, cfg = _model_and_recipe(name, weights, _model_config(overrides))
    cfg = apply_overrides(cfg, overrides or {})
    task = get_task(cfg["task"])
    tasks.check_labels_fit(task, net, data, cfg.get("data", {}))
    return evaluate_into(task, net, data, cfg.get("data", {}), split, output_dir, group)


def evaluate(
    run_dir: str, data: str, *, split: str = "all", output_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Evaluate a run's model on ``data`` (``split``: all rows, or the recipe's train/val rows);
    writes ``metrics.json`` and the task's figures into ``output_dir`` (default: the run).
    ``overrides`` change recipe keys for this evaluation only (``{"data.eval_samples": 256}``)."""
    group = distributed.init()
    net, cfg = _load_run(run_dir, _model_config(overrides))
    cfg = apply_overrides(cfg, overrides or {})
    task = get_task(cfg["task"])
    tasks.check_labels_fit(task, net, data, cfg.get("data", {}))
    return evaluate_into(task, net, data, cfg.get("data", {}), split, output_dir or run_dir, group)

"""Tasks: the glue between a reader and a model for training and evaluation.

A builder never reads files and a reader never knows a model; a :class:`Task` connects them for
one kind of problem: it opens the data file with the right reader, turns it into per-rank tf.data
pipelines, compiles the model with the loss, and evaluates a trained model on a file. A model's
recipe (``<case>/recipes/<model>.yaml``) names its task by the name its case gives it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError, DataError
from modelzoo.hdf5 import H5Source, shard_range, stream


@dataclass
class Datasets:
    """Per-rank training and validation pipelines, and how many steps each rank takes."""

    train: Any
    steps_per_epoch: int
    validation: Any = None
    num_train: int = 0
    num_validation: int = 0
    # Batches in this rank's validation shard; Keras warns when it has to find out by running dry.
    validation_steps: int | None = None


@dataclass
class ClassLabels:
    """One dataset's class labels, as the core checks them against a classifier before a run
    writes anything: ``values`` (N,) whole numbers in file row order, and the file's own
    ``class_names`` where it has them."""

    path: str
    dataset: str
    values: np.ndarray
    class_names: tuple[str, ...] | None = None


def check_class_labels(labels: list[ClassLabels], num_classes: int, hint: str = "") -> None:
    """Refuse labels outside ``0..num_classes - 1`` (the model's softmax) or outside the file's
    ``class_names``, naming the file, the dataset, the first bad row and the count expected:
    such a label would reach TensorFlow as an ``InvalidArgumentError`` on a CPU and as a NaN
    loss on a GPU. ``hint``: how to fix it (e.g. the setting that changes the class count)."""
    for item in labels:
        values = np.asarray(item.values).reshape(-1)
        limits = [(num_classes, f"expected a class of the model, 0..{num_classes - 1} "
                                f"({num_classes} classes){hint}")]
        if item.class_names is not None:
            names = list(item.class_names)
            limits.append((len(names), f"expected 0..{len(names) - 1}, the file's attribute "
                                       f"'class_names' names {len(names)} classes {names}"))
        for count, expected in limits:
            bad = np.flatnonzero((values < 0) | (values >= count))
            if len(bad):
                row = int(bad[0])
                raise DataError(f"{item.path}: dataset '{item.dataset}' row {row} holds label "
                                f"{values[row]}; {expected}")


class Task:
    """How one kind of problem trains, evaluates, predicts and explains: the contract between the
    core (training, evaluation, ``modelzoo predict``/``explain``, tuning, the conformance suite)
    and a case. A case subclasses it, names it in its ``Case.tasks``, and recipes select it by
    that name (their ``task`` key). ``open``, ``inputs``, ``datasets``, ``compile``,
    ``outputs``, ``evaluate`` and ``predict`` are required; the other hooks have defaults.

    The core makes one instance per run (:func:`modelzoo.registry.get_task`), so what
    ``datasets`` learns of the file may be kept on ``self`` for ``compile`` of the same run.

    Data flows: ``open`` (the case's reader, which validates) -> ``inputs`` (rows as the model
    takes them: the arrays of the file in its published layout after only the documented layout
    change, e.g. NCHW -> NHWC; every value transform lives in the model) -> the model ->
    ``outputs`` (per-row outputs of a row range, gathered on every rank in row order), which
    ``evaluate`` and ``predict`` build on.
    """

    #: The name recipes give the task (their ``task`` key).
    name: str = ""
    #: The epoch metric ``modelzoo tune`` minimises (a task whose loss carries a regulariser
    #: names the metric without it).
    tune_monitor: str = "val_loss"
    #: Datasets that ``predict`` writes as the model computes them, each with the model output
    #: it is: ``None`` for the model's one output, a key of a dict output, an index into a list
    #: output. ``modelzoo.get(name, weights=...).predict(inputs)`` equals them row for row.
    model_outputs: dict[str, str | int | None] = {}

    def open(self, path: str, data_cfg: dict) -> Any:
        """The case's reader on ``path`` (validated; one clear error line when it is not in
        the layout)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement open")

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """``rows`` of ``path`` (clipped to the file) as the model takes them, for analysis and
        for ``model.predict``: ``inputs``, and ``labels`` (classes) or ``targets`` (what a
        reconstruction aims at) where the task has them."""
        raise NotImplementedError(f"{type(self).__name__} does not implement inputs")

    def datasets(
        self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup, seed: int,
        first_epoch: int,
    ) -> Datasets:
        """This rank's training and validation pipelines over ``path``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement datasets")

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        """Compile ``model`` with ``optimizer`` and the task's loss and metrics."""
        raise NotImplementedError(f"{type(self).__name__} does not implement compile")

    def model_config(self, path: str, data_cfg: dict) -> dict[str, Any]:
        """Builder keywords the data file decides (e.g. its image shape), applied under the
        recipe's and the user's own ``model.config`` (none by default)."""
        return {}

    def callbacks(self, model: keras.Model, path: str, data_cfg: dict, group: ProcessGroup,
                  seed: int) -> list[keras.callbacks.Callback]:
        """Extra callbacks for every rank's training loop (none by default)."""
        return []

    def finalize(self, model: keras.Model, path: str, data_cfg: dict, group: ProcessGroup,
                 seed: int) -> dict[str, float]:
        """Runs on every rank after training, before the final weights are written; returns
        statistics for the run folder's ``finalize.json`` (nothing by default)."""
        return {}

    def outputs(self, model: keras.Model, source: Any, data_cfg: dict, rows: tuple[int, int],
                group: ProcessGroup) -> dict[str, np.ndarray]:
        """Per-row outputs of ``rows`` of ``source`` (what :meth:`open` returned): model
        outputs and the truth the file holds, computed shard-wise (:func:`gather_shards`) and
        gathered on every rank in row order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement outputs")

    def evaluate(
        self, model: keras.Model, path: str, data_cfg: dict, split: str, output_dir: str | None,
        group: ProcessGroup,
    ) -> dict[str, Any]:
        """The case's comparison on ``split`` of ``path``: returns the metrics, and draws its
        figures into ``output_dir`` when given (rank 0 only; the core writes ``metrics.json``
        and moves the figures into place, :func:`evaluate_into`)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement evaluate")

    def class_labels(self, path: str, data_cfg: dict) -> list[ClassLabels]:
        """The class labels of ``path`` that a classifier's softmax output must cover; the
        core checks them (:func:`check_labels_fit`) before training, evaluating or predicting
        writes anything. Empty for a task that does not classify (the default)."""
        return []

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        """Per-row outputs for every row of ``path``, in the file's row order, on every rank
        (``modelzoo predict`` writes them to HDF5); includes :attr:`model_outputs`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict")


def evaluate_into(task: Task, model: keras.Model, path: str, data_cfg: dict, split: str,
                  output_dir: str | None, group: ProcessGroup) -> dict[str, Any]:
    """``task.evaluate`` with its results written in one place: rank 0's figures are drawn into a
    fresh folder next to ``output_dir``, ``metrics.json`` is written there too, and each file is
    flushed and renamed into ``output_dir`` (a reader never sees a half-written file; a failed
    evaluation leaves the previous results)."""
    staging = None
    if output_dir and group.is_root:
        os.makedirs(output_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".evaluation-", dir=output_dir)
    try:
        metrics = task.evaluate(model, path, data_cfg, split, staging, group)
        if staging is not None:
            with open(os.path.join(staging, "metrics.json"), "w") as fh:
                json.dump(metrics, fh, indent=2, default=float)
            for name in sorted(os.listdir(staging)):
                made, final = os.path.join(staging, name), os.path.join(output_dir, name)
                if os.path.isdir(made):
                    shutil.rmtree(final, ignore_errors=True)
                else:
                    with open(made, "rb") as fh:
                        os.fsync(fh.fileno())
                os.replace(made, final)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return metrics


def check_labels_fit(task: Task, model: keras.Model, path: str, data_cfg: dict,
                     class_count_key: str | None = None) -> None:
    """The core's label check for any task (see :meth:`Task.class_labels`): the model's last
    output axis is its class count. ``class_count_key``: the builder keyword that sets it, named
    in the hint when a new model is about to be trained."""
    labels = task.class_labels(path, data_cfg)
    if labels:
        count = int(model.output_shape[-1])
        hint = (f"; to train a model of more classes add --model-config {class_count_key}=K"
                if class_count_key else "")
        check_class_labels(labels, count, hint)


def gather_shards(
    rows: tuple[int, int], group: ProcessGroup,
    compute: Callable[[tuple[int, int]], dict[str, np.ndarray]],
    empty: dict[str, tuple[tuple[int, ...], str]],
) -> dict[str, np.ndarray]:
    """The shared sharded evaluation: each rank runs ``compute`` on its contiguous shard of
    ``rows`` (model predictions, truth read from the file, ...), and the per-row results are
    gathered on every rank in row order.

    ``empty``: name -> (trailing shape, dtype) of each result, for a rank with no rows (more
    ranks than rows), which still joins the collectives.
    """
    lo, hi = shard_rows(rows, group)
    if hi > lo:
        result = compute((lo, hi))
    else:
        result = {k: np.zeros((0, *shape), dtype) for k, (shape, dtype) in empty.items()}
    return {k: group.allgather(np.asarray(result[k]), name=f"shard_{k}") for k in empty}


def split_rows(num_rows: int, val_fraction: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(train rows, validation rows): the last ``val_fraction`` of the file validates.

    Files written by the zoo's generators are shuffled, so a tail split is a random split;
    for time-ordered user files, pass a separate validation file instead.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    num_val = int(round(num_rows * val_fraction))
    return (0, num_rows - num_val), (num_rows - num_val, num_rows)


def select_rows(num_rows: int, val_fraction: float, split: str) -> tuple[int, int]:
    """Rows of ``split``: ``"all"``, or the ``"train"``/``"val"`` part of :func:`split_rows`."""
    if split == "all":
        return 0, num_rows
    train_rows, val_rows = split_rows(num_rows, val_fraction)
    if split not in ("train", "val"):
        raise ConfigError(f"split must be all, train or val for this task, got {split!r}")
    return {"train": train_rows, "val": val_rows}[split]


def shard_rows(rows: tuple[int, int], group: ProcessGroup) -> tuple[int, int]:
    """This rank's contiguous part of the row range ``rows``."""
    lo, hi = shard_range(rows[1] - rows[0], group.rank, group.size)
    return rows[0] + lo, rows[0] + hi


def steps_per_epoch(num_train: int, batch_size: int, group: ProcessGroup, path: str,
                    noun: str) -> int:
    """Steps every rank takes per epoch: the same on all ranks, or the gradient allreduce of
    the ranks with more data would wait forever for the others."""
    steps = (num_train // group.size) // batch_size
    if steps < 1:
        raise ConfigError(
            f"{path}: {num_train} training {noun} cannot fill one batch of {batch_size} on "
            f"each of {group.size} ranks; lower the batch size or use more data"
        )
    return steps


def split_streams(
    source: H5Source, to_example, train_rows: tuple[int, int], val_rows: tuple[int, int], *,
    batch_size: int, group: ProcessGroup, seed: int, first_epoch: int, shuffle: bool, path: str,
    noun: str, block_rows: int = 512,
) -> Datasets:
    """This rank's training stream (repeating, equal steps on every rank, reshuffled per epoch
    from ``seed`` and the epoch) and validation stream over its shards of the two row ranges.

    ``shuffle=False`` reads every shard in file order (reproducible comparisons, e.g. N ranks at
    batch B against one process at batch N*B on the same rows). ``block_rows``: rows per read
    (fewer for large rows: a published ExtremeWeather image is 57 MB)."""
    num_train = train_rows[1] - train_rows[0]
    steps = steps_per_epoch(num_train, batch_size, group, path, noun)
    train = stream(
        source, to_example, rows=shard_rows(train_rows, group), batch_size=batch_size,
        shuffle=shuffle, seed=seed + group.rank, repeat=True, drop_remainder=True,
        first_epoch=first_epoch, steps_per_epoch=steps, block_rows=block_rows,
    )
    validation, validation_steps = None, None
    val_shard = shard_rows(val_rows, group)
    if val_shard[1] > val_shard[0]:
        validation = stream(source, to_example, rows=val_shard, batch_size=batch_size,
                            block_rows=block_rows)
        validation_steps = -(-(val_shard[1] - val_shard[0]) // batch_size)
    return Datasets(train, steps, validation, num_train, val_rows[1] - val_rows[0],
                    validation_steps)


def augmentations(data_cfg: dict, known: Sequence[str],
                  default: Sequence[str] = ()) -> list[str]:
    """The named symmetries of ``data.augment``, the one form every case takes: a list of names
    from ``known`` (``[]`` for none; ``--set data.augment=a,b`` gives one comma-separated
    string, and ``none`` is the empty list); ``default`` when the recipe has no such key."""
    names = data_cfg.get("augment", list(default))
    if isinstance(names, str):
        names = [] if names in ("", "none") else names.split(",")
    names = [str(n).strip() for n in names or []]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"data.augment: unknown symmetries {unknown}; known: {list(known)}")
    return names


def square_dihedral(images, seed):
    """Each square image of the batch ``(B, S, S, C)`` under one of the 8 symmetries of the
    square (the dihedral group D4), drawn uniformly and independently per image from the
    stateless ``seed`` (shape [2] integers): the same seed gives the same batch. For fields
    without a preferred orientation or handedness (galaxy stamps, convergence maps)."""
    import tensorflow as tf

    bits = tf.random.stateless_uniform(
        tf.stack([tf.shape(images)[0], 3]), seed=seed, maxval=2, dtype=tf.int32)
    chosen = tf.reshape(tf.cast(bits, tf.bool), [-1, 3, 1, 1, 1])
    # A reflection about each axis and about the diagonal generate all 8 elements.
    out = tf.where(chosen[:, 0], tf.reverse(images, [1]), images)
    out = tf.where(chosen[:, 1], tf.reverse(out, [2]), out)
    return tf.where(chosen[:, 2], tf.transpose(out, [0, 2, 1, 3]), out)


def augment_training(data: Datasets, transform: Callable[[Any, Any], Any], *, seed: int,
                     rank: int, first_epoch: int) -> Datasets:
    """``data`` with the images of its training stream (an endless dataset of ``(images, ...)``
    tuples) replaced by ``transform(images, step_seed)``, a random symmetry of the data (or a
    random corruption of the input) drawn statelessly; validation is left as it is. Every
    random change of training batches goes through here.

    Batch ``n`` of the run gets the seed ``(seed + 7919 rank, n)``, ``n`` counted from step 0 of
    epoch 0: a resumed run sees the same augmented batches as one that went straight through,
    and ranks draw differently (their shards differ anyway; this keeps it so for identical
    samples).
    """
    import tensorflow as tf

    rank_seed = seed + 7919 * rank

    def apply(step, batch):
        return (transform(batch[0], tf.stack([tf.constant(rank_seed, tf.int64), step])),
                *batch[1:])

    data.train = (data.train.enumerate(start=first_epoch * data.steps_per_epoch)
                  .map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                  .prefetch(tf.data.AUTOTUNE))
    return data

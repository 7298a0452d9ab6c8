"""Tasks: the glue between a reader and a model for training and evaluation.

A builder never reads files and a reader never knows a model; a :class:`Task` connects them for
one kind of problem: it opens the data file with the right reader, turns it into per-rank tf.data
pipelines, compiles the model with the loss, and evaluates a trained model on a file. A model's
recipe (``<case>/recipes/<model>.yaml``) names its task by the name its case gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError
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


class Task:
    """How one kind of problem trains and evaluates. A case's task subclasses this and is named
    in its ``Case.tasks``; recipes refer to it by that name. ``datasets``, ``compile`` and
    ``evaluate`` are required; the other hooks have defaults.

    ``tune_monitor`` is the epoch metric ``modelzoo tune`` minimises (a task whose loss carries
    a regulariser names the metric without it)."""

    tune_monitor: str = "val_loss"

    def datasets(
        self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup, seed: int,
        first_epoch: int,
    ) -> Datasets:
        """This rank's training and validation pipelines over ``path``."""
        raise NotImplementedError

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        """Compile ``model`` with ``optimizer`` and the task's loss and metrics."""
        raise NotImplementedError

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

    def evaluate(
        self, model: keras.Model, path: str, data_cfg: dict, split: str, output_dir: str | None,
        group: ProcessGroup,
    ) -> dict[str, Any]:
        """The case's comparison on ``split`` of ``path``: metrics, and figures in
        ``output_dir`` (rank 0)."""
        raise NotImplementedError

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """``rows`` of ``path`` as the model sees them, for analysis (``modelzoo explain``):
        ``inputs``, and ``labels`` (classes) or ``targets`` (what a reconstruction aims at)
        where the task has them."""
        raise ConfigError(f"task {type(self).__name__} does not provide inputs for analysis")

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        """Per-row outputs for every row of ``path``, in the file's row order, on every rank
        (``modelzoo predict`` writes them to HDF5)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict")


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


def augment_training(data: Datasets, transform: Callable[[Any, Any], Any], *, seed: int,
                     rank: int, first_epoch: int) -> Datasets:
    """``data`` with the images of its training stream (an endless dataset of ``(images, ...)``
    tuples) replaced by ``transform(images, step_seed)``, a random symmetry of the data drawn
    statelessly; validation is left as it is.

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

"""Tasks: the glue between a reader and a model for training and evaluation.

A builder never reads files and a reader never knows a model; a :class:`Task` connects them for
one kind of problem: it opens the data file with the right reader, turns it into per-rank tf.data
pipelines, compiles the model with the loss, and evaluates a trained model on a file. A model's
recipe (``modelzoo/configs/<name>.yaml``) names its task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import keras

from modelzoo.data.hdf5 import H5Source, shard_range, stream
from modelzoo.distributed import ProcessGroup


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


class Task(Protocol):
    name: str

    def datasets(
        self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup, seed: int,
        first_epoch: int,
    ) -> Datasets: ...

    def compile(
        self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict
    ) -> None: ...

    # Optional: ``finalize(model, path, data_cfg, group, seed) -> dict[str, float]`` runs on
    # every rank once training is over, before the final weights are written (the galaxy task
    # fits its prior there); its statistics go to the run folder's finalize.json.
    # Optional: ``callbacks(model, path, data_cfg, group, seed) -> list[keras.callbacks.Callback]``
    # are added to every rank's training loop (the galaxy task refits its prior in late epochs).

    def evaluate(
        self, model: keras.Model, path: str, data_cfg: dict, split: str, output_dir: str | None,
        group: ProcessGroup,
    ) -> dict[str, float]: ...


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` available to recipes under ``task.name``."""
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def split_rows(num_rows: int, val_fraction: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """(train rows, validation rows): the last ``val_fraction`` of the file validates.

    Files written by the zoo's generators are shuffled, so a tail split is a random split;
    for time-ordered user files, pass a separate validation file instead.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    num_val = int(round(num_rows * val_fraction))
    return (0, num_rows - num_val), (num_rows - num_val, num_rows)


def select_rows(num_rows: int, val_fraction: float, split: str) -> tuple[int, int]:
    """Rows of ``split``: ``"all"``, or the ``"train"``/``"val"`` part of :func:`split_rows`."""
    if split == "all":
        return 0, num_rows
    train_rows, val_rows = split_rows(num_rows, val_fraction)
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
        raise ValueError(
            f"{path}: {num_train} training {noun} cannot fill one batch of {batch_size} on "
            f"each of {group.size} ranks; lower the batch size or use more data"
        )
    return steps


def split_streams(
    source: H5Source, to_example, train_rows: tuple[int, int], val_rows: tuple[int, int], *,
    batch_size: int, group: ProcessGroup, seed: int, first_epoch: int, shuffle: bool, path: str,
    noun: str,
) -> Datasets:
    """This rank's training stream (repeating, equal steps on every rank, reshuffled per epoch
    from ``seed`` and the epoch) and validation stream over its shards of the two row ranges.

    ``shuffle=False`` reads every shard in file order (reproducible comparisons, e.g. N ranks at
    batch B against one process at batch N*B on the same rows)."""
    num_train = train_rows[1] - train_rows[0]
    steps = steps_per_epoch(num_train, batch_size, group, path, noun)
    train = stream(
        source, to_example, rows=shard_rows(train_rows, group), batch_size=batch_size,
        shuffle=shuffle, seed=seed + group.rank, repeat=True, drop_remainder=True,
        first_epoch=first_epoch, steps_per_epoch=steps,
    )
    validation, validation_steps = None, None
    val_shard = shard_rows(val_rows, group)
    if val_shard[1] > val_shard[0]:
        validation = stream(source, to_example, rows=val_shard, batch_size=batch_size)
        validation_steps = -(-(val_shard[1] - val_shard[0]) // batch_size)
    return Datasets(train, steps, validation, num_train, val_rows[1] - val_rows[0],
                    validation_steps)

"""The zoo's HDF5 input path alone: the tf.data stream at several numbers of parallel reads,
against the Python-generator pipeline it replaced.

    python -m benchmarks.bench_reader [--models lhc_cnn climate_patch_cnn] [--batches 300]

For each model, the task's own training stream (``task.datasets``: the case's reader, its
``to_example``, shuffling, the model's batch size) over the benchmark's file for that model
(``runs/bench/data``, written as ``python -m benchmarks`` writes it, large enough for
``--epoch-batches`` batches an epoch), with ``modelzoo.tasks.stream`` replaced by:

  generator    ``tf.data.Dataset.from_generator`` over the blocks, ``unbatch``, a shuffle buffer of
               four blocks, ``batch``: the input path before the benchmarks issue;
  tf.data xN   :func:`modelzoo.hdf5.stream` with ``parallel_reads=N``.

Reported: samples/s over ``--batches`` batches after ``--warmup`` (epoch ends included: a
stream restarts its pipeline every epoch), best of ``--repeats`` rounds taken in turn so that
other jobs on a shared machine disturb every variant alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def generator_stream(source, to_example, *, rows, batch_size, shuffle=False, seed=0,
                     repeat=False, drop_remainder=False, block_rows=512, first_epoch=0,
                     steps_per_epoch=None, parallel_reads=None):
    """The input path before the benchmarks issue, for comparison: a Python generator of
    blocks, then a tf.data operation per row (unbatch, shuffle, batch)."""
    import numpy as np
    import tensorflow as tf

    from modelzoo.hdf5 import iterate_blocks

    start, stop = rows
    first = to_example(source.read(start, start + 1))
    signature = tuple(tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)) for a in first)

    def generate(epoch):
        for block in iterate_blocks(source, start, stop, block_rows=block_rows, shuffle=shuffle,
                                    seed=seed, repeat=False, first_epoch=int(epoch)):
            yield to_example(block)

    def one_pass(epoch):
        ds = tf.data.Dataset.from_generator(generate, args=(epoch,),
                                            output_signature=signature).unbatch()
        if shuffle:
            ds = ds.shuffle(min(4 * block_rows, stop - start), seed=seed)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        return ds.take(steps_per_epoch) if steps_per_epoch is not None else ds

    if repeat:
        ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(one_pass)
    else:
        ds = one_pass(tf.constant(first_epoch, tf.int64))
    return ds.prefetch(tf.data.AUTOTUNE)


def variants() -> dict[str, Any]:
    """Name -> a replacement for ``modelzoo.tasks.stream``."""
    from functools import partial

    from modelzoo import hdf5

    return {"generator": generator_stream,
            **{f"tf.data x{n}": partial(hdf5.stream, parallel_reads=n) for n in (1, 2, 4)}}


def rate(model: str, path: str, recipe: dict, batch_size: int, warmup: int, batches: int,
         stream: Any) -> float:
    """Samples/s of ``model``'s training stream over ``path`` with ``stream`` as the zoo's."""
    from modelzoo import distributed, tasks, training

    original = tasks.stream
    tasks.stream = stream
    try:
        cfg, task = training.resolve(model, path, recipe=recipe, overrides={
            "data.val_fraction": 0.0, "train.batch_size": batch_size})
        data = task.datasets(path, cfg.get("data", {}), batch_size, distributed.init(),
                             int(cfg["train"]["seed"]), 0)
        iterator = iter(data.train)
        for _ in range(warmup):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return batches * batch_size / (time.perf_counter() - start)
    finally:
        tasks.stream = original


def main(argv: list[str] | None = None) -> int:
    from benchmarks.__main__ import data_files, shipped_entry

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["lhc_cnn", "climate_patch_cnn"])
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--epoch-batches", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--output", default="runs/bench")
    args = p.parse_args(argv)
    out = Path(args.output)
    (out / "data").mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    for model in args.models:
        entry = shipped_entry(model)
        batch = int(entry["recipe"]["train"]["batch_size"])
        path, _ = data_files(model, entry, args.epoch_batches * batch, out / "data", False)
        results[model] = {}
        for _ in range(args.repeats):
            for name, stream in variants().items():
                value = rate(model, path, entry["recipe"], batch, args.warmup, args.batches,
                             stream)
                results[model][name] = max(value, results[model].get(name, 0.0))
        print(f"{model} (batch {batch}, load {os.getloadavg()[0]:.1f}): " + ", ".join(
            f"{k} {v:.0f}/s" for k, v in results[model].items()), flush=True)
    (out / "reader.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

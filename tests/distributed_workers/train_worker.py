"""One rank of a real multi-process training run, launched by tests/test_distributed.py.

Run under ``horovodrun --gloo -np N`` (or alone, as the one-process baseline), it registers a
tiny CNN (no batch normalisation, no dropout: those would make N ranks at batch B differ from
one process at batch N*B), trains it through ``modelzoo.training.train`` on an LHC
benchmark-layout HDF5 file, and writes ``rank<r>.json`` into ``--out`` with what the test
checks: the largest weight difference between ranks (from an allgather), the rows each rank
read, the run's epochs and history. ``--force-jit`` compiles the model with XLA, as Keras
does by default wherever a GPU is visible. Hooks simulate failures: ``--kill-at`` SIGKILLs rank 0 in
the middle of an epoch, ``--kill-in-checkpoint`` SIGKILLs it halfway through writing a
checkpoint, ``--fail-rank`` raises an exception on one rank.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import modelzoo  # noqa: E402
from modelzoo import distributed, hdf5, training  # noqa: E402


@modelzoo.register_model(name="tiny_cnn", domain="test", problem="classification", replace=True)
def tiny_cnn(input_shape: tuple = (8, 8, 3), filters: int = 4) -> keras.Model:
    """Conv 3x3 + dense softmax: deterministic, and small enough to train in a second."""
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Conv2D(filters, 3, activation="tanh", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


class _Hooks(keras.callbacks.Callback):
    """Failure injection at a given (epoch, batch), both counted from 0."""

    def __init__(self, rank: int, args: argparse.Namespace) -> None:
        super().__init__()
        self.rank, self.args, self.epoch = rank, args, 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        args = self.args
        if args.kill_at and self.rank == 0 and (self.epoch, batch) == tuple(args.kill_at):
            print(f"worker: rank 0 SIGKILLs itself at epoch {self.epoch} batch {batch}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if args.fail_rank == self.rank and (self.epoch, batch) == (0, args.fail_at_batch):
            raise RuntimeError(f"rank {self.rank} failed on purpose at batch {batch}")


def _kill_inside_checkpoint_write(nth: int) -> None:
    """SIGKILL rank 0 during its ``nth`` checkpoint: the weights are already in the temporary
    folder and ``optimizer.npz`` is half written when the process dies."""
    real_savez = np.savez
    calls = {"n": 0}

    def savez(path, *arrays, **named):
        calls["n"] += 1
        if calls["n"] == nth:
            with open(path, "wb") as fh:
                fh.write(b"PK\x03\x04 half a zip file")
                fh.flush()
            print(f"worker: rank 0 SIGKILLs itself inside checkpoint {nth}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_savez(path, *arrays, **named)

    training.np.savez = savez  # training.np is numpy: this worker only


def _record_reads() -> list[tuple[int, int]]:
    """Row ranges of image reads (label/weight-only reads for class weights are not images)."""
    reads: list[tuple[int, int]] = []
    real_read = hdf5.H5Source.read

    def read(self, start, stop, keys=None):
        if keys is None or "data" in keys:
            reads.append((int(start), int(stop)))
        return real_read(self, start, stop, keys)

    hdf5.H5Source.read = read
    return reads


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True, help="folder for rank<r>.json")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--val-fraction", type=float, default=0.0)
    p.add_argument("--shuffle", type=int, default=1)
    p.add_argument("--kill-at", type=int, nargs=2, metavar=("EPOCH", "BATCH"))
    p.add_argument("--kill-in-checkpoint", type=int, metavar="N")
    p.add_argument("--fail-rank", type=int)
    p.add_argument("--fail-at-batch", type=int, default=1)
    p.add_argument("--force-jit", action="store_true",
                   help="compile with jit_compile=True, Keras's choice wherever a GPU is seen")
    args = p.parse_args()
    if args.force_jit:
        real_compile = keras.Model.compile

        def compile_with_xla(self, *a, **kw):
            return real_compile(self, *a, **{**kw, "jit_compile": True})

        keras.Model.compile = compile_with_xla

    group = distributed.init()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"pid{group.rank}"), "w") as fh:
        fh.write(str(os.getpid()))  # lets the test end this process by id if the job hangs
    reads = _record_reads()
    if args.kill_in_checkpoint and group.is_root:
        _kill_inside_checkpoint_write(args.kill_in_checkpoint)

    global_batch = args.batch_size * group.size
    recipe = {
        "task": "lhc_classification",
        "model": {"config": {}},
        "data": {"val_fraction": args.val_fraction,
                 "train_weights": "none", "shuffle": bool(args.shuffle)},
        "optimizer": {"name": "sgd", "learning_rate": args.lr},
        # base batch = global batch: the same peak rate for N x B and 1 x N*B.
        "lr_schedule": {"base_batch_size": global_batch, "scaling": "linear", "warmup_epochs": 0},
        # A different seed per rank gives each rank different initial weights, so identical
        # weights at the end also prove rank 0's were broadcast (rank 0 keeps seed 0, the
        # one-process baseline's).
        "train": {"batch_size": args.batch_size, "epochs": args.epochs, "seed": group.rank,
                  "keep_checkpoints": 2},
    }
    result = training.train(
        "tiny_cnn", args.data, run_dir=args.run_dir, recipe=recipe, verbose=0,
        callbacks=[_Hooks(group.rank, args)],
    )
    flat = np.concatenate([np.ravel(w) for w in result.model.get_weights()]).astype(np.float64)
    every_rank = group.allgather(flat[None, :], name="final_weights")
    report = {
        "rank": group.rank,
        "size": group.size,
        "max_weight_diff_between_ranks": float(np.abs(every_rank - every_rank[0]).max()),
        "weights_finite": bool(np.isfinite(flat).all()),
        "resumed_from": result.resumed_from,
        "final_epoch": result.final_epoch,
        "epochs_run": result.epochs_run,
        "history": {k: [float(v) for v in vs] for k, vs in result.history.items()},
        "reads": sorted(set(reads)),
        "horovod_imported": "horovod" in sys.modules,
        "jit_compile": bool(result.model.jit_compile),
    }
    with open(os.path.join(args.out, f"rank{group.rank}.json"), "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main()
    sys.exit(0)

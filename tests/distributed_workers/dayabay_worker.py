"""One rank of a 2-rank Daya Bay training, launched by tests/test_dayabay_distributed.py.

Trains ``dayabay_dae`` and then ``dayabay_cnn`` (small widths) through
``modelzoo.training.train`` on a generated pair file, and writes ``rank<r>.json`` into
``--out`` with the largest weight difference between ranks of each model (from an allgather).
Each rank starts from its own seed, so identical final weights also show that rank 0's
initial weights were broadcast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from modelzoo import distributed, training  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    group = distributed.init()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"pid{group.rank}"), "w") as fh:
        fh.write(str(os.getpid()))
    report = {"rank": group.rank, "size": group.size}
    for model, config in (("dayabay_dae", {"filters": 8}), ("dayabay_cnn", {"filters": 8})):
        result = training.train(
            model, args.data, run_dir=os.path.join(args.run_dir, model), verbose=0,
            overrides={"train.epochs": 1, "train.batch_size": 32, "train.seed": group.rank},
            model_config=config,
        )
        flat = np.concatenate([np.ravel(w) for w in result.model.get_weights()])
        every_rank = group.allgather(flat[None, :].astype(np.float64), name=f"weights_{model}")
        report[model] = {
            "max_weight_diff_between_ranks": float(np.abs(every_rank - every_rank[0]).max()),
            "weights_finite": bool(np.isfinite(flat).all()),
            "epochs_run": result.epochs_run,
            "loss": [float(v) for v in result.history.get("loss", [])],
        }
    with open(os.path.join(args.out, f"rank{group.rank}.json"), "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main()
    sys.exit(0)

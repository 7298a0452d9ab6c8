"""One rank of a 2-rank ``ecog_mlp`` training, launched by tests/test_ecog_distributed.py.

Trains through ``modelzoo.training.train`` under ``horovodrun --gloo -np 2`` and writes
``rank<r>.json`` into ``--out``: the largest difference between the ranks' final weights (from an
allgather, the standardisation statistics included) and the run's history.
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
    p.add_argument("--channels", type=int, required=True)
    args = p.parse_args()
    group = distributed.init()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"pid{group.rank}"), "w") as fh:
        fh.write(str(os.getpid()))
    result = training.train(
        "ecog_mlp", args.data, run_dir=args.run_dir, verbose=0,
        # A different seed per rank: identical weights at the end prove the broadcast.
        overrides={"train.epochs": 2, "train.batch_size": 16, "train.seed": group.rank},
        model_config={"n_channels": args.channels, "units_1": 32},
    )
    flat = np.concatenate([np.ravel(w) for w in result.model.get_weights()]).astype(np.float64)
    every_rank = group.allgather(flat[None, :], name="final_weights")
    standardize = result.model.get_layer("standardize").get_weights()
    report = {
        "rank": group.rank,
        "size": group.size,
        "max_weight_diff_between_ranks": float(np.abs(every_rank - every_rank[0]).max()),
        "standardization_set": bool(np.abs(standardize[0]).max() > 0),
        "history": {k: [float(v) for v in vs] for k, vs in result.history.items()},
    }
    with open(os.path.join(args.out, f"rank{group.rank}.json"), "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main()
    sys.exit(0)

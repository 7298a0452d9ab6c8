"""One rank of a 2-rank extreme-weather training, launched by tests/test_climate_distributed.py.

Trains ``climate_patch_cnn`` on a patch file and then a reduced ``climate_detector`` on an
ExtremeWeather file (half of its images unlabelled) through ``modelzoo.training.train``, and
writes ``rank<r>.json`` into ``--out`` with the largest weight difference between the ranks of
each model (from an allgather). Each rank starts from its own seed, so identical final weights
also show that rank 0's initial weights were broadcast.
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
    p.add_argument("--patches", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    group = distributed.init()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"pid{group.rank}"), "w") as fh:
        fh.write(str(os.getpid()))
    report = {"rank": group.rank, "size": group.size}
    jobs = (
        ("climate_patch_cnn", args.patches, {"train.batch_size": 4}, {}),
        ("climate_detector", args.images,
         {"train.batch_size": 2, "data.grid_cell": 8, "loss.reconstruction_weight": 1.0},
         {"filters": [8, 8, 8]}),
    )
    for model, data, overrides, config in jobs:
        result = training.train(
            model, data, run_dir=os.path.join(args.run_dir, model), verbose=0,
            overrides={"train.epochs": 1, "train.seed": group.rank, **overrides},
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

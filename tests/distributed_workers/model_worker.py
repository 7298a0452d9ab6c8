"""One rank of a real multi-process training of registered models, for the cases' 2-rank tests.

``--jobs`` is a JSON list of ``{"model", "data", "overrides", "config"}``; each model is trained
through ``modelzoo.training.train`` into ``<run-dir>/<model>`` with a different seed per rank
(identical weights at the end then also prove rank 0's were broadcast). ``rank<r>.json`` in
``--out`` holds, per model, the largest weight difference between ranks (from an allgather),
whether the weights are finite, the epochs run and the rank-averaged history.
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
    p.add_argument("--jobs", required=True, help="JSON list of training jobs")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True, help="folder for rank<r>.json")
    args = p.parse_args()
    group = distributed.init()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"pid{group.rank}"), "w") as fh:
        fh.write(str(os.getpid()))  # lets the test end this process by id if the job hangs
    report: dict = {"rank": group.rank, "size": group.size}
    for job in json.loads(args.jobs):
        model = job["model"]
        result = training.train(
            model, job["data"], run_dir=os.path.join(args.run_dir, model), verbose=0,
            overrides={"train.seed": group.rank, **job.get("overrides", {})},
            model_config=job.get("config", {}),
        )
        flat = np.concatenate([np.ravel(w) for w in result.model.get_weights()])
        every_rank = group.allgather(flat[None, :].astype(np.float64), name=f"weights_{model}")
        report[model] = {
            "max_weight_diff_between_ranks": float(np.abs(every_rank - every_rank[0]).max()),
            "weights_finite": bool(np.isfinite(flat).all()),
            "epochs_run": result.epochs_run,
            "history": {k: [float(v) for v in vs] for k, vs in result.history.items()},
        }
    with open(os.path.join(args.out, f"rank{group.rank}.json"), "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main()
    sys.exit(0)

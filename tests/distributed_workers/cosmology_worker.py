"""One rank of a 2-rank cosmology training, launched by tests/test_cosmology_distributed.py.

Trains the registered ``cosmo_cnn`` (its batch normalisation included) on 32 x 32 maps through
``modelzoo.training.train`` and writes ``rank<r>.json`` into ``--out``: the largest difference
of any weight (trainable or not) between the ranks after training, from an allgather.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from modelzoo import distributed, training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    group = distributed.init()
    result = training.train(
        "cosmo_cnn", args.data, run_dir=args.run_dir, verbose=0, resume=False,
        overrides={"train.epochs": 2, "train.batch_size": 8, "train.seed": 0},
        model_config={"input_shape": (32, 32, 1), "filters": (4, 8, 8), "dense_units": 8},
    )
    flat = np.concatenate([np.ravel(w) for w in result.model.get_weights()]).astype(np.float64)
    every_rank = group.allgather(flat[None, :], name="final_weights")
    report = {
        "rank": group.rank,
        "size": group.size,
        "max_weight_diff_between_ranks": float(np.abs(every_rank - every_rank[0]).max()),
        "weights": int(flat.size),
        "history": result.history,
    }
    with open(os.path.join(args.out, f"rank{group.rank}.json"), "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main()

"""One rank of a multi-process job on data files, launched by tests/test_distributed_files.py.
Each ``MODE=FILE`` argument runs one of the modes below on its file, in order, in the same
process (every launch costs each rank a TensorFlow start-up); ``rank<r>.json`` holds each mode's
report under the mode's name.

``reads``: opens an LHC file the way training does (the task's model configuration and
datasets, then one epoch of the training stream) with ``MODELZOO_COUNT_READS=1`` and reports the
bytes this rank read from the file at start-up and after the epoch.

``batchnorm``: trains a small lhc_cnn (batch normalisation) and reports the largest difference
of all its weights, moving statistics included, between ranks.

``galaxy``: trains a small galaxy_vae with a mixture prior refitted before the last epoch and
after training, evaluates it against the baseline, and reports the largest difference of the
final weights (prior included) between ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from modelzoo import distributed, hdf5, training  # noqa: E402
from modelzoo.registry import get_task  # noqa: E402


def reads(data: str, run_dir: str, group: distributed.ProcessGroup) -> dict:
    task = get_task("lhc_classification")
    cfg = training.load_recipe("lhc_cnn")["data"]
    task.model_config(data, cfg)
    streams = task.datasets(data, cfg, 16, group, seed=0, first_epoch=0)
    at_start = hdf5.bytes_read(data)
    for _ in streams.train.take(streams.steps_per_epoch):
        pass
    return {"startup_bytes": at_start, "epoch_bytes": hdf5.bytes_read(data) - at_start,
            "file_bytes": os.path.getsize(data)}


def galaxy(data: str, run_dir: str, group: distributed.ProcessGroup) -> dict:
    small = {"image_size": 16, "latent_dim": 2, "architecture": "dense", "hidden_units": [16],
             "prior_components": 2}
    result = training.train(
        "galaxy_vae", data, run_dir=run_dir, verbose=0, model_config=small,
        overrides={"train.epochs": 2, "train.batch_size": 8, "data.prior_refit_from": 1,
                   "data.eval_samples": 4, "data.val_fraction": 0.25, "data.scale": 1.0,
                   "lr_schedule.warmup_epochs": 0})
    metrics = training.evaluate(run_dir, data, split="val",
                                output_dir=os.path.join(run_dir, "eval"))
    flat = np.concatenate([np.ravel(w) for w in result.model.get_weights()]).astype(np.float64)
    every_rank = group.allgather(flat[None, :], name="final_weights")
    locs = result.model.get_layer("decoder").get_layer("prior").locs
    return {"max_weight_diff_between_ranks": float(np.abs(every_rank - every_rank[0]).max()),
            "prior_moved": float(np.abs(np.asarray(locs)).max()),
            "stamps_evaluated": metrics["stamps"],
            "fraction_vae_better": metrics["fraction_vae_better"]}


def batchnorm(data: str, run_dir: str, group: distributed.ProcessGroup) -> dict:
    result = training.train(
        "lhc_cnn", data, run_dir=run_dir, verbose=0,
        model_config={"filters": 4, "dense_units": 8},
        overrides={"train.epochs": 1, "train.batch_size": 8, "data.val_fraction": 0.25})
    flat = np.concatenate([np.ravel(w) for w in result.model.get_weights()]).astype(np.float64)
    every_rank = group.allgather(flat[None, :], name="final_weights")
    moving = np.asarray(result.model.get_layer("bn1").moving_mean)
    return {"max_weight_diff_between_ranks": float(np.abs(every_rank - every_rank[0]).max()),
            "moving_mean_moved": float(np.abs(moving).max())}


MODES = {"reads": reads, "galaxy": galaxy, "batchnorm": batchnorm}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("jobs", nargs="+", metavar="MODE=FILE", help=f"MODE one of {', '.join(MODES)}")
    p.add_argument("--run-dir", required=True, help="each mode's run folder is RUN_DIR/MODE")
    p.add_argument("--out", required=True, help="folder for rank<r>.json")
    args = p.parse_args()
    jobs = [job.split("=", 1) for job in args.jobs]
    unknown = [mode for mode, *_ in jobs if mode not in MODES]
    if unknown or any(len(job) != 2 for job in jobs):
        p.error(f"each job is MODE=FILE with MODE one of {', '.join(MODES)}: {args.jobs}")
    group = distributed.init()
    report = {"rank": group.rank, "size": group.size}
    for mode, data in jobs:
        report[mode] = MODES[mode](data, os.path.join(args.run_dir, mode), group)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"rank{group.rank}.json"), "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main()
    # The report is written; after several trainings in one process a rank has crashed in
    # TensorFlow's and Horovod's interpreter teardown (SIGSEGV, exit 139), failing a job whose
    # work was done and checked. Skip the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

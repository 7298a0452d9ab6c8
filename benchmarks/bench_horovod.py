"""Data-parallel scaling of lhc_cnn training: 1 worker x 1 thread against 2 workers x 1 thread.

    python benchmarks/bench_horovod.py            # about 2 minutes on an idle 2-core machine

Each configuration trains the 64x64x3 ``lhc_cnn`` through ``modelzoo.training.train`` (the
path ``modelzoo train`` uses) on synthetic numpy-made events in the benchmark HDF5 layout,
with the same per-worker batch and steps per epoch (weak scaling, as in data-parallel
practice). Every worker runs TensorFlow with one intra-op and one inter-op thread and is pinned
to its own core (a two-thread worker to two), so its input pipeline shares that core too:
"1 worker x 1 thread" is one core's worth of training, and ideal scaling doubles it.

Reported per configuration:
  images/s     steady-state training throughput of the whole job: images per step over the
               median time between consecutive batch ends, in every epoch after the first
               (graph tracing, and the rank-0 checkpoint at epoch ends, excluded; the median
               resists other jobs' bursts on a shared machine);
  mean img/s   the same from the mean step time;
  epoch img/s  whole epochs after the first, epoch ends included (checkpoint writes, metric
               averaging);
  efficiency   rate(2 workers) / (2 x rate(1 worker));
  allreduce    time of one grouped allreduce of a gradient-sized tensor list (lhc_cnn's
               trainable variables, float32, and with fp16 compression), timed alone on the
               2 workers, per training step.

Options: --batch-size (per worker, default 64 as in the lhc_cnn recipe), --steps (per epoch,
default 8), --epochs (default 3), --repeats (run each configuration N times, keep the best;
default 1), --also-two-threads (add 1 worker x 2 threads: the whole machine without Horovod),
--no-pin (leave core placement to the OS), --wait-idle S (before each run, wait up to S
seconds, default 300, for the machine to be 90% idle). On a shared machine other jobs skew the
numbers: "core share" is the CPU time a worker got per second of wall time while timed (about
1.0 for an undisturbed one-thread worker; rank 0's for two workers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script (python benchmarks/bench_horovod.py)
    sys.path.insert(0, str(ROOT))

from benchmarks.common import batch_clock, wait_for_idle  # noqa: E402


def _write_events(path: Path, num_events: int, size: int = 64, seed: int = 0) -> None:
    """Synthetic LHC-like events (benchmark layout: data (N, 3, H, W), label, weight)."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    label = (rng.random(num_events) < 0.5).astype(np.int32)
    data = rng.gamma(0.5, 2.0, (num_events, 3, size, size)).astype(np.float32)
    data[label == 1, :, size // 4 : size // 2, size // 4 : size // 2] *= 3.0
    with h5py.File(path, "w") as fh:
        fh["data"] = data
        fh["label"] = label
        fh["weight"] = np.ones(num_events, np.float32)


# --- one worker (run alone or as one horovodrun rank) -------------------------------------

def _worker(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from modelzoo import distributed, training

    group = distributed.init()
    if args.pin:  # worker r gets cores [r * threads, (r + 1) * threads)
        cores = sorted(os.sched_getaffinity(0))
        threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "1"))
        first = group.local_rank * threads
        os.sched_setaffinity(0, {cores[(first + k) % len(cores)] for k in range(threads)})

    clock = batch_clock()  # every epoch after the first
    overrides = {
        "train.batch_size": args.batch_size, "train.epochs": args.epochs,
        "data.val_fraction": 0.0, "lr_schedule.warmup_epochs": 0,
    }
    result = training.train(
        "lhc_cnn", args.data, run_dir=args.run_dir, overrides=overrides, resume=False,
        verbose=0, callbacks=[clock],
    )
    images_per_step = args.batch_size * group.size
    median_step = float(np.median(clock.steps))
    report = {
        "workers": group.size,
        "threads": int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0")),
        "images_per_s": images_per_step / median_step,
        "mean_images_per_s": images_per_step * len(clock.steps) / clock.wall,
        "epoch_images_per_s": result.examples_per_second,
        "step_ms": 1e3 * median_step,
        "cpu_share": clock.cpu / clock.wall,
    }

    if group.hvd is not None:
        hvd = group.hvd
        grads = [tf.zeros(v.shape, v.dtype) for v in result.model.trainable_variables]
        report["gradient_mb"] = sum(int(np.prod(v.shape)) * 4 for v in grads) / 2**20
        for label, compression in (("allreduce_ms", hvd.Compression.none),
                                   ("allreduce_fp16_ms", hvd.Compression.fp16)):
            reduce = tf.function(lambda ts, c=compression: hvd.grouped_allreduce(
                ts, op=hvd.Average, compression=c))
            for _ in range(3):  # trace and warm up
                reduce(grads)
            group.barrier()
            times = []
            for _ in range(args.allreduce_reps):
                start = time.perf_counter()
                reduce(grads)[0].numpy()
                times.append(time.perf_counter() - start)
            report[label] = 1e3 * float(np.median(times))
    if group.is_root:
        Path(args.report).write_text(json.dumps(report))


# --- the driver ---------------------------------------------------------------------------

def _run_config(workers: int, threads: int, args: argparse.Namespace, work: Path) -> dict:
    data = work / f"events_{workers}.h5"
    if not data.exists():
        _write_events(data, workers * args.steps * args.batch_size)
    report = work / f"report_{workers}x{threads}.json"
    worker_cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--data", str(data),
        "--run-dir", str(work / f"run_{workers}x{threads}"), "--report", str(report),
        "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
        "--allreduce-reps", str(args.allreduce_reps), *([] if args.pin else ["--no-pin"]),
    ]
    if workers > 1:
        horovodrun = shutil.which("horovodrun", path=f"{Path(sys.executable).parent}"
                                  f"{os.pathsep}{os.environ.get('PATH', '')}")
        if horovodrun is None:
            raise SystemExit("horovodrun not found: install Horovod (make venv)")
        worker_cmd = [horovodrun, "--gloo", "-np", str(workers), "-H",
                      f"localhost:{workers}", *worker_cmd]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "PYTHONWARNINGS": "ignore"}
    for var in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        env.pop(var, None)
    proc = subprocess.run(worker_cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{workers} x {threads} failed:\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-3000:]}")
    return json.loads(report.read_text())


def _best(workers: int, threads: int, args: argparse.Namespace, work: Path) -> dict:
    runs = []
    for _ in range(args.repeats):
        wait_for_idle(args.wait_idle)
        runs.append(_run_config(workers, threads, args, work))
    return max(runs, key=lambda r: r["images_per_s"])


def scaling(args: argparse.Namespace) -> dict:
    """Reports of 1 worker x 1 thread (``1x1``), 2 workers x 1 thread (``2x1``) and, with
    ``args.also_two_threads``, 1 worker x 2 threads (``1x2``), and the scaling ``efficiency``
    rate(2x1) / (2 x rate(1x1)); ``args`` as :func:`parser` makes them."""
    with tempfile.TemporaryDirectory(prefix="bench_horovod_") as tmp:
        work = Path(tmp)
        result = {"1x1": _best(1, 1, args, work), "2x1": _best(2, 1, args, work)}
        if args.also_two_threads:
            result["1x2"] = _best(1, 2, args, work)
    result["efficiency"] = result["2x1"]["images_per_s"] / (2 * result["1x1"]["images_per_s"])
    return result


def parser() -> argparse.ArgumentParser:
    """The command line (``parser().parse_args([])`` gives the defaults)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=64, help="per worker (the recipe's)")
    p.add_argument("--steps", type=int, default=8, help="per epoch and worker")
    p.add_argument("--epochs", type=int, default=3, help="the first one is not timed")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--allreduce-reps", type=int, default=20)
    p.add_argument("--also-two-threads", action="store_true")
    p.add_argument("--no-pin", dest="pin", action="store_false")
    p.add_argument("--wait-idle", type=float, default=300, metavar="S",
                   help="before each run wait up to S seconds for an idle machine (0: never)")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.worker:
        _worker(args)
        return 0
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (the first epoch is not timed)")

    print(f"lhc_cnn 64x64x3, batch {args.batch_size} per worker, {args.steps} steps per epoch "
          f"and worker, {args.epochs} epochs; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)
    result = scaling(args)
    one, two = result["1x1"], result["2x1"]
    rows = [("1 worker x 1 thread", one), ("2 workers x 1 thread", two)]
    if "1x2" in result:
        rows.append(("1 worker x 2 threads", result["1x2"]))
    efficiency = result["efficiency"]

    print(f"\n{'configuration':<22} {'images/s':>9} {'mean img/s':>11} {'epoch img/s':>12} "
          f"{'step ms':>8} {'core share':>11}")
    for name, r in rows:
        print(f"{name:<22} {r['images_per_s']:>9.1f} {r['mean_images_per_s']:>11.1f} "
              f"{r['epoch_images_per_s']:>12.1f} {r['step_ms']:>8.1f} {r['cpu_share']:>11.2f}")
    mean_eff = two["mean_images_per_s"] / (2 * one["mean_images_per_s"])
    print(f"\nscaling efficiency (2 workers vs 2 x 1 worker): {100 * efficiency:.1f}% "
          f"(from mean step times: {100 * mean_eff:.1f}%)")
    share = two["allreduce_ms"] / two["step_ms"]
    print(f"allreduce of the {two['gradient_mb']:.1f} MiB gradient: "
          f"{two['allreduce_ms']:.1f} ms per step ({100 * share:.1f}% of a 2-worker step); "
          f"with fp16 compression {two['allreduce_fp16_ms']:.1f} ms")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

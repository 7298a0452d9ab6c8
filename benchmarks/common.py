"""What the benchmark scripts share: the step clock, peak memory, the machine's own matrix-multiply
rate and its description, and waiting for other jobs to leave a shared machine.

Importing this module imports no deep-learning framework; :func:`batch_clock` imports Keras."""

from __future__ import annotations

import os
import platform
import time
from typing import Any


def batch_clock(skip_epochs: int = 1, skip_steps: int = 0, stop_after: int | None = None,
                budget_s: float | None = None) -> Any:
    """A Keras callback that records the wall and CPU time between consecutive batch ends.

    Steps of the first ``skip_epochs`` epochs and the first ``skip_steps`` of every epoch are not
    recorded (graph tracing, warm-up). With ``stop_after`` training stops after that many batches
    in all; with ``budget_s`` it stops once the recorded steps add up to that many seconds (at
    least three recorded), so that one slow model does not hold up a run over every model.
    CPU over wall time is the share of a core this process got: well below the thread count
    means other jobs on the machine took the rest."""
    import keras

    class BatchClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.steps: list[float] = []
            self.wall = self.cpu = 0.0
            self.batches = 0
            self.epoch, self.previous = 0, None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch, self.previous = epoch, None

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            now = (time.perf_counter(), time.process_time())
            if self.epoch >= skip_epochs and batch >= skip_steps and self.previous is not None:
                self.steps.append(now[0] - self.previous[0])
                self.wall += now[0] - self.previous[0]
                self.cpu += now[1] - self.previous[1]
            self.previous = now
            self.batches += 1
            out_of_time = budget_s is not None and len(self.steps) >= 3 and self.wall >= budget_s
            if (stop_after is not None and self.batches >= stop_after) or out_of_time:
                self.model.stop_training = True

    return BatchClock()


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark in MiB (since the last
    :func:`reset_peak_rss`)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def reset_peak_rss() -> bool:
    """Start a new high-water mark (Linux >= 4.0); False where the kernel does not allow it, and
    the mark then covers the whole process."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def matmul_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """The best float32 matrix-product rate numpy reaches on this machine, in GFLOP/s (2 n^3 per
    product): the reference for what a model's training could reach."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a @ b  # warm up the BLAS threads
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                      if ln.startswith("flags")), [])
        info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
                        if f in flags]
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            info["memory_gb"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def cpu_idle(seconds: float = 5.0) -> float:
    """Fraction of the machine's CPU time spent idle over ``seconds`` (Linux /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(limit_s: float, idle: float = 0.9) -> None:
    """Wait (up to ``limit_s``) until other jobs leave the machine at least ``idle`` idle."""
    if limit_s <= 0 or not os.path.exists("/proc/stat"):
        return
    deadline = time.monotonic() + limit_s
    while (now := cpu_idle()) < idle and time.monotonic() < deadline:
        print(f"  machine {100 * (1 - now):.0f}% busy with other work; waiting", flush=True)
    if now < idle:
        print("  still busy; measuring anyway (see the core-share column)", flush=True)

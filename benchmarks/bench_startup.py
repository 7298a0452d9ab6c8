"""Start-up of a 2-rank training job on a large file: the time from process start until every
rank holds its training pipeline (and, within it, the time to open and check the file), and the
bytes each rank read to get there.

Writes an LHC benchmark-layout file of about ``--gigabytes`` GB (random calorimeter images, integer
0/1 labels), then launches ``horovodrun --gloo -np 2`` workers that import the zoo, open the file
the way ``modelzoo train`` does (the task's model configuration and datasets) and report. Run it
against another checkout with ``--source DIR`` (e.g. a ``git worktree`` of an older commit) to
compare, side by side, in one run::

    python benchmarks/bench_startup.py --gigabytes 2 [--source /tmp/old-checkout]

The page cache is dropped between runs where this process may (root); otherwise the second run
reads from memory, and the bytes are the fairer comparison.
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

import h5py
import numpy as np

WORKER = '''
import json, os, sys, time
start = float(sys.argv[2])
if sys.argv[3] == "count":
    os.environ["MODELZOO_COUNT_READS"] = "1"
from modelzoo import distributed
group = distributed.init()
try:
    from modelzoo.registry import get_task
    from modelzoo.training import load_recipe
except ImportError:  # the layout before the case packages
    from modelzoo.tasks import get_task
    from modelzoo.training import load_recipe
task = get_task("lhc_classification")
cfg = load_recipe("lhc_cnn")["data"]
opened = time.time()
if hasattr(task, "model_config"):
    task.model_config(sys.argv[1], cfg)
task.datasets(sys.argv[1], cfg, 64, group, 0, 0)
try:
    from modelzoo import hdf5
    read = hdf5.bytes_read(sys.argv[1])
except (ImportError, AttributeError):
    read = None
print("REPORT " + json.dumps({"rank": group.rank, "seconds": time.time() - start,
                              "open_seconds": time.time() - opened, "bytes": read}))
'''


def write_file(path: Path, gigabytes: float) -> None:
    rows_per_block, pixels = 2048, 3 * 64 * 64
    n = int(gigabytes * 1e9 / (pixels * 4))
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_dataset("data", (n, 3, 64, 64), np.float32)
        for start in range(0, n, rows_per_block):
            stop = min(start + rows_per_block, n)
            data[start:stop] = rng.gamma(1.0, 1.0, (stop - start, 3, 64, 64))
        f["label"] = (np.arange(n) % 2).astype(np.int32)
        f["weight"] = np.ones(n, np.float32)


def drop_caches() -> None:
    try:
        subprocess.run(["sync"], check=False)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def run(source: Path, data: Path, count: bool) -> dict:
    horovodrun = shutil.which("horovodrun", path=f"{Path(sys.executable).parent}")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(WORKER)
    drop_caches()
    start = time.time()
    proc = subprocess.run(
        [horovodrun, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, fh.name,
         str(data), str(start), "count" if count else "time"],
        capture_output=True, text=True, cwd=source,
        env={**os.environ, "PYTHONPATH": str(source), "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.time() - start
    reports = [json.loads(line.split("REPORT ", 1)[1]) for line in proc.stdout.splitlines()
               if "REPORT " in line]
    if proc.returncode != 0 or len(reports) != 2:
        raise SystemExit(f"{source}: the job failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return {"job_seconds": wall, "ranks": sorted(reports, key=lambda r: r["rank"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gigabytes", type=float, default=2.0)
    p.add_argument("--source", action="append", default=[],
                   help="another checkout to compare with (repeatable)")
    p.add_argument("--data", help="an existing file to use instead of writing one")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    here = Path(__file__).resolve().parent.parent
    data = Path(args.data) if args.data else Path(tempfile.gettempdir()) / "bench_startup.h5"
    if not data.exists():
        write_file(data, args.gigabytes)
    sources = [here, *map(Path, args.source)]
    # Timed runs without counting (the counting file object is slower than h5py's own driver),
    # alternating between checkouts so that both see the same machine; then one counted run.
    timed: dict[str, list[float]] = {str(s): [] for s in sources}
    opening: dict[str, list[float]] = {str(s): [] for s in sources}
    for _ in range(args.repeats):
        for source in sources:
            result = run(source, data, count=False)
            timed[str(source)].append(result["job_seconds"])
            opening[str(source)].append(max(r["open_seconds"] for r in result["ranks"]))
    counted = run(here, data, count=True)
    print(json.dumps({"file": str(data), "bytes": data.stat().st_size,
                      "job_seconds": timed,
                      "open_seconds_slowest_rank": opening,
                      "bytes_read_per_rank": [r["bytes"] for r in counted["ranks"]]}, indent=2))


if __name__ == "__main__":
    main()

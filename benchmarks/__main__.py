"""``python -m benchmarks``: training, reading, inference and memory of every registered model,
measured side by side in one run, written as JSON and a markdown table.

For each model (``--models``, default all) at ``--batch-size`` (default: the batch of the
recipe the model was shipped with), in a fresh process per measurement:

* training samples/s through ``modelzoo.training.train`` reading an HDF5 file from disk, and
  plain ``model.fit`` on the same samples held in memory (the ratio: is the zoo's path the
  limit?);
* achieved FLOP/s (the model's forward FLOPs counted by TensorFlow's profiler, a training step
  taken as 3x forward) against the float32 matrix-product rate numpy reaches on this machine in
  the same run;
* the task's reader alone, samples/s;
* inference samples/s and peak memory (resident high-water mark);
* peak memory training on the default file and on one ten times larger;
* with ``--options``, plain ``fit`` of ``--option-models`` under each speed option (XLA, mixed
  precision, thread settings, NCHW layout), each in its own process;
* with ``--horovod``, the 1 -> 2 worker scaling of ``lhc_cnn`` (``benchmarks/bench_horovod.py``).

Data: each model's file is written by its case's generator with the arguments of its shipped
data recipe, scaled down to what ``--warmup`` + ``--steps`` batches need (at least one of the
stream's read windows for the memory run) and ten times that for the memory run (its rows
repeated where the generator is slow: Pythia, GalSim); the files are cached in
``OUTPUT/data``. Timing: the median step after
``--warmup`` steps; a model whose timed steps pass ``--budget`` seconds stops early (at least
three steps). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, matmul_gflops, wait_for_idle

ROOT = Path(__file__).resolve().parent.parent
# Generator arguments that count what is written (events, maps, trials, stamps, images).
COUNT = re.compile(r"^(n_\w+|maps_per_class)$")
PROBE = 16  # the largest count of the small file that tells rows per count
# Where writing the 10x file would take longer than this, it repeats the default file's rows.
SLOW_GENERATOR_S = 120
VARIANTS = ("baseline", "xla", "mixed_bfloat16", "threads_1x2", "threads_2x1", "threads_2x2",
            "nchw")
THREADS = {"threads_1x2": (1, 2), "threads_2x1": (2, 1), "threads_2x2": (2, 2)}


def shipped_entry(model: str) -> dict[str, Any]:
    """The model's default shipped entry: its training recipe and its data recipe."""
    from modelzoo import manifest

    entries = [e for e in manifest.load_manifest().values() if e["model"] == model]
    if not entries:
        raise SystemExit(f"{model}: no shipped entry, so no data recipe to benchmark it with")
    return next((e for e in entries if e.get("default")), entries[0])


def scaled(args: dict[str, Any], factor: float) -> dict[str, Any]:
    """Generator arguments with every count multiplied by ``factor`` (at least 1), one
    process (the benchmark runs one heavy process at a time)."""
    out = {k: (max(1, math.ceil(v * factor)) if COUNT.match(k) and isinstance(v, int) else v)
           for k, v in args.items()}
    if "processes" in out or "processes" in args:
        out["processes"] = 1
    return out


def generate(kind: str, args: dict[str, Any], folder: Path) -> str:
    """The case's generator output for ``args``, cached by their hash."""
    from modelzoo import reproduce

    key = hashlib.sha1(json.dumps([kind, args], sort_keys=True).encode()).hexdigest()[:12]
    path = folder / f"{kind}-{key}.h5"
    if not path.exists():
        start = time.perf_counter()
        reproduce.generate(kind, str(path), args)
        seconds = time.perf_counter() - start
        print(f"  wrote {path.name} ({kind}, {seconds:.0f} s)", flush=True)
        path.with_suffix(".seconds").write_text(f"{seconds:.1f}\n")
    return str(path)


def tiled(path: str, factor: int) -> str:
    """``path`` with its rows repeated ``factor`` times (every dataset as long as the longest
    one; the others and the attributes as they are): a large file in the same layout where the
    generator is too slow to write one (Pythia, GalSim), for the memory run only."""
    import h5py

    out = Path(path).with_name(f"{Path(path).stem}-x{factor}.h5")
    if out.exists():
        return str(out)
    partial = out.with_suffix(".partial")
    with h5py.File(path, "r") as src, h5py.File(partial, "w") as dst:
        datasets: dict[str, h5py.Dataset] = {}

        def collect(name: str, obj: Any) -> None:  # visititems stops at a returned value
            if isinstance(obj, h5py.Dataset):
                datasets[name] = obj

        src.visititems(collect)
        rows = max(d.shape[0] for d in datasets.values() if d.ndim)
        dst.attrs.update(dict(src.attrs))
        for name, d in datasets.items():
            if not d.ndim or d.shape[0] != rows:
                src.copy(d, dst, name=name)
                continue
            copy = dst.create_dataset(name, (rows * factor, *d.shape[1:]), d.dtype,
                                      chunks=d.chunks, compression=d.compression)
            copy.attrs.update(dict(d.attrs))
            block = d[:]
            for k in range(factor):
                copy[k * rows:(k + 1) * rows] = block
    partial.rename(out)
    print(f"  wrote {out.name} ({factor} x the rows of {Path(path).name})", flush=True)
    return str(out)


def training_rows(model: str, path: str, recipe: dict[str, Any]) -> int:
    """Training rows the model's task finds in ``path`` with no validation split."""
    from modelzoo import distributed, training

    cfg, task = training.resolve(model, path, recipe=recipe,
                                 overrides={"data.val_fraction": 0.0, "train.batch_size": 1})
    return task.datasets(path, cfg.get("data", {}), 1, distributed.init(), 0, 0).num_train


def data_files(model: str, entry: dict[str, Any], rows: int, folder: Path,
               memory: bool) -> tuple[str, str | None]:
    """(file with at least ``rows`` training rows, file ten times larger or None)."""
    recipe = entry["data_recipe"]
    template = dict(recipe["train"])
    counts = [v for k, v in template.items() if COUNT.match(k) and isinstance(v, int)]
    if not counts:
        raise SystemExit(f"{model}: no count among the generator arguments {sorted(template)}")
    probe_factor = PROBE / max(counts)
    probe = generate(recipe["generator"], scaled(template, probe_factor), folder)
    probe_rows = training_rows(model, probe, entry["recipe"])
    # At least one of the stream's windows (MIX_BLOCKS blocks of at most 512 rows and
    # BLOCK_BYTES), so that the 10x file compares a training with full read buffers, not one on
    # a file smaller than a window.
    from modelzoo.hdf5 import BLOCK_BYTES, MIX_BLOCKS

    row_bytes = os.path.getsize(probe) / probe_rows
    window = MIX_BLOCKS * min(512, math.ceil(BLOCK_BYTES / row_bytes))
    rows = max(rows, window) if memory else rows
    factor = 1.1 * rows / (probe_rows / probe_factor)  # 10% margin: class splits round down
    default = generate(recipe["generator"], scaled(template, factor), folder)
    if not memory:
        return default, None
    seconds = float(Path(default).with_suffix(".seconds").read_text()) \
        if Path(default).with_suffix(".seconds").exists() else 0.0
    if 10 * seconds > SLOW_GENERATOR_S:
        return default, tiled(default, 10)
    return default, generate(recipe["generator"], scaled(template, 10 * factor), folder)


def run_child(spec: dict[str, Any], folder: Path, name: str,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """One measurement in a fresh process (``benchmarks/measure.py``)."""
    spec_path, out_path = folder / f"{name}.spec.json", folder / f"{name}.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    out_path.unlink(missing_ok=True)
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               **(env or {})}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.measure", str(spec_path),
                           str(out_path)], env=environ, capture_output=True, text=True,
                          cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not out_path.exists():
        tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines()
                if not line.startswith(("I0000", "W0000", "WARNING: All log"))][-12:]
        print(f"  {name} failed after {seconds:.0f} s:\n    " + "\n    ".join(tail), flush=True)
        return {"error": tail[-1] if tail else f"exit {proc.returncode}", "seconds": seconds}
    report = json.loads(out_path.read_text())
    report["seconds"] = seconds
    return report


def matmul_fraction(samples_per_s: float, forward_flops: float, matmul_gflops: float) -> float:
    """Achieved training FLOP/s over the float32 matrix-product rate; a training step is taken
    as 3 x the forward FLOPs (forward + backward, 2x forward)."""
    return samples_per_s * 3 * forward_flops / 1e9 / matmul_gflops


def summarise(model: str, timing: dict, memory: dict | None, matmul: float) -> dict[str, Any]:
    """The table's numbers for one model."""
    row: dict[str, Any] = {"model": model}
    if "error" in timing:
        row["error"] = timing["error"]
        return row
    zoo, plain = timing["zoo"]["samples_per_s"], timing["plain"]["samples_per_s"]
    train_flops = 3 * timing["forward_flops"]  # forward + backward (2x forward)
    row.update(
        batch=timing["batch_size"], zoo=zoo, plain=plain, ratio=zoo / plain,
        zoo_steps=timing["zoo"]["steps"], cpu_share=timing["zoo"].get("cpu_share"),
        train_gflop=train_flops / 1e9, zoo_gflops=zoo * train_flops / 1e9,
        plain_gflops=plain * train_flops / 1e9,
        fraction=matmul_fraction(zoo, timing["forward_flops"], matmul),
        plain_fraction=matmul_fraction(plain, timing["forward_flops"], matmul),
        reader=timing["reader"]["samples_per_s"],
        reader_over_zoo=timing["reader"]["samples_per_s"] / zoo,
        inference=timing["inference"]["samples_per_s"],
        inference_peak_mb=timing["inference"]["peak_mb"],
        train_peak_mb=timing["zoo"].get("fit_peak_mb"), run_peak_mb=timing["train_peak_mb"],
    )
    if memory is not None:
        if "error" in memory:
            row["memory_error"] = memory["error"]
        else:
            row["train_peak_10x_mb"] = memory["zoo"].get("fit_peak_mb")
            row["memory_growth"] = row["train_peak_10x_mb"] / row["train_peak_mb"] - 1
            row["run_peak_10x_mb"] = memory["train_peak_mb"]
            row["run_memory_growth"] = memory["train_peak_mb"] / timing["train_peak_mb"] - 1
    return row


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    """The run as markdown: machine, the per-model table, the speed options, Horovod."""
    m = result["machine"]
    lines = [
        f"# Benchmarks, {result['date']}",
        "",
        f"Machine: {m.get('cpu', '?')}, {m['cpus']} CPUs ({', '.join(m.get('simd', []))}), "
        f"{m.get('memory_gb', '?')} GB; load average {result['load_before'][0]:.2f} before, "
        f"{result['load_after'][0]:.2f} after. numpy float32 matmul: "
        f"{result['matmul_gflops'][0]:.0f} GFLOP/s at the start, "
        f"{result['matmul_gflops'][1]:.0f} at the end (the larger is the reference). "
        f"{result['settings']}.",
        "",
        "| model | batch | zoo samples/s | plain fit samples/s | zoo / plain | train GFLOP per "
        "sample | zoo GFLOP/s | fraction of matmul | reader samples/s (x zoo) | inference "
        "samples/s | inference peak MB | training peak MB | 10x file: training peak MB "
        "(growth) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["models"]:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error']} |" + " |" * 11)
            continue
        growth = (f"{_fmt(r['train_peak_10x_mb'], 0)} ({100 * r['memory_growth']:+.0f}%)"
                  if "train_peak_10x_mb" in r else r.get("memory_error", "-"))
        lines.append(
            f"| {r['model']} | {r['batch']} | {_fmt(r['zoo'])} | {_fmt(r['plain'])} | "
            f"{r['ratio']:.2f} | {r['train_gflop']:.3g} | {_fmt(r['zoo_gflops'])} | "
            f"{r['fraction']:.2f} | {_fmt(r['reader'], 0)} ({r['reader_over_zoo']:.0f}x) | "
            f"{_fmt(r['inference'])} | {_fmt(r['inference_peak_mb'], 0)} | "
            f"{_fmt(r['train_peak_mb'], 0)} | {growth} |")
    if result.get("options"):
        lines += ["", "Speed options, plain `fit` on in-memory samples (samples/s; relative to "
                  "baseline in brackets):", "",
                  "| model | " + " | ".join(VARIANTS) + " |",
                  "|---|" + "---|" * len(VARIANTS)]
        for model, variants in result["options"].items():
            base = variants.get("baseline", {}).get("samples_per_s")
            cells = []
            for v in VARIANTS:
                r = variants.get(v)
                if r is None:
                    cells.append("-")
                elif "error" in r:
                    cells.append(f"failed: {r['error'][:60]}")
                else:
                    rel = f" ({r['samples_per_s'] / base:.2f})" if base else ""
                    cells.append(f"{r['samples_per_s']:.1f}{rel}")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        reference = max(result["matmul_gflops"])
        rows = []
        for model, variants in result["options"].items():
            flops = variants.get("baseline", {}).get("forward_flops")
            if not flops:
                continue
            fractions = {v: matmul_fraction(variants[v]["samples_per_s"], flops, reference)
                         for v in ("baseline", "mixed_bfloat16")
                         if "samples_per_s" in variants.get(v, {})}
            if len(fractions) == 2:
                rows.append(f"| {model} | {fractions['baseline']:.2f} | "
                            f"{fractions['mixed_bfloat16']:.2f} |")
        if rows:
            lines += ["", "Fraction of numpy's float32 matmul rate reached by plain `fit` "
                      "(3 x forward FLOPs per sample), float32 against mixed bfloat16:", "",
                      "| model | float32 | mixed_bfloat16 |", "|---|---|---|", *rows]
    if result.get("horovod"):
        h = result["horovod"]
        if "error" in h:
            lines += ["", f"Horovod (lhc_cnn, 1 -> 2 workers): failed: {h['error']}"]
        else:
            lines += ["", f"Horovod (lhc_cnn, batch {h['batch_size']} per worker, 1 thread "
                      f"per worker): 1 worker {h['1x1']['images_per_s']:.1f} images/s, 2 "
                      f"workers {h['2x1']['images_per_s']:.1f}: efficiency "
                      f"{100 * h['efficiency']:.1f}%."]
    return "\n".join(lines) + "\n"


def horovod(batch_size: int) -> dict[str, Any]:
    """lhc_cnn's 1 -> 2 worker scaling, by bench_horovod (one repeat, no idle wait)."""
    from benchmarks import bench_horovod

    args = bench_horovod.parser().parse_args(["--batch-size", str(batch_size),
                                              "--wait-idle", "0"])
    try:
        result = bench_horovod.scaling(args)
    except SystemExit as err:  # Horovod missing or a worker failed
        return {"error": str(err).splitlines()[0]}
    return {**result, "batch_size": batch_size}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["*"],
                   help="names or shell patterns (default: every registered model)")
    p.add_argument("--batch-size", type=int, help="default: each model's shipped recipe's")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--budget", type=float, default=30.0, metavar="S",
                   help="stop a path's timed steps after S seconds (at least 3 steps)")
    p.add_argument("--output", default="runs/bench", help="folder (default runs/bench)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the run on the 10x file")
    p.add_argument("--options", action="store_true", help="also measure the speed options")
    p.add_argument("--options-only", action="store_true",
                   help="only the speed options (and Horovod with --horovod), no model table")
    p.add_argument("--option-models", nargs="+", default=["lhc_cnn", "cosmo_cnn"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--horovod", action="store_true",
                   help="also lhc_cnn's 1 -> 2 worker Horovod scaling (about 2 minutes)")
    p.add_argument("--prepare", action="store_true",
                   help="only write the data files (cached in OUTPUT/data) and stop")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="first wait up to S seconds for other jobs to leave the machine idle")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import modelzoo

    models = [] if args.options_only else modelzoo.list_models(args.models)
    args.options = args.options or args.options_only
    if not models and not args.options_only:
        raise SystemExit(f"no registered model matches {args.models}")
    out = Path(args.output)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "measurements").mkdir(exist_ok=True)
    wait_for_idle(args.wait_idle)
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "load_before": list(os.getloadavg()),
        "settings": f"warm-up {args.warmup} steps, up to {args.steps} timed steps "
                    f"(at most {args.budget:.0f} s each path)",
        "matmul_gflops": [matmul_gflops()], "models": [], "raw": {},
    }
    print(f"matmul {result['matmul_gflops'][0]:.0f} GFLOP/s; {len(models)} models", flush=True)
    for model in models:
        entry = shipped_entry(model)
        batch = args.batch_size or int(entry["recipe"]["train"]["batch_size"])
        print(f"{model}: batch {batch}", flush=True)
        default, large = data_files(model, entry, (args.warmup + args.steps) * batch,
                                    out / "data", args.memory)
        if args.prepare:
            continue
        spec = {"model": model, "recipe": entry["recipe"], "batch_size": batch,
                "warmup": args.warmup, "steps": args.steps, "budget_s": args.budget,
                "work": str(out / "measurements")}
        timing = run_child({**spec, "data": default, "kind": "timing"}, out / "measurements",
                           f"{model}-timing")
        memory = None
        if args.memory and "error" not in timing:
            memory = run_child({**spec, "data": large, "kind": "memory"}, out / "measurements",
                               f"{model}-memory")
        row = summarise(model, timing, memory, result["matmul_gflops"][0])
        result["models"].append(row)
        result["raw"][model] = {"timing": timing, "memory": memory}
        if "error" not in row:
            print(f"  zoo {row['zoo']:.1f}/s, plain {row['plain']:.1f}/s (ratio "
                  f"{row['ratio']:.2f}), {row['fraction']:.2f} of matmul, reader "
                  f"{row['reader']:.0f}/s, {timing['seconds']:.0f} s", flush=True)
    if args.prepare:
        return 0
    if args.options:
        result["options"] = {}
        for model in modelzoo.list_models(args.option_models):
            entry = shipped_entry(model)
            batch = args.batch_size or int(entry["recipe"]["train"]["batch_size"])
            default, _ = data_files(model, entry, (args.warmup + args.steps) * batch,
                                    out / "data", False)
            spec = {"model": model, "recipe": entry["recipe"], "batch_size": batch,
                    "warmup": args.warmup, "steps": args.steps, "budget_s": args.budget,
                    "data": default, "kind": "plain"}
            result["options"][model] = {}
            for variant in args.variants:
                threads = THREADS.get(variant)
                env = {"TF_NUM_INTRAOP_THREADS": str(threads[0]),
                       "TF_NUM_INTEROP_THREADS": str(threads[1])} if threads else None
                report = run_child({**spec, "variant": "baseline" if threads else variant},
                                   out / "measurements", f"{model}-{variant}", env)
                result["options"][model][variant] = {
                    **report.get("plain", report),
                    **({"forward_flops": report["forward_flops"]}
                       if "forward_flops" in report else {})}
                print(f"  {model} {variant}: "
                      f"{report.get('plain', {}).get('samples_per_s', float('nan')):.1f}/s",
                      flush=True)
    if args.horovod:
        result["horovod"] = horovod(64)
    # Second reading of the reference; the larger is what the machine can do (other jobs on a
    # shared machine lower either).
    result["matmul_gflops"].append(matmul_gflops())
    reference = max(result["matmul_gflops"])
    for row, model in zip(result["models"], models):
        if "error" not in row:
            result["models"][models.index(model)] = summarise(
                model, result["raw"][model]["timing"], result["raw"][model]["memory"],
                reference)
    result["load_after"] = list(os.getloadavg())
    (out / "results.json").write_text(json.dumps(result, indent=2, default=float))
    (out / "results.md").write_text(markdown(result))
    print(markdown(result))
    print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The climate models at the published 768 x 1152 x 16 size: training-step time and peak memory
through the zoo's own training path, and how fast the generator writes such samples.

* ``climate_segmenter`` (builder defaults: DeepLabv3+, output stride 16, rates 6-12-18) on a
  DeepCAM folder, batch 2 (its recipe's); ``climate_detector`` (the published network: six
  5 x 5 stride-2 layers 128 ... 1280, 12 x 18 grid) on an ExtremeWeather file, batch 1 (the
  paper's). Each model in a fresh process: ``modelzoo.training.train`` reading the files from
  disk, ``--warmup`` untimed steps, then the median of ``--steps`` timed steps
  (:func:`benchmarks.common.batch_clock`), and the process's peak resident memory.
* The generator: seconds per sample for ``generate_deepcam`` (fields + masks + one file per
  sample) and ``generate_extreme_weather`` at 768 x 1152, one process.

``python -m benchmarks.bench_full_resolution [--models ...] [--steps 3] [--warmup 1]``;
results in ``runs/bench/full_resolution.json``. The data (a few 57 MB samples) is cached in
``runs/bench/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import batch_clock, machine, peak_rss_mb

SIZE = (768, 1152)
SAMPLES = 8
MODELS = {"climate_segmenter": "deepcam", "climate_detector": "images"}


def data(kind: str, folder: Path) -> str:
    """The cached full-size data set of ``kind`` (a DeepCAM folder or an ExtremeWeather file)."""
    from modelzoo.climate.deepcam import generate_deepcam
    from modelzoo.climate.generator import generate_extreme_weather

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"full_{kind}_{SAMPLES}x{SIZE[0]}x{SIZE[1]}"
                     f"{'' if kind == 'deepcam' else '.h5'}")
    if not path.exists():
        if kind == "deepcam":
            generate_deepcam(path, n_samples=SAMPLES, height=SIZE[0], width=SIZE[1], seed=7,
                             processes=2, progress=False)
        else:
            generate_extreme_weather(path, n_images=SAMPLES, height=SIZE[0], width=SIZE[1],
                                     seed=7, processes=2, progress=False)
    return str(path)


def child(model: str, path: str, steps: int, warmup: int, work: str) -> dict:
    from modelzoo import training

    # The clock times the steps after the first of each epoch: an epoch of the file (8 samples)
    # holds the warm-up and timed steps of a model at batch 1 or 2.
    clock = batch_clock(skip_epochs=0, skip_steps=0, stop_after=warmup + steps + 1)
    result = training.train(model, path, run_dir=os.path.join(work, model), resume=False,
                            verbose=0, callbacks=[clock],
                            overrides={"train.epochs": 100, "data.val_fraction": 0.0})
    timed = sorted(clock.steps[warmup:])
    batch = int(json.loads(Path(result.run_dir, "config.json").read_text())["train"]
                ["batch_size"])
    return {"model": model, "batch": batch, "parameters": int(result.model.count_params()),
            "median_step_s": timed[len(timed) // 2], "steps_s": clock.steps,
            "samples_per_s": batch / timed[len(timed) // 2],
            "cpu_share": clock.cpu / max(clock.wall, 1e-9),
            "peak_rss_mb": peak_rss_mb()}


def generator_speed(folder: Path, samples: int = 2) -> dict:
    from modelzoo.climate.deepcam import generate_deepcam
    from modelzoo.climate.generator import generate_extreme_weather

    out = {}
    start = time.perf_counter()
    generate_deepcam(folder / f"speed_{time.time_ns()}", n_samples=samples, height=SIZE[0],
                     width=SIZE[1], seed=8, progress=False)
    out["deepcam_samples_per_s"] = samples / (time.perf_counter() - start)
    start = time.perf_counter()
    path = folder / f"speed_{time.time_ns()}.h5"
    generate_extreme_weather(path, n_images=samples, height=SIZE[0], width=SIZE[1], seed=8,
                             progress=False)
    out["extreme_weather_images_per_s"] = samples / (time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_full_resolution")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--output", default="runs/bench")
    p.add_argument("--no-generator", dest="generator", action="store_false")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.output)
    if args.child:
        print(json.dumps(child(args.child, args.data, args.steps, args.warmup,
                               str(out / "full_resolution_runs"))))
        return 0
    folder = out / "data"
    results: dict = {"machine": machine(), "size": list(SIZE), "models": {}}
    if args.generator:
        import shutil

        results["generator"] = generator_speed(out / "speed")
        shutil.rmtree(out / "speed", ignore_errors=True)
    for model in args.models:
        path = data(MODELS[model], folder)
        done = subprocess.run([sys.executable, "-m", "benchmarks.bench_full_resolution",
                               "--child", model, "--data", path, "--steps", str(args.steps),
                               "--warmup", str(args.warmup), "--output", str(out)],
                              capture_output=True, text=True)
        if done.returncode:
            results["models"][model] = {"error": done.stderr[-2000:]}
        else:
            results["models"][model] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps({model: results["models"][model]}), flush=True)
    (out / "full_resolution.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

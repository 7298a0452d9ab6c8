"""Keras 3 on the JAX backend next to TensorFlow, for the backend-neutral builders.

    python -m benchmarks.bench_backends --jax-python /path/to/venv/bin/python
        [--models lhc_cnn cosmo_cnn] [--steps 10] [--budget 30]

A zoo builder imports only Keras, so the same function builds the same network on either
backend. Each backend trains it in its own process with plain ``model.fit`` on in-memory random
samples (mean-squared error against zero targets of the output's shape, Adam; the arithmetic
of a step does not depend on the loss), at the batch of the model's recipe; the rate is the
median step after two untimed ones. TensorFlow runs in this interpreter's environment (the
zoo's), JAX in ``--jax-python``'s, which needs only ``jax`` and the zoo's Keras version: the
builder's module is loaded from its file, so neither TensorFlow nor the zoo has to be installed
there. Prints a table and writes ``runs/bench/backends.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def builder_of(model: str) -> tuple[str, str, int]:
    """The file and name of ``model``'s registered builder, and its shipped recipe's batch."""
    import inspect

    from benchmarks.__main__ import shipped_entry
    from modelzoo.registry import get_spec

    function = get_spec(model).function()
    batch = int(shipped_entry(model)["recipe"]["train"]["batch_size"])
    return inspect.getsourcefile(function), function.__name__, batch


def child(module_file: str, builder: str, batch_size: int, steps: int,
          budget_s: float) -> dict[str, Any]:
    """Time the training of ``builder`` from ``module_file`` on this process's Keras backend."""
    import keras
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import batch_clock  # benchmarks/common.py imports no framework

    spec = importlib.util.spec_from_file_location(f"builders_{builder}", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    keras.utils.set_random_seed(0)
    net = getattr(module, builder)()
    count = batch_size * (steps + 2)
    rng = np.random.default_rng(0)
    x = rng.random((count, *net.input_shape[1:]), dtype=np.float32)
    y = np.zeros((count, *net.output_shape[1:]), np.float32)
    net.compile(optimizer="adam", loss="mse")
    clock = batch_clock(skip_epochs=0, skip_steps=2, budget_s=budget_s)
    net.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, callbacks=[clock])
    step = float(np.median(clock.steps))
    return {"backend": keras.backend.backend(), "samples_per_s": batch_size / step,
            "steps_timed": len(clock.steps), "cpu_share": clock.cpu / max(clock.wall, 1e-9)}


def run(python: str, backend: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    module_file, builder, batch = builder_of(model)
    batch = args.batch_size or batch
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), "--child", module_file, builder,
         "--batch-size", str(batch), "--steps", str(args.steps), "--budget", str(args.budget)],
        env=env, capture_output=True, text=True, cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return {**json.loads(lines[-1]), "batch_size": batch}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jax-python", required="--child" not in (argv or sys.argv),
                   help="interpreter of an environment with jax and keras")
    p.add_argument("--models", nargs="+", default=["lhc_cnn", "cosmo_cnn"],
                   help="registered models whose builder module imports only Keras")
    p.add_argument("--batch-size", type=int, help="default: the model's recipe's")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--budget", type=float, default=30.0, metavar="S")
    p.add_argument("--child", nargs=2, metavar=("MODULE_FILE", "BUILDER"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.batch_size, args.steps, args.budget)))
        return 0
    results: dict[str, dict[str, Any]] = {}
    print("| model | batch | tensorflow samples/s | jax samples/s | jax / tensorflow |")
    print("|---|---|---|---|---|")
    for model in args.models:
        tf_run = run(sys.executable, "tensorflow", model, args)
        jax_run = run(args.jax_python, "jax", model, args)
        results[model] = {"tensorflow": tf_run, "jax": jax_run}
        if "error" in tf_run or "error" in jax_run:
            print(f"| {model} | failed: {tf_run.get('error') or jax_run.get('error')} |")
            continue
        print(f"| {model} | {tf_run['batch_size']} | {tf_run['samples_per_s']:.1f} | "
              f"{jax_run['samples_per_s']:.1f} | "
              f"{jax_run['samples_per_s'] / tf_run['samples_per_s']:.2f} |", flush=True)
    out = ROOT / "runs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "backends.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

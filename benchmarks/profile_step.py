"""Where one training step's time goes: TensorFlow's profiler over a few ``fit`` steps of a
model on in-memory samples, summed per layer (forward and backward) and per kernel.

    python -m benchmarks.profile_step [--models lhc_cnn lhc_cnn_15pf] [--steps 3]
        [--batch-size N] [--output runs/bench/profile] [--data runs/bench/data]

The model is built and compiled as the zoo trains it (its shipped recipe, in the recipe's
precision); the samples are the first the zoo's training takes from the benchmark's file for
the model (written by ``python -m benchmarks``, or here where missing), held in memory, so
the numbers are the framework's, not the reader's. The trace (viewable in
TensorBoard's profile tab where its plugin is installed) is parsed here from its XPlane file:
every TensorFlow op executed on the compute threads, named ``<scope>:<kernel>``. Op times are
per thread, so where two ops ran at once their times add up to more than the step.
Writes ``profile.md`` and ``profile.json`` in the output folder.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def op_times(logdir: str) -> list[tuple[str, str, float]]:
    """(scope, kernel, seconds) of every op the trace in ``logdir`` recorded on a compute
    thread."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as fh:
        space.ParseFromString(fh.read())
    ops = []
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                # An op is "scope:kernel"; "ExecutorState::Process" and the like are the
                # executor's own spans around them.
                if ":" in name and "::" not in name:
                    scope, kernel = name.rsplit(":", 1)
                    ops.append((scope, kernel, event.duration_ps / 1e12))
    return ops


def layer_of(scope: str, layers: list[str]) -> tuple[str, str]:
    """(layer, "forward" or "backward") of an op's scope, e.g.
    ``StatefulPartitionedCall/gradient_tape/lhc_cnn_1/conv2_1/convolution``."""
    parts = scope.split("/")
    direction = "backward" if "gradient_tape" in parts else "forward"
    for part in parts:
        base = part.rsplit("_", 1)[0] if part.rsplit("_", 1)[-1].isdigit() else part
        if base in layers:
            return base, direction
    if any(p.startswith(("adam", "sgd", "optimizer")) or "Assign" in p for p in parts):
        return "(optimizer)", "update"
    return "(other)", direction


def profile(model: str, batch_size: int | None, steps: int, logdir: str,
            data_folder: Path) -> dict[str, Any]:
    """Per-layer and per-kernel op seconds per step of ``model``, and the step time."""
    import tensorflow as tf

    from benchmarks.__main__ import data_files, shipped_entry
    from benchmarks.measure import compiled_model, first_samples, num_samples
    from modelzoo import distributed, training
    from modelzoo.training import with_defaults

    entry = shipped_entry(model)
    batch = batch_size or int(with_defaults(entry["recipe"])["train"]["batch_size"])
    path, _ = data_files(model, entry, batch * (steps + 2), data_folder, memory=False)
    cfg, task = training.resolve(model, path, recipe=entry["recipe"],
                                 overrides={"train.batch_size": batch, "train.epochs": 1,
                                            "lr_schedule.warmup_epochs": 0,
                                            "data.val_fraction": 0.0})
    group = distributed.init()
    arrays = first_samples(task, path, cfg, batch, group, steps + 2)
    steps = num_samples(arrays) // batch - 2
    net = compiled_model(task, cfg, group, steps)
    x, y, w = (*arrays, None, None)[:3]

    def fit(rows: slice) -> None:
        def part(a):
            return None if a is None else tf.nest.map_structure(lambda v: v[rows], a)
        net.fit(part(x), part(y), sample_weight=part(w), batch_size=batch, shuffle=False,
                verbose=0)

    fit(slice(0, 2 * batch))  # trace, warm up
    shutil.rmtree(logdir, ignore_errors=True)
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    fit(slice(2 * batch, (steps + 2) * batch))
    seconds = (time.perf_counter() - start) / steps
    tf.profiler.experimental.stop()
    layers = [layer.name for layer in net.layers]
    by_layer: dict[str, float] = collections.Counter()
    by_kernel: dict[str, float] = collections.Counter()
    for scope, kernel, t in op_times(logdir):
        layer, direction = layer_of(scope, layers)
        by_layer[f"{layer} ({direction})"] += t / steps
        by_kernel[kernel] += t / steps
    return {"model": model, "batch_size": batch, "step_s": seconds,
            "op_s": sum(by_kernel.values()),
            "by_layer": dict(sorted(by_layer.items(), key=lambda kv: -kv[1])),
            "by_kernel": dict(sorted(by_kernel.items(), key=lambda kv: -kv[1]))}


def markdown(results: list[dict[str, Any]], top: int = 10) -> str:
    lines = []
    for r in results:
        lines += [f"### {r['model']}, batch {r['batch_size']}: {1e3 * r['step_s']:.0f} ms a step "
                  f"({r['batch_size'] / r['step_s']:.1f} samples/s); ops "
                  f"{1e3 * r['op_s']:.0f} ms of thread time", "",
                  "| layer (pass) | ms per step | share of op time |", "|---|---|---|"]
        lines += [f"| {k} | {1e3 * v:.1f} | {100 * v / r['op_s']:.0f}% |"
                  for k, v in list(r["by_layer"].items())[:top]]
        lines += ["", "| kernel | ms per step | share of op time |", "|---|---|---|"]
        lines += [f"| {k} | {1e3 * v:.1f} | {100 * v / r['op_s']:.0f}% |"
                  for k, v in list(r["by_kernel"].items())[:top]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["lhc_cnn", "lhc_cnn_15pf"])
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--output", default="runs/bench/profile")
    p.add_argument("--data", default="runs/bench/data",
                   help="folder of the benchmark's generated files (written where missing)")
    args = p.parse_args(argv)
    out, data = Path(args.output), Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    results = [profile(m, args.batch_size, args.steps, str(out / f"trace-{m}"), data)
               for m in args.models]
    (out / "profile.json").write_text(json.dumps(results, indent=2))
    (out / "profile.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CosmoFlow: the TFRecord reader's volumes/s against the training step's, and the 3-D step's
achieved FLOP/s as a fraction of numpy's float32 matrix-product rate, side by side in one run.

For each configuration (default: the shipped 32^3 x 4 one and the published 128^3 x 4 one) it
writes a small TFRecord folder of synthetic volumes (gzip, the MLPerf layout), times

* the reader: batches of the zoo's training stream (files sharded, interleaved, parsed with
  ``parse_example`` + ``decode_raw`` in batches), volumes/s over whole passes;
* the training step: ``train_on_batch`` of the compiled model (the recipe's SGD, MSE) on
  batches from that stream held in memory, median step after warm-up;

and reports the ratio, the forward FLOPs per volume (TensorFlow's profiler; a training step
taken as 3x forward), the achieved GFLOP/s and its fraction of the matmul rate, and the
gradient size (what the allreduce of docs/scaling_out.md moves).

    python -m benchmarks.bench_cosmoflow [--configs shipped published] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CONFIGS = {
    "shipped": {"npix": 32, "batch": 16, "volumes": 64,
                "model": {"conv_filters": 8, "conv_layers": 4, "count_scale": 64.0}},
    "published": {"npix": 128, "batch": 2, "volumes": 8, "model": {}},
}


def measure(name: str, spec: dict, steps: int, folder: str) -> dict:
    import keras

    from benchmarks.common import matmul_gflops
    from benchmarks.measure import forward_flops
    from modelzoo.cosmology.cosmoflow_generator import generate_volumes
    from modelzoo.cosmology.cosmoflow_reader import open_volumes
    from modelzoo.distributed import ProcessGroup
    from modelzoo.registry import build

    data = os.path.join(folder, name)
    npix, batch = spec["npix"], spec["batch"]
    generate_volumes(data, n_volumes=spec["volumes"], npix=npix, val_fraction=0.0,
                     volumes_per_cosmology=spec["volumes"], seed=0, progress=False,
                     formats=("tfrecord",))
    volumes = open_volumes(data, {})
    stream = volumes.dataset("train", batch, ProcessGroup(), seed=0, shuffle=True, repeat=True,
                             steps_per_epoch=spec["volumes"] // batch)
    iterator = iter(stream)
    for _ in range(2):
        next(iterator)
    count, start = 0, time.perf_counter()
    for _ in range(3 * spec["volumes"] // batch):
        x, _ = next(iterator)
        count += len(x)
    reader_rate = count / (time.perf_counter() - start)

    model = build("cosmoflow", input_shape=(npix, npix, npix, 4), **spec["model"])
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss="mse")
    x, y = next(iterator)
    x, y = np.asarray(x), np.asarray(y)
    times = []
    for step in range(steps + 2):
        begin = time.perf_counter()
        model.train_on_batch(x, y)
        if step >= 2:
            times.append(time.perf_counter() - begin)
    train_rate = batch / float(np.median(times))
    flops = forward_flops(model)
    matmul = matmul_gflops()
    achieved = 3 * flops * train_rate / 1e9
    return {"config": name, "input": [npix, npix, npix, 4], "batch": batch,
            "model": spec["model"], "parameters": int(model.count_params()),
            "gradient_mb": 4 * model.count_params() / 1e6,
            "reader_volumes_per_s": reader_rate, "train_volumes_per_s": train_rate,
            "reader_over_train": reader_rate / train_rate,
            "step_s": float(np.median(times)), "train_gflop_per_volume": 3 * flops / 1e9,
            "achieved_gflops": achieved, "matmul_gflops": matmul,
            "fraction_of_matmul": achieved / matmul}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output", default="runs/bench/cosmoflow.json")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.configs:
            results.append(measure(name, CONFIGS[name], args.steps, folder))
            print(json.dumps(results[-1]), flush=True)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as fh:
        json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One measurement process of ``python -m benchmarks``: one model, one data file, one setting.

Run by the driver (``benchmarks/__main__.py``) in a fresh process per measurement, so that
peak memory, thread pools and global Keras settings of one do not leak into the next::

    python -m benchmarks.measure SPEC.json OUT.json

SPEC holds ``model``, ``data``, ``recipe`` (the resolved recipe the model was shipped with),
``batch_size``, ``warmup``, ``steps``, ``budget_s``, ``kind`` and ``variant``:

``kind="timing"``
    inference rate and peak memory; then, from a fresh high-water mark, training through
    :func:`modelzoo.training.train` (the path ``modelzoo train`` takes: the task's HDF5
    stream, callbacks, checkpoints) with its peak memory; the task's reader alone; plain
    ``model.fit`` on the same samples held in memory, compiled the same way; and the model's
    forward FLOPs per sample.
``kind="memory"``
    the same inference and training, for the peak memory only (the driver runs it on a file
    ten times larger).
``kind="plain"``
    only plain ``model.fit`` on in-memory samples, for the speed options (``variant``).

Variants: ``baseline``; ``xla`` (``train.jit_compile``); ``mixed_bfloat16`` and
``mixed_float16`` (``train.precision``); ``nchw`` (Keras's
``channels_first``, the model built for transposed inputs); thread settings come from the
driver as ``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS``.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.common import batch_clock, peak_rss_mb, reset_peak_rss  # noqa: E402
from modelzoo import distributed, training  # noqa: E402
from modelzoo.registry import build, get_spec  # noqa: E402


def forward_flops(model: keras.Model) -> float:
    """Floating-point operations of one sample's forward pass (inference mode), counted by
    TensorFlow's graph profiler on the traced call (a multiply-add counts 2)."""
    def spec(t):
        return tf.TensorSpec((1, *t.shape[1:]), t.dtype)

    inputs = [spec(t) for t in model.inputs]
    graph = tf.function(lambda *x: model(x[0] if len(x) == 1 else list(x), training=False)
                        ).get_concrete_function(*inputs).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def take_batches(dataset, count: int) -> list[tuple]:
    """The first ``count`` batches of ``dataset`` as (nested) numpy tuples."""
    out = []
    for batch in dataset.take(count):
        batch = batch if isinstance(batch, tuple) else (batch,)
        out.append(tf.nest.map_structure(np.asarray, batch))
    return out


def stack(batches: list[tuple]) -> tuple:
    """Batches joined into one (nested) tuple of arrays."""
    return tf.nest.map_structure(lambda *parts: np.concatenate(parts), *batches)


def head(arrays: tuple, rows: int) -> tuple:
    """The first ``rows`` samples of every array."""
    return tf.nest.map_structure(lambda a: a[:rows], arrays)


def num_samples(arrays: tuple) -> int:
    return len(tf.nest.flatten(arrays)[0])


def rate(clock: Any, batch_size: int) -> dict[str, float]:
    """Samples per second from a batch clock: over the median step (robust to other jobs'
    bursts on a shared machine) and over the mean, with the core share while timed."""
    steps = np.asarray(clock.steps)
    if len(steps) == 0:
        return {"samples_per_s": float("nan"), "steps": 0}
    return {"samples_per_s": batch_size / float(np.median(steps)),
            "mean_samples_per_s": batch_size * len(steps) / float(steps.sum()),
            "step_ms": 1e3 * float(np.median(steps)), "steps": int(len(steps)),
            "cpu_share": clock.cpu / max(clock.wall, 1e-9)}


def to_layout(arrays: tuple[np.ndarray, ...], variant: str) -> tuple[np.ndarray, ...]:
    """Images NHWC -> NCHW for the ``nchw`` variant (inputs only)."""
    if variant != "nchw":
        return arrays
    x = arrays[0]
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise SystemExit("the nchw variant needs one image input")
    return (np.ascontiguousarray(np.moveaxis(x, -1, 1)), *arrays[1:])


def model_config(cfg: dict[str, Any], variant: str) -> dict[str, Any]:
    config = dict(cfg["model"]["config"])
    if variant == "nchw":
        shape = tuple(config.get("input_shape")
                      or get_spec(cfg["model"]["name"]).defaults.get("input_shape") or ())
        if len(shape) != 3:
            raise SystemExit("the nchw variant needs a builder with a 3-d input_shape")
        config["input_shape"] = (shape[2], shape[0], shape[1])
    return config


def inference(cfg: dict[str, Any], arrays: tuple[np.ndarray, ...], batch_size: int,
              budget_s: float) -> dict[str, float]:
    """Predictions per second of a freshly built model on ``arrays[0]``, after one warm-up
    pass, and the process's peak memory by then."""
    keras.utils.set_random_seed(int(cfg["train"]["seed"]))
    with training.dtype_policy(training.precision_policy(cfg)):
        net = build(cfg["model"]["name"], **cfg["model"]["config"])
    x = arrays[0]
    net.predict(x, batch_size=batch_size, verbose=0)  # trace
    passes, start = 0, time.perf_counter()
    while passes < 2 or (time.perf_counter() - start < budget_s and passes < 20):
        net.predict(x, batch_size=batch_size, verbose=0)
        passes += 1
    seconds = time.perf_counter() - start
    result = {"samples_per_s": passes * num_samples(x) / seconds, "peak_mb": peak_rss_mb()}
    del net
    gc.collect()
    return result


def zoo_training(spec: dict[str, Any], overrides: dict[str, Any], work: str,
                 stop_after: int | None) -> tuple[dict[str, float], int]:
    """Training through ``modelzoo.training.train``, timed per step after the warm-up."""
    clock = batch_clock(skip_epochs=0, skip_steps=spec["warmup"], stop_after=stop_after,
                        budget_s=spec["budget_s"])
    peak = {}

    class FitPeak(keras.callbacks.Callback):
        # The training loop's own peak, before the task's finalize (batch-norm recalibration,
        # prior fits) that runs over up to a fixed number of training rows afterwards.
        def on_train_end(self, logs: dict | None = None) -> None:
            peak["fit_peak_mb"] = peak_rss_mb()

    training.train(spec["model"], spec["data"], run_dir=os.path.join(work, "run"),
                   recipe=spec["recipe"], overrides=overrides, resume=False, verbose=0,
                   callbacks=[clock, FitPeak()])
    return {**rate(clock, spec["batch_size"]), **peak}, clock.batches


def reader(task: Any, spec: dict[str, Any], cfg: dict[str, Any], group: Any,
           batches: int) -> dict[str, float]:
    """Samples per second of the task's training stream alone (after the warm-up batches)."""
    data = task.datasets(spec["data"], cfg.get("data", {}), spec["batch_size"], group,
                         int(cfg["train"]["seed"]), 0)
    count, start = 0, None
    for i, _ in enumerate(data.train.take(batches)):
        if i + 1 == spec["warmup"]:
            start = time.perf_counter()
        elif i + 1 > spec["warmup"]:
            count += 1
    seconds = time.perf_counter() - start if start is not None else float("nan")
    return {"samples_per_s": count * spec["batch_size"] / seconds, "batches": count}


def first_samples(task: Any, path: str, cfg: dict[str, Any], batch_size: int, group: Any,
                  count: int) -> tuple:
    """The first ``count`` batches the zoo's training takes from ``path`` (same seed, first
    epoch), as in-memory arrays: plain fit and the step profile train on exactly these."""
    data = task.datasets(path, cfg.get("data", {}), batch_size, group,
                         int(cfg["train"]["seed"]), 0)
    return stack(take_batches(data.train, min(count, data.steps_per_epoch)))


def compiled_model(task: Any, cfg: dict[str, Any], group: Any, steps: int,
                   variant: str = "baseline") -> keras.Model:
    """The model built (in the recipe's precision) and compiled as the zoo's training does."""
    keras.utils.set_random_seed(int(cfg["train"]["seed"]))
    with training.dtype_policy(training.precision_policy(cfg)):
        net = build(cfg["model"]["name"], **model_config(cfg, variant))
    training.compile_model(net, cfg, task, steps, group)  # train.jit_compile included
    return net


def plain_fit(task: Any, spec: dict[str, Any], cfg: dict[str, Any], group: Any,
              arrays: tuple[np.ndarray, ...], variant: str) -> dict[str, float]:
    """``model.fit`` on ``arrays`` in memory, the model built and compiled as the zoo does."""
    batch_size = spec["batch_size"]
    net = compiled_model(task, cfg, group, num_samples(arrays) // batch_size, variant)
    arrays = to_layout(arrays, variant)
    clock = batch_clock(skip_epochs=0, skip_steps=spec["warmup"])
    x, y, w = (*arrays, None, None)[:3]
    net.fit(x, y, sample_weight=w, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
            callbacks=[clock])
    result = rate(clock, batch_size)
    result["jit_compile"] = bool(net.jit_compile)
    return result


def main(argv: list[str]) -> int:
    with open(argv[0]) as fh:
        spec = json.load(fh)
    variant = spec.get("variant", "baseline")
    if variant == "nchw":
        keras.config.set_image_data_format("channels_first")
    overrides = {"train.batch_size": spec["batch_size"], "train.epochs": 1,
                 "lr_schedule.warmup_epochs": 0, "data.val_fraction": 0.0,
                 **spec.get("overrides", {})}
    if variant == "xla":
        overrides["train.jit_compile"] = True
    if variant.startswith("mixed_"):
        overrides["train.precision"] = variant
    cfg, task = training.resolve(spec["model"], spec["data"], recipe=spec["recipe"],
                                 overrides=overrides)
    group = distributed.init()
    batch_size, warmup = spec["batch_size"], spec["warmup"]

    def samples(count: int) -> tuple:
        return first_samples(task, spec["data"], cfg, batch_size, group, count)

    report: dict[str, Any] = {"model": spec["model"], "variant": variant,
                              "batch_size": batch_size, "kind": spec["kind"]}
    if spec["kind"] == "plain":
        report["plain"] = plain_fit(task, spec, cfg, group,
                                    samples(warmup + spec["steps"]), variant)
        if variant == "baseline":  # the FLOP count every variant's fraction of matmul uses
            keras.utils.set_random_seed(int(cfg["train"]["seed"]))
            report["forward_flops"] = forward_flops(build(cfg["model"]["name"],
                                                          **model_config(cfg, variant)))
    else:
        report["inference"] = inference(cfg, samples(4), batch_size, spec["budget_s"] / 4)
        report["peak_reset"] = reset_peak_rss()
        with tempfile.TemporaryDirectory(dir=spec.get("work")) as work:
            report["zoo"], report["zoo"]["batches"] = zoo_training(
                spec, overrides, work, warmup + spec["steps"])
        report["train_peak_mb"] = peak_rss_mb()
        if spec["kind"] == "timing":
            # Plain fit takes as many steps as the zoo's training timed; the reader more (it is
            # fast), across epoch ends, where its pipeline restarts.
            batches = warmup + max(3, report["zoo"]["steps"])
            report["reader"] = reader(task, spec, cfg, group, warmup + max(30, 5 * spec["steps"]))
            report["plain"] = plain_fit(task, spec, cfg, group, samples(batches), variant)
            keras.utils.set_random_seed(int(cfg["train"]["seed"]))
            report["forward_flops"] = forward_flops(
                build(cfg["model"]["name"], **model_config(cfg, variant)))
    with open(argv[1], "w") as fh:
        json.dump(report, fh, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Everything Horovod: process group, gradient averaging, broadcast, metric averaging.

Horovod 0.28.1's own Keras integration does not work with Keras 3: its ``DistributedOptimizer``
hooks methods Keras 3 optimizers no longer call, so ``fit`` runs without error while every rank
trains on its own gradients and the replicas drift apart; ``DistributedGradientTape`` and its
callbacks raise (horovod issue #4290). This module therefore uses only Horovod's tensor
collectives (``grouped_allreduce``, ``allreduce``, ``broadcast``, ``allgather``), which work on
TensorFlow 2.21 eagerly and inside ``tf.function``.

Without ``horovodrun`` (or without Horovod installed) :func:`init` returns a single-process
group with the same interface, so one training path serves laptops and clusters. Under a
launcher, :func:`init` also gives each rank one GPU (by local rank) or, on CPU nodes, its share
of the cores, and makes an uncaught exception on any rank end the whole job promptly.

References: A. Sergeev, M. Del Balso, "Horovod: fast and easy distributed deep learning in
TensorFlow", arXiv:1802.05799; P. Goyal et al., "Accurate, Large Minibatch SGD: Training
ImageNet in 1 Hour", arXiv:1706.02677 (linear learning-rate scaling with warm-up).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from modelzoo.errors import ConfigError

# Variables horovodrun (Gloo) and mpirun (Open MPI / MPICH / Slurm) set in each worker.
_LAUNCHER_SIZE_VARS = ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE",
                       "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")


def launcher_size() -> tuple[str, int] | None:
    """(variable, world size) announced by the launcher that started this process (horovodrun,
    mpirun, srun), or None when started alone."""
    for name in _LAUNCHER_SIZE_VARS:
        if int(os.environ.get(name, "1")) > 1:
            return name, int(os.environ[name])
    return None


@dataclass(frozen=True)
class ProcessGroup:
    """The ranks taking part in training. ``hvd`` is the Horovod module, or None when alone."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    hvd: Any = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_mean(self, values: dict[str, float], name: str = "metrics") -> dict[str, float]:
        """Average scalar values over the ranks that have them; every rank gets every key.

        Keys may differ between ranks: with fewer validation rows than ranks, some ranks have
        no ``val_`` metrics, and a plain allreduce of unequal vectors would fail the job.
        """
        if self.hvd is None:
            return dict(values)
        import tensorflow as tf

        key_lists = self.hvd.allgather_object(sorted(values), name=f"{name}_keys")
        keys = sorted(set().union(*key_lists))
        if not keys:
            return {}
        # (sum, count) per key: a rank without a key adds nothing to its mean.
        pairs = [[float(values[k]), 1.0] if k in values else [0.0, 0.0] for k in keys]
        totals = self.hvd.allreduce(
            tf.constant(pairs, dtype=tf.float64), op=self.hvd.Sum, name=name
        ).numpy()
        return {k: float(s / n) for k, (s, n) in zip(keys, totals)}

    def allreduce_sum(self, array: np.ndarray, name: str = "sum") -> np.ndarray:
        """Element-wise sum of ``array`` (same shape on every rank) over the ranks, in float64:
        a global statistic from per-shard parts (counts, sums)."""
        array = np.asarray(array, np.float64)
        if self.hvd is None:
            return array
        import tensorflow as tf

        return self.hvd.allreduce(tf.constant(array), op=self.hvd.Sum, name=name).numpy()

    def allgather(self, array: np.ndarray, name: str = "gather") -> np.ndarray:
        """Concatenate each rank's ``array`` along axis 0, in rank order."""
        if self.hvd is None:
            return np.asarray(array)
        import tensorflow as tf

        return self.hvd.allgather(tf.convert_to_tensor(array), name=name).numpy()

    def broadcast_variables(self, variables: list, root: int = 0) -> None:
        """Overwrite ``variables`` on every rank with their values on ``root``."""
        if self.hvd is None:
            return
        import tensorflow as tf

        for i, var in enumerate(variables):
            value = self.hvd.broadcast(tf.convert_to_tensor(var), root, name=f"bcast_{i}")
            var.assign(value)

    def broadcast_int(self, value: int, root: int = 0, name: str = "bcast_int") -> int:
        """``value`` as held by ``root``, on every rank (decisions all ranks must agree on, e.g.
        the epoch to resume from, when run folders are node-local or files appear mid-start)."""
        if self.hvd is None:
            return int(value)
        import tensorflow as tf

        return int(self.hvd.broadcast(tf.constant(int(value), tf.int64), root, name=name).numpy())

    def barrier(self) -> None:
        if self.hvd is not None:
            self.hvd.allreduce(np.zeros(1, np.float32), name="barrier")


_GROUP: ProcessGroup | None = None


def launched_distributed() -> bool:
    """Whether this process was started by horovodrun/mpirun as one of several workers."""
    return launcher_size() is not None


def init(*, pin_gpu: bool = True) -> ProcessGroup:
    """Join the Horovod job when launched by horovodrun/mpirun, else return a one-process group.

    With GPUs present each local rank sees only GPU ``local_rank`` (call before building models).
    """
    global _GROUP
    if _GROUP is not None:
        return _GROUP
    if not launched_distributed():
        _GROUP = ProcessGroup()
        return _GROUP
    try:
        import horovod.tensorflow as hvd
    except ImportError as err:
        raise RuntimeError(
            "this process was launched as one of several workers (horovodrun/mpirun), but "
            f"Horovod cannot be imported ({err}); install it with `make venv` (see README)"
        ) from None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        # Horovod's background thread wakes every HOROVOD_CYCLE_TIME ms (default 1) to
        # coordinate with the other ranks, busy or not. A CPU rank shares its cores with that
        # thread, and 1000 wake-ups a second cost lhc_cnn about 15% of its throughput with one
        # core per rank; a training step here takes hundreds of milliseconds, and the gradient
        # buckets overlap backpropagation, so a 10 ms cycle delays nothing that matters.
        os.environ.setdefault("HOROVOD_CYCLE_TIME", "10")
    hvd.init()
    variable, expected = launcher_size()
    if hvd.size() != expected:
        # E.g. mpirun or srun starting a Gloo-only Horovod: every process would train alone,
        # as rank 0 of 1, and all of them would write the same run folder.
        raise RuntimeError(
            f"the launcher started {expected} processes ({variable}={expected}) but Horovod sees "
            f"a job of {hvd.size()}: this Horovod cannot join that launcher's job (the zoo's "
            "default build has Gloo only, no MPI). Start the job with horovodrun or "
            "./horovod_run.sh (which work under SLURM and PBS too), or build Horovod with MPI "
            "(docs/scaling_out.md)"
        )
    group = ProcessGroup(hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size(), hvd)
    if pin_gpu and gpus:
        tf.config.set_visible_devices(gpus[group.local_rank % len(gpus)], "GPU")
        tf.config.experimental.set_memory_growth(gpus[group.local_rank % len(gpus)], True)
    if not gpus:
        _share_cpu_cores(group.local_size)
    if group.size > 1:
        _install_excepthook(group.rank)
    _GROUP = group
    return group


def _share_cpu_cores(local_size: int) -> None:
    """Split this node's cores between its ranks (k ranks per node each get cores // k threads).

    TensorFlow otherwise gives every process a pool of all the node's cores, so k ranks on one
    CPU node run k x cores threads that preempt each other in the middle of every step. A rank
    the launcher already bound to some cores (mpirun --bind-to, srun --cpu-bind) uses those,
    and an explicit ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` is respected.
    """
    if local_size <= 1:
        return
    import tensorflow as tf

    node_cores = os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = node_cores
    threads = allowed if allowed < node_cores else max(1, node_cores // local_size)
    try:
        if "TF_NUM_INTRAOP_THREADS" not in os.environ:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        if "TF_NUM_INTEROP_THREADS" not in os.environ:
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:
        # TensorFlow already ran an op in this process; its pools are fixed. Harmless, slower.
        print(
            f"modelzoo: could not limit TensorFlow to {threads} threads per rank (already "
            "initialised); set TF_NUM_INTRAOP_THREADS to avoid oversubscribing the cores",
            file=sys.stderr,
        )


# How long a rank whose collective failed because another rank died waits before exiting: long
# enough for the launcher to see the rank that failed first exit first.
_SECONDARY_EXIT_DELAY_S = 5.0


def _install_excepthook(rank: int) -> None:
    """Make an uncaught exception on any rank end that rank at once, after printing it.

    Left to the interpreter's normal exit, the failing rank first runs Horovod's shutdown and
    TensorFlow's teardown, which can outlast the ranks it leaves waiting in a collective; the
    launcher then names one of those innocent ranks ("Horovod has been shut down") as the first
    failure. Here the failing rank exits immediately, and a rank whose only error is that
    shutdown says so in one line and gives the failing rank a head start, so that horovodrun
    (or mpirun, or srun --kill-on-bad-exit) names the right rank and stops the others.
    """
    previous = sys.excepthook

    def hook(kind, value, tb) -> None:
        try:
            sys.stdout.flush()
            if "Horovod has been shut down" in str(value):
                print(
                    f"modelzoo: rank {rank} stopped because another rank failed (its error is "
                    "above)", file=sys.stderr, flush=True,
                )
                time.sleep(_SECONDARY_EXIT_DELAY_S)
            else:
                print(f"modelzoo: rank {rank} failed; stopping the job", file=sys.stderr)
                previous(kind, value, tb)
        except BaseException:  # never let a broken hook (or Ctrl-C) skip the exit below
            traceback.print_exception(kind, value, tb)
        finally:
            sys.stderr.flush()
            os._exit(1)

    sys.excepthook = hook


def gradient_buckets(grads: list, bucket_bytes: float) -> list[list[int]]:
    """Indices of the non-None ``grads``, last first, cut into groups of about ``bucket_bytes``.

    Gradients come out of backpropagation last layer first. A group's allreduce depends only on
    its own gradients, so TensorFlow starts it as soon as they exist and the exchange overlaps
    the backpropagation through the layers before them; one group for everything would wait
    for the whole backward pass. ``bucket_bytes <= 0`` gives a single group.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in reversed(range(len(grads))):
        grad = grads[i]
        if grad is None:
            continue
        current.append(i)
        values = getattr(grad, "values", grad)  # IndexedSlices carry their rows in .values
        dims = [d if d is not None else 0 for d in values.shape]
        itemsize = getattr(values.dtype, "itemsize", None) or values.dtype.size  # numpy or tf
        size += int(np.prod(dims)) * itemsize
        if bucket_bytes > 0 and size >= bucket_bytes:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def distributed_optimizer(
    optimizer: keras.optimizers.Optimizer,
    group: ProcessGroup,
    *,
    fp16_compression: bool = False,
    bucket_mb: float = 4.0,
) -> keras.optimizers.Optimizer:
    """Return ``optimizer`` made to average gradients over ``group`` before every update.

    The average happens in ``apply``, which every Keras 3 training step calls (``fit`` and custom
    loops alike): a few grouped allreduces per step, over buckets of about ``bucket_mb`` MiB
    taken in backpropagation order (see :func:`gradient_buckets`; 0 means one grouped allreduce
    of everything). ``fp16_compression`` halves the bytes exchanged (gradients travel as
    float16 and are cast back).
    """
    if group.hvd is None:
        return optimizer
    hvd = group.hvd
    compression = hvd.Compression.fp16 if fp16_compression else hvd.Compression.none
    bucket_bytes = bucket_mb * 2**20
    base = type(optimizer)

    class Averaging(base):
        def apply(self, grads, trainable_variables=None):
            grads = list(grads)
            for bucket in gradient_buckets(grads, bucket_bytes):
                averaged = hvd.grouped_allreduce(
                    [grads[i] for i in bucket], op=hvd.Average, compression=compression
                )
                for i, g in zip(bucket, averaged):
                    grads[i] = g
            return super().apply(grads, trainable_variables)

    Averaging.__name__ = base.__name__
    Averaging.__qualname__ = base.__qualname__
    return Averaging.from_config(optimizer.get_config())


# Added to the seed of every layer's random stream on rank r (times r); a large prime keeps the
# ranks' streams far apart whatever seeds the layers were built with.
_RANK_SEED_STRIDE = 1_000_003


def sync_initial_state(model: keras.Model, group: ProcessGroup) -> None:
    """Ready a compiled model for data-parallel ``fit``: no XLA for the train step, rank 0's
    weights and optimizer state on every rank, then separate dropout and other in-model random
    streams per rank. Call it after ``compile`` and before ``fit``.

    The optimizer is built first if needed (its slots must exist to be broadcast). After the
    broadcast every layer's seed generator is identical on all ranks, so rank 0's example i and
    rank 1's example i would get the same dropout mask at every step; one process with the
    global batch draws independent masks, so each rank offsets its seeds by its rank.
    """
    if group.hvd is None:
        return
    # Horovod's collectives have no XLA kernels (its XLA ops are GPU-only, opt-in, and not in
    # the zoo's build), so an XLA-compiled train step fails with "No registered
    # 'HorovodGroupedAllreduce' OpKernel for XLA_..._JIT". Keras compiles the step with XLA by
    # default (jit_compile="auto") wherever a GPU is visible: turn it off for the job.
    if getattr(model, "jit_compile", False):
        model.jit_compile = False
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    variables = list(model.variables)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    group.broadcast_variables(variables)
    if group.rank:
        for var in model.variables:
            if var.name == "seed_generator_state":
                state = np.asarray(var)
                var.assign(state + np.array([group.rank * _RANK_SEED_STRIDE, 0], state.dtype))


def average_non_trainable(model: keras.Model, group: ProcessGroup, name: str = "state") -> int:
    """Average the model's non-trainable float variables over the ranks; returns how many.

    Gradients keep the trainable weights identical on every rank, but batch normalisation's
    moving mean and variance follow each rank's own batches: without this, the weights saved by
    rank 0 would carry rank 0's statistics alone, and ranks would evaluate differently. Variables
    that are already identical everywhere (a fitted prior, adapted normalisation) are unchanged.
    """
    variables = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]
    if group.hvd is None or not variables:
        return 0
    import tensorflow as tf

    averaged = group.hvd.grouped_allreduce([tf.convert_to_tensor(v) for v in variables],
                                           op=group.hvd.Average, name=name)
    for variable, value in zip(variables, averaged, strict=True):
        variable.assign(value)
    return len(variables)


class AverageState(keras.callbacks.Callback):
    """At every epoch end, before anything is checkpointed or validated on the next epoch, the
    model's non-trainable state (batch-norm statistics) becomes the mean over ranks."""

    def __init__(self, group: ProcessGroup) -> None:
        super().__init__()
        self.group = group

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        average_non_trainable(self.model, self.group, name=f"state_{epoch}")


class AverageMetrics(keras.callbacks.Callback):
    """Replace each epoch's logged metrics by their mean over ranks, in place, so the callbacks
    after it (checkpointing, CSV, TensorBoard, early stopping) see the same numbers everywhere."""

    def __init__(self, group: ProcessGroup) -> None:
        super().__init__()
        self.group = group

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None or self.group.hvd is None:
            return
        scalars = {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}
        logs.update(self.group.allreduce_mean(scalars, name=f"epoch_metrics_{epoch}"))


def scaled_learning_rate(base_lr: float, global_batch: int, base_batch: int, scaling: str) -> float:
    """Peak learning rate for ``global_batch`` given one tuned at ``base_batch`` (Goyal et al.)."""
    ratio = global_batch / base_batch
    if scaling == "linear":
        return base_lr * ratio
    if scaling == "sqrt":
        return base_lr * ratio**0.5
    if scaling == "none":
        return base_lr
    raise ConfigError(f"lr scaling must be 'linear', 'sqrt' or 'none', got {scaling!r}")


@keras.saving.register_keras_serializable(package="modelzoo")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``peak * warmup_start_factor`` to ``peak`` over ``warmup_steps``, then
    ``peak * decay_factors[i]`` from step ``decay_steps[i]`` on (factors are relative to the peak,
    as in the CosmoFlow reference: x0.25 at epoch 32, x0.125 at epoch 64)."""

    def __init__(
        self,
        peak: float,
        warmup_steps: int,
        decay_steps: tuple[int, ...] = (),
        decay_factors: tuple[float, ...] = (),
        warmup_start_factor: float = 0.0,
    ) -> None:
        if len(decay_steps) != len(decay_factors):
            raise ConfigError("decay_steps and decay_factors differ in length")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = tuple(int(s) for s in decay_steps)
        self.decay_factors = tuple(float(f) for f in decay_factors)
        self.warmup_start_factor = float(warmup_start_factor)

    def __call__(self, step):
        from keras import ops

        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.peak, "float32")
        if self.warmup_steps > 0:
            start = self.warmup_start_factor
            frac = ops.minimum((step + 1.0) / self.warmup_steps, 1.0)
            lr = lr * (start + (1.0 - start) * frac)
        for boundary, factor in zip(self.decay_steps, self.decay_factors):
            lr = ops.where(step >= boundary, self.peak * factor, lr)
        return lr

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "decay_steps": list(self.decay_steps),
            "decay_factors": list(self.decay_factors),
            "warmup_start_factor": self.warmup_start_factor,
        }

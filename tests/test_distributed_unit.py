"""Single-process checks of the distributed layer, runnable where Horovod is not installed:
learning-rate scaling and warm-up, sharding and per-epoch streams, the one-process fallback,
checkpoint bookkeeping, and how ``horovod_run.sh`` turns hosts into a horovodrun command."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import toy_lhc_arrays, write_benchmark

from modelzoo import distributed, training
from modelzoo.distributed import WarmupSchedule, scaled_learning_rate
from modelzoo.hdf5 import shard_range
from modelzoo.lhc.reader import open_lhc
from modelzoo.registry import build

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "distributed_workers" / "train_worker.py"


# --- learning rate ------------------------------------------------------------------------

def _lrs(schedule: WarmupSchedule, steps: int) -> list[float]:
    return [float(schedule(step)) for step in range(steps)]


def test_warmup_rises_linearly_to_the_peak_then_holds():
    # peak 0.4 over 4 warm-up steps from 0: step s gives 0.4 * (s + 1) / 4.
    assert _lrs(WarmupSchedule(0.4, warmup_steps=4), 7) == pytest.approx(
        [0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4]
    )


def test_warmup_start_factor_and_decay_steps():
    schedule = WarmupSchedule(
        1.0, warmup_steps=2, decay_steps=(4, 6), decay_factors=(0.25, 0.125),
        warmup_start_factor=0.5,
    )
    # step 0: 0.5 + 0.5 * 1/2; step 1: the peak; decays are fractions of the peak.
    assert _lrs(schedule, 8) == pytest.approx([0.75, 1.0, 1.0, 1.0, 0.25, 0.25, 0.125, 0.125])


def test_no_warmup_is_the_peak_from_step_zero():
    assert _lrs(WarmupSchedule(3e-3, warmup_steps=0), 3) == pytest.approx([3e-3] * 3)


def test_warmup_schedule_round_trips_through_keras_serialization():
    schedule = WarmupSchedule(0.2, 10, (20,), (0.5,), 0.1)
    again = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert isinstance(again, WarmupSchedule)
    assert _lrs(again, 25) == pytest.approx(_lrs(schedule, 25))
    with pytest.raises(ValueError, match="differ in length"):
        WarmupSchedule(0.1, 1, decay_steps=(1, 2), decay_factors=(0.5,))


def test_learning_rate_scales_with_the_global_batch():
    assert scaled_learning_rate(1e-3, 256, 64, "linear") == pytest.approx(4e-3)
    assert scaled_learning_rate(1e-3, 256, 64, "sqrt") == pytest.approx(2e-3)
    assert scaled_learning_rate(1e-3, 256, 64, "none") == pytest.approx(1e-3)
    assert scaled_learning_rate(1e-3, 32, 64, "linear") == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="lr scaling"):
        scaled_learning_rate(1e-3, 256, 64, "cubic")


def test_make_optimizer_uses_the_global_batch_and_epochs_of_warmup():
    recipe = {"optimizer": {"name": "sgd", "learning_rate": 0.1},
              "lr_schedule": {"base_batch_size": 32, "scaling": "linear", "warmup_epochs": 2}}
    opt = training.make_optimizer(recipe, global_batch=128, steps_per_epoch=5)
    schedule = opt.get_config()["learning_rate"]["config"]
    assert schedule["peak"] == pytest.approx(0.4) and schedule["warmup_steps"] == 10


# --- gradient buckets --------------------------------------------------------------------

def test_gradient_buckets_run_last_layer_first_and_skip_missing_gradients():
    mib = 2**20
    grads = [np.zeros(mib // 4, np.float32),         # 1 MiB, first layer
             None,                                   # a variable without a gradient
             np.zeros(mib // 4, np.float32),         # 1 MiB
             np.zeros(4 * mib // 4, np.float32),     # 4 MiB, e.g. a big dense kernel
             np.zeros(2, np.float32)]                # last layer's bias
    assert distributed.gradient_buckets(grads, 4 * mib) == [[4, 3], [2, 0]]
    assert distributed.gradient_buckets(grads, 0) == [[4, 3, 2, 0]]
    assert distributed.gradient_buckets([None, None], 4 * mib) == []


# --- sharding and epoch streams -----------------------------------------------------------

@pytest.mark.parametrize("num_rows", [1, 7, 64, 97, 1000])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_are_contiguous_disjoint_balanced_and_cover_all_rows(num_rows, size):
    ranges = [shard_range(num_rows, rank, size) for rank in range(size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == num_rows
    for (_, stop), (start, _) in zip(ranges, ranges[1:]):
        assert stop == start  # contiguous, so no row is shared or skipped
    lengths = [stop - start for start, stop in ranges]
    assert max(lengths) - min(lengths) <= 1
    with pytest.raises(ValueError):
        shard_range(num_rows, size, size)


def test_repeated_stream_is_whole_epochs_that_resume_identically(tmp_path):
    images = open_lhc(write_benchmark(tmp_path / "toy.h5", toy_lhc_arrays(n=100, size=4)))
    rows, batch, steps = (10, 90), 8, 10  # 80 rows: exactly 10 batches per epoch

    def first_batches(first_epoch: int, count: int, shuffle: bool = True) -> list[np.ndarray]:
        ds = images.dataset(rows, batch, shuffle=shuffle, seed=3, repeat=True,
                            drop_remainder=True, first_epoch=first_epoch,
                            steps_per_epoch=steps, block_rows=16)
        return [x.numpy() for x, _, _ in ds.take(count)]

    straight = first_batches(0, 3 * steps)
    for epoch in range(3):
        # Pixel (0, 0) of channel 0 identifies an event: every event once per epoch.
        seen = np.concatenate([b[:, 0, 0, 0] for b in straight[epoch * steps:(epoch + 1) * steps]])
        assert len(np.unique(seen)) == rows[1] - rows[0]
    assert not np.array_equal(straight[0], straight[steps])  # reshuffled each epoch
    # A run resumed at epoch 2 gets exactly the batches an uninterrupted run gets in epoch 2.
    resumed = first_batches(2, steps)
    assert all(np.array_equal(a, b) for a, b in zip(straight[2 * steps:], resumed, strict=True))
    # Unshuffled, every epoch is the file order.
    plain = first_batches(0, 2 * steps, shuffle=False)
    assert all(np.array_equal(a, b) for a, b in zip(plain[:steps], plain[steps:], strict=True))


# --- the one-process fallback -------------------------------------------------------------

@pytest.fixture
def alone(monkeypatch):
    """A process not started by a launcher, with init's cached group cleared."""
    for var in distributed._LAUNCHER_SIZE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(distributed, "_GROUP", None)


def test_launcher_detection(monkeypatch, alone):
    assert not distributed.launched_distributed()
    monkeypatch.setenv("HOROVOD_SIZE", "1")
    assert not distributed.launched_distributed()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed.launched_distributed()


def test_init_alone_gives_a_one_process_group_with_identity_collectives(alone):
    group = distributed.init()
    assert (group.rank, group.size, group.local_rank, group.local_size) == (0, 1, 0, 1)
    assert group.is_root and group.hvd is None
    assert distributed.init() is group  # cached
    assert group.allreduce_mean({"loss": 2.5, "acc": 0.5}) == {"loss": 2.5, "acc": 0.5}
    np.testing.assert_array_equal(group.allgather(np.arange(3)), np.arange(3))
    assert group.broadcast_int(7) == 7
    group.barrier()

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    before = [w.copy() for w in model.get_weights()]
    optimizer = keras.optimizers.SGD(0.1)
    assert distributed.distributed_optimizer(optimizer, group) is optimizer
    model.compile(optimizer=optimizer, loss="mse")
    distributed.sync_initial_state(model, group)
    group.broadcast_variables(model.variables)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    logs = {"loss": 1.0, "val_loss": 2.0}
    distributed.AverageMetrics(group).on_epoch_end(0, logs)
    assert logs == {"loss": 1.0, "val_loss": 2.0}


def test_launched_without_horovod_fails_clearly(monkeypatch, alone):
    monkeypatch.setenv("HOROVOD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)  # import raises ImportError
    with pytest.raises(RuntimeError, match="Horovod cannot be imported"):
        distributed.init()


_WITHOUT_HOROVOD = """
import runpy, sys
class NoHorovod:  # the import system of a machine where Horovod is not installed
    def find_spec(self, name, path=None, target=None):
        if name == "horovod" or name.startswith("horovod."):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoHorovod())
worker = sys.argv.pop(1)
runpy.run_path(worker, run_name="__main__")
"""


@pytest.mark.slow
def test_trains_single_process_where_horovod_is_not_installed(tmp_path):
    data = write_benchmark(tmp_path / "toy.h5", toy_lhc_arrays(n=64, size=8))
    env = {k: v for k, v in os.environ.items() if k not in distributed._LAUNCHER_SIZE_VARS}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_HOROVOD, str(WORKER), "--data", data,
         "--run-dir", str(tmp_path / "run"), "--out", str(out), "--epochs", "1"],
        capture_output=True, text=True, timeout=300,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "rank0.json").read_text())
    assert report["size"] == 1 and report["final_epoch"] == 1 and report["weights_finite"]
    assert not report["horovod_imported"]
    assert (tmp_path / "run" / "model.weights.h5").exists()


# --- checkpoint bookkeeping ---------------------------------------------------------------

_TINY_CNN = {"input_shape": (8, 8, 1), "filters": 2, "dense_units": 2, "dropout": 0.0}


def _compiled_model() -> keras.Model:
    model = build("lhc_cnn", **_TINY_CNN)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _epochs_on_disk(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name != "latest.json")


def test_checkpoints_keep_the_newest_and_never_the_one_just_written(tmp_path):
    model = _compiled_model()
    first = training._Checkpoint(str(tmp_path), 2, "lhc_cnn", _TINY_CNN, world_size=1)
    first.set_model(model)
    for epoch in range(5):
        first.on_epoch_end(epoch, {"loss": 1.0})
    assert _epochs_on_disk(tmp_path) == ["epoch-0004", "epoch-0005"]
    assert training.latest_checkpoint(str(tmp_path))[1] == 5

    # A fresh run in the same folder (--no-resume): its epoch 1 is the newest checkpoint, and
    # the old run's higher epochs go (name order would have deleted epoch 1 instead).
    again = training._Checkpoint(str(tmp_path), 2, "lhc_cnn", _TINY_CNN, world_size=1)
    again.set_model(model)
    again.on_epoch_end(0, {"loss": 1.0})
    assert _epochs_on_disk(tmp_path) == ["epoch-0001"]
    path, epoch = training.latest_checkpoint(str(tmp_path))
    assert epoch == 1 and os.path.isdir(path)


def test_history_is_truncated_to_the_checkpoint_on_resume(tmp_path):
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([["epoch", "loss"], [0, 0.9], [1, 0.8], [2, 0.7], [3, 0.6]])
    training._truncate_history(str(path), 2)
    with open(path) as fh:
        assert [row["epoch"] for row in csv.DictReader(fh)] == ["0", "1"]
    training._truncate_history(str(tmp_path / "missing.csv"), 1)  # no file: nothing to do


# --- horovod_run.sh -----------------------------------------------------------------------

_ALLOCATION_VARS = ("SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_NTASKS_PER_NODE",
                    "SLURM_TASKS_PER_NODE", "PBS_NODEFILE")


def _dry_run(*args: str, **env: str) -> list[str]:
    """The horovodrun command line horovod_run.sh would execute."""
    base = {k: v for k, v in os.environ.items() if k not in _ALLOCATION_VARS}
    proc = subprocess.run(
        [str(ROOT / "horovod_run.sh"), "--dry-run", *args], capture_output=True, text=True,
        env={**base, "HOROVODRUN": "horovodrun", "PYTHON": sys.executable, **env}, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return shlex.split(proc.stdout)


def _np_and_hosts(command: list[str]) -> tuple[int, str]:
    return int(command[command.index("-np") + 1]), command[command.index("-H") + 1]


@pytest.mark.slow
def test_wrapper_help_and_errors():
    script = str(ROOT / "horovod_run.sh")
    shown = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "Usage: ./horovod_run.sh" in shown.stdout
    for bad in (["--dry-run"], ["--dry-run", "-np", "5", "-H", "a:2", "python", "x.py"],
                ["--dry-run", "-np", "zero", "python", "x.py"]):
        proc = subprocess.run([script, *bad], capture_output=True, text=True)
        assert proc.returncode == 2 and "horovod_run.sh:" in proc.stderr


@pytest.mark.slow
def test_wrapper_on_this_machine_and_modelzoo_shorthand():
    command = _dry_run("-np", "2", "train", "lhc_cnn", "--data", "f.h5")
    assert command[:2] == ["horovodrun", "--gloo"]
    assert _np_and_hosts(command) == (2, "localhost:2")
    assert command[-7:] == [sys.executable, "-m", "modelzoo.cli", "train", "lhc_cnn", "--data",
                            "f.h5"]


@pytest.mark.slow
def test_wrapper_hosts_from_argument_and_hostfile(tmp_path):
    command = _dry_run("-H", "a,b:3", "--slots-per-host", "2", "--", "python", "x.py")
    assert _np_and_hosts(command) == (5, "a:2,b:3")
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# login nodes excluded\nn1 slots=4\nn2:2\n\nn3  # one slot\n")
    command = _dry_run("--hostfile", str(hostfile), "--slots-per-host", "1", "python", "x.py")
    assert _np_and_hosts(command) == (7, "n1:4,n2:2,n3:1")
    command = _dry_run("-np", "3", "--hostfile", str(hostfile), "--mpi", "python", "x.py")
    assert command[1] == "--mpi" and _np_and_hosts(command)[0] == 3


@pytest.mark.slow
def test_wrapper_passes_unknown_options_to_horovodrun():
    command = _dry_run("-np", "2", "--start-timeout", "120", "--", "python", "x.py")
    assert command[-4:] == ["--start-timeout", "120", "python", "x.py"]


@pytest.mark.slow
def test_wrapper_hosts_from_slurm_and_pbs(tmp_path):
    command = _dry_run("python", "y.py", SLURM_JOB_NODELIST="nid[001-002,007],login1",
                       SLURM_TASKS_PER_NODE="4(x3),2")
    assert _np_and_hosts(command) == (14, "nid001:4,nid002:4,nid007:4,login1:2")
    command = _dry_run("-np", "3", "python", "y.py", SLURM_JOB_NODELIST="gpu[01-02]",
                       SLURM_NTASKS_PER_NODE="2")
    assert _np_and_hosts(command) == (3, "gpu01:2,gpu02:2")
    nodefile = tmp_path / "nodes"
    nodefile.write_text("b\nb\na\nb\na\n")
    command = _dry_run("python", "z.py", PBS_NODEFILE=str(nodefile))
    assert _np_and_hosts(command) == (5, "b:3,a:2")


def test_make_test_fails_rather_than_skips_where_horovod_is_missing(monkeypatch):
    from test_distributed import skip_or_fail

    monkeypatch.setenv("MODELZOO_REQUIRE_HOROVOD", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_HOROVOD=1 but horovodrun is not"):
        skip_or_fail("horovodrun is not on PATH")
    monkeypatch.delenv("MODELZOO_REQUIRE_HOROVOD")
    with pytest.raises(pytest.skip.Exception, match="horovodrun is not on PATH"):
        skip_or_fail("horovodrun is not on PATH")
    with open(ROOT / "Makefile") as fh:  # and `make test` (CI's command) asks for it
        assert "test: export MODELZOO_REQUIRE_HOROVOD = 1" in fh.read()

"""Ranks that read only their shard, a 4-rank job on the 2-core machine, and the Horovod
settings the zoo refuses or handles (real ``horovodrun --gloo`` processes). The read counts at
2 ranks, the galaxy training and the batch-norm training share one 2-rank job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_distributed import HOROVODRUN, _needs_horovod, _run  # noqa: F401  (autouse skip)

import modelzoo
from modelzoo import distributed, training

pytestmark = pytest.mark.slow
WORKER = Path(__file__).resolve().parent / "distributed_workers" / "files_worker.py"
sys.path.insert(0, str(WORKER.parent))
import files_worker  # noqa: E402  (the one-rank read count runs in this process)


def _launch(jobs: dict[str, Path], np_: int, out: Path, timeout: float = 300) -> list[dict]:
    """Every ``mode: file`` of ``jobs`` in one ``horovodrun`` job of ``np_`` ranks (a job costs
    each rank a TensorFlow start-up); each rank's report, rank order."""
    command = [HOROVODRUN, "--gloo", "-np", str(np_), "-H", f"localhost:{np_}",
               sys.executable, str(WORKER), *(f"{mode}={data}" for mode, data in jobs.items()),
               "--run-dir", str(out / "run"), "--out", str(out)]
    code, output, _ = _run(command, out, timeout=timeout)
    assert code == 0, output[-6000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(np_)]


@pytest.fixture(scope="module")
def big_lhc_file(tmp_path_factory) -> Path:
    """2,048 events of 3 x 32 x 32 float32 (25 MB): large enough that the file's metadata is
    noise next to the rows."""
    path = tmp_path_factory.mktemp("reads") / "events.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["data"] = rng.gamma(1.0, 1.0, (2048, 3, 32, 32)).astype(np.float32)
        f["label"] = (np.arange(2048) % 2).astype(np.float32)  # float 0/1, as some files have
        f["weight"] = np.ones(2048, np.float32)
    return path


@pytest.fixture(scope="module")
def stamp_file(tmp_path_factory) -> Path:
    """128 noisy elliptical blobs on 16 x 16 stamps with a per-pixel noise map."""
    path = tmp_path_factory.mktemp("galaxy") / "stamps.h5"
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:16, :16] - 7.5
    size = rng.uniform(1.5, 3.5, (128, 1, 1))
    flux = rng.uniform(20.0, 60.0, (128, 1, 1))
    clean = flux * np.exp(-0.5 * ((xx / size) ** 2 + (yy / (0.7 * size)) ** 2))
    variance = 1.0 + 0.05 * clean
    with h5py.File(path, "w") as f:
        f["images"] = (clean + rng.normal(size=clean.shape) * np.sqrt(variance)).astype("f4")
        f["noise_variance"] = variance.astype(np.float32)
        f.attrs["noise_sigma"] = 1.0
    return path


@pytest.fixture(scope="module")
def two_rank_job(big_lhc_file, stamp_file, tmp_path_factory) -> tuple[Path, list[dict]]:
    """One 2-rank job for the read counts, the galaxy training and the batch-norm training:
    (its output folder, each rank's report)."""
    out = tmp_path_factory.mktemp("two_ranks")
    toy = Path(_toy_lhc(out / "toy.h5", n=96))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELZOO_COUNT_READS", "1")
        jobs = {"reads": big_lhc_file, "galaxy": stamp_file, "batchnorm": toy}
        return out, _launch(jobs, 2, out, timeout=600)


def test_each_rank_reads_about_one_nth_of_the_file(big_lhc_file, two_rank_job, tmp_path,
                                                   monkeypatch):
    monkeypatch.setenv("MODELZOO_COUNT_READS", "1")
    size = big_lhc_file.stat().st_size
    # One rank is this process (no job needed); four ranks oversubscribe the 2-core machine.
    one = files_worker.reads(str(big_lhc_file), str(tmp_path), distributed.ProcessGroup())
    runs = {1: [one], 2: [r["reads"] for r in two_rank_job[1]],
            4: [r["reads"] for r in _launch({"reads": big_lhc_file}, 4, tmp_path / "np4",
                                            timeout=400)]}
    startup = {ranks: [r["startup_bytes"] for r in reports] for ranks, reports in runs.items()}
    epoch = {ranks: [r["epoch_bytes"] for r in reports] for ranks, reports in runs.items()}
    for ranks in (1, 2, 4):
        assert len(startup[ranks]) == ranks
        for at_start, in_epoch in zip(startup[ranks], epoch[ranks], strict=True):
            # Start-up: structure on every rank, content (every chunk, NaN/Inf, labels) on the
            # rank's own 1/N of the rows.
            assert 0.9 * size / ranks < at_start < 1.05 * size / ranks + 2**18, (ranks, startup)
            # An epoch: the rank's shard of the training rows (the stream reads ahead into the
            # next epoch by a bounded amount, the same on every rank).
            assert in_epoch < 1.2 * epoch[1][0] / ranks + 2**18, (ranks, epoch)
    print(f"\nbytes read per rank of a {size / 1e6:.1f} MB file, at start-up: {startup}; "
          f"one epoch of training: {epoch}")


def test_two_ranks_train_refit_the_prior_and_evaluate_identically(two_rank_job):
    out, reports = two_rank_job
    for report in reports:
        assert report["size"] == 2
        galaxy = report["galaxy"]
        assert galaxy["max_weight_diff_between_ranks"] < 1e-6, report
        assert galaxy["prior_moved"] > 0.0  # fitted: N(0, I)'s components sit at zero
        assert galaxy["stamps_evaluated"] == 32
    assert len({r["galaxy"]["fraction_vae_better"] for r in reports}) == 1  # one gathered
    assert json.loads((out / "run" / "galaxy" / "finalize.json").read_text())["draws"] == 2 * 96


def test_batch_norm_statistics_are_the_same_on_every_rank(two_rank_job):
    # Each rank updates its moving mean and variance from its own batches; the training path
    # averages them over the ranks at every epoch end.
    for report in two_rank_job[1]:
        assert report["batchnorm"]["moving_mean_moved"] > 0.0
        assert report["batchnorm"]["max_weight_diff_between_ranks"] < 1e-6, report


def test_a_launcher_horovod_cannot_join_stops_the_job():
    # mpirun or srun starting the Gloo-only build: each process would train alone as rank 0.
    probe = subprocess.run(
        [sys.executable, "-c", "from modelzoo import distributed; distributed.init()"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0",
             "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert probe.returncode != 0
    assert "OMPI_COMM_WORLD_SIZE=2" in probe.stderr and "Horovod sees a job of 1" in probe.stderr


def _toy_lhc(path: Path, n: int = 64) -> str:
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f["data"] = rng.gamma(1.0, 1.0, (n, 3, 8, 8)).astype(np.float32)
        f["label"] = (np.arange(n) % 2).astype(np.int32)
        f["weight"] = np.ones(n, np.float32)
    return str(path)


TINY = {"filters": 4, "dense_units": 8}


def test_mixed_float16_is_refused_under_horovod(tmp_path, monkeypatch):
    import keras

    monkeypatch.setattr(distributed, "_GROUP", distributed.ProcessGroup(rank=0, size=2))
    keras.config.set_dtype_policy("mixed_float16")
    try:
        with pytest.raises(modelzoo.ConfigError, match="mixed_float16 .* under Horovod"):
            training.train("lhc_cnn", _toy_lhc(tmp_path / "toy.h5"), run_dir=str(tmp_path / "r"),
                           model_config=TINY, overrides={"train.epochs": 1}, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert not (tmp_path / "r").exists()


def test_resume_on_another_world_size_keeps_the_schedule_in_epochs(tmp_path, capsys):
    data = _toy_lhc(tmp_path / "toy.h5")
    run = str(tmp_path / "run")
    quick = {"train.batch_size": 8, "data.val_fraction": 0.25, "lr_schedule.warmup_epochs": 1}
    training.train("lhc_cnn", data, run_dir=run, model_config=TINY,
                   overrides={**quick, "train.epochs": 1}, verbose=0)
    state = Path(run, "checkpoints", "epoch-0001", "state.json")
    recorded = json.loads(state.read_text())
    assert recorded["world_size"] == 1
    # Pretend the first epoch ran on 4 ranks (12 steps of 8 on 48 rows there: 1 per rank).
    state.write_text(json.dumps({**recorded, "world_size": 4}))
    npz = Path(run, "checkpoints", "epoch-0001", "optimizer.npz")
    with np.load(npz) as saved:
        values = {k: saved[k] for k in saved.files}
    values["iteration"] = np.asarray(1, values["iteration"].dtype)
    np.savez(npz, **values)
    resumed = training.train("lhc_cnn", data, run_dir=run, model_config=TINY,
                             overrides={**quick, "train.epochs": 2}, verbose=0)
    assert "resuming a run of 4 ranks on 1" in capsys.readouterr().out
    # 6 steps per epoch here: restarted at 1 x 6, then one more epoch.
    assert int(resumed.model.optimizer.iterations) == 12


def test_optimizer_state_is_restored_by_variable_path(tmp_path):
    data = _toy_lhc(tmp_path / "toy.h5")
    run = str(tmp_path / "run")
    quick = {"train.batch_size": 8, "data.val_fraction": 0.25}
    training.train("lhc_cnn", data, run_dir=run, model_config=TINY,
                   overrides={**quick, "train.epochs": 1}, verbose=0)
    npz = Path(run, "checkpoints", "epoch-0001", "optimizer.npz")
    with np.load(npz) as saved:
        values = {k: saved[k] for k in saved.files}
    assert "fc_kernel_momentum" in values  # keyed by path, not by position
    values["fc_kernel_moment"] = values.pop("fc_kernel_momentum")
    np.savez(npz, **values)
    with pytest.raises(modelzoo.ConfigError,
                       match="missing fc_kernel_momentum; unexpected fc_kernel_moment"):
        training.train("lhc_cnn", data, run_dir=run, model_config=TINY,
                       overrides={**quick, "train.epochs": 2}, verbose=0)

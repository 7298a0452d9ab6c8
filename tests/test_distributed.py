"""Data-parallel training under a real ``horovodrun --gloo -np 2`` (no mocks).

Each test launches ``tests/distributed_workers/train_worker.py`` (a tiny CNN trained through
``modelzoo.training.train``) on two local ranks, with a timeout, and checks what the ranks
report and what the run folder holds:

(a) after ``fit`` on per-rank shards every rank holds identical weights (allgather);
(b) two ranks at batch B end with the weights of one process at batch 2B on the same samples;
(c) the ranks' shards are disjoint and together cover the file;
(d) a run killed mid-epoch, or inside a checkpoint write, resumes to the requested epoch and
    ends exactly where an uninterrupted run ends;
(e) an exception on one rank ends the whole job, non-zero, naming that rank, without hanging;
and ``./horovod_run.sh`` runs the ``modelzoo train`` CLI on two ranks.

Skipped, with the reason, only where Horovod cannot be imported. Two ranks share the two cores
of a small machine here, so every process gets one TensorFlow thread.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "distributed_workers" / "train_worker.py"
HOROVODRUN = shutil.which("horovodrun", path=f"{Path(sys.executable).parent}{os.pathsep}"
                          f"{os.environ.get('PATH', '')}")
LAUNCH_TIMEOUT_S = 180  # one job; they take 10-20 s here, so hitting this means a hang


@functools.cache
def _horovod_import_error() -> str | None:
    """Why ``import horovod.tensorflow`` fails in this interpreter, or None if it works (checked
    in a child process so that this one need not load TensorFlow for it; once per test process,
    not once per module that imports the check: the child starts TensorFlow)."""
    if importlib.util.find_spec("horovod") is None:
        return "Horovod is not installed (`make venv` builds it)"
    if HOROVODRUN is None:
        return "horovodrun is not on PATH"
    probe = subprocess.run(
        [sys.executable, "-c", "import horovod.tensorflow"], capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=120,
    )
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
    return f"horovod.tensorflow cannot be imported ({last}); rebuild it with `make venv`"


pytestmark = pytest.mark.slow  # real horovodrun processes


@pytest.fixture(scope="module", autouse=True)
def _needs_horovod() -> None:
    """Skip this module, saying why, where Horovod cannot be imported (checked once, and only
    when these tests run rather than whenever the test suite is collected); with
    ``MODELZOO_REQUIRE_HOROVOD=1`` (``make test``, so CI) fail instead: a CI without Horovod
    must not go green without its distributed tests."""
    reason = _horovod_import_error()
    if reason is not None:
        skip_or_fail(reason)


def skip_or_fail(reason: str) -> None:
    """Skip the distributed tests for ``reason``, or fail them under
    ``MODELZOO_REQUIRE_HOROVOD=1``."""
    if os.environ.get("MODELZOO_REQUIRE_HOROVOD") == "1":
        pytest.fail(f"MODELZOO_REQUIRE_HOROVOD=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # Two ranks on two cores: one thread each, so they do not preempt each other.
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        # Rendezvous patience for a loaded machine (TensorFlow imports can take a while).
        "HOROVOD_GLOO_TIMEOUT_SECONDS": "120",
        "PYTHONWARNINGS": "ignore",
    }


def _run(command: list[str], out_dir: Path | None, timeout: float = LAUNCH_TIMEOUT_S):
    """Run ``command`` to completion; on timeout stop it and its worker ranks, then fail."""
    start = time.monotonic()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
        cwd=ROOT, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # horovodrun stops its workers on SIGTERM
        try:
            output, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        for pid_file in (out_dir.glob("pid*") if out_dir else []):
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        pytest.fail(f"{command[0]} still running after {timeout} s (a hang):\n{output[-6000:]}")
    return proc.returncode, output, time.monotonic() - start


def _launch(worker_args: list[str], out_dir: Path, np_: int = 2):
    command = [HOROVODRUN, "--gloo", "-np", str(np_), "-H", f"localhost:{np_}",
               sys.executable, str(WORKER), "--out", str(out_dir), *worker_args]
    return _run(command, out_dir)


def train_models(jobs: list[dict], tmp_path: Path, np_: int = 2,
                 timeout: float = LAUNCH_TIMEOUT_S) -> list[dict]:
    """Train each of ``jobs`` (``{"model", "data", "overrides", "config"}``) on ``np_`` real
    ranks (tests/distributed_workers/model_worker.py); every rank's report, rank order."""
    out = tmp_path / "out"
    command = [HOROVODRUN, "--gloo", "-np", str(np_), "-H", f"localhost:{np_}", sys.executable,
               str(WORKER.parent / "model_worker.py"), "--jobs", json.dumps(jobs, default=str),
               "--run-dir", str(tmp_path / "runs"), "--out", str(out)]
    code, output, _ = _run(command, out, timeout)
    assert code == 0, output[-6000:]
    return _reports(out, np_)


def _reports(out_dir: Path, size: int = 2) -> list[dict]:
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(size)]


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    """Every array in a run's final ``model.weights.h5``, by its path in the file."""
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(run_dir / "model.weights.h5", "r") as fh:
        fh.visititems(
            lambda name, obj: arrays.__setitem__(name, obj[()])
            if isinstance(obj, h5py.Dataset) else None
        )
    assert arrays, f"{run_dir}: no weights saved"
    return arrays


def _history_epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "history.csv") as fh:
        return [int(row["epoch"]) for row in csv.DictReader(fh)]


def _latest_epoch(run_dir: Path) -> int:
    return json.loads((run_dir / "checkpoints" / "latest.json").read_text())["epoch"]


def _write_lhc(path: Path, data: np.ndarray, label: np.ndarray) -> Path:
    """Benchmark layout: data (N, 3, H, W) float32, label int32, weight float32."""
    with h5py.File(path, "w") as fh:
        fh["data"] = data.astype(np.float32)
        fh["label"] = label.astype(np.int32)
        fh["weight"] = np.ones(len(label), np.float32)
    return path


def _toy(n: int, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Signal events carry a bright square; every row differs, so shards are rank-dependent."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.5).astype(np.int32)
    data = rng.gamma(1.0, 1.0, (n, 3, size, size)).astype(np.float32)
    data[label == 1, :, 2:5, 2:5] += 3.0
    return data, label


# The shared run: 96 events, the last quarter validates; 2 ranks x batch 8 x 4 steps, 3 epochs.
# On GPU machines Keras compiles the train step with XLA by default, and Horovod's collectives
# have no XLA kernels; --force-jit reproduces that on CPU in every run that uses BASIC.
BASIC = ["--epochs", "3", "--val-fraction", "0.25", "--batch-size", "8", "--force-jit"]
NUM_EVENTS = 96


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory) -> Path:
    return _write_lhc(tmp_path_factory.mktemp("data") / "toy.h5", *_toy(NUM_EVENTS))


@pytest.fixture(scope="module")
def basic_run(toy_file, tmp_path_factory):
    """An uninterrupted 2-rank run (shuffled, XLA asked for), shared by tests (a), (c) and
    (d)."""
    base = tmp_path_factory.mktemp("basic")
    run_dir, out_dir = base / "run", base / "out"
    code, output, _ = _launch(["--data", str(toy_file), "--run-dir", str(run_dir), *BASIC],
                              out_dir)
    assert code == 0, output[-6000:]
    return run_dir, _reports(out_dir)


def test_a_ranks_hold_identical_weights_after_fit(basic_run):
    run_dir, reports = basic_run
    for report in reports:
        assert report["size"] == 2 and report["weights_finite"]
        assert not report["jit_compile"]  # the training path turned XLA off under Horovod
        # Without gradient averaging the ranks drift apart by ~1e-2 within a step or two.
        assert report["max_weight_diff_between_ranks"] < 1e-6, report
    # Every rank logs the same, rank-averaged metrics (validation included).
    assert reports[0]["history"] == reports[1]["history"]
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(reports[0]["history"])
    assert _history_epochs(run_dir) == [0, 1, 2]
    assert _latest_epoch(run_dir) == 3


def test_c_shards_are_disjoint_and_cover_the_file(basic_run):
    _, reports = basic_run
    rows = [set() for _ in reports]
    for rank, report in enumerate(reports):
        for start, stop in report["reads"]:
            rows[rank].update(range(start, stop))
    assert not rows[0] & rows[1], "two ranks read the same events"
    assert rows[0] | rows[1] == set(range(NUM_EVENTS)), "some events were never read"
    # Each rank reads only its own train and validation shards (no rank loads the whole file):
    # train rows 0..72 split 36/36, validation rows 72..96 split 12/12.
    assert rows[0] == set(range(0, 36)) | set(range(72, 84))
    assert rows[1] == set(range(36, 72)) | set(range(84, 96))


def test_b_two_ranks_at_batch_b_match_one_process_at_batch_2b(tmp_path):
    batch, steps, epochs = 8, 4, 2
    n = 2 * batch * steps
    data, label = _toy(n, seed=1)
    two_rank_file = _write_lhc(tmp_path / "two.h5", data, label)
    # Rank r reads rows [r*n/2, (r+1)*n/2) in order, so its k-th batch is rows
    # r*n/2 + [k*B, (k+1)*B). Lay the one-process file out so that its k-th batch of 2B rows is
    # rank 0's k-th batch followed by rank 1's: the same samples in every step.
    order = np.concatenate([
        np.concatenate([np.arange(k * batch, (k + 1) * batch) + r * n // 2 for r in (0, 1)])
        for k in range(steps)
    ])
    one_file = _write_lhc(tmp_path / "one.h5", data[order], label[order])

    common = ["--shuffle", "0", "--epochs", str(epochs), "--lr", "0.1", "--val-fraction", "0"]
    code, output, _ = _launch(
        ["--data", str(two_rank_file), "--run-dir", str(tmp_path / "two"),
         "--batch-size", str(batch), *common], tmp_path / "out2",
    )
    assert code == 0, output[-6000:]
    code, output, _ = _run(
        [sys.executable, str(WORKER), "--data", str(one_file), "--run-dir", str(tmp_path / "one"),
         "--out", str(tmp_path / "out1"), "--batch-size", str(2 * batch), *common],
        tmp_path / "out1",
    )
    assert code == 0, output[-6000:]

    two, one = _weights(tmp_path / "two"), _weights(tmp_path / "one")
    assert sorted(two) == sorted(one)
    # Float round-off leaves ~5e-8 here; the same run with batches composed differently (one
    # process on the two-rank file) ends ~2e-2 away, so 1e-6 separates the two cleanly.
    for name in two:
        np.testing.assert_allclose(two[name], one[name], rtol=0, atol=1e-6, err_msg=name)
    # Same per-epoch training loss too (the 2-rank value is the mean of the ranks' means).
    loss_two = _reports(tmp_path / "out2")[0]["history"]["loss"]
    loss_one = _reports(tmp_path / "out1", size=1)[0]["history"]["loss"]
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-5)
    assert loss_two[-1] < loss_two[0], "the model did not train, so the comparison is vacuous"


@pytest.mark.parametrize(
    "kill", [["--kill-at", "1", "1"], ["--kill-in-checkpoint", "2"]],
    ids=["mid-epoch", "inside-checkpoint-write"],
)
def test_d_killed_run_resumes_to_the_same_end(kill, toy_file, basic_run, tmp_path):
    run_dir = tmp_path / "run"
    args = ["--data", str(toy_file), "--run-dir", str(run_dir), *BASIC]

    code, output, _ = _launch([*args, *kill], tmp_path / "killed")
    assert code != 0, "the killed job reported success"
    assert "SIGKILLs itself" in output
    # Only epoch 1 was complete; a half-written epoch 2 must not be what latest.json names.
    assert _latest_epoch(run_dir) == 1
    if "--kill-in-checkpoint" in kill:
        assert (run_dir / "checkpoints" / ".epoch-0002.tmp").is_dir()

    code, output, _ = _launch(args, tmp_path / "resumed")
    assert code == 0, output[-6000:]
    report = _reports(tmp_path / "resumed")[0]
    assert (report["resumed_from"], report["final_epoch"], report["epochs_run"]) == (1, 3, 2)
    assert report["weights_finite"]
    assert _latest_epoch(run_dir) == 3
    assert _history_epochs(run_dir) == [0, 1, 2]  # each epoch once, none lost
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if "tmp" in p.name]
    assert not leftovers
    # Nothing trained before the checkpoint was lost, and epochs 2-3 replayed the same batches:
    # the resumed run ends where the uninterrupted one did.
    straight = _weights(basic_run[0])
    resumed = _weights(run_dir)
    for name in straight:
        np.testing.assert_allclose(resumed[name], straight[name], rtol=0, atol=1e-6,
                                   err_msg=name)


def test_validation_on_some_ranks_only_is_averaged_over_those(toy_file, tmp_path):
    # One validation event for two ranks: rank 0's validation shard is empty.
    code, output, _ = _launch(
        ["--data", str(toy_file), "--run-dir", str(tmp_path / "run"), "--epochs", "1",
         "--val-fraction", "0.01"], tmp_path / "out",
    )
    assert code == 0, output[-6000:]
    reports = _reports(tmp_path / "out")
    assert reports[0]["history"] == reports[1]["history"]
    assert "val_loss" in reports[0]["history"] and reports[1]["reads"][-1] == [95, 96]


def test_e_a_failing_rank_stops_the_job_and_is_named(toy_file, tmp_path):
    code, output, _ = _launch(
        ["--data", str(toy_file), "--run-dir", str(tmp_path / "run"), *BASIC,
         "--fail-rank", "1", "--fail-at-batch", "2"], tmp_path / "out",
    )
    assert code != 0
    assert "RuntimeError: rank 1 failed on purpose at batch 2" in output
    assert "modelzoo: rank 1 failed; stopping the job" in output
    # horovodrun names the first process to exit non-zero: the failing rank, not its victim.
    assert "Process name: 1" in output, output[-3000:]


def test_wrapper_runs_the_cli_on_two_ranks(tmp_path):
    data_file = _write_lhc(tmp_path / "events.h5", *_toy(64, size=16))
    run_dir = tmp_path / "run"
    command = [
        str(ROOT / "horovod_run.sh"), "-np", "2", "--", sys.executable, "-m", "modelzoo.cli",
        "train", "lhc_cnn", "--data", str(data_file), "--output", str(run_dir),
        "--epochs", "1", "--batch-size", "8", "--verbose", "0",
        "--model-config", "input_shape=[16, 16, 3]", "--model-config", "filters=4",
        "--model-config", "dense_units=8", "--set", "data.val_fraction=0.25",
    ]
    code, output, _ = _run(command, None)
    assert code == 0, output[-6000:]
    assert output.count("trained lhc_cnn: epochs 0->1") == 1, output[-3000:]  # rank 0 only
    config = json.loads((run_dir / "config.json").read_text())
    assert config["world_size"] == 2
    assert (run_dir / "model.weights.h5").exists() and _latest_epoch(run_dir) == 1

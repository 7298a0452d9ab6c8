"""Failures of the machine lose nothing: a write that fails midway (a full disk, simulated by a
file-size limit in a child process, with SIGXFSZ ignored so that the write fails with EFBIG as on
a full disk) leaves the previous complete file loadable and says in one line what failed.
Generated files: tests/test_generators.py."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import toy_lhc_arrays, write_benchmark

pytestmark = pytest.mark.slow  # child processes that import TensorFlow

MODEL = ["--model-config", "input_shape=[16,16,3]"]


def _limited(limit: int, code: str, cwd) -> subprocess.CompletedProcess:
    prelude = ("import resource, signal, sys\n"
               "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
               f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", prelude + code], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _cli(argv: list[str]) -> str:
    return f"from modelzoo.cli import main\nsys.exit(main({argv!r}))\n"


@pytest.fixture
def first_run(tmp_path):
    """A run folder after one epoch of lhc_cnn on 64 toy events (16 x 16)."""
    from modelzoo import cli

    events = write_benchmark(tmp_path / "events.h5", toy_lhc_arrays(n=64, size=16))
    run = tmp_path / "run"
    assert cli.main(["train", "lhc_cnn", "--data", events, "--output", str(run), "--epochs", "1",
                     "--batch-size", "8", "--verbose", "0", *MODEL]) == 0
    return events, run


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(first_run, tmp_path):
    from modelzoo import training

    events, run = first_run
    weights = (run / "model.weights.h5").read_bytes()
    result = _limited(1_000_000, _cli(["train", "lhc_cnn", "--data", events, "--output",
                                       str(run), "--epochs", "3", "--batch-size", "8",
                                       "--verbose", "0", *MODEL]), tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines[-1] == (f"modelzoo: error: {run / 'checkpoints' / 'epoch-0002'}: writing failed "
                         "(File too large); the checkpoint of epoch 1 is unchanged and a "
                         "resumed run starts from it"), result.stderr
    assert "Traceback" not in result.stderr
    assert training.latest_checkpoint(str(run))[1] == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001",
                                                                        "latest.json"]
    assert (run / "model.weights.h5").read_bytes() == weights
    # and the run resumes from it once the disk has room again
    from modelzoo import cli

    assert cli.main(["train", "lhc_cnn", "--data", events, "--output", str(run), "--epochs",
                     "2", "--batch-size", "8", "--verbose", "0", *MODEL]) == 0
    assert training.latest_checkpoint(str(run))[1] == 2


def test_weights_that_cannot_be_written_leave_the_previous_file_loadable(first_run, tmp_path):
    import modelzoo

    _, run = first_run
    path = run / "model.weights.h5"
    before = path.read_bytes()
    code = ("import modelzoo\nfrom modelzoo import pretrained\nfrom modelzoo.errors import "
            "WriteError\n"
            "model = modelzoo.get('lhc_cnn', input_shape=(16, 16, 3))\n"
            "try:\n"
            f"    pretrained.write_weights(model, {str(path)!r}, name='lhc_cnn', "
            "config={'input_shape': [16, 16, 3]})\n"
            "except WriteError as err:\n"
            "    print(err, flush=True)\n"
            "    import os; os._exit(3)\n")
    result = _limited(1_000_000, code, tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == (f"{path}: writing failed (File too large); the previous "
                                     "file is unchanged")
    assert path.read_bytes() == before
    assert sorted(os.listdir(run)) == sorted(["checkpoints", "config.json", "history.csv",
                                              "model.weights.h5", "tensorboard"])
    model = modelzoo.get("lhc_cnn", weights=str(run))
    assert all(np.isfinite(np.asarray(v)).all() for v in model.weights)


def test_predictions_that_cannot_be_written_keep_the_previous_file(first_run, tmp_path):
    import h5py

    from modelzoo import cli

    events, run = first_run
    preds = tmp_path / "preds.h5"
    assert cli.main(["predict", "lhc_cnn", "--weights", str(run), "--data", events, "--output",
                     str(preds)]) == 0
    before = preds.read_bytes()
    result = _limited(1500, _cli(["predict", "lhc_cnn", "--weights", str(run), "--data", events,
                                  "--output", str(preds)]), tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"modelzoo: error: {preds}: writing failed (File too large); the previous file is "
        "unchanged"), result.stderr
    assert preds.read_bytes() == before and sorted(os.listdir(tmp_path)).count("preds.h5") == 1
    assert not [p for p in os.listdir(tmp_path) if p.startswith("preds.h5.tmp")]
    with h5py.File(preds) as fh:
        assert len(fh["scores"] if "scores" in fh else fh[next(iter(fh))]) == 64

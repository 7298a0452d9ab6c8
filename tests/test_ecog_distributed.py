"""``ecog_mlp`` trained by two real ranks (``horovodrun --gloo -np 2``): identical weights,
standardisation statistics included, on both ranks afterwards. Skipped where Horovod is
missing."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelzoo.ecog.generator import generate_ecog

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "distributed_workers" / "ecog_train_worker.py"
HOROVODRUN = shutil.which("horovodrun", path=f"{Path(sys.executable).parent}{os.pathsep}"
                          f"{os.environ.get('PATH', '')}")
CHANNELS = 12


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("horovod") is None or HOROVODRUN is None,
                    reason="Horovod is not installed (`make venv` builds it)")
def test_two_ranks_end_with_identical_weights(tmp_path):
    data = generate_ecog(tmp_path / "cv.h5", n_trials=228, n_channels=CHANNELS, seed=3,
                         progress=False)
    out = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1",
           "HOROVOD_GLOO_TIMEOUT_SECONDS": "120", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [HOROVODRUN, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, str(WORKER),
         "--data", str(data), "--run-dir", str(tmp_path / "run"), "--out", str(out),
         "--channels", str(CHANNELS)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=240,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    for report in reports:
        assert report["size"] == 2
        assert report["max_weight_diff_between_ranks"] == 0.0
        assert report["standardization_set"]
        assert len(report["history"]["loss"]) == 2
    assert reports[0]["history"] == reports[1]["history"]  # metrics averaged over ranks
    assert (tmp_path / "run" / "model.weights.h5").exists()

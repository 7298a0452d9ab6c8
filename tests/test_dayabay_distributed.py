"""The Daya Bay models under a real ``horovodrun --gloo -np 2``: both ranks end with identical
weights (launch helpers shared with tests/test_distributed.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_distributed import HOROVODRUN, _needs_horovod, _run  # noqa: F401

WORKER = Path(__file__).resolve().parent / "distributed_workers" / "dayabay_worker.py"


@pytest.mark.slow
def test_two_ranks_train_dayabay_models_to_identical_weights(tmp_path):
    from modelzoo.dayabay.generator import generate_dayabay

    data = tmp_path / "pairs.h5"
    generate_dayabay(data, n_ibd=160, n_accidental=160, n_muon=40, n_flasher=40, seed=5,
                     progress=False)
    out = tmp_path / "out"
    command = [HOROVODRUN, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable,
               str(WORKER), "--data", str(data), "--run-dir", str(tmp_path / "runs"),
               "--out", str(out)]
    code, output, _ = _run(command, out)
    assert code == 0, output[-6000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    for report in reports:
        assert report["size"] == 2
        for model in ("dayabay_dae", "dayabay_cnn"):
            got = report[model]
            assert got["epochs_run"] == 1 and got["weights_finite"]
            assert got["max_weight_diff_between_ranks"] == 0.0, (model, got)
    assert (tmp_path / "runs" / "dayabay_dae" / "model.weights.h5").exists()

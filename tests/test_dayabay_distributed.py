"""The Daya Bay models under a real ``horovodrun --gloo -np 2``: both ranks end with identical
weights (launch helpers shared with tests/test_distributed.py)."""

from __future__ import annotations

import pytest
from test_distributed import _needs_horovod, train_models  # noqa: F401  (autouse skip)


@pytest.mark.slow
def test_two_ranks_train_dayabay_models_to_identical_weights(tmp_path):
    from modelzoo.dayabay.generator import generate_dayabay

    data = tmp_path / "pairs.h5"
    generate_dayabay(data, n_ibd=160, n_accidental=160, n_muon=40, n_flasher=40, seed=5,
                     progress=False)
    quick = {"train.epochs": 1, "train.batch_size": 32}
    reports = train_models([
        {"model": model, "data": str(data), "overrides": quick, "config": {"filters": 8}}
        for model in ("dayabay_dae", "dayabay_cnn")], tmp_path)
    for report in reports:
        assert report["size"] == 2
        for model in ("dayabay_dae", "dayabay_cnn"):
            got = report[model]
            assert got["epochs_run"] == 1 and got["weights_finite"]
            assert got["max_weight_diff_between_ranks"] == 0.0, (model, got)
    assert (tmp_path / "runs" / "dayabay_dae" / "model.weights.h5").exists()

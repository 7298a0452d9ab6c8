"""``ecog_mlp`` trained by two real ranks (``horovodrun --gloo -np 2``): identical weights,
standardisation statistics included, on both ranks afterwards. Skipped where Horovod is
missing."""

from __future__ import annotations

import numpy as np
import pytest
from test_distributed import _needs_horovod, train_models  # noqa: F401  (autouse skip)

import modelzoo
from modelzoo.ecog.generator import generate_ecog

CHANNELS = 12


@pytest.mark.slow
def test_two_ranks_end_with_identical_weights(tmp_path):
    data = generate_ecog(tmp_path / "cv.h5", n_trials=228, n_channels=CHANNELS, seed=3,
                         progress=False).path
    reports = train_models([{
        "model": "ecog_mlp", "data": str(data),
        "overrides": {"train.epochs": 2, "train.batch_size": 16},
        "config": {"n_channels": CHANNELS, "units_1": 32},
    }], tmp_path)
    for report in reports:
        assert report["size"] == 2
        assert report["ecog_mlp"]["max_weight_diff_between_ranks"] == 0.0
        assert len(report["ecog_mlp"]["history"]["loss"]) == 2
    # Metrics are averaged over ranks.
    assert reports[0]["ecog_mlp"]["history"] == reports[1]["ecog_mlp"]["history"]
    run = tmp_path / "runs" / "ecog_mlp"
    trained = modelzoo.get("ecog_mlp", weights=run)  # rank 0's weights, standardisation set
    assert np.abs(trained.get_layer("standardize").get_weights()[0]).max() > 0

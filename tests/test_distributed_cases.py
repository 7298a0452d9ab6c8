"""The cases' models under one real ``horovodrun --gloo -np 2`` job (one job for all of them:
each job costs every rank a TensorFlow start-up): both ranks end with identical weights, and
metrics are averaged over the ranks. Launch helpers are shared with tests/test_distributed.py;
skipped, with the reason, where Horovod cannot be imported."""

from __future__ import annotations

import numpy as np
import pytest
from test_distributed import _needs_horovod, train_models  # noqa: F401  (autouse skip)

import modelzoo

ECOG_CHANNELS = 12


@pytest.mark.slow
def test_two_ranks_train_dayabay_and_ecog_models_to_identical_weights(tmp_path):
    from modelzoo.dayabay.generator import generate_dayabay
    from modelzoo.ecog.generator import generate_ecog

    pairs = tmp_path / "pairs.h5"
    generate_dayabay(pairs, n_ibd=160, n_accidental=160, n_muon=40, n_flasher=40, seed=5,
                     progress=False)
    trials = generate_ecog(tmp_path / "cv.h5", n_trials=228, n_channels=ECOG_CHANNELS, seed=3,
                           progress=False).path
    dayabay = {"train.epochs": 1, "train.batch_size": 32}
    reports = train_models([
        *({"model": model, "data": str(pairs), "overrides": dayabay, "config": {"filters": 8}}
          for model in ("dayabay_dae", "dayabay_cnn")),
        {"model": "ecog_mlp", "data": str(trials),
         "overrides": {"train.epochs": 2, "train.batch_size": 16},
         "config": {"n_channels": ECOG_CHANNELS, "units_1": 32}},
    ], tmp_path)
    for report in reports:
        assert report["size"] == 2
        for model, epochs in (("dayabay_dae", 1), ("dayabay_cnn", 1), ("ecog_mlp", 2)):
            got = report[model]
            assert got["epochs_run"] == epochs and got["weights_finite"]
            assert len(got["history"]["loss"]) == epochs
            assert got["max_weight_diff_between_ranks"] == 0.0, (model, got)
    # Metrics are averaged over ranks.
    assert reports[0]["ecog_mlp"]["history"] == reports[1]["ecog_mlp"]["history"]
    assert (tmp_path / "runs" / "dayabay_dae" / "model.weights.h5").exists()
    # Rank 0's weights, the standardisation statistics included.
    trained = modelzoo.get("ecog_mlp", weights=tmp_path / "runs" / "ecog_mlp")
    assert np.abs(trained.get_layer("standardize").get_weights()[0]).max() > 0

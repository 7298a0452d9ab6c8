"""cosmoflow trained under a real ``horovodrun --gloo -np 2`` on the published TFRecord layout:
each rank reads its own files, and both end with identical weights and history. Skipped, with
the reason, where Horovod cannot be imported."""

from __future__ import annotations

import pytest
from test_distributed import _needs_horovod, train_models  # noqa: F401  (autouse skip)


@pytest.mark.slow
def test_two_ranks_hold_identical_weights(tmp_path):
    from modelzoo.cosmology.cosmoflow_generator import generate_volumes

    data = tmp_path / "volumes"
    generate_volumes(data, n_volumes=20, npix=8, box_side=64.0, volumes_per_cosmology=4,
                     val_fraction=0.2, seed=0, progress=False, formats=("tfrecord",))
    reports = train_models([{
        "model": "cosmoflow", "data": str(data),
        "overrides": {"train.epochs": 2, "train.batch_size": 2,
                      "lr_schedule.warmup_epochs": 1},
        "config": {"conv_filters": 2, "conv_layers": 2, "dense_units": [8], "dropout": 0.0,
                   "count_scale": 64.0},
    }], tmp_path)
    for report in reports:
        assert report["size"] == 2
        assert report["cosmoflow"]["max_weight_diff_between_ranks"] == 0.0, report
    assert reports[0]["cosmoflow"]["history"] == reports[1]["cosmoflow"]["history"]
    assert (tmp_path / "runs" / "cosmoflow" / "model.weights.h5").exists()

"""cosmo_cnn trained under a real ``horovodrun --gloo -np 2``: both ranks end with identical
weights, batch-normalisation statistics included (they are recomputed over all ranks' shards
after training). Skipped, with the reason, where Horovod cannot be imported."""

from __future__ import annotations

import pytest
from test_distributed import _needs_horovod, train_models  # noqa: F401  (autouse skip)


@pytest.mark.slow
def test_two_ranks_hold_identical_weights(tmp_path):
    from modelzoo.cosmology.generator import generate_mass_maps

    data = tmp_path / "maps.h5"
    generate_mass_maps(data, cosmologies=[(0.3, 0.8), (0.3, 0.6)], maps_per_class=40, npix=32,
                       side_deg=0.875, seed=0, progress=False)
    reports = train_models([{
        "model": "cosmo_cnn", "data": str(data),
        "overrides": {"train.epochs": 2, "train.batch_size": 8},
        "config": {"input_shape": [32, 32, 1], "filters": [4, 8, 8], "dense_units": 8},
    }], tmp_path)
    for report in reports:
        assert report["size"] == 2
        assert report["cosmo_cnn"]["max_weight_diff_between_ranks"] == 0.0, report
    assert reports[0]["cosmo_cnn"]["history"] == reports[1]["cosmo_cnn"]["history"]
    run = tmp_path / "runs" / "cosmo_cnn"
    assert (run / "model.weights.h5").exists() and (run / "finalize.json").exists()

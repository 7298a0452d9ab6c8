"""The extreme-weather models (patch classifier, detector, DeepCAM segmenter) under a real
``horovodrun --gloo -np 2``: both ranks end with identical weights (launch helpers shared with
tests/test_distributed.py)."""

from __future__ import annotations

import pytest
from test_distributed import _needs_horovod, train_models  # noqa: F401  (autouse skip)


@pytest.mark.slow
def test_two_ranks_train_climate_models_to_identical_weights(tmp_path):
    from modelzoo.climate.deepcam import generate_deepcam
    from modelzoo.climate.generator import generate_extreme_weather
    from modelzoo.climate.patches import extract_patches

    region = {"height": 32, "width": 48, "lat_range": (0.0, 60.0), "lon_range": (140.0, 260.0)}
    images = generate_extreme_weather(tmp_path / "images.h5", n_images=16, seed=4,
                                      labelled_fraction=0.5, progress=False, **region).path
    samples = generate_deepcam(tmp_path / "deepcam", n_samples=8, seed=5, progress=False,
                               **region).path
    patches = extract_patches(images, tmp_path / "patches.h5", event="weather_front",
                              patch_size=(12, 16), progress=False).path
    reports = train_models([
        {"model": "climate_patch_cnn", "data": patches,
         "overrides": {"train.epochs": 1, "train.batch_size": 4}},
        {"model": "climate_detector", "data": images,
         "overrides": {"train.epochs": 1, "train.batch_size": 2, "data.grid_cell": 8,
                       "loss.reconstruction_weight": 1.0},
         "config": {"filters": [8, 8, 8]}},
        # Sharded by file: each rank reads 3 of the 6 training samples per epoch.
        {"model": "climate_segmenter", "data": samples,
         "overrides": {"train.epochs": 1, "train.batch_size": 1},
         "config": {"atrous_rates": [1], "filters": [16, 16, 16, 16], "stem_filters": 16,
                    "aspp_filters": 16, "decoder_filters": 16, "low_level_filters": 16}},
    ], tmp_path)
    for report in reports:
        assert report["size"] == 2
        for model in ("climate_patch_cnn", "climate_detector", "climate_segmenter"):
            got = report[model]
            assert got["epochs_run"] == 1 and got["weights_finite"]
            assert got["max_weight_diff_between_ranks"] == 0.0, (model, got)
    assert (tmp_path / "runs" / "climate_detector" / "model.weights.h5").exists()
    assert (tmp_path / "runs" / "climate_segmenter" / "model.weights.h5").exists()

"""The cases' models under one real ``horovodrun --gloo -np 2`` job (one job for all of them:
each job costs every rank a TensorFlow start-up): both ranks end with identical weights (batch
normalisation statistics included), each rank reads its own shard or files, and metrics are
averaged over the ranks. Launch helpers are shared with tests/test_distributed.py; skipped, with
the reason, where Horovod cannot be imported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_distributed import _needs_horovod, train_models  # noqa: F401  (autouse skip)

import modelzoo

pytestmark = pytest.mark.slow
ECOG_CHANNELS = 12
CLIMATE_REGION = {"height": 32, "width": 48, "lat_range": (0.0, 60.0),
                  "lon_range": (140.0, 260.0)}


def _dayabay_and_ecog_jobs(folder: Path) -> list[dict]:
    from modelzoo.dayabay.generator import generate_dayabay
    from modelzoo.ecog.generator import generate_ecog

    pairs = folder / "pairs.h5"
    generate_dayabay(pairs, n_ibd=160, n_accidental=160, n_muon=40, n_flasher=40, seed=5,
                     progress=False)
    trials = generate_ecog(folder / "cv.h5", n_trials=228, n_channels=ECOG_CHANNELS, seed=3,
                           progress=False).path
    dayabay = {"train.epochs": 1, "train.batch_size": 32}
    return [
        *({"model": model, "data": str(pairs), "overrides": dayabay, "config": {"filters": 8}}
          for model in ("dayabay_dae", "dayabay_cnn")),
        {"model": "ecog_mlp", "data": str(trials),
         "overrides": {"train.epochs": 2, "train.batch_size": 16},
         "config": {"n_channels": ECOG_CHANNELS, "units_1": 32}},
    ]


def _climate_jobs(folder: Path) -> list[dict]:
    from modelzoo.climate.deepcam import generate_deepcam
    from modelzoo.climate.generator import generate_extreme_weather
    from modelzoo.climate.patches import extract_patches

    images = generate_extreme_weather(folder / "images.h5", n_images=16, seed=4,
                                      labelled_fraction=0.5, progress=False,
                                      **CLIMATE_REGION).path
    samples = generate_deepcam(folder / "deepcam", n_samples=8, seed=5, progress=False,
                               **CLIMATE_REGION).path
    patches = extract_patches(images, folder / "patches.h5", event="weather_front",
                              patch_size=(12, 16), progress=False).path
    return [
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
    ]


def _cosmology_jobs(folder: Path) -> list[dict]:
    from modelzoo.cosmology.cosmoflow_generator import generate_volumes
    from modelzoo.cosmology.generator import generate_mass_maps

    maps = folder / "maps.h5"
    generate_mass_maps(maps, cosmologies=[(0.3, 0.8), (0.3, 0.6)], maps_per_class=40, npix=32,
                       side_deg=0.875, seed=0, progress=False)
    # The published TFRecord layout: each rank reads its own files.
    volumes = folder / "volumes"
    generate_volumes(volumes, n_volumes=20, npix=8, box_side=64.0, volumes_per_cosmology=4,
                     val_fraction=0.2, seed=0, progress=False, formats=("tfrecord",))
    return [
        {"model": "cosmo_cnn", "data": str(maps),
         "overrides": {"train.epochs": 2, "train.batch_size": 8},
         "config": {"input_shape": [32, 32, 1], "filters": [4, 8, 8], "dense_units": 8}},
        {"model": "cosmoflow", "data": str(volumes),
         "overrides": {"train.epochs": 2, "train.batch_size": 2,
                       "lr_schedule.warmup_epochs": 1},
         "config": {"conv_filters": 2, "conv_layers": 2, "dense_units": [8], "dropout": 0.0,
                    "count_scale": 64.0}},
    ]


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Every case's models trained in one 2-rank job: (its folder, each rank's report)."""
    folder = tmp_path_factory.mktemp("cases")
    jobs = [*_dayabay_and_ecog_jobs(folder), *_climate_jobs(folder), *_cosmology_jobs(folder)]
    # Eight models in one job: a longer limit than one model's hang detector.
    reports = train_models(jobs, folder, timeout=600)
    for report in reports:
        assert report["size"] == 2
    return folder, reports


def test_two_ranks_train_dayabay_and_ecog_models_to_identical_weights(job):
    folder, reports = job
    for report in reports:
        for model, epochs in (("dayabay_dae", 1), ("dayabay_cnn", 1), ("ecog_mlp", 2)):
            got = report[model]
            assert got["epochs_run"] == epochs and got["weights_finite"]
            assert len(got["history"]["loss"]) == epochs
            assert got["max_weight_diff_between_ranks"] == 0.0, (model, got)
    # Metrics are averaged over ranks.
    assert reports[0]["ecog_mlp"]["history"] == reports[1]["ecog_mlp"]["history"]
    assert (folder / "runs" / "dayabay_dae" / "model.weights.h5").exists()
    # Rank 0's weights, the standardisation statistics included.
    trained = modelzoo.get("ecog_mlp", weights=folder / "runs" / "ecog_mlp")
    assert np.abs(trained.get_layer("standardize").get_weights()[0]).max() > 0


def test_two_ranks_train_climate_models_to_identical_weights(job):
    folder, reports = job
    for report in reports:
        for model in ("climate_patch_cnn", "climate_detector", "climate_segmenter"):
            got = report[model]
            assert got["epochs_run"] == 1 and got["weights_finite"]
            assert got["max_weight_diff_between_ranks"] == 0.0, (model, got)
    assert (folder / "runs" / "climate_detector" / "model.weights.h5").exists()
    assert (folder / "runs" / "climate_segmenter" / "model.weights.h5").exists()


@pytest.mark.parametrize("model", ["cosmo_cnn", "cosmoflow"])
def test_two_ranks_train_cosmology_models_to_identical_weights(job, model):
    folder, reports = job
    for report in reports:
        assert report[model]["epochs_run"] == 2 and report[model]["weights_finite"]
        assert report[model]["max_weight_diff_between_ranks"] == 0.0, report[model]
    assert reports[0][model]["history"] == reports[1][model]["history"]
    run = folder / "runs" / model
    assert (run / "model.weights.h5").exists()
    if model == "cosmo_cnn":  # batch-norm statistics recomputed over all ranks' shards
        assert (run / "finalize.json").exists()

"""The extreme-weather models under a real ``horovodrun --gloo -np 2``: both ranks end with
identical weights (launch helpers shared with tests/test_distributed.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_distributed import HOROVODRUN, _needs_horovod, _run  # noqa: F401

WORKER = Path(__file__).resolve().parent / "distributed_workers" / "climate_worker.py"


@pytest.mark.slow
def test_two_ranks_train_climate_models_to_identical_weights(tmp_path):
    from modelzoo.climate.generator import generate_extreme_weather
    from modelzoo.climate.patches import extract_patches

    region = {"height": 32, "width": 48, "lat_range": (0.0, 60.0), "lon_range": (140.0, 260.0)}
    images = generate_extreme_weather(tmp_path / "images.h5", n_images=16, seed=4,
                                      labelled_fraction=0.5, progress=False, **region)
    patches = extract_patches(images, tmp_path / "patches.h5", event="weather_front",
                              patch_size=(12, 16), progress=False)
    out = tmp_path / "out"
    command = [HOROVODRUN, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable,
               str(WORKER), "--patches", patches, "--images", images, "--run-dir",
               str(tmp_path / "runs"), "--out", str(out)]
    code, output, _ = _run(command, out)
    assert code == 0, output[-6000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    for report in reports:
        assert report["size"] == 2
        for model in ("climate_patch_cnn", "climate_detector"):
            got = report[model]
            assert got["epochs_run"] == 1 and got["weights_finite"]
            assert got["max_weight_diff_between_ranks"] == 0.0, (model, got)
    assert (tmp_path / "runs" / "climate_detector" / "model.weights.h5").exists()

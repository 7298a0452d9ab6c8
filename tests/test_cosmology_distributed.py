"""cosmo_cnn trained under a real ``horovodrun --gloo -np 2``: both ranks end with identical
weights, batch-normalisation statistics included (they are recomputed over all ranks' shards
after training). Skipped, with the reason, where Horovod cannot be imported."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_distributed import HOROVODRUN, _horovod_import_error, _run

WORKER = Path(__file__).resolve().parent / "distributed_workers" / "cosmology_worker.py"


@pytest.mark.slow
def test_two_ranks_hold_identical_weights(tmp_path):
    reason = _horovod_import_error()
    if reason is not None:
        pytest.skip(reason)
    from modelzoo.cosmology.generator import generate_mass_maps

    data = tmp_path / "maps.h5"
    generate_mass_maps(data, cosmologies=[(0.3, 0.8), (0.3, 0.6)], maps_per_class=40, npix=32,
                       side_deg=0.875, seed=0, progress=False)
    out, run = tmp_path / "out", tmp_path / "run"
    out.mkdir()
    code, output, _ = _run([HOROVODRUN, "--gloo", "-np", "2", "-H", "localhost:2",
                            sys.executable, str(WORKER), "--data", str(data),
                            "--run-dir", str(run), "--out", str(out)], out)
    assert code == 0, output[-6000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["size"] == 2
        assert report["max_weight_diff_between_ranks"] == 0.0, report
    assert reports[0]["history"] == reports[1]["history"]
    assert (run / "model.weights.h5").exists() and (run / "finalize.json").exists()

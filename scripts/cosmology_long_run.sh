#!/usr/bin/env bash
# The cosmology case's closing-note numbers: for both documented settings (sigma8, degenerate)
# and three seeds, a fresh synthetic set of 2 x MAPS maps (data seed = run seed), cosmo_cnn
# trained on its first 80%, and on the last 20% the CNN's accuracy next to the power-spectrum
# and peak-count baselines (same maps, same noise); then the DCAE on smoothed noiseless maps
# and on the default noisy maps, MSE against the corrupted input's. Results: one JSON line per
# run in $OUT/results.jsonl. The six 2,000-map CNN runs took 32 minutes on 2 busy CPU cores
# (README table), each 5,000-map run 5-10 minutes, each DCAE run about 5.
#
#   scripts/cosmology_long_run.sh [OUT=runs/cosmology_long] [MAPS=1000] [EPOCHS=6]
set -euo pipefail
OUT=${1:-runs/cosmology_long}
MAPS=${2:-1000}
EPOCHS=${3:-6}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
"$PY" - "$OUT" "$MAPS" "$EPOCHS" <<'PYEOF'
import json
import sys

from modelzoo import training
from modelzoo.cosmology.generator import generate_mass_maps

out, maps, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def record(row):
    print(json.dumps(row), flush=True)
    with open(f"{out}/results.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")


for setting in ("sigma8", "degenerate"):
    for seed in (0, 1, 2):
        data = f"{out}/{setting}_{seed}.h5"
        generate_mass_maps(data, setting=setting, maps_per_class=maps, seed=seed, processes=2,
                           progress=False)
        run = f"{out}/cnn_{setting}_{seed}"
        training.train("cosmo_cnn", data, run_dir=run, verbose=0, resume=False,
                       overrides={"train.epochs": epochs, "train.seed": seed})
        result = training.evaluate(run, data, split="val")
        record({"model": "cosmo_cnn", "setting": setting, "seed": seed, **result})
# The seed's data size: 5,000 maps, 15 epochs, scored on 1,000 test maps (README).
for setting in ("degenerate", "sigma8"):
    for seed in (10, 11, 12):
        data = f"{out}/{setting}_big_{seed}.h5"
        generate_mass_maps(data, setting=setting, maps_per_class=2500, seed=seed, processes=2,
                           progress=False)
        run = f"{out}/cnn_{setting}_big_{seed}"
        training.train("cosmo_cnn", data, run_dir=run, verbose=0, resume=False,
                       overrides={"train.epochs": 15})
        record({"model": "cosmo_cnn", "setting": setting, "maps_total": 5000, "seed": seed,
                **training.evaluate(run, data, split="val")})
for name, noise in (("smooth_noiseless", dict(shape_noise=False, smoothing_arcmin=4.92)),
                    ("default_noisy", {})):
    data = f"{out}/dcae_{name}.h5"
    # As the shipped entry: 800 maps, 15 epochs (README: ratio 0.61 smooth, 2.1 noisy).
    generate_mass_maps(data, setting="sigma8", maps_per_class=400, seed=0, processes=2,
                       progress=False, **noise)
    run = f"{out}/dcae_{name}"
    training.train("cosmo_dcae", data, run_dir=run, verbose=0, resume=False,
                   overrides={"train.epochs": 15})
    record({"model": "cosmo_dcae", "maps": name, **training.evaluate(run, data, split="val")})
PYEOF

#!/usr/bin/env bash
# cosmo_dcae judged as a denoiser: for SEEDS data/training seeds, a fresh file of MAPS maps
# of 128 x 128 with the generator's default shape noise (30 galaxies/arcmin^2, smoothing 2.34';
# the file keeps each noiseless map beside the noisy one), cosmo_dcae trained EPOCHS epochs
# on the first 80% with the noisy map as input (keep_fraction 1: the noise is the corruption)
# and the noiseless map as target, then scored on the last 20% against the noiseless maps,
# next to the noisy map itself and a Gaussian filter of it (its width fitted on the training
# maps); the seed's figures 8 (reconstruction.png) and 9 (saliency.png) in each run folder.
# BOTTLENECK "conv" (two 3x3 convolutions of 32 filters at the encoder's 8 x 8 grid) or
# "dense" (the shipped configuration: dense code of 256 and 2,048 units). One JSON line per seed
# in $OUT/results.jsonl (MSE ratios with 95% bootstrap intervals over the scored maps).
# FRESH_NOISE true: every training step gives each map its own noise field shifted and
# reflected (data.fresh_noise); false: the file's noisy maps as they are.
#
#   scripts/cosmology_dcae_denoiser.sh [OUT=runs/cosmology_dcae] [SEEDS="0 1 2"] [EPOCHS=30]
#                                      [MAPS=800] [BOTTLENECK=conv] [FRESH_NOISE=true]
set -euo pipefail
OUT=${1:-runs/cosmology_dcae}
SEEDS=${2:-"0 1 2"}
EPOCHS=${3:-30}
MAPS=${4:-800}
BOTTLENECK=${5:-conv}
FRESH_NOISE=${6:-true}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
for SEED in $SEEDS; do
  nice -n 10 "$PY" - "$OUT" "$SEED" "$EPOCHS" "$MAPS" "$BOTTLENECK" "$FRESH_NOISE" <<'PYEOF'
import json
import sys

from modelzoo import training
from modelzoo.cosmology.generator import generate_mass_maps

out, seed, epochs, maps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
bottleneck, fresh_noise = sys.argv[5], sys.argv[6] == "true"
data = f"{out}/noisy_{seed}.h5"
generate_mass_maps(data, setting="sigma8", maps_per_class=maps // 2, seed=seed, processes=2,
                   progress=False)
run = f"{out}/dcae_{bottleneck}_{'fresh' if fresh_noise else 'fixed'}_noise_{seed}"
overrides = {"train.epochs": epochs, "train.seed": seed, "data.keep_fraction": 1.0,
             "data.fresh_noise": fresh_noise}
# kappa_scale 0.01: about one noisy map's standard deviation (the network's unit)
training.train("cosmo_dcae", data, run_dir=run, verbose=0, resume=False, overrides=overrides,
               model_config={"kappa_scale": 0.01, "bottleneck": bottleneck,
                             "bottleneck_units": (32, 32) if bottleneck == "conv" else (256, 2048)})
row = {"seed": seed, "file_maps": maps, "epochs": epochs, "bottleneck": bottleneck,
       "fresh_noise": fresh_noise, **training.evaluate(run, data, split="val")}
print(json.dumps(row), flush=True)
with open(f"{out}/results.jsonl", "a") as fh:
    fh.write(json.dumps(row) + "\n")
PYEOF
done

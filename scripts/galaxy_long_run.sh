#!/usr/bin/env bash
# The longer galaxy_vae run (not part of the test suite): GalSim stamps -> train -> compare with
# the bivariate-normal galaxy model on held-out stamps, the seed's 97.2% comparison.
#
#   bash scripts/galaxy_long_run.sh [OUT_DIR] [N_STAMPS] [EPOCHS] [PROCESSES] [POPULATION]
#
# POPULATION: "default" or "prominent" (`modelzoo data galaxy --help`).
# Defaults: runs/galaxy_long, 12000 stamps (10% held out), 16 epochs, 2 generator processes:
# about 40 minutes on 2 shared CPU cores. Results: OUT_DIR/eval/metrics.json and the figures.
#
# Measured (2 shared CPU cores, default population): stamps 5.5 min, training 27 min (104
# stamps/s), comparison on the 1200 held-out stamps 3.2 min. The VAE beats the bivariate-normal
# model on 61.1% of them (irregular 93.5%, spiral 73.2%, elliptical 36.7%, lenticular 37.3%),
# short of the seed's 97.2%. The losses sit at about -100 nats, on faint smooth galaxies: there
# the maximum-likelihood fit is within noise of the truth and pays no Occam cost, while the VAE's
# log p(x) pays the information in z (KL ~ 67 nats at latent_dim 32). The fraction rises with
# brightness: 82% on the brighter half, 92% on the brightest 10% (by observed flux).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/galaxy_long}
N=${2:-12000}
EPOCHS=${3:-16}
PROCS=${4:-2}
POPULATION=${5:-default}
PY=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
mkdir -p "$OUT"

if [ ! -f "$OUT/stamps.h5" ]; then
  "$PY" -m modelzoo.cli data galaxy --output "$OUT/stamps.h5" --count "$N" --seed 0 \
    --processes "$PROCS" --population "$POPULATION"
fi
# Learning rate 1e-3 at batch 32, dropped x0.3 then x0.1 over the last epochs.
"$PY" -m modelzoo.cli train galaxy_vae --data "$OUT/stamps.h5" --output "$OUT/run" \
  --epochs "$EPOCHS" --verbose 2 \
  --model-config latent_dim=32 \
  --set optimizer.learning_rate=1.0e-3 \
  --set "lr_schedule.decay_epochs=[$((EPOCHS * 5 / 8)),$((EPOCHS * 7 / 8))]" \
  --set "lr_schedule.decay_factors=[0.3,0.1]" \
  --set data.eval_max_stamps=1200 --set data.eval_samples=128
"$PY" -m modelzoo.cli evaluate --run "$OUT/run" --data "$OUT/stamps.h5" --split val \
  --output "$OUT/eval"

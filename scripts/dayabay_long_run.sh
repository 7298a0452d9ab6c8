#!/usr/bin/env bash
# The longer Daya Bay runs (not part of the test suite): generate pairs -> train the denoising
# autoencoder and the supervised CNN -> evaluate both on a fresh file (seed figure 14, the
# masked-pixel comparison, probe accuracies, silhouette; the CNN's accuracy per class).
#
#   bash scripts/dayabay_long_run.sh [OUT_DIR] [PAIRS_PER_SIGNAL_CLASS] [DAE_EPOCHS] [DAE_FILTERS] [CNN_EPOCHS]
#
# Defaults: runs/dayabay_long, 8,000 IBD + 8,000 accidental + 2,000 muon + 2,000 flasher pairs
# (the last quarter of each class validates), the autoencoder at 64 filters for 20 epochs
# (128 is the paper's width and the builder's default: about 3x slower), the CNN for 10
# epochs; the fresh evaluation file has a quarter as many pairs (seed 1). About 8 minutes on
# 2 CPU cores. Results: OUT_DIR/{dae,cnn}/eval/metrics.json and the PNG figures.
set -euo pipefail
OUT=${1:-runs/dayabay_long}
N=${2:-8000}
DAE_EPOCHS=${3:-20}
DAE_FILTERS=${4:-64}
CNN_EPOCHS=${5:-10}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
$PY -m modelzoo.cli data dayabay --output "$OUT/train.h5" --ibd "$N" --accidentals "$N" \
  --muons $((N / 4)) --flashers $((N / 4)) --seed 0 --processes 2
$PY -m modelzoo.cli data dayabay --output "$OUT/fresh.h5" --ibd $((N / 4)) --accidentals $((N / 4)) \
  --muons $((N / 16)) --flashers $((N / 16)) --seed 1 --processes 2
$PY -m modelzoo.cli train dayabay_dae --data "$OUT/train.h5" --output "$OUT/dae" \
  --epochs "$DAE_EPOCHS" --model-config filters="$DAE_FILTERS" --verbose 2
$PY -m modelzoo.cli evaluate --run "$OUT/dae" --data "$OUT/fresh.h5" --output "$OUT/dae/eval"
$PY -m modelzoo.cli train dayabay_cnn --data "$OUT/train.h5" --output "$OUT/cnn" \
  --epochs "$CNN_EPOCHS" --verbose 2
$PY -m modelzoo.cli evaluate --run "$OUT/cnn" --data "$OUT/fresh.h5" --output "$OUT/cnn/eval"

#!/usr/bin/env bash
# Ship a climate_detector that places tropical cyclones: the reduced detector of
# climate_detector.synthetic_v1 (filters 16-32-64, lambda = 1, batch 8, 15 epochs, the same 480
# training and 64 evaluation snapshots of the North Pacific at 64 x 96) with finer cells: the
# head on the stride-2 grid (32 x 48 cells of 2 pixels; `cell_layers=1`, the code upsampled and
# joined with the encoder's stride-2 features) instead of the stride-8 one (8 x 12 cells of 8
# pixels). Tropical cyclones are 3-8 pixels wide on this grid: smaller than an 8-pixel cell.
# CELL_LAYERS=2 (4-pixel cells), BOX_SIZE=sqrt (YOLO v1's square-root box sizes) and EPOCHS
# give the other variants measured in modelzoo/climate/README.md.
# Written through `modelzoo pretrained publish` as climate_detector.$TAG, the default entry;
# the 8-pixel-cell numbers of climate_detector.synthetic_v1 (no longer shipped) are in
# modelzoo/climate/README.md.
# About 4-6 minutes on 2 shared cores.
# Usage: scripts/climate_detector.sh [WORK_DIR]   (default runs/climate_detector)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/climate_detector}
PY=${PY:-.venv/bin/python}
TAG=${TAG:-synthetic_v2}
CELL_LAYERS=${CELL_LAYERS:-1}
EPOCHS=${EPOCHS:-15}
BOX_SIZE=${BOX_SIZE:-linear}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
region='"height": 64, "width": 96, "lat_range": [0, 60], "lon_range": [140, 260], "kind": "images"'
RECIPE="{\"generator\": \"climate\",
  \"train\": {$region, \"n_images\": 480, \"seed\": 11, \"processes\": 2},
  \"eval\": {$region, \"n_images\": 64, \"seed\": 12}}"
mkdir -p "$WORK"
nice -n 10 $PY -m modelzoo.cli pretrained publish climate_detector --tag "$TAG" \
    --work-dir "$WORK" --data-recipe "$RECIPE" \
    --description "Reduced detector (filters 16-32-64) with $((2 ** CELL_LAYERS))-pixel cells \
and $BOX_SIZE box sizes on synthetic 64 x 96 North Pacific snapshots" \
    --set "model.config.input_shape=[64,96,16]" --set "model.config.filters=[16,32,64]" \
    --set "model.config.cell_layers=$CELL_LAYERS" --set "data.grid_cell=$((2 ** CELL_LAYERS))" \
    --set "data.box_size=$BOX_SIZE" --set loss.reconstruction_weight=1.0 \
    --set train.batch_size=8 --set "train.epochs=$EPOCHS" \
    --set data.val_fraction=0.1

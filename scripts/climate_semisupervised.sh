#!/usr/bin/env bash
# Semi-supervised against supervised detection at 10% labelled images (Racah et al. 2017's
# claim that unlabelled images help localisation), over 3 seeds, on small synthetic grids.
#
# For each seed s: 400 synthetic 64 x 96 snapshots of the North Pacific (data seed 100 + s), of
# which 10% keep their boxes. The semi-supervised detector (lambda = 1) trains on all 400 (the
# detection loss on the 40 labelled, the reconstruction on every image); the supervised one
# (lambda = 0) on the same 40 labelled images alone, for the same number of optimizer steps
# (10x the epochs). Both are the reduced detector (filters 16-32-64, 8-pixel cells, 8 x 12
# grid), batch 8, the recipe's learning rate scaled to the batch. Evaluation: a fixed, fully
# labelled test set of 96 images (seed 999): AP per class and mAP at IoU 0.5 and 0.1.
#
# By default both take 400 optimizer steps, so the semi-supervised model sees each labelled
# image 8 times and the supervised one 80 times; EPOCHS=40 SUP_EPOCHS=80 lets the
# semi-supervised model see each 40 times (2,000 steps).
# About 1-3 minutes per training on a 2-core machine (run two seeds at once with JOBS=2).
# Usage: scripts/climate_semisupervised.sh [WORK_DIR]   (default runs/climate_semisupervised)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/climate_semisupervised}
PY=${PY:-.venv/bin/python}
EPOCHS=${EPOCHS:-8}        # semi-supervised epochs over 400 images (50 steps each)
SUP_EPOCHS=${SUP_EPOCHS:-$((EPOCHS * 10))}  # supervised epochs over the 40 labelled (5 steps each)
LAMBDA=${LAMBDA:-1.0}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-1}
REGION=(--height 64 --width 96 --lat-range 0 60 --lon-range 140 260)
MODEL=(--model-config 'input_shape=[64,96,16]' --model-config 'filters=[16,32,64]'
       --set data.grid_cell=8 --set data.val_fraction=0.0 --batch-size 8 --verbose 0 --no-resume)
mkdir -p "$WORK"

$PY -m modelzoo.cli data climate images --output "$WORK/test.h5" --images 96 --seed 999 "${REGION[@]}"

run_seed() {
  local s=$1
  local data=$((100 + s))
  $PY -m modelzoo.cli data climate images --output "$WORK/all_$s.h5" --images 400 \
      --labelled-fraction 0.1 --seed $data "${REGION[@]}"
  $PY -m modelzoo.cli data climate images --output "$WORK/labelled_$s.h5" --images 400 \
      --labelled-fraction 0.1 --drop-unlabelled --seed $data "${REGION[@]}"
  $PY -m modelzoo.cli train climate_detector --data "$WORK/all_$s.h5" --output "$WORK/semi_$s" \
      --epochs "$EPOCHS" --set "loss.reconstruction_weight=$LAMBDA" --set "train.seed=$s" "${MODEL[@]}"
  $PY -m modelzoo.cli train climate_detector --data "$WORK/labelled_$s.h5" --output "$WORK/sup_$s" \
      --epochs "$SUP_EPOCHS" --set loss.reconstruction_weight=0 --set "train.seed=$s" "${MODEL[@]}"
  for kind in semi sup; do
    $PY -m modelzoo.cli evaluate --run "$WORK/${kind}_$s" --data "$WORK/test.h5" \
        --output "$WORK/${kind}_$s/test" > /dev/null
  done
}

pids=()
for s in $SEEDS; do
  run_seed "$s" &
  pids+=($!)
  if (( ${#pids[@]} >= JOBS )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done

$PY - "$WORK" $SEEDS <<'PYEOF'
import json, sys
import numpy as np
work, seeds = sys.argv[1], sys.argv[2:]
keys = ["map_5", "map_1", "ap_5_tropical_depression", "ap_5_tropical_cyclone",
        "ap_5_extratropical_cyclone", "ap_5_atmospheric_river"]
rows = {}
for kind in ("semi", "sup"):
    runs = [json.load(open(f"{work}/{kind}_{s}/test/metrics.json")) for s in seeds]
    rows[kind] = {k: [r.get(k, float("nan")) for r in runs] for k in keys}
print(f"{'metric':32s} {'semi-supervised':>22s} {'supervised':>22s}   (mean +- std over seeds {seeds})")
for k in keys:
    cells = [f"{np.mean(rows[x][k]):.3f} +- {np.std(rows[x][k], ddof=1):.3f}" for x in ("semi", "sup")]
    print(f"{k:32s} {cells[0]:>22s} {cells[1]:>22s}   semi {np.round(rows['semi'][k], 3).tolist()} sup {np.round(rows['sup'][k], 3).tolist()}")
json.dump(rows, open(f"{work}/summary.json", "w"), indent=2)
PYEOF

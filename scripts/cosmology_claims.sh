#!/usr/bin/env bash
# The cosmology entries' published numbers: each default entry's shipped weights evaluated on
# its fixed evaluation set and on its quick check set (both made by the entry's own data
# recipe), the baselines fitted on the entry's training set (the maps or volumes the network
# trained on), and the results written into the manifest (metrics, check_metrics, 95% intervals,
# comparisons, eval_size) by modelzoo.cosmology.claims. The evaluations' figures and
# metrics.json land in modelzoo/cosmology/figures/<model>/.
# About 25 minutes on 2 busy CPU cores under nice (most of it simulating the sets).
#
#   scripts/cosmology_claims.sh [WORK=runs/cosmology_claims]
set -euo pipefail
WORK=${1:-runs/cosmology_claims}
PY=${PYTHON:-.venv/bin/python}
FIGURES=modelzoo/cosmology/figures
mkdir -p "$WORK/check"
zoo() { nice -n 10 "$PY" -m modelzoo.cli "$@"; }
has_check() {  # ENTRY: whether its data recipe has a quick check set
  "$PY" -c "import json, sys; sys.exit('check' not in json.load(open(
    'pretrained/manifest.json'))[sys.argv[1]]['data_recipe'])" "$1"
}
data() {  # ENTRY SPLIT FILE: the set of ENTRY, once
  [ -e "$3" ] || zoo data --from-entry "$1" --entry-split "$2" --output "$3"
}
for pair in cosmo_cnn:cosmo_cnn.synthetic_v1 cosmo_cnn_regression:cosmo_cnn_regression.synthetic_v1 \
            cosmo_dcae:cosmo_dcae.synthetic_v1 cosmoflow:cosmoflow.synthetic32_v1; do
  model=${pair%%:*} entry=${pair#*:}
  # The baselines fit on the network's training set, as the network was trained.
  data "$entry" train "$WORK/$model-train.h5"
  fit=(--set data.baseline_train="$WORK/$model-train.h5")
  data "$entry" eval "$WORK/$model-eval.h5"
  rm -rf "${FIGURES:?}/$model"
  zoo evaluate "$model" --weights default --data "$WORK/$model-eval.h5" "${fit[@]}" \
    --output "$FIGURES/$model"
  if has_check "$entry"; then
    data "$entry" check "$WORK/$model-check.h5"
    # CosmoFlow's check set is scored with the fit just made (the manifest keeps it, and
    # verify re-scores with it rather than re-simulating 3,200 training volumes).
    [ "$model" != cosmoflow ] || fit=(--set data.baseline_fit="$FIGURES/$model/baseline_fit.json")
    zoo evaluate "$model" --weights default --data "$WORK/$model-check.h5" "${fit[@]}" \
      --output "$WORK/check/$model"
  fi
done
nice -n 10 "$PY" -m modelzoo.cosmology.claims "$FIGURES" --check "$WORK/check"

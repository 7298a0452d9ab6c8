#!/usr/bin/env bash
# The ECoG case's long runs (Livezey, Bouchard & Chang 2019): the paper's 10-fold comparison of
# the MLP against the logistic-regression baseline on synthetic subject-1 data (85 x 258,
# 2,000 trials), the confusion dendrogram, and tuned-vs-default hyperparameters.
#
#   bash scripts/ecog_long_run.sh [WORK_DIR]       (default runs/ecog_long)
#
# Steps (each resumes if interrupted: folds and trials are run folders / a SQLite study):
#   1. generate the data set (seeded; ~3 s);
#   2. 10-fold cross-validation of ecog_mlp and ecog_logreg by their recipes (15 epochs each):
#      mean +/- s.d. over folds of syllable, consonant and vowel accuracy, a Wilcoxon test, the
#      dendrogram of the soft confusion pooled over the folds' test trials and its articulatory
#      scores -> WORK_DIR/cv/crossval.json and per-model PNGs;
#   3. tune each model on fold 0 (validation = block 1; the test block 0 is never seen by the
#      search) with Optuna over the published ranges, then evaluate the best trial's run on the
#      test block next to the default recipe's fold-0 run.
# Measured on 2 shared CPU cores: see README ("Speech from ECoG") for the numbers and times.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/ecog_long}
PY=${PY:-.venv/bin/python}
TRIALS=${TRIALS:-12}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
mkdir -p "$WORK"
DATA="$WORK/subject1_seed0.h5"
[ -f "$DATA" ] || $PY -m modelzoo.cli data ecog --output "$DATA" --trials 2000 --seed 0 --processes 2

$PY -m modelzoo.ecog.crossval --data "$DATA" --output "$WORK/cv" --folds 10

for MODEL in ecog_logreg ecog_mlp; do
  $PY -m modelzoo.tuning "$MODEL" --data "$DATA" --trials "$TRIALS" --workers 1 \
      --output "$WORK/tune-$MODEL" --epochs 15 --startup-trials 6 \
      --set data.folds=10 --set data.fold=0
  $PY - "$WORK" "$MODEL" "$DATA" <<'PY'
import json, sys
from modelzoo import training
work, model, data = sys.argv[1:]
best = json.load(open(f"{work}/tune-{model}/best.json"))["best"]
rows = {"default": f"{work}/cv/{model}/fold-00", "tuned": best["user_attrs"]["run_dir"]}
result = {name: training.evaluate(run, data, split="test", output_dir=f"{run}/test")
          for name, run in rows.items()}
keys = ("accuracy", "consonant_accuracy", "vowel_accuracy")
summary = {name: {k: r[k] for k in keys} for name, r in result.items()}
summary["tuned_params"] = best["params"]
json.dump(summary, open(f"{work}/tune-{model}/tuned_vs_default.json", "w"), indent=2)
print(model, json.dumps(summary, indent=1))
PY
done

#!/usr/bin/env bash
# 95% intervals, comparisons and evaluation-set sizes (the manifest keys "intervals",
# "interval_method", "comparisons", "eval_size") of the climate_* default entries, each measured
# on the entry's own evaluation set (regenerated from its data recipe):
#  * climate_patch_cnn: accuracy with its Clopper-Pearson interval over the patches; against
#    the majority class (a paired bootstrap over the same patches) and Liu et al. 2016's 0.99
#    (a paper number: compared with the interval).
#  * climate_segmenter: IoU per class and their means, bootstrap over the samples; against the
#    threshold baseline scored on the same samples (paired bootstrap). DeepCAM's 0.82 is on
#    real CAM5 fields and is not compared.
#  * climate_detector: AP per class and mAP at IoU 0.5 and 0.1, bootstrap over the images;
#    against the superseded 8-pixel-cell and 2-pixel-cell entries on the same images (paired
#    bootstrap), read from the comparison that scripts/climate_detector.sh writes.
# Verdicts: "ahead" when the difference's interval lies above 0, "behind" below, else "tied".
# About 5 minutes on 2 cores (most of it the segmenter's 32 samples at 384 x 576).
# Usage: scripts/climate_intervals.sh [WORK_DIR] [DETECTOR_COMPARISON]
#   (defaults runs/climate_intervals, runs/climate_detector/comparison.json)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/climate_intervals}
STUDY=${2:-runs/climate_detector/comparison.json}
PY=${PY:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
mkdir -p "$WORK"
nice -n 10 $PY - "$WORK" "$STUDY" <<'PYEOF'
import json
import sys

import numpy as np
from scipy.stats import beta

from modelzoo import manifest, reproduce, training

work, study = sys.argv[1], sys.argv[2]
entries = manifest.load_manifest()


def verdict(low, high):
    return "ahead" if low > 0 else "behind" if high < 0 else "tied"


def compare(metric, against, difference, interval):
    return {"metric": metric, "against": against, "difference": float(difference),
            "interval": [float(interval[0]), float(interval[1])],
            "verdict": verdict(*interval)}


def evaluate(key):
    entry = entries[key]
    return training.evaluate_model(entry["model"], entry["tag"], str(_eval_path(entry)))


def _eval_path(entry):
    args = entry["data_recipe"]["eval"]
    path = reproduce.data_path(work, entry["data_recipe"]["generator"], "eval", args)
    reproduce.generate(entry["data_recipe"]["generator"], path, args)
    return path


def default(model):
    return next(k for k, e in entries.items() if e["model"] == model and e.get("default"))


# Patch classifier: every patch right or wrong, so the confusion matrix holds all there is.
key = default("climate_patch_cnn")
m = evaluate(key)
matrix = np.asarray(m["confusion_matrix"])
n, right = int(matrix.sum()), int(np.trace(matrix))
low, high = beta.ppf(0.025, right, n - right + 1), beta.ppf(0.975, right + 1, n - right)
majority = int(matrix.sum(axis=1).argmax())
correct = np.concatenate([np.r_[np.ones(matrix[t, t]), np.zeros(matrix[t].sum() - matrix[t, t])]
                          for t in range(len(matrix))])
majority_correct = np.concatenate([np.full(matrix[t].sum(), t == majority)
                                   for t in range(len(matrix))]).astype(float)
rng = np.random.default_rng(0)
draws = np.array([(correct - majority_correct)[rng.integers(0, n, n)].mean()
                  for _ in range(2000)])
paper = float(m.get("published_accuracy", 0.99))
entries[key].update({
    "intervals": {"accuracy": [float(low), float(high)]},
    "interval_method": f"Clopper-Pearson over the {n} evaluation patches; the difference from "
                       "the majority class by a paired bootstrap over them, 2000 resamples",
    "comparisons": [
        compare("accuracy", "majority class (chance_accuracy)", right / n - majority_correct.mean(),
                np.percentile(draws, [2.5, 97.5])),
        compare("accuracy", f"Liu et al. 2016 ({paper}, real CAM5 patches)", right / n - paper,
                (low - paper, high - paper))],
    "eval_size": f"{n} patches ({', '.join(f'{c} {name}' for c, name in zip(matrix.sum(axis=1), m['class_names']))}) "
                 f"from {entries[key]['data_recipe']['eval']['n_images']} snapshots",
})

# Segmenter: IoU and its paired difference from the threshold baseline.
key = default("climate_segmenter")
m = evaluate(key)
names = ["iou_background", "iou_tropical_cyclone", "iou_atmospheric_river", "mean_iou",
         "mean_iou_events"]
entries[key].update({
    "intervals": {k: m[f"{k}_interval"] for k in names if f"{k}_interval" in m},
    "interval_method": f"bootstrap over the {m['samples']} evaluation samples (whole fields), "
                       "1000 resamples, 95% percentile; differences from the threshold baseline "
                       "by a paired bootstrap over the same samples",
    "comparisons": [compare(k, "threshold baseline (same samples)", m[f"over_baseline_{k}"],
                            m[f"over_baseline_{k}_interval"]) for k in names[1:]],
    "eval_size": f"{m['samples']} samples of "
                 f"{entries[key]['data_recipe']['eval']['height']} x "
                 f"{entries[key]['data_recipe']['eval']['width']} x 16, 3 classes "
                 f"(cyclone {m['pixel_fraction_tropical_cyclone']:.2%}, river "
                 f"{m['pixel_fraction_atmospheric_river']:.2%} of the pixels)",
})

# Detector: the entry's own intervals, and the paired comparison of the detector study.
key = default("climate_detector")
metrics = entries[key]["metrics"]
result = json.load(open(study))
if result["entry"] != key:
    sys.exit(f"{study} compares {result['entry']}, the default entry is {key}")
entries[key].update({
    "intervals": {k[:-len("_interval")]: v for k, v in metrics.items() if k.endswith("_interval")},
    "interval_method": f"bootstrap over the {metrics['images']} evaluation images, 1000 "
                       "resamples, 95% percentile; differences from the superseded entries by "
                       "a paired bootstrap over the same images",
    "comparisons": [compare(c["metric"], c["against"], c["difference"], c["interval"])
                    for c in result["comparisons"]],
    "eval_size": f"{metrics['images']} images of 64 x 96 x 16, "
                 + ", ".join(f"{metrics[f'boxes_{n}']} {n.replace('_', ' ')}"
                             for n in ("tropical_depression", "tropical_cyclone",
                                       "extratropical_cyclone", "atmospheric_river")),
})

path = manifest.PRETRAINED_DIR / manifest.MANIFEST
path.write_text(json.dumps(entries, indent=2, sort_keys=True, default=float) + "\n")
for key in sorted(k for k in entries if k.startswith("climate_")):
    e = entries[key]
    print(key, e.get("eval_size"))
    for c in e.get("comparisons", []):
        print(f"  {c['metric']} vs {c['against']}: {c['difference']:+.3f} "
              f"[{c['interval'][0]:+.3f}, {c['interval'][1]:+.3f}] {c['verdict']}")
PYEOF

"""Shipped entries re-measured on evaluation sets made with the entry's data recipe and other
seeds: how much each published number moves with the evaluation set alone.

    python scripts/shipped_over_seeds.py KEY [KEY ...] --seeds 11 12 13 14 15 \
        [--metrics accuracy code_knn_accuracy_ibd_vs_accidental ...] [--data-dir runs/seeds]

Prints, per entry and metric, the shipped set's value with its 95% bootstrap interval over
samples (for a fraction of n samples), then each seed's value, their mean and range. Used for
the results tables of the case READMEs (modelzoo/<case>/README.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import os

import numpy as np

from modelzoo import manifest, pretrained, reproduce


def bootstrap_fraction(value: float, n: int, replicates: int = 10000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of a fraction ``value`` of ``n`` samples: resampling the
    n per-sample outcomes (round(value * n) successes) with replacement."""
    successes = int(round(value * n))
    draws = np.random.default_rng(seed).binomial(n, successes / n, replicates) / n
    tail = (1 - level) / 2
    return float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("keys", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14, 15])
    parser.add_argument("--metrics", nargs="*", help="metrics to print (default: all numbers)")
    parser.add_argument("--data-dir", default="runs/shipped_over_seeds")
    parser.add_argument("--n", nargs="*", default=[], metavar="METRIC=N",
                        help="samples of a metric measured on a subset the manifest does not "
                        "count, e.g. code_knn_accuracy_ibd_vs_accidental=2000")
    args = parser.parse_args()
    args.n = {name: int(count) for name, _, count in (a.partition("=") for a in args.n)}
    os.makedirs(args.data_dir, exist_ok=True)
    report = {}
    for key in args.keys:
        entry = manifest.load_manifest()[key]
        model = pretrained._shipped_model(entry["model"], entry["tag"], {})
        per_seed = {}
        for seed in args.seeds:
            moved = copy.deepcopy(entry)
            moved["data_recipe"]["eval"]["seed"] = seed
            per_seed[seed] = reproduce.evaluate_model(model, moved, args.data_dir)
        shipped = entry["metrics"]
        names = args.metrics or [m for m, v in shipped.items()
                                 if isinstance(v, float) and m not in reproduce.UNTIMED]
        report[key] = {}
        for metric in names:
            values = np.array([per_seed[s][metric] for s in args.seeds], float)
            row = {"shipped": shipped.get(metric), "seeds": values.tolist(),
                   "mean": float(values.mean()), "min": float(values.min()),
                   "max": float(values.max())}
            n = args.n.get(metric) or reproduce._denominator(metric, shipped)
            if n and reproduce._is_fraction(metric, shipped.get(metric, -1.0)) and (
                    "purity" not in metric):
                # n: the whole set, the group a metric names (events_ibd) or --n. A purity is
                # a fraction of clustered items, not of samples: its spread is over seeds.
                row["shipped_ci95"] = bootstrap_fraction(shipped[metric], n)
            report[key][metric] = row
            ci = row.get("shipped_ci95")
            ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            print(f"{key} {metric}: shipped {row['shipped']:.4g}{ci_text}; seeds "
                  f"{' '.join(f'{v:.3f}' for v in values)}; mean {row['mean']:.4f} "
                  f"[{row['min']:.3f}, {row['max']:.3f}]", flush=True)
    with open(os.path.join(args.data_dir, "report.json"), "w") as fh:
        json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()

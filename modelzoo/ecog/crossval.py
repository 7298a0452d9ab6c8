"""10-fold cross-validation of the ECoG decoders, as published (Livezey et al. 2019).

Every fold trains each model through the one training path (``data.folds``/``data.fold`` of the
recipe: 0.8 train, 0.1 validation, 0.1 test) and tests it on its own block, so every trial is
tested exactly once. Reported: mean and s.d. over folds of the syllable, consonant and vowel
accuracies, a Wilcoxon signed-rank test of the first model against each other one over folds
(the paper's test), and for each model the dendrogram of the soft confusion summed over all
folds' test trials (the seed's figure 12) with its articulatory scores::

    python -m modelzoo.ecog.crossval --data cv.h5 --output runs/ecog_cv \\
        --models ecog_mlp ecog_logreg --folds 10

Folds already trained in ``--output`` are resumed or reused (each is a run folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from modelzoo import training
from modelzoo.distributed import init
from modelzoo.ecog import phonetics
from modelzoo.ecog.task import (
    classification_metrics,
    hierarchy_scores,
    soft_confusion,
    split_indices,
    write_figures,
)
from modelzoo.registry import get_task

SUMMARY_KEYS = ("accuracy", "consonant_accuracy", "vowel_accuracy")


def cross_validate(
    data: str, output: str, *, models: tuple[str, ...] = ("ecog_mlp", "ecog_logreg"),
    folds: int = 10, overrides: dict | None = None, model_config: dict | None = None,
    verbose: int = 0,
) -> dict:
    """Train and test ``models`` on every fold of ``data``; write ``crossval.json`` and per-model
    figures (dendrogram, confusion, per-syllable accuracy) into ``output``; return the summary."""
    group = init()
    summary: dict = {"data": os.path.abspath(data), "folds": folds, "models": {}}
    for model in models:
        labels, probabilities, per_fold = [], [], []
        for fold in range(folds):
            run_dir = os.path.join(output, model, f"fold-{fold:02d}")
            start = time.perf_counter()
            fold_overrides = {**(overrides or {}), "data.folds": folds, "data.fold": fold}
            training.train(model, data, run_dir=run_dir, overrides=fold_overrides,
                           model_config=model_config, verbose=verbose)
            net, cfg = training._load_run(run_dir)
            task = get_task(cfg["task"])
            trials = task.open(data, cfg["data"])
            rows = split_indices(trials.num_trials, cfg["data"])["test"]
            pred = task.outputs(net, trials, cfg["data"], rows, group)
            labels.append(pred["label"])
            probabilities.append(pred["probabilities"])
            metrics = classification_metrics(pred["label"], pred["probabilities"])
            per_fold.append({k: metrics[k] for k in SUMMARY_KEYS})
            if group.is_root:
                print(f"crossval: {model} fold {fold}: accuracy {metrics['accuracy']:.3f} "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
        labels_all, probs_all = np.concatenate(labels), np.concatenate(probabilities)
        pooled = classification_metrics(labels_all, probs_all)
        scores, tree = hierarchy_scores(soft_confusion(labels_all, probs_all,
                                                       probs_all.shape[1]))
        entry = {f"{k}_mean": float(np.mean([f[k] for f in per_fold])) for k in SUMMARY_KEYS}
        entry.update({f"{k}_sd": float(np.std([f[k] for f in per_fold], ddof=1))
                      for k in SUMMARY_KEYS})
        entry.update(per_fold=per_fold, chance=pooled["chance"], **scores)
        summary["models"][model] = entry
        if group.is_root:
            figures = os.path.join(output, model)
            write_figures(figures, labels_all, probs_all, pooled, tree)
    if len(models) > 1 and folds >= 2:
        from scipy.stats import wilcoxon

        first = [f["accuracy"] for f in summary["models"][models[0]]["per_fold"]]
        for other in models[1:]:
            second = [f["accuracy"] for f in summary["models"][other]["per_fold"]]
            summary[f"wilcoxon_{models[0]}_vs_{other}_p"] = float(wilcoxon(first, second).pvalue)
    if group.is_root:
        os.makedirs(output, exist_ok=True)
        with open(os.path.join(output, "crossval.json"), "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelzoo.ecog.crossval",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", default="runs/ecog_crossval")
    parser.add_argument("--models", nargs="+", default=["ecog_mlp", "ecog_logreg"])
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="recipe override for every model, e.g. train.epochs=25")
    parser.add_argument("--model-config", action="append", default=[], metavar="KEY=VALUE",
                        help="builder keyword for every model, e.g. n_channels=64")
    args = parser.parse_args(argv)

    def assignments(pairs: list[str]) -> dict:
        return {k: training.load_yaml(v) for k, _, v in (p.partition("=") for p in pairs)}

    summary = cross_validate(args.data, args.output, models=tuple(args.models),
                             folds=args.folds, overrides=assignments(args.set),
                             model_config=assignments(args.model_config))
    for model, entry in summary["models"].items():
        print(f"{model}: syllable {entry['accuracy_mean']:.1%} +/- {entry['accuracy_sd']:.1%}, "
              f"consonant {entry['consonant_accuracy_mean']:.1%}, vowel "
              f"{entry['vowel_accuracy_mean']:.1%} (chance {1 / len(phonetics.SYLLABLES):.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

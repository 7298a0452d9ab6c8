"""95% intervals and baseline comparisons of shipped entries on their own evaluation sets,
written into ``pretrained/manifest.json`` (keys ``intervals``, ``interval_method``,
``comparisons``, ``eval_size``; rendered by ``modelzoo pretrained table``).

    python scripts/shipped_intervals.py [KEY ...] [--data-dir runs/intervals] [--dry-run]

Each entry's evaluation set is regenerated from its data recipe (cached in ``--data-dir``), the
shipped weights are run through the case's own task to get per-sample outcomes, and every
number is re-measured and checked against the manifest before anything is written. Intervals
are percentile bootstraps over the evaluation samples (Efron & Tibshirani 1993); a baseline
scored on the same samples is compared by a paired bootstrap of the difference (the same
resampled rows for both sides), a paper number (no interval) by shifting the zoo's interval.
Verdicts: "ahead" when the difference's interval lies above 0, "behind" below, else "tied".
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from modelzoo import distributed, manifest, pretrained, registry, reproduce

RESAMPLES = 2000
LEVEL = 0.95


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray | float], n: int,
              resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``statistic(rows)`` over ``resamples`` draws of ``n`` row indices with replacement:
    an array (resamples, ...) of its values."""
    rng = np.random.default_rng(seed)
    return np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])


def percentile(values: np.ndarray) -> list[float]:
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def comparison(metric: str, against: str, difference: float, interval: list[float]) -> dict:
    return {"metric": metric, "against": against, "difference": float(difference),
            "interval": interval, "verdict": pretrained.verdict(interval)}


def against_paper(metric: str, value: float, interval: list[float], paper: float,
                  name: str, higher_is_better: bool = True) -> dict:
    """A paper's number has no interval here: the zoo's interval, shifted by it."""
    sign = 1.0 if higher_is_better else -1.0
    shifted = sorted(sign * (v - paper) for v in interval)
    return comparison(metric, f"{name} ({paper:g})", sign * (value - paper), shifted)


def mean_outcomes(outcomes: dict[str, np.ndarray], pairs: list[tuple[str, str, str]]
                  ) -> tuple[dict, list]:
    """Intervals of per-sample 0/1 (or per-sample value) means, and paired differences
    ``(zoo metric, baseline metric, baseline's name)`` over the same resampled rows."""
    names = list(outcomes)
    stacked = np.stack([np.asarray(outcomes[k], np.float64) for k in names])
    draws = bootstrap(lambda rows: stacked[:, rows].mean(axis=1), stacked.shape[1])
    intervals = {k: percentile(draws[:, j]) for j, k in enumerate(names)}
    compared = []
    for zoo, base, label in pairs:
        i, j = names.index(zoo), names.index(base)
        compared.append(comparison(zoo, label, stacked[i].mean() - stacked[j].mean(),
                                   percentile(draws[:, i] - draws[:, j])))
    return intervals, compared


def _outputs(key: str, data_dir: str) -> tuple[Any, dict, dict[str, np.ndarray], Any]:
    """(task, entry, per-sample outputs of the shipped model on the evaluation set, model)."""
    entry = manifest.load_manifest()[key]
    data = entry["data_recipe"]
    path = reproduce.data_path(data_dir, data["generator"], "eval", data["eval"])
    reproduce.generate(data["generator"], path, data["eval"])
    task = registry.get_task(entry["recipe"]["task"])
    cfg = entry["recipe"].get("data", {})
    model = pretrained._shipped_model(entry["model"], entry["tag"], {})
    return task, entry, {"path": str(path), "cfg": cfg}, model


def _check(key: str, measured: dict[str, float]) -> None:
    """Re-measured numbers must be the manifest's (within verify's tolerance)."""
    expected = manifest.load_manifest()[key]["metrics"]
    wanted = {k: expected[k] for k in measured if k in expected}
    problems = reproduce.compare(measured, wanted, lambda metric, want:
                                 reproduce.verify_tolerance(metric, want, expected))
    if problems:
        raise SystemExit(f"{key}: re-measured numbers differ from the manifest: {problems}")


def ecog(keys: list[str], data_dir: str) -> dict[str, dict]:
    """Syllable, consonant and vowel accuracy per trial; the MLP against the logistic
    regression on the same trials; both against Livezey et al.'s subject 1; the dendrogram's
    articulator purity by resampling trials (the tree is rebuilt from each resample)."""
    from modelzoo.ecog import phonetics
    from modelzoo.ecog.task import hierarchy_scores, soft_confusion, split_indices

    paper = {"ecog_mlp": 0.551, "ecog_logreg": 0.446}
    per_model: dict[str, dict[str, np.ndarray]] = {}
    for key in keys:
        task, entry, where, model = _outputs(key, data_dir)
        trials = task.open(where["path"], where["cfg"])
        rows = split_indices(trials.num_trials, where["cfg"])["all"]
        got = task.outputs(model, trials, where["cfg"], rows, distributed.init())
        labels, probs = got["label"], got["probabilities"]
        nv = len(phonetics.VOWELS)
        by_consonant = probs.reshape(len(labels), -1, nv)
        per_model[entry["model"]] = {
            "accuracy": probs.argmax(1) == labels,
            "consonant_accuracy": by_consonant.sum(2).argmax(1) == labels // nv,
            "vowel_accuracy": by_consonant.sum(1).argmax(1) == labels % nv,
            "labels": labels, "probabilities": probs, "key": key}
    out = {}
    for model_name, got in per_model.items():
        key, labels, probs = got["key"], got["labels"], got["probabilities"]
        outcomes = {m: got[m] for m in ("accuracy", "consonant_accuracy", "vowel_accuracy")}
        measured = {m: float(np.mean(v)) for m, v in outcomes.items()}
        def purity(rows: np.ndarray, labels=labels, probs=probs) -> float:
            matrix = soft_confusion(labels[rows], probs[rows], probs.shape[1])
            return hierarchy_scores(matrix)[0]["dendrogram_articulator_purity"]

        measured["dendrogram_articulator_purity"] = purity(np.arange(len(labels)))
        _check(key, measured)
        pairs = []
        if model_name == "ecog_mlp" and "ecog_logreg" in per_model:
            for m in list(outcomes):
                outcomes[f"logreg_{m}"] = per_model["ecog_logreg"][m]
                pairs.append((m, f"logreg_{m}", f"ecog_logreg {m}, same trials"))
        intervals, compared = mean_outcomes(outcomes, pairs)
        intervals = {k: v for k, v in intervals.items() if not k.startswith("logreg_")}
        purity_draws = bootstrap(purity, len(labels), resamples=500, seed=1)
        intervals["dendrogram_articulator_purity"] = percentile(purity_draws)
        compared.append(against_paper("accuracy", measured["accuracy"], intervals["accuracy"],
                                      paper[model_name], "paper, subject 1"))
        out[key] = {
            "intervals": intervals, "comparisons": compared,
            "interval_method": (f"bootstrap over the {len(labels):,} evaluation trials, "
                                f"{RESAMPLES} resamples (purity: 500, the tree rebuilt each "
                                "time); paired for the baseline"),
            "eval_size": f"{len(labels):,} trials, 57 syllables (synthetic subject 1, seed "
                         f"{manifest.load_manifest()[key]['data_recipe']['eval']['seed']})",
            "measured": measured}
    return out


def dayabay_dae(key: str, data_dir: str) -> dict:
    """Masked-value MSE per pair (ratio of sums) against neighbour averaging, and the
    cross-validated k-NN / logistic probe on the 16-d code against PCA-16, per pair."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from modelzoo.dayabay.task import _corruption

    task, entry, where, model = _outputs(key, data_dir)
    pairs = task.open(where["path"], where["cfg"])
    rows = task.rows(pairs, where["cfg"], "all")
    _, seed = _corruption(where["cfg"])
    got = task.outputs(model, pairs, where["cfg"], rows, distributed.init())
    labels, codes = got["label"], got["code"]
    pca = PCA(codes.shape[1], random_state=seed).fit_transform(got["raw"])
    chosen = np.isin(labels, (0, 1))
    correct = {}
    with threadpool_limits(1):
        for source, features in (("code", codes), ("pca16", pca)):
            x = np.asarray(features, np.float64)[chosen]
            y = labels[chosen]
            split = StratifiedKFold(5, shuffle=True, random_state=seed)
            for probe, estimator in (("knn", KNeighborsClassifier(5)),
                                     ("logistic", LogisticRegression(max_iter=2000))):
                guess = cross_val_predict(make_pipeline(StandardScaler(), estimator), x, y,
                                          cv=split)
                correct[f"{source}_{probe}_accuracy_ibd_vs_accidental"] = guess == y
    masked = got["masked"]
    sums = np.stack([got["dae_sse"], got["neighbour_sse"], masked])

    def mse(rows: np.ndarray) -> np.ndarray:
        dae, neighbour, count = sums[:, rows].sum(axis=1)
        return np.array([dae / count, neighbour / count, dae / neighbour])

    draws = bootstrap(mse, sums.shape[1])
    point = mse(np.arange(sums.shape[1]))
    measured = {"dae_masked_mse": point[0], "neighbour_masked_mse": point[1],
                "dae_over_neighbour_mse": point[2]}
    # The cross-validated accuracies are fold means in the manifest; the pooled fraction of
    # correct pairs is the same number when the folds are equal, within a pair otherwise.
    measured.update({k: float(v.mean()) for k, v in correct.items()})
    _check(key, measured)
    intervals = {"dae_masked_mse": percentile(draws[:, 0]),
                 "neighbour_masked_mse": percentile(draws[:, 1]),
                 "dae_over_neighbour_mse": percentile(draws[:, 2])}
    compared = [comparison("dae_masked_mse", "neighbour averaging, same masked values",
                           point[1] - point[0], percentile(draws[:, 1] - draws[:, 0]))]
    more, paired = mean_outcomes(correct, [
        ("code_knn_accuracy_ibd_vs_accidental", "pca16_knn_accuracy_ibd_vs_accidental",
         "k-NN on PCA-16 of the raw maps, same pairs"),
        ("code_logistic_accuracy_ibd_vs_accidental", "pca16_logistic_accuracy_ibd_vs_accidental",
         "logistic probe on PCA-16 of the raw maps, same pairs")])
    intervals.update(more)
    n, ibd_acc = len(labels), int(chosen.sum())
    return {"intervals": intervals, "comparisons": compared + paired,
            "interval_method": f"bootstrap over the {n:,} evaluation pairs ({ibd_acc:,} IBD and "
                               f"accidental for the probes), {RESAMPLES} resamples; paired for "
                               "the baselines; MSEs as ratios of resampled sums",
            "eval_size": f"{n:,} pairs: 1,000 IBD, 1,000 accidental, 250 muon, 250 flasher",
            "measured": measured}


def dayabay_cnn(key: str, data_dir: str) -> dict:
    task, entry, where, model = _outputs(key, data_dir)
    pairs = task.open(where["path"], where["cfg"])
    rows = task.rows(pairs, where["cfg"], "all")
    got = task.outputs(model, pairs, where["cfg"], rows, distributed.init())
    labels = got["label"]
    right = got["probabilities"].argmax(1) == labels
    per_class = np.stack([right[labels == k].mean() for k in range(4)])

    def statistic(rows: np.ndarray) -> np.ndarray:
        lab, ok = labels[rows], right[rows]
        return np.array([ok.mean(), min(ok[lab == k].mean() for k in range(4))])

    draws = bootstrap(statistic, len(labels))
    measured = {"accuracy": float(right.mean()), "min_class_accuracy": float(per_class.min())}
    _check(key, measured)
    intervals = {"accuracy": percentile(draws[:, 0]),
                 "min_class_accuracy": percentile(draws[:, 1])}
    return {"intervals": intervals,
            "comparisons": [against_paper("min_class_accuracy", measured["min_class_accuracy"],
                                          intervals["min_class_accuracy"], 0.97,
                                          "Racah et al. 2016, every class above")],
            "interval_method": f"bootstrap over the {len(labels):,} evaluation pairs, "
                               f"{RESAMPLES} resamples",
            "eval_size": f"{len(labels):,} pairs: 1,000 IBD, 1,000 accidental, 250 muon, "
                         "250 flasher",
            "measured": measured}


def _binomial(value: float, n: int, seed: int = 0) -> list[float]:
    """Bootstrap over n per-sample 0/1 outcomes of which round(value * n) are 1: resampling
    them is drawing Binomial(n, value) / n."""
    draws = np.random.default_rng(seed).binomial(n, round(value * n) / n, RESAMPLES) / n
    return percentile(draws)


def galaxy(key: str) -> dict:
    """The per-stamp outcome (VAE's log p(x) above the bivariate-normal model's) is 0/1, so its
    bootstrap needs only the manifest's fraction and count."""
    metrics = manifest.load_manifest()[key]["metrics"]
    stamps, isolated = metrics["stamps"], metrics["isolated_stamps"]
    intervals = {"fraction_vae_better": _binomial(metrics["fraction_vae_better"], stamps),
                 "fraction_vae_better_isolated": _binomial(
                     metrics["fraction_vae_better_isolated"], isolated)}
    return {"intervals": intervals,
            "comparisons": [against_paper("fraction_vae_better", metrics["fraction_vae_better"],
                                          intervals["fraction_vae_better"],
                                          metrics["seed_reference_fraction"],
                                          "Regier et al. 2015, SDSS")],
            "interval_method": f"bootstrap over the {stamps} evaluation stamps ({isolated} "
                               f"isolated), {RESAMPLES} resamples of the per-stamp outcome",
            "eval_size": f"{stamps} GalSim stamps (prominent population), {isolated} isolated"}


def lhc(key: str) -> dict:
    """The task's own stratified bootstrap (by class and pT-hat slice, the CNN read off at
    each replicate's selection FPR) gives the operating point's intervals, and the paired
    interval of the CNN's TPR minus the selection's (``cnn_minus_selection_tpr``, both read
    off the same resampled events). Metrics measured before the evaluation recorded it have
    only the two intervals: the difference's is then the conservative one from their ends (it
    contains the paired one's 95% whenever each side's does); regenerating the 19,100 events
    to re-measure takes 26 (64 x 64) and 46 (224 x 224) minutes here."""
    metrics = manifest.load_manifest()[key]["metrics"]
    names = ("cnn_tpr_at_selection_fpr", "selection_tpr", "selection_fpr")
    intervals = {m: [metrics[f"{m}_ci95_low"], metrics[f"{m}_ci95_high"]] for m in names}
    cnn, sel = intervals["cnn_tpr_at_selection_fpr"], intervals["selection_tpr"]
    paired = "cnn_minus_selection_tpr_ci95_low" in metrics
    difference = ([metrics["cnn_minus_selection_tpr_ci95_low"],
                   metrics["cnn_minus_selection_tpr_ci95_high"]] if paired
                  else [cnn[0] - sel[1], cnn[1] - sel[0]])
    events = metrics["events"]
    return {"intervals": intervals,
            "comparisons": [comparison(
                "cnn_tpr_at_selection_fpr", "cut-based selection's TPR, same events",
                metrics["cnn_tpr_at_selection_fpr"] - metrics["selection_tpr"], difference)],
            "interval_method": f"stratified bootstrap over the {events:,} evaluation events "
                               f"(class x pT-hat slice), {metrics['bootstrap_replicates']} "
                               "replicates; the difference's interval " + (
                                   "paired (both rates on the same replicates)" if paired else
                                   "from the two intervals' ends (conservative, not paired)"),
            "eval_size": f"{events:,} preselected events: {metrics['signal_events']:,} signal, "
                         f"{events - metrics['signal_events']:,} QCD, "
                         f"{metrics['background_passing_selection']} background passing the "
                         f"selection ({metrics['background_passing_selection_effective']:.1f} "
                         "effective)"}


def _rounded(text: str) -> float:
    """Six significant digits: the intervals' own resolution is far coarser."""
    return float(f"{float(text):.6g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("keys", nargs="*", help="entries (default: every one this script "
                        "knows how to measure)")
    parser.add_argument("--data-dir", default="runs/intervals")
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = parser.parse_args()
    os.makedirs(args.data_dir, exist_ok=True)
    entries = manifest.load_manifest()
    known = {"lhc_cnn", "lhc_cnn_15pf", "galaxy_vae", "ecog_mlp", "ecog_logreg",
             "dayabay_dae", "dayabay_cnn"}
    keys = args.keys or [k for k, e in entries.items() if e["model"] in known and
                         e.get("default")]
    by_model = {entries[k]["model"]: k for k in keys}
    found: dict[str, dict] = {}
    ecog_keys = [k for m, k in by_model.items() if m.startswith("ecog_")]
    if ecog_keys:
        found.update(ecog(ecog_keys, args.data_dir))
    for model_name, key in by_model.items():
        if model_name.startswith("lhc_"):
            found[key] = lhc(key)
        elif model_name == "galaxy_vae":
            found[key] = galaxy(key)
        elif model_name == "dayabay_dae":
            found[key] = dayabay_dae(key, args.data_dir)
        elif model_name == "dayabay_cnn":
            found[key] = dayabay_cnn(key, args.data_dir)
    for key, result in found.items():
        measured = result.pop("measured", {})
        print(key, json.dumps({**result, "re-measured": measured}, indent=1, default=float))
    if args.dry_run:
        return
    path = manifest.PRETRAINED_DIR / manifest.MANIFEST
    entries = json.loads(path.read_text())
    for key, result in found.items():
        entries[key].update(json.loads(json.dumps(result), parse_float=_rounded))
    path.write_text(json.dumps(entries, indent=2) + "\n")


if __name__ == "__main__":
    main()

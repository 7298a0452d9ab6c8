"""Metrics used by the case studies, in plain numpy so they are exact and testable by hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelzoo.errors import DataError


def weighted_roc(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with per-event weights: ``(fpr, tpr, thresholds)``, thresholds descending.

    Events with equal scores enter at the same threshold (no arbitrary tie order). The curve
    starts at (0, 0) with threshold +inf.
    """
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    weights = (
        np.ones_like(scores) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    )
    if not (labels.shape == scores.shape == weights.shape):
        raise ValueError(
            f"labels {labels.shape}, scores {scores.shape}, weights {weights.shape} differ"
        )
    total_pos, total_neg = weights[labels].sum(), weights[~labels].sum()
    if total_pos <= 0 or total_neg <= 0:
        raise ValueError("ROC needs positive total weight in both classes")
    order = np.argsort(-scores, kind="stable")
    scores, labels, weights = scores[order], labels[order], weights[order]
    tp = np.cumsum(np.where(labels, weights, 0.0))
    fp = np.cumsum(np.where(labels, 0.0, weights))
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tpr = np.r_[0.0, tp[last_of_tie] / total_pos]
    fpr = np.r_[0.0, fp[last_of_tie] / total_neg]
    return fpr, tpr, np.r_[np.inf, scores[last_of_tie]]


def roc_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the (weighted) ROC curve, trapezoidal (ties count one half)."""
    fpr, tpr, _ = weighted_roc(labels, scores, weights)
    return float(np.trapezoid(tpr, fpr))


def tpr_at_fpr(
    labels: np.ndarray, scores: np.ndarray, target_fpr: float, weights: np.ndarray | None = None
) -> float:
    """Highest true-positive rate the classifier reaches at false-positive rate ``target_fpr``,
    interpolating linearly between ROC points (the convention for comparing a classifier with a
    fixed cut-based selection at the selection's background rate)."""
    fpr, tpr, _ = weighted_roc(labels, scores, weights)
    return _interpolated_tpr(fpr, tpr, target_fpr)


def _interpolated_tpr(fpr: np.ndarray, tpr: np.ndarray, target_fpr: float) -> float:
    # Last ROC point with fpr <= target: where the curve rises vertically at exactly the target
    # (signal-only score steps) this is the top of the rise.
    i = int(np.searchsorted(fpr, target_fpr, side="right")) - 1
    if fpr[i] == target_fpr or i == len(fpr) - 1:
        return float(tpr[i])
    frac = (target_fpr - fpr[i]) / (fpr[i + 1] - fpr[i])
    return float(tpr[i] + frac * (tpr[i + 1] - tpr[i]))


def selection_rates(
    labels: np.ndarray, passed: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, float]:
    """(TPR, FPR) of a fixed boolean selection, with weights."""
    labels = np.asarray(labels).reshape(-1).astype(bool)
    passed = np.asarray(passed).reshape(-1).astype(bool)
    weights = (
        np.ones(labels.shape) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    )
    tpr = weights[labels & passed].sum() / weights[labels].sum()
    fpr = weights[~labels & passed].sum() / weights[~labels].sum()
    return float(tpr), float(fpr)


def effective_count(weights: np.ndarray) -> float:
    """Kish's effective number of events, (sum w)^2 / sum w^2: how many equally weighted events
    carry the same statistical information (the plain count when all weights are equal)."""
    weights = np.asarray(weights, np.float64).reshape(-1)
    squares = float(np.sum(weights**2))
    return float(np.sum(weights) ** 2 / squares) if squares > 0 else 0.0


@dataclass(frozen=True)
class OperatingPoint:
    """A classifier against a fixed selection at the selection's false-positive rate, each
    value with a bootstrap percentile interval (``interval[name] = (low, high)``), and the
    classifier's TPR minus the selection's with its paired interval
    (``interval["classifier_minus_selection_tpr"]``)."""

    selection_tpr: float
    selection_fpr: float
    classifier_tpr: float
    interval: dict[str, tuple[float, float]]
    background_passing: int
    """Background events the selection keeps (unweighted)."""
    background_passing_effective: float
    """The same as an effective count (:func:`effective_count` of their weights)."""
    replicates: int
    confidence: float

    def as_dict(self) -> dict[str, float]:
        out = {
            "selection_tpr": self.selection_tpr,
            "selection_fpr": self.selection_fpr,
            "cnn_tpr_at_selection_fpr": self.classifier_tpr,
            "cnn_minus_selection_tpr": self.classifier_tpr - self.selection_tpr,
            "background_passing_selection": self.background_passing,
            "background_passing_selection_effective": self.background_passing_effective,
            "bootstrap_replicates": self.replicates,
        }
        names = {"classifier_tpr": "cnn_tpr_at_selection_fpr",
                 "classifier_minus_selection_tpr": "cnn_minus_selection_tpr"}
        level = round(100 * self.confidence)
        for key, (low, high) in self.interval.items():
            out[f"{names.get(key, key)}_ci{level}_low"] = low
            out[f"{names.get(key, key)}_ci{level}_high"] = high
        return out


def operating_point(
    labels: np.ndarray,
    scores: np.ndarray,
    passed: np.ndarray,
    weights: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    *,
    min_background: float = 10.0,
    replicates: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> OperatingPoint:
    """The selection's (TPR, FPR) and the classifier's TPR at that FPR, with stratified
    bootstrap intervals (Efron & Tibshirani 1993, percentile method).

    Each replicate redraws, with replacement, as many events as each stratum has (a stratum is
    a class, or a value of ``strata`` such as the generator's pT-hat slice, whose event counts
    were fixed by design) and recomputes all three numbers, the classifier read off at that
    replicate's selection FPR, so the interval on the classifier's TPR includes the
    uncertainty of where the operating point lies.

    Raises :class:`~modelzoo.errors.DataError` when the selection keeps fewer than
    ``min_background`` effective background events: an FPR resting on a handful of events (or
    none) does not fix an operating point.
    """
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, np.float64).reshape(-1)
    passed = np.asarray(passed).reshape(-1).astype(bool)
    weights = np.ones(labels.shape) if weights is None else np.asarray(weights, np.float64)
    weights = weights.reshape(-1)
    if not labels.shape == scores.shape == passed.shape == weights.shape:
        raise ValueError(f"labels {labels.shape}, scores {scores.shape}, passed {passed.shape}, "
                         f"weights {weights.shape} differ")
    kept = weights[~labels & passed]
    effective = effective_count(kept)
    if effective < min_background:
        raise DataError(
            f"the selection keeps {kept.size} background event{'' if kept.size == 1 else 's'} "
            f"({effective:.1f} effective, "
            f"weighted) of {int((~labels).sum())}; an operating point needs at least "
            f"{min_background:g}: evaluate on more background events"
        )
    sel_tpr, sel_fpr = selection_rates(labels, passed, weights)
    classifier = tpr_at_fpr(labels, scores, sel_fpr, weights)

    # Events sorted by descending score once; every replicate reuses the order and the tie
    # groups, changing only the event multiplicities.
    order = np.argsort(-scores, kind="stable")
    labels_s, passed_s, weights_s = labels[order], passed[order], weights[order]
    last_of_tie = np.r_[scores[order][1:] != scores[order][:-1], True]
    groups = strata if strata is not None else np.zeros(labels.shape, np.int64)
    groups = np.asarray(groups).reshape(-1)[order]
    strata_rows = [np.flatnonzero((groups == g) & (labels_s == c))
                   for g in np.unique(groups) for c in (False, True)]
    rng = np.random.default_rng(seed)
    values = np.empty((replicates, 3))
    batch = max(1, 4_000_000 // max(labels.size, 1))
    for first in range(0, replicates, batch):
        n = min(batch, replicates - first)
        counts = np.zeros((n, labels.size))
        for rows in strata_rows:
            if rows.size:
                counts[:, rows] = rng.multinomial(rows.size, np.full(rows.size, 1 / rows.size), n)
        w = counts * weights_s
        tp = np.cumsum(np.where(labels_s, w, 0.0), axis=1)
        fp = np.cumsum(np.where(labels_s, 0.0, w), axis=1)
        pos, neg = tp[:, -1], fp[:, -1]
        tpr_rows = np.c_[np.zeros(n), tp[:, last_of_tie] / pos[:, None]]
        fpr_rows = np.c_[np.zeros(n), fp[:, last_of_tie] / neg[:, None]]
        rep_tpr = (w * (labels_s & passed_s)).sum(axis=1) / pos
        rep_fpr = (w * (~labels_s & passed_s)).sum(axis=1) / neg
        for k in range(n):
            values[first + k] = (rep_tpr[k], rep_fpr[k],
                                 _interpolated_tpr(fpr_rows[k], tpr_rows[k], rep_fpr[k]))
    # The classifier minus the selection, replicate by replicate: both are read off the same
    # resampled events, so the difference's interval is paired (narrower than the two
    # intervals' ends when the two move together, as they do on shared signal events).
    values = np.c_[values, values[:, 2] - values[:, 0]]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    names = ("selection_tpr", "selection_fpr", "classifier_tpr", "classifier_minus_selection_tpr")
    interval = {name: (float(low[j]), float(high[j])) for j, name in enumerate(names)}
    return OperatingPoint(sel_tpr, sel_fpr, classifier, interval, int(kept.size), effective,
                          replicates, confidence)

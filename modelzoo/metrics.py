"""Metrics used by the case studies, in plain numpy so they are exact and testable by hand."""

from __future__ import annotations

import numpy as np


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

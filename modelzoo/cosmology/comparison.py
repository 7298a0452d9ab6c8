"""95% bootstrap intervals for the cosmology comparisons (Efron & Tibshirani 1993, percentile
method): every method is scored on the same resamples, so a difference between two methods
gets a paired interval.

What is resampled is what is independent: maps for a classification of two fixed cosmologies
(each map is its own field), whole cosmologies for a regression (all maps or volumes of one
cosmology share its parameters, and an estimator's bias there is shared by them all).
"""

from __future__ import annotations

import numpy as np


def cosmology_groups(truth: np.ndarray) -> np.ndarray:
    """Group index of every sample: samples with the same targets share a cosmology (the
    benchmark cuts each simulation into 64 sub-volumes; the map generator draws many maps per
    cosmology), and are not independent."""
    return np.unique(np.asarray(truth), axis=0, return_inverse=True)[1].reshape(-1)


def resamples_of(groups: np.ndarray, resamples: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``resamples`` bootstrap draws of whole groups (each draw takes as many
    groups as there are, with replacement, and all rows of each)."""
    rng = np.random.default_rng([seed, 29])
    members = [np.flatnonzero(groups == g) for g in range(int(groups.max()) + 1)]
    return [np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
            for _ in range(resamples)]


def _interval(values: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def _mae(e: np.ndarray) -> np.ndarray:
    return np.abs(e).mean(axis=0)


def _rmse(e: np.ndarray) -> np.ndarray:
    return np.sqrt((e**2).mean(axis=0))


def error_table(truth: np.ndarray, predictions: dict[str, np.ndarray], names: tuple[str, ...],
                *, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Per-parameter and parameter-averaged MAE / RMSE of each prediction with 95% intervals
    (``<stat>_<parameter|average>_<method>`` and ``..._lo`` / ``..._hi``), and for the first
    method (the network) minus each other one, the paired difference of every statistic
    (``<stat>_<name>_<first>_minus_<other>``, negative: the first has the smaller error). The
    bootstrap resamples whole cosmologies (:func:`cosmology_groups`)."""
    draws = resamples_of(cosmology_groups(truth), resamples, seed)
    labels = list(names[:truth.shape[1]]) + ["average"]
    errors = {m: np.asarray(p, np.float64) - truth for m, p in predictions.items()}
    result: dict[str, float] = {}
    replicas: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for method, e in errors.items():
        for stat, fn in (("mae", _mae), ("rmse", _rmse)):
            point = np.append(fn(e), fn(e).mean())
            values = np.array([fn(e[r]) for r in draws])  # (resamples, parameters)
            values = np.concatenate([values, values.mean(axis=1, keepdims=True)], axis=1)
            replicas[method, stat] = point, values
            for i, name in enumerate(labels):
                result[f"{stat}_{name}_{method}"] = float(point[i])
                (result[f"{stat}_{name}_{method}_lo"],
                 result[f"{stat}_{name}_{method}_hi"]) = _interval(values[:, i])
    first, *others = errors
    for other in others:
        for stat in ("mae", "rmse"):
            point = replicas[first, stat][0] - replicas[other, stat][0]
            values = replicas[first, stat][1] - replicas[other, stat][1]
            for i, name in enumerate(labels):
                key = f"{stat}_{name}_{first}_minus_{other}"
                result[key] = float(point[i])
                result[f"{key}_lo"], result[f"{key}_hi"] = _interval(values[:, i])
    return result


def accuracy_table(labels: np.ndarray, predicted: dict[str, np.ndarray], *,
                   resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Accuracy of each method's predicted classes with a 95% interval over maps
    (``accuracy_<method>``, ``..._lo``, ``..._hi``), and the paired interval of the first
    method's accuracy minus each other's (``accuracy_<first>_minus_<other>``)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 31])
    draws = rng.integers(0, len(labels), (resamples, len(labels)))
    correct = {m: (np.asarray(p) == labels).astype(np.float64) for m, p in predicted.items()}
    result: dict[str, float] = {}
    for method, hits in correct.items():
        result[f"accuracy_{method}"] = float(hits.mean())
        (result[f"accuracy_{method}_lo"],
         result[f"accuracy_{method}_hi"]) = _interval(hits[draws].mean(axis=1))
    first, *others = correct
    for other in others:
        diff = correct[first] - correct[other]
        key = f"accuracy_{first}_minus_{other}"
        result[key] = float(diff.mean())
        result[f"{key}_lo"], result[f"{key}_hi"] = _interval(diff[draws].mean(axis=1))
    return result

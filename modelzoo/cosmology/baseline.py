"""The classical estimators the CNN is compared with, on the same maps (same noise):
logistic regression (classes) or ridge regression ((Omega_m, sigma_8)) on

* ``power_spectrum``: the log binned angular power spectrum (Gaussian information only);
* ``peaks``: peak counts in bins of height, with the one-point moments (variance, skewness,
  kurtosis): the non-Gaussian statistics of Kratochvil et al. 2010 (arXiv:0907.0486) and
  Ribli et al. 2019 (arXiv:1902.03663).

Scores are k-fold cross-validated over the evaluated maps, so no map is scored by a baseline
fitted on it.
"""

from __future__ import annotations

import numpy as np

from modelzoo.cosmology.statistics import binned_power_spectrum, ell_bins, moments, peak_counts

BASELINES = ("power_spectrum", "peaks")


def features(maps: np.ndarray, pixel_arcmin: float, kind: str, num_bins: int = 12,
             peak_sigmas: np.ndarray | None = None) -> np.ndarray:
    """Per-map feature vectors of baseline ``kind`` for (N, H, W) convergence maps.

    Peak heights are binned in units of the maps' overall pixel standard deviation
    (``peak_sigmas``, default -1..5 sigma in 12 bins), fixed across maps so that the counts
    keep the amplitude information.
    """
    maps = np.asarray(maps, np.float64)
    if kind == "power_spectrum":
        edges = ell_bins(maps.shape[-1], pixel_arcmin, num_bins)
        _, cl = binned_power_spectrum(maps, pixel_arcmin, edges)
        return np.log(np.maximum(cl, 1e-30))
    if kind == "peaks":
        sigma = maps.std()
        sigmas = np.linspace(-1.0, 5.0, 13) if peak_sigmas is None else peak_sigmas
        thresholds = np.concatenate([[-np.inf], sigmas * sigma, [np.inf]])
        return np.hstack([peak_counts(maps, thresholds), moments(maps)])
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


def _folds(n: int, labels: np.ndarray | None, seed: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    splits = max(2, min(5, n // 10))
    if labels is not None and np.bincount(labels.astype(int)).min() >= splits:
        return StratifiedKFold(splits, shuffle=True, random_state=seed)
    return KFold(splits, shuffle=True, random_state=seed)


def classify(feature_matrix: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Cross-validated class probabilities (N, classes) of a standardised logistic
    regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = labels.astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return cross_val_predict(model, feature_matrix, labels,
                             cv=_folds(len(labels), labels, seed), method="predict_proba")


def regress(feature_matrix: np.ndarray, targets: np.ndarray, seed: int = 0) -> np.ndarray:
    """Cross-validated predictions (N, targets) of a standardised ridge regression."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    return cross_val_predict(model, feature_matrix, targets, cv=_folds(len(targets), None, seed))

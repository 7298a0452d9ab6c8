"""The classical estimators the CNN is compared with, on the same maps (same noise):
logistic regression (classes) or ridge regression ((Omega_m, sigma_8)) on

* ``power_spectrum``: the log binned angular power spectrum (Gaussian information only);
* ``peaks``: peak counts in bins of height, with the one-point moments (variance, skewness,
  kurtosis): the non-Gaussian statistics of Kratochvil et al. 2010 (arXiv:0907.0486) and
  Ribli et al. 2019 (arXiv:1902.03663).

A :class:`Baseline` is fitted on training maps and scores other maps, as the CNN is: on the
CNN's own training maps where the evaluation names them (``data.baseline_train``). Without
them, :func:`out_of_fold` scores each evaluated map by a fit on other folds, whole cosmologies
apart where the maps have several (a regression never predicts a cosmology it was fitted on).
"""

from __future__ import annotations

import numpy as np

from modelzoo.cosmology.statistics import binned_power_spectrum, ell_bins, moments, peak_counts

BASELINES = ("power_spectrum", "peaks")
PEAK_SIGMAS = np.linspace(-1.0, 5.0, 13)  # peak-height bin edges in units of the pixel sd
CHUNK = 512  # maps whose statistics are computed at once


def features(maps: np.ndarray, pixel_arcmin: float, kind: str, num_bins: int = 12,
             peak_scale: float | None = None) -> np.ndarray:
    """Per-map feature vectors of baseline ``kind`` for (N, H, W) convergence maps.

    Peak heights are binned in units of one pixel standard deviation, ``peak_scale`` (default:
    that of ``maps``), -1..5 of it in 12 bins; the scale is fixed across maps so that the
    counts keep the amplitude information, and a fitted baseline keeps its training maps'.
    """
    if len(maps) > CHUNK:  # in blocks: the FFT of thousands of maps at once takes gigabytes
        if kind == "peaks" and peak_scale is None:
            peak_scale = pixel_std(maps)
        return np.concatenate([features(maps[i:i + CHUNK], pixel_arcmin, kind, num_bins,
                                        peak_scale) for i in range(0, len(maps), CHUNK)])
    maps = np.asarray(maps, np.float64)
    if kind == "power_spectrum":
        edges = ell_bins(maps.shape[-1], pixel_arcmin, num_bins)
        _, cl = binned_power_spectrum(maps, pixel_arcmin, edges)
        return np.log(np.maximum(cl, 1e-30))
    if kind == "peaks":
        sigma = maps.std() if peak_scale is None else peak_scale
        thresholds = np.concatenate([[-np.inf], PEAK_SIGMAS * sigma, [np.inf]])
        return np.hstack([peak_counts(maps, thresholds), moments(maps)])
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


def pixel_std(maps: np.ndarray) -> float:
    """Standard deviation of all pixels of ``maps``, accumulated block by block."""
    sums = np.zeros(3)
    for i in range(0, len(maps), CHUNK):
        block = np.asarray(maps[i:i + CHUNK], np.float64)
        sums += (block.size, block.sum(), (block**2).sum())
    mean = sums[1] / sums[0]
    return float(np.sqrt(max(sums[2] / sums[0] - mean**2, 0.0)))


class Baseline:
    """Statistic ``kind`` of the maps, standardised, into a logistic regression (``classify``)
    or a ridge regression whose penalty is chosen by cross-validation (otherwise)."""

    def __init__(self, kind: str, pixel_arcmin: float, classify: bool) -> None:
        if kind not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")
        self.kind, self.pixel_arcmin, self.classify = kind, pixel_arcmin, classify
        self.peak_scale: float | None = None

    def _estimator(self):
        from sklearn.linear_model import LogisticRegression, RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        last = (LogisticRegression(C=1.0, max_iter=2000) if self.classify
                else RidgeCV(alphas=np.logspace(-3, 3, 13)))
        return make_pipeline(StandardScaler(), last)

    def fit(self, maps: np.ndarray, targets: np.ndarray) -> Baseline:
        """Fit on (N, H, W) ``maps`` and their class labels (N,) or parameters (N, P)."""
        self.peak_scale = pixel_std(maps)
        x = features(maps, self.pixel_arcmin, self.kind, peak_scale=self.peak_scale)
        self.model = self._estimator().fit(x, targets.astype(int) if self.classify else targets)
        return self

    def predict(self, maps: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) or parameters (N, P) of ``maps``."""
        x = features(maps, self.pixel_arcmin, self.kind, peak_scale=self.peak_scale)
        return self.model.predict_proba(x) if self.classify else self.model.predict(x)


def folds(targets: np.ndarray, classify: bool, seed: int = 0) -> list[tuple[np.ndarray,
                                                                            np.ndarray]]:
    """(fit rows, scored rows) of each fold. Classes: stratified folds of maps (up to 5; the
    classes are the cosmologies, which every fold must see, as the CNN saw them in training).
    Parameters: folds of whole cosmologies (up to 10), so that no fit sees a map of the
    cosmology it predicts, as the CNN saw none of an evaluation set's."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    from modelzoo.cosmology.comparison import cosmology_groups

    n = len(targets)
    if classify:
        labels = targets.astype(int)
        count = max(2, min(5, n // 10))
        if np.bincount(labels).min() >= count:
            splitter = StratifiedKFold(count, shuffle=True, random_state=seed)
        else:
            splitter = KFold(count, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(n), labels))
    groups = cosmology_groups(targets)
    if groups.max() < 1:
        raise ValueError("all evaluated maps share one cosmology: a regression baseline needs "
                         "other cosmologies to fit on (name the training file with "
                         "data.baseline_train)")
    splitter = GroupKFold(min(10, int(groups.max()) + 1))
    return list(splitter.split(np.zeros(n), groups=groups))


def out_of_fold(kind: str, maps: np.ndarray, targets: np.ndarray, pixel_arcmin: float,
                classify: bool, seed: int = 0) -> np.ndarray:
    """Predictions of every map by a :class:`Baseline` fitted on the other :func:`folds`."""
    result = None
    for fit_rows, scored in folds(targets, classify, seed):
        predicted = Baseline(kind, pixel_arcmin, classify).fit(
            maps[fit_rows], targets[fit_rows]).predict(maps[scored])
        if result is None:
            result = np.zeros((len(targets), predicted.shape[1]))
        result[scored] = predicted
    return result

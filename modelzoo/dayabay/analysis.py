"""Analysis of the Daya Bay autoencoder: filling masked pixels, and how well its code separates
physics classes it never saw labels for.

* :func:`fill_errors`: the same fixed corruption (a fraction of each event's values zeroed)
  given to the autoencoder and to two baselines, the mean of the unmasked neighbours (8
  neighbours in the same channel, wrapping in azimuth) and leaving zeros; mean squared error on
  the masked values only.
* :func:`separation_scores`: k-nearest-neighbour and logistic-regression probe accuracies
  (stratified cross-validation) and the silhouette of the classes in code space
  (scikit-learn). Labels are used here only, never to train the autoencoder.
* :func:`embed_codes`: the seed's Figure 14, a t-SNE of the codes coloured by class, through
  :func:`modelzoo.interpret.embed`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def corruption_mask(shape: tuple[int, ...], fraction: float, seed: int) -> np.ndarray:
    """Boolean (n, ...) array, True where a value is zeroed: exactly ``round(fraction * size)``
    per example, chosen uniformly (the same rule as the model's corruption layer)."""
    n, size = shape[0], int(np.prod(shape[1:]))
    dropped = int(round(fraction * size))
    ranks = np.random.default_rng(seed).random((n, size)).argsort(axis=1).argsort(axis=1)
    return (ranks < dropped).reshape(shape)


def neighbour_fill(inputs: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """``inputs`` (n, rings, columns, channels) with each masked value replaced by the mean of
    its unmasked neighbours (3 x 3 block less itself, same channel; azimuth wraps, rings do
    not); 0 where no neighbour is unmasked."""
    kept = np.where(masked, 0.0, inputs)
    weight = (~masked).astype(np.float64)
    total = np.zeros(inputs.shape)
    count = np.zeros(inputs.shape)
    rings = inputs.shape[1]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == dc == 0:
                continue
            shifted_v = np.roll(kept, (dr, dc), axis=(1, 2))
            shifted_w = np.roll(weight, (dr, dc), axis=(1, 2))
            if dr:  # no wrap across the top and bottom rings
                edge = 0 if dr > 0 else rings - 1
                shifted_v[:, edge] = 0
                shifted_w[:, edge] = 0
            total += shifted_v
            count += shifted_w
    fill = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.where(masked, fill, inputs).astype(np.float32)


def fill_errors(model, inputs: np.ndarray, fraction: float, seed: int = 0) -> dict[str, float]:
    """MSE on the masked values of the autoencoder's reconstruction of the corrupted inputs,
    of neighbour averaging and of zero filling, for one fixed mask of ``fraction``."""
    from modelzoo.dayabay.models import reconstruct

    masked = corruption_mask(inputs.shape, fraction, seed)
    corrupted = np.where(masked, 0.0, inputs).astype(np.float32)
    recon = reconstruct(model, corrupted)
    neighbours = neighbour_fill(inputs, masked)
    truth = inputs[masked]
    return {
        "dae_masked_mse": float(np.mean((recon[masked] - truth) ** 2)),
        "neighbour_masked_mse": float(np.mean((neighbours[masked] - truth) ** 2)),
        "zero_masked_mse": float(np.mean(truth**2)),
        "dae_unmasked_mse": float(np.mean((recon[~masked] - inputs[~masked]) ** 2)),
    }


def separation_scores(features: np.ndarray, labels: np.ndarray, *, neighbours: int = 5,
                      folds: int = 5, seed: int = 0) -> dict[str, float]:
    """How well ``features`` (n, d) separate the classes in ``labels``: 5-fold stratified
    cross-validated accuracy of a k-NN classifier and of a logistic-regression probe on the
    standardised features, and the silhouette score of the labels there (-1..1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, np.float64).reshape(len(features), -1)
    labels = np.asarray(labels).reshape(-1)
    folds = max(2, min(folds, int(np.min(np.unique(labels, return_counts=True)[1]))))
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(neighbours))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scaled = StandardScaler().fit_transform(features)
    with threadpool_limits(1):  # see embed_codes
        return {
            "knn_accuracy": float(cross_val_score(knn, features, labels, cv=split).mean()),
            "logistic_accuracy": float(cross_val_score(probe, features, labels, cv=split).mean()),
            "silhouette": float(silhouette_score(scaled, labels, random_state=seed,
                                                 sample_size=min(len(labels), 5000))),
        }


def embed_codes(codes: np.ndarray, labels: np.ndarray, path: str | Path | None,
                seed: int = 0) -> np.ndarray:
    """t-SNE of the codes (seed Figure 14), written as a PNG coloured by class when ``path`` is
    given; the one place this case calls :func:`modelzoo.interpret.embed`."""
    from threadpoolctl import threadpool_limits

    from modelzoo.interpret import embed

    # One OpenMP thread: with TensorFlow's threads alive in the process (and other work on a
    # small machine) scikit-learn's Barnes-Hut t-SNE ran ~10x slower on all cores.
    with threadpool_limits(1):
        return embed(codes, labels, path=path, method="tsne", seed=seed)

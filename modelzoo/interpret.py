"""Interpretability for any registered model: embeddings, saliency, reconstructions.

Each function returns the numbers it computed and, when given a ``path``, writes a PNG.
They follow the figures of the cosmology mass-map study (Ribli et al. style analyses and
the seed's figures 8-10): input / reconstruction side by side, saliency as the gradient of
an output with respect to the input (Simonyan, Vedaldi & Zisserman 2014, arXiv:1312.6034),
and a 2-D t-SNE embedding of a layer's features coloured by label (van der Maaten &
Hinton 2008, JMLR 9:2579).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelzoo.errors import ConfigError

EMBED_METHODS = ("tsne", "pca")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def embed(
    features: np.ndarray,
    labels: np.ndarray | None = None,
    path: str | Path | None = None,
    method: str = "tsne",
    seed: int = 0,
) -> np.ndarray:
    """Project ``features`` (N, ...) to 2-D; one point per sample, shape (N, 2).

    ``method`` is ``"tsne"`` (scikit-learn's exact-gradient-free Barnes-Hut t-SNE, perplexity
    capped below N so small sets work) or ``"pca"``. When ``path`` is given, a scatter plot
    coloured by ``labels`` (integer classes get a legend, floats a colour bar) is written there.
    """
    flat = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    n = flat.shape[0]
    if method not in EMBED_METHODS:
        raise ConfigError(f"embedding method {method!r} is not one of {EMBED_METHODS}")
    if n < 2:
        raise ConfigError(f"an embedding needs at least 2 samples, got {n}")
    if labels is not None and len(labels) != n:
        raise ConfigError(f"{len(labels)} labels for {n} samples")
    if method == "pca" or n < 4:
        from sklearn.decomposition import PCA

        components = min(2, flat.shape[1], n)
        points = PCA(n_components=components, random_state=seed).fit_transform(flat)
        if components < 2:
            points = np.hstack([points, np.zeros((n, 2 - components))])
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3.0))
        points = TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=seed
        ).fit_transform(flat)
    points = np.asarray(points, dtype=np.float64)
    if path is not None:
        _scatter(points, labels, Path(path), title=f"{method} of {flat.shape[1]} features")
    return points


def _scatter(points: np.ndarray, labels: np.ndarray | None, path: Path, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=6)
    else:
        values = np.asarray(labels).reshape(len(points))
        if np.issubdtype(values.dtype, np.floating) and not np.all(values == np.round(values)):
            sc = ax.scatter(points[:, 0], points[:, 1], c=values, s=6, cmap="viridis")
            fig.colorbar(sc, ax=ax)
        else:
            for value in np.unique(values):
                chosen = values == value
                ax.scatter(points[chosen, 0], points[chosen, 1], s=6, label=str(value))
            ax.legend(title="label", markerscale=2)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)

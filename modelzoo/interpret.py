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


def confusion_dendrogram(
    confusion: np.ndarray,
    labels: list[str] | tuple[str, ...] | None = None,
    path: str | Path | None = None,
    groups: np.ndarray | list[int] | None = None,
    title: str = "Ward dendrogram of the soft confusion matrix",
) -> dict[str, np.ndarray]:
    """Hierarchy of a classifier's confusions: Ward linkage of the rows of ``confusion``.

    The method of Livezey, Bouchard & Chang (PLoS Comput Biol 2019; the seed's figure 12):
    ``confusion[i, j]`` is how much target class ``i`` is predicted as ``j`` (counts, or the
    softmax outputs averaged over the trials of each target, a "soft confusion"); each row is
    normalised to sum to one and the rows are clustered with ``scipy.cluster.hierarchy.ward``,
    so classes the model confuses with the same classes join early.

    Returns ``{"linkage": (K-1, 4) scipy linkage, "order": leaf order}``. With ``path`` a PNG
    shows the dendrogram over the confusion matrix reordered by its leaves; ``groups`` (one
    integer per class, e.g. a known category) colours the leaf labels.
    """
    from scipy.cluster import hierarchy

    matrix = np.asarray(confusion, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ConfigError(f"a confusion matrix must be square with >= 2 classes, got shape "
                          f"{matrix.shape}")
    sums = matrix.sum(axis=1, keepdims=True)
    if np.any(matrix < 0) or np.any(sums <= 0):
        raise ConfigError("confusion rows must be non-negative with a positive sum (drop "
                          "classes without trials)")
    rows = matrix / sums
    linkage = hierarchy.ward(rows)
    order = np.asarray(hierarchy.leaves_list(linkage))
    if path is not None:
        names = list(labels) if labels is not None else [str(i) for i in range(len(rows))]
        if len(names) != len(rows):
            raise ConfigError(f"{len(names)} labels for {len(rows)} classes")
        plt = _pyplot()
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 0.16 * len(rows)), 9),
                                          gridspec_kw={"height_ratios": (1, 2.2)})
        hierarchy.dendrogram(linkage, labels=names, ax=top, color_threshold=0,
                             above_threshold_color="k", leaf_font_size=7)
        top.set_ylabel("Ward distance")
        top.set_title(title)
        image = bottom.imshow(rows[np.ix_(order, order)], cmap="gray_r", interpolation="nearest")
        ticks = np.arange(len(rows))
        bottom.set_xticks(ticks, [names[i] for i in order], rotation=90, fontsize=6)
        bottom.set_yticks(ticks, [names[i] for i in order], fontsize=6)
        bottom.set_xlabel("predicted")
        bottom.set_ylabel("target")
        if groups is not None:
            colours = plt.get_cmap("tab10")
            group_of = np.asarray(groups)
            for axis_labels in (top.get_xticklabels(), bottom.get_xticklabels(),
                                bottom.get_yticklabels()):
                for text in axis_labels:
                    text.set_color(colours(int(group_of[names.index(text.get_text())]) % 10))
        fig.colorbar(image, ax=bottom, fraction=0.03, label="probability")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return {"linkage": linkage, "order": order}


def cluster_agreement(linkage: np.ndarray, groups: np.ndarray | list[int]) -> dict[str, float]:
    """How well a hierarchy recovers known ``groups`` (one integer per leaf): the tree is cut
    into as many clusters as there are groups, and the cut is scored by purity (fraction of
    leaves in their cluster's majority group) and by the adjusted Rand index (0 = chance,
    1 = the groups exactly)."""
    from scipy.cluster import hierarchy
    from sklearn.metrics import adjusted_rand_score

    truth = np.asarray(groups)
    clusters = hierarchy.fcluster(linkage, t=len(np.unique(truth)), criterion="maxclust")
    majority = sum(np.bincount(truth[clusters == c]).max() for c in np.unique(clusters))
    return {"purity": float(majority / len(truth)),
            "adjusted_rand": float(adjusted_rand_score(truth, clusters))}

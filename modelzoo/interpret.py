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

    ``method`` is ``"tsne"`` (scikit-learn's Barnes-Hut t-SNE, perplexity capped below N so
    small sets work) or ``"pca"``. When ``path`` is given, a scatter plot
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
        from threadpoolctl import threadpool_limits

        perplexity = float(min(30.0, (n - 1) / 3.0))
        # One OpenMP thread: on a busy machine scikit-learn's Barnes-Hut threads wait on each
        # other (80 points took 26 s with the default, 1 s with one thread, on 2 shared cores).
        with threadpool_limits(limits=1, user_api="openmp"):
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


def _batched_predict(model, inputs: np.ndarray, batch_size: int):
    return model.predict(np.asarray(inputs), batch_size=batch_size, verbose=0)


def _pick_output(outputs, like: tuple[int, ...] | None = None):
    """The one output array of ``outputs`` (a model may return a list or dict): the first whose
    sample shape is ``like`` when given, else the first."""
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if not isinstance(outputs, (list, tuple)):
        return outputs
    for out in outputs:
        if like is None or tuple(np.shape(out)[1:]) == tuple(like):
            return out
    raise ConfigError(f"no model output has the sample shape {like}; the outputs have "
                      f"{[tuple(np.shape(o)[1:]) for o in outputs]}")


def layer_features(model, inputs: np.ndarray, layer: str | int | None = None,
                   batch_size: int = 64) -> np.ndarray:
    """The activations of ``layer`` (a name or an index into ``model.layers``) for ``inputs``,
    flattened to (N, features).

    ``None`` picks the last layer before the outputs whose activations are one vector per
    sample (a dense or pooling layer), falling back to the layer before the last.
    """
    import keras

    if layer is None:
        outputs = {id(t) for t in model.outputs}
        vectors = [lay for lay in model.layers[1:]  # nested models may give several outputs
                   if not isinstance(lay.output, (list, tuple))
                   and len(lay.output.shape) == 2 and id(lay.output) not in outputs]
        chosen = vectors[-1] if vectors else model.layers[-2]
    elif isinstance(layer, int) or (isinstance(layer, str) and layer.lstrip("-").isdigit()):
        chosen = model.layers[int(layer)]
    else:
        try:
            chosen = model.get_layer(layer)
        except ValueError:
            names = ", ".join(lay.name for lay in model.layers)
            raise ConfigError(f"{model.name} has no layer {layer!r}; layers: {names}") from None
    extractor = keras.Model(model.inputs, chosen.output, name=f"{model.name}_{chosen.name}")
    features = _pick_output(_batched_predict(extractor, inputs, batch_size))
    return np.asarray(features).reshape(len(inputs), -1)


def saliency(
    model,
    inputs: np.ndarray,
    target: int | str | None = None,
    path: str | Path | None = None,
    batch_size: int = 32,
    max_panels: int = 4,
) -> np.ndarray:
    """Gradient of one scalar per sample with respect to the input (Simonyan et al. 2014),
    same shape as ``inputs``.

    ``target``: an int is that output unit (a class score); ``"sum"`` is the sum of all outputs
    (for an autoencoder: how each input pixel moves the whole reconstruction, seed figure 9);
    ``None`` is ``"sum"`` for a model whose output has the input's shape and the predicted
    class's score otherwise. For a linear model y = w.x the saliency is w. A class score is
    taken before a final softmax, as Simonyan et al. do: a confident softmax output is flat in
    its input, and its gradient would show nothing.

    With ``path``, the first ``max_panels`` inputs are drawn above their absolute saliency.
    """
    import tensorflow as tf

    inputs = np.asarray(inputs, np.float32)
    grads = []
    import keras

    last = model.layers[-1]
    swapped = (target != "sum"
               and getattr(getattr(last, "activation", None), "__name__", "") == "softmax")
    if swapped:
        last.activation = keras.activations.linear
    try:
        for start in range(0, len(inputs), batch_size):
            x = tf.convert_to_tensor(inputs[start:start + batch_size])
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = _pick_output(model(x, training=False))
                out = tf.reshape(out, (tf.shape(out)[0], -1))
                if target is None:
                    auto = "sum" if tuple(out.shape[1:]) == (int(np.prod(inputs.shape[1:])),) \
                        else "argmax"
                else:
                    auto = target
                if auto == "sum":
                    score = tf.reduce_sum(out, axis=1)
                elif auto == "argmax":
                    score = tf.reduce_max(out, axis=1)
                elif isinstance(auto, (int, np.integer)) or str(auto).isdigit():
                    index = int(auto)
                    if not 0 <= index < out.shape[1]:
                        raise ConfigError(f"saliency target {index} outside the model's "
                                          f"{out.shape[1]} outputs")
                    score = out[:, index]
                else:
                    raise ConfigError(f"saliency target must be an output index, 'sum' or None, "
                                      f"got {target!r}")
                total = tf.reduce_sum(score)  # samples are independent: one backward pass
            grads.append(tape.gradient(total, x).numpy())
    finally:
        if swapped:
            last.activation = keras.activations.softmax
    result = np.concatenate(grads) if grads else np.zeros_like(inputs)
    if path is not None:
        _pairs(inputs[:max_panels], np.abs(result[:max_panels]), Path(path),
               ("input", "|saliency|"), cmaps=("viridis", "inferno"))
    return result


def _as_image(sample: np.ndarray) -> np.ndarray:
    """A 2-D view of one sample: (D, H, W, C) volume -> middle slice's first channel, (H, W, C)
    -> first channel, (H, W) as is, (L,) as one row."""
    sample = np.asarray(sample)
    if sample.ndim == 4:
        return sample[sample.shape[0] // 2, ..., 0]
    if sample.ndim == 3:
        return sample[..., 0] if sample.shape[-1] <= 4 else sample[0]
    return sample if sample.ndim == 2 else sample.reshape(1, -1)


def _pairs(top: np.ndarray, bottom: np.ndarray, path: Path, titles: tuple[str, ...],
           cmaps: tuple[str, ...], middle: np.ndarray | None = None) -> None:
    """Columns of samples, rows: ``top``, optional ``middle``, ``bottom`` (same colour scale for
    the rows that share a colour map)."""
    plt = _pyplot()
    rows = [top] + ([middle] if middle is not None else []) + [bottom]
    n = len(top)
    fig, axes = plt.subplots(len(rows), n, figsize=(2.6 * n, 2.6 * len(rows)), squeeze=False)
    for r, (row, title, cmap) in enumerate(zip(rows, titles, cmaps)):
        same = [i for i, c in enumerate(cmaps) if c == cmap]
        stack = np.concatenate([np.ravel(rows[i]) for i in same])
        vmin, vmax = np.percentile(stack, [1, 99])
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(_as_image(row[c]), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def reconstruction_figure(
    model,
    inputs: np.ndarray,
    path: str | Path | None = None,
    targets: np.ndarray | None = None,
    max_panels: int = 4,
    batch_size: int = 32,
) -> dict[str, np.ndarray]:
    """An autoencoder's reconstructions of ``inputs`` next to them (seed figure 8).

    ``targets``: the clean samples when ``inputs`` are corrupted (a denoising autoencoder);
    default ``inputs``. Returns ``reconstruction``, per-sample ``mse`` against the targets and,
    with targets, ``input_mse`` (what returning the input unchanged would score). With
    ``path``: columns of target / input / reconstruction (or input / reconstruction).
    """
    inputs = np.asarray(inputs, np.float32)
    recon = np.asarray(_pick_output(_batched_predict(model, inputs, batch_size),
                                    like=inputs.shape[1:]))
    if recon.shape != inputs.shape:
        raise ConfigError(f"{model.name} outputs {recon.shape[1:]} per sample, not the input's "
                          f"shape {inputs.shape[1:]}: it is not an autoencoder")
    reference = inputs if targets is None else np.asarray(targets, np.float32)
    axes = tuple(range(1, inputs.ndim))
    result = {"reconstruction": recon, "mse": ((recon - reference) ** 2).mean(axis=axes)}
    if targets is not None:
        result["input_mse"] = ((inputs - reference) ** 2).mean(axis=axes)
    if path is not None:
        k = max_panels
        if targets is None:
            _pairs(inputs[:k], recon[:k], Path(path), ("input", "reconstruction"),
                   ("viridis", "viridis"))
        else:
            _pairs(reference[:k], recon[:k], Path(path), ("clean", "corrupted input",
                   "reconstruction"), ("viridis", "viridis", "viridis"), middle=inputs[:k])
    return result


EXPLAIN_METHODS = ("saliency", "embedding", "reconstruction")


def add_arguments(parser) -> None:
    """Options of ``modelzoo explain <model>``."""
    parser.add_argument("model", help="registered model name")
    parser.add_argument("--weights", default=None,
                        help="'default', a tag, a weights file or a run folder (default: none)")
    parser.add_argument("--data", required=True, help="HDF5 file in the model's layout")
    parser.add_argument("--method", choices=EXPLAIN_METHODS, required=True)
    parser.add_argument("--output", default="explain", help="folder for the PNG and the numbers")
    parser.add_argument("--rows", type=int, default=256, help="first rows of the file to use")
    parser.add_argument("--layer", default=None,
                        help="embedding: layer name or index (default: last vector layer)")
    parser.add_argument("--target", default=None,
                        help="saliency: output index or 'sum' (default: predicted class, or "
                        "'sum' for an autoencoder)")
    parser.add_argument("--embedding", choices=EMBED_METHODS, default="tsne")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    """``modelzoo explain``: loads the model and the first ``--rows`` inputs of ``--data``
    through the model's task (its ``inputs(path, data_cfg, rows)`` hook), writes
    ``<method>.png`` and ``<method>.npz`` into ``--output`` and prints where."""
    from modelzoo.registry import build, get_task
    from modelzoo.training import _model_and_recipe, load_recipe

    # The recipe that goes with the weights: a run folder's own, a shipped entry's, else the
    # model's default (and with no weights, a freshly initialised model).
    if args.weights is None:
        model, recipe = build(args.model), load_recipe(args.model)
    else:
        model, recipe = _model_and_recipe(args.model, args.weights)
    batch = get_task(recipe["task"]).inputs(args.data, recipe.get("data", {}), (0, args.rows))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{args.method}.png"
    labels = batch.get("labels")
    if args.method == "saliency":
        numbers = {"saliency": saliency(model, batch["inputs"], args.target, png)}
    elif args.method == "embedding":
        features = layer_features(model, batch["inputs"], args.layer)
        numbers = {"embedding": embed(features, labels, png, args.embedding, args.seed)}
    else:
        numbers = reconstruction_figure(model, batch["inputs"], png, batch.get("targets"))
    if labels is not None:
        numbers["labels"] = labels
    np.savez_compressed(out / f"{args.method}.npz", **numbers)
    print(f"explain: {args.method} of {len(batch['inputs'])} rows -> {png} and "
          f"{out / f'{args.method}.npz'}")
    return 0

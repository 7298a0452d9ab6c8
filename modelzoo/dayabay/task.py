"""Training and the paper's comparisons for the Daya Bay case.

``dayabay_denoising`` (``dayabay_dae``): the autoencoder trains on MSE against the clean input,
never seeing a label. Evaluation on held-out pairs: (1) filling masked values, the autoencoder
against neighbour averaging and zero filling for one fixed mask per row; (2) the code's
separation of the physics classes (k-NN and logistic probes, silhouette), next to the same
scores on a PCA of the raw inputs with as many dimensions; (3) the seed's Figure 14, a t-SNE of
the codes coloured by class, and a reconstruction figure.

``dayabay_classification`` (``dayabay_cnn``): supervised cross-entropy; evaluation is the
accuracy overall and per class against the >97% of Racah et al. 2016, with a confusion matrix.

Recipe keys (``data``): ``channels`` (``all``, ``charge``, ``prompt`` or indices),
``val_fraction`` (the tail of every class's dataset held out), ``shuffle``,
``eval_max_events`` (held-out pairs evaluated), and for the autoencoder ``eval_corruption``
(fraction of values masked in the filling test), ``eval_seed``, ``tsne_max_points``.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from modelzoo.dayabay import analysis
from modelzoo.dayabay.models import PMTPreprocess, encode, preprocess, reconstruct
from modelzoo.dayabay.reader import (
    CHANNELS,
    CLASS_NAMES,
    DayaBayPairs,
    channel_indices,
    open_dayabay,
)
from modelzoo.distributed import ProcessGroup
from modelzoo.tasks import (
    ClassLabels,
    Datasets,
    Task,
    gather_shards,
    select_rows,
    split_rows,
    split_streams,
)

PUBLISHED_CNN_ACCURACY = 0.97
PREDICT_BLOCK = 8192


class _PairTask(Task):
    """What both Daya Bay tasks share: the reader and the per-rank streams."""

    def open(self, path: str, data_cfg: dict) -> DayaBayPairs:
        return open_dayabay(path)

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """The maps as stored, channels-last ((n, 4, 8, 24) -> (n, 8, 24, 4)), and the labels."""
        pairs = self.open(path, data_cfg)
        arrays = pairs.arrays((rows[0], min(rows[1], pairs.num_events)))
        return {"inputs": arrays["inputs"], "labels": arrays["label"].astype(np.int64)}

    def model_config(self, path: str, data_cfg: dict) -> dict:
        """The preprocessed channels the network sees (``data.channels``)."""
        return {"channels": list(channel_indices(data_cfg.get("channels", "all")))}

    def targets(self, data: Datasets, data_cfg: dict) -> Datasets:
        """``data`` with the training targets in place of the labels (as they are by default)."""
        return data

    def datasets(
        self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup, seed: int,
        first_epoch: int,
    ) -> Datasets:
        pairs = self.open(path, data_cfg)
        train_rows, val_rows = split_rows(pairs.num_events, data_cfg.get("val_fraction", 0.25))

        return self.targets(split_streams(
            pairs.source, pairs.to_example, train_rows, val_rows, batch_size=batch_size,
            group=group, seed=seed, first_epoch=first_epoch,
            shuffle=bool(data_cfg.get("shuffle", True)), path=path, noun="pairs",
        ), data_cfg)

    def rows(self, pairs: DayaBayPairs, data_cfg: dict, split: str) -> tuple[int, int]:
        rows = select_rows(pairs.num_events, data_cfg.get("val_fraction", 0.25), split)
        limit = data_cfg.get("eval_max_events")
        if limit:
            # The stream interleaves the classes, so the first rows keep their proportions.
            rows = (rows[0], min(rows[1], rows[0] + int(limit)))
        return rows


class DayaBayDenoising(_PairTask):
    name = "dayabay_denoising"
    model_outputs = {"reconstruction": None}

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """The maps as stored, channels-last, the labels, and the preprocessed maps the
        reconstruction aims at."""
        result = super().inputs(path, data_cfg, rows)
        clean = PMTPreprocess(channel_indices(data_cfg.get("channels", "all")))
        return {**result, "targets": np.asarray(clean(result["inputs"]))}

    def targets(self, data: Datasets, data_cfg: dict) -> Datasets:
        """The clean preprocessed maps are the target; labels stay unused."""
        clean = PMTPreprocess(channel_indices(data_cfg.get("channels", "all")))

        def to_target(maps, labels):
            return maps, clean(maps)

        data.train = data.train.map(to_target)
        if data.validation is not None:
            data.validation = data.validation.map(to_target)
        return data

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        model.compile(optimizer=optimizer, loss="mse")

    def outputs(self, model: keras.Model, pairs: DayaBayPairs, data_cfg: dict,
                rows: tuple[int, int], group: ProcessGroup) -> dict[str, np.ndarray]:
        """Codes, labels and per-row squared errors on the values masked by one fixed mask per
        row (``data.eval_corruption``, ``data.eval_seed``), gathered in row order."""
        fraction, seed = _corruption(data_cfg)
        code_size = int(model.get_layer("code").units)

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            arrays = pairs.arrays(shard)
            inputs = preprocess(model, arrays["inputs"])
            masked = row_masks(inputs.shape, fraction, seed, shard[0])
            corrupted = np.where(masked, 0.0, inputs).astype(np.float32)
            filled = {"dae": reconstruct(model, corrupted),
                      "neighbour": analysis.neighbour_fill(inputs, masked),
                      "zero": corrupted}
            axes = tuple(range(1, inputs.ndim))
            out = {f"{k}_sse": np.where(masked, (v - inputs) ** 2, 0.0).sum(axes)
                   for k, v in filled.items()}
            flat = inputs.reshape(len(inputs), -1)
            return {**out, "masked": masked.sum(axes).astype(np.float64),
                    "code": encode(model, arrays["inputs"]), "label": arrays["label"],
                    "raw": flat}

        width = int(np.prod(model.output_shape[1:]))
        empty = {"dae_sse": ((), "float64"), "neighbour_sse": ((), "float64"),
                 "zero_sse": ((), "float64"), "masked": ((), "float64"),
                 "code": ((code_size,), "float32"), "label": ((), "int32"),
                 "raw": ((width,), "float32")}
        return gather_shards(rows, group, compute, empty)

    def evaluate(
        self, model: keras.Model, path: str, data_cfg: dict, split: str, output_dir: str | None,
        group: ProcessGroup,
    ) -> dict[str, float]:
        pairs = self.open(path, data_cfg)
        rows = self.rows(pairs, data_cfg, split)
        fraction, seed = _corruption(data_cfg)
        got = self.outputs(model, pairs, data_cfg, rows, group)
        masked = got["masked"].sum()
        labels, codes = got["label"], got["code"]
        metrics: dict[str, float] = {
            "events": int(len(labels)),
            "eval_corruption": fraction,
            "dae_masked_mse": float(got["dae_sse"].sum() / masked),
            "neighbour_masked_mse": float(got["neighbour_sse"].sum() / masked),
            "zero_masked_mse": float(got["zero_sse"].sum() / masked),
        }
        metrics["dae_over_neighbour_mse"] = metrics["dae_masked_mse"] / metrics[
            "neighbour_masked_mse"]
        for k, name in enumerate(CLASS_NAMES):
            metrics[f"events_{name}"] = int((labels == k).sum())
        metrics.update(code_separation(codes, labels, got["raw"], seed))
        if output_dir:
            limit = int(data_cfg.get("tsne_max_points", 2000))
            names = np.asarray(CLASS_NAMES)[labels[:limit]]
            analysis.embed_codes(codes[:limit], names,
                                 os.path.join(output_dir, "dayabay_tsne_codes.png"), seed)
            sample = pairs.arrays((rows[0], min(rows[1], rows[0] + 8)))
            plot_reconstruction(model, preprocess(model, sample["inputs"]), sample["label"],
                                model.get_layer("preprocess").channels,
                                fraction, seed,
                                os.path.join(output_dir, "dayabay_reconstruction.png"))
        return metrics

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        """Per pair in the reader's interleaved order: code, reconstruction of the clean input,
        and the class label (from the dataset the pair came from)."""
        pairs = self.open(path, data_cfg)
        shape = tuple(model.output_shape[1:])
        code_size = int(model.get_layer("code").units)

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            parts = []
            for start in range(shard[0], shard[1], PREDICT_BLOCK):  # bounded memory
                arrays = pairs.arrays((start, min(start + PREDICT_BLOCK, shard[1])))
                parts.append({"code": encode(model, arrays["inputs"]),
                              "reconstruction": model.predict(arrays["inputs"], batch_size=1024,
                                                              verbose=0),
                              "label": arrays["label"]})
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

        empty = {"code": ((code_size,), "float32"), "reconstruction": (shape, "float32"),
                 "label": ((), "int32")}
        return gather_shards((0, pairs.num_events), group, compute, empty)


def _corruption(data_cfg: dict) -> tuple[float, int]:
    """(fraction of values masked, seed) of the filling test."""
    return float(data_cfg.get("eval_corruption", 1 / 3)), int(data_cfg.get("eval_seed", 0))


def row_masks(shape: tuple[int, ...], fraction: float, seed: int, first_row: int) -> np.ndarray:
    """Masks for rows ``first_row ..``: each row's from its own seed, so any sharding of the
    evaluation masks the same values."""
    return np.concatenate([
        analysis.corruption_mask((1, *shape[1:]), fraction, seed * 1_000_003 + first_row + i)
        for i in range(shape[0])
    ]) if shape[0] else np.zeros(shape, bool)


def code_separation(codes: np.ndarray, labels: np.ndarray, raw: np.ndarray,
                    seed: int) -> dict[str, float]:
    """Separation scores of the code, and of a PCA of the raw inputs to the code's width for
    reference: IBD against accidentals, and over all classes when the file has more."""
    from sklearn.decomposition import PCA

    pca = PCA(codes.shape[1], random_state=seed).fit_transform(raw)
    result: dict[str, float] = {}
    pair = np.isin(labels, (0, 1))
    groups = []
    if len(np.unique(labels[pair])) == 2:
        groups.append(("ibd_vs_accidental", pair))
    if len(np.unique(labels)) > 2:
        groups.append(("all_classes", np.ones(len(labels), bool)))
    for name, chosen in groups:
        for source, features in (("code", codes), (f"pca{codes.shape[1]}", pca)):
            scores = analysis.separation_scores(features[chosen], labels[chosen], seed=seed)
            result.update({f"{source}_{k}_{name}": v for k, v in scores.items()})
    return result


class DayaBayClassification(_PairTask):
    name = "dayabay_classification"
    model_outputs = {"probabilities": None}

    def class_labels(self, path: str, data_cfg: dict) -> list[ClassLabels]:
        pairs = self.open(path, data_cfg)
        return [ClassLabels(path, dataset, np.full(pairs.source.class_counts[label], label))
                for label, (_, dataset) in pairs.source.sources.items()]

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])

    def outputs(self, model: keras.Model, pairs: DayaBayPairs, data_cfg: dict,
                rows: tuple[int, int], group: ProcessGroup) -> dict[str, np.ndarray]:
        classes = int(model.output_shape[-1])

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            probs, labels = [], []
            for start in range(shard[0], shard[1], PREDICT_BLOCK):  # bounded memory
                arrays = pairs.arrays((start, min(start + PREDICT_BLOCK, shard[1])))
                probs.append(model.predict(arrays["inputs"], batch_size=1024, verbose=0))
                labels.append(arrays["label"])
            return {"probabilities": np.concatenate(probs).astype(np.float32),
                    "label": np.concatenate(labels)}

        return gather_shards(rows, group, compute, {"probabilities": ((classes,), "float32"),
                                                    "label": ((), "int32")})

    def evaluate(
        self, model: keras.Model, path: str, data_cfg: dict, split: str, output_dir: str | None,
        group: ProcessGroup,
    ) -> dict[str, float]:
        from sklearn.metrics import confusion_matrix

        pairs = self.open(path, data_cfg)
        rows = self.rows(pairs, data_cfg, split)
        got = self.outputs(model, pairs, data_cfg, rows, group)
        labels, predicted = got["label"], got["probabilities"].argmax(1)
        metrics: dict[str, float] = {
            "events": int(len(labels)),
            "accuracy": float(np.mean(predicted == labels)),
            "published_accuracy": PUBLISHED_CNN_ACCURACY,
        }
        present = [k for k in range(len(CLASS_NAMES)) if (labels == k).any()]
        for k in present:
            metrics[f"accuracy_{CLASS_NAMES[k]}"] = float(np.mean(predicted[labels == k] == k))
        metrics["min_class_accuracy"] = min(metrics[f"accuracy_{CLASS_NAMES[k]}"]
                                            for k in present)
        if output_dir:
            matrix = confusion_matrix(labels, predicted, labels=present, normalize="true")
            plot_confusion(matrix, [CLASS_NAMES[k] for k in present], metrics,
                           os.path.join(output_dir, "dayabay_confusion.png"))
        return metrics

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        pairs = self.open(path, data_cfg)
        return self.outputs(model, pairs, data_cfg, (0, pairs.num_events), group)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reconstruction(model: keras.Model, inputs: np.ndarray, labels: np.ndarray,
                        channels: tuple[int, ...], fraction: float, seed: int, path: str) -> None:
    """One pair per class (as available): clean input, corrupted input and the autoencoder's
    reconstruction for each channel."""
    plt = _pyplot()
    first = [int(np.argmax(labels == k)) for k in np.unique(labels)][:2]
    masked = row_masks(inputs[first].shape, fraction, seed, 0)
    corrupted = np.where(masked, 0.0, inputs[first]).astype(np.float32)
    recon = reconstruct(model, corrupted)
    rows = [(f"{CLASS_NAMES[labels[i]]}\n{title}", image, inputs[i])
            for j, i in enumerate(first)
            for title, image in (("input", inputs[i]), ("1/3 zeroed", corrupted[j]),
                                 ("reconstruction", recon[j]))]
    fig, axes = plt.subplots(len(rows), len(channels), figsize=(3.2 * len(channels),
                                                                1.4 * len(rows)), squeeze=False)
    for r, (title, image, clean) in enumerate(rows):
        for c, channel in enumerate(channels):
            ax = axes[r, c]
            # one colour scale per event and channel: input and reconstruction compare directly
            ax.imshow(image[..., c], origin="lower", aspect="auto", cmap="viridis",
                      vmin=clean[..., c].min(), vmax=clean[..., c].max())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(CHANNELS[channel], fontsize=9)
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
    fig.suptitle("denoising autoencoder: PMT maps (rings x columns)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, names: list[str], metrics: dict, path: str) -> None:
    """Row-normalised confusion matrix of the supervised CNN."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]:.3f}", ha="center", va="center",
                    color="white" if matrix[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"CNN accuracy {100 * metrics['accuracy']:.1f}% (published: >97%)", fontsize=10)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Signal-vs-background classification of LHC calorimeter images (``lhc_cnn``, ``lhc_cnn_15pf``).

Evaluation follows Bhimji et al. 2017: ROC AUC with the physics (cross-section) weights, and the
classifier's true-positive rate at the false-positive rate of the cut-based physics selection on
the same events, next to the selection's own true-positive rate.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from modelzoo import metrics
from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError, DataError
from modelzoo.lhc.reader import LHCImages, open_lhc
from modelzoo.tasks import (
    Datasets,
    Task,
    augment_training,
    augmentations,
    gather_shards,
    select_rows,
    shard_rows,
    split_rows,
    split_streams,
)

TRAIN_WEIGHTINGS = ("balanced", "physics", "none")
# Exact symmetries of the generator's whole-detector images (rows phi over [-pi, pi], columns
# eta over [-eta_max, eta_max], uniform bins): the azimuth is periodic and a pp collision of
# unpolarised beams is mirror- and forward-backward-symmetric, so each maps an event onto one
# as likely. They stretch small labelled sets (``data.augment``), as the dihedral group does for
# galaxy stamps.
SYMMETRIES = ("phi_rotation", "phi_reflection", "eta_reflection")


def detector_symmetries(symmetries: list[str]) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """The transform of ``(N, phi, eta, C)`` image batches that moves each image by a random
    element of ``symmetries``, drawn from a stateless seed: a cyclic shift of the phi rows by
    0..H-1 pixels, and reflections of the rows / columns with probability 1/2 each. The rows
    must be phi over the full circle, as the zoo's generator writes them (file attribute
    ``image_axes``); for images centred on a jet the rotation is no symmetry."""
    def transform(x, seed):
        n, rows = tf.shape(x)[0], tf.shape(x)[1]
        if "phi_rotation" in symmetries:
            shift = tf.random.stateless_uniform([n], seed=seed, maxval=rows, dtype=tf.int32)
            index = (tf.range(rows)[None, :] + shift[:, None]) % rows
            x = tf.gather(x, index, axis=1, batch_dims=1)
        for salt, (name, axis) in enumerate(
                (("phi_reflection", 1), ("eta_reflection", 2)), start=1):
            if name in symmetries:
                flip = tf.random.stateless_uniform([n], seed=seed + salt) < 0.5
                x = tf.where(flip[:, None, None, None], tf.reverse(x, [axis]), x)
        return x

    return transform


def _class_balanced(images: LHCImages, rows: tuple[int, int],
                    group: ProcessGroup) -> tuple[float, float]:
    """Factors that make each class's weights sum to half the event count of ``rows``, so the
    loss sees both classes equally whatever their cross-sections (signal is ~1e-4 of the
    physical yield). Each rank sums its shard; the sums are combined across ranks, so every rank
    weights alike without reading the others' rows."""
    arrays = images.arrays(shard_rows(rows, group))
    labels, weights = arrays["label"], arrays["weight"]
    local = [len(labels), weights[labels == 0].sum(), weights[labels == 1].sum()]
    n, background, signal = group.allreduce_sum(np.array(local), name="class_weights")
    if min(background, signal) <= 0:
        raise ConfigError(f"{images.source.path}: training needs events of both classes with "
                          "positive weight")
    return (n / 2) / background, (n / 2) / signal


# Inference batches hold about as many pixels as 256 images of 64 x 64: the first convolutions'
# activations grow with the pixels, and 256 images of 224 x 224 (lhc_cnn_15pf) need over 15 GB.
_INFERENCE_PIXELS = 256 * 64 * 64


def inference_batch(image_size: tuple[int, int]) -> int:
    """Images per inference batch for ``image_size`` (rows, columns): 256 at 64 x 64, 20 at
    224 x 224."""
    return max(1, min(256, _INFERENCE_PIXELS // (int(image_size[0]) * int(image_size[1]))))


class LHCClassification(Task):
    name = "lhc_classification"
    model_outputs = {"probabilities": None}

    def open(self, path: str, data_cfg: dict) -> LHCImages:
        return open_lhc(path, weight=data_cfg.get("weight_dataset", "weight"))

    def model_config(self, path: str, data_cfg: dict) -> dict:
        """The file's image shape, (H, W, 3) or (H, W, 1)."""
        return {"input_shape": self.open(path, data_cfg).image_shape}

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """The images as stored, channels-last (a benchmark file's NCHW ``data`` transposed)."""
        images = self.open(path, data_cfg)
        x, y, _ = images.to_example(images.source.read(rows[0], min(rows[1], images.num_events)))
        return {"inputs": x, "labels": y}

    def datasets(
        self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup, seed: int,
        first_epoch: int,
    ) -> Datasets:
        images = self.open(path, data_cfg)
        train_rows, val_rows = split_rows(images.num_events, data_cfg.get("val_fraction", 0.2))
        weighting = data_cfg.get("train_weights", "none")
        if weighting not in TRAIN_WEIGHTINGS:
            raise ConfigError(
                f"data.train_weights must be one of {TRAIN_WEIGHTINGS}, got {weighting!r}"
            )
        factors = _class_balanced(images, train_rows, group) if weighting == "balanced" else None

        def to_example(block):
            x, y, w = images.to_example(block)
            if weighting == "balanced":
                w = w * np.where(y == 1, factors[1], factors[0]).astype(np.float32)
            elif weighting == "none":
                w = np.ones_like(w)
            return x, y, w

        data = split_streams(
            images.source, to_example, train_rows, val_rows, batch_size=batch_size, group=group,
            seed=seed, first_epoch=first_epoch, shuffle=bool(data_cfg.get("shuffle", True)),
            path=path, noun="events",
        )
        symmetries = augmentations(data_cfg, SYMMETRIES)
        if symmetries:
            data = augment_training(data, detector_symmetries(list(symmetries)), seed=seed,
                                    rank=group.rank, first_epoch=first_epoch)
        return data

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        model.compile(
            optimizer=optimizer,
            loss="sparse_categorical_crossentropy",
            weighted_metrics=["accuracy"],
        )

    def outputs(
        self, model: keras.Model, images: LHCImages, data_cfg: dict, rows: tuple[int, int],
        group: ProcessGroup, batch_size: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Class probabilities, the signal score and the truth of ``rows``; ``batch_size``
        defaults to :func:`inference_batch` of the model's image size."""
        keys = images.columns
        classes = int(model.output_shape[-1])
        batch_size = batch_size or inference_batch(model.input_shape[1:3])

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            steps = -(-(shard[1] - shard[0]) // batch_size)  # known length: no dry-run warning
            inputs = images.dataset(shard, batch_size).map(lambda x, y, w: x)
            probs = model.predict(inputs, steps=steps, verbose=0).astype(np.float32)
            arrays = images.arrays(shard)
            return {"probabilities": probs, "score": probs[:, 1],
                    **{k: np.asarray(arrays[k], np.float64) for k in keys}}

        empty = {"probabilities": ((classes,), "float32"), "score": ((), "float32"),
                 **{k: ((), "float64") for k in keys}}
        return gather_shards(rows, group, compute, empty)

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        images = self.open(path, data_cfg)
        pred = self.outputs(model, images, data_cfg, (0, images.num_events), group)
        return {"probabilities": pred["probabilities"], "signal_score": pred["score"]}

    def evaluate(
        self, model: keras.Model, path: str, data_cfg: dict, split: str, output_dir: str | None,
        group: ProcessGroup,
    ) -> dict[str, float]:
        images = self.open(path, data_cfg)
        rows = select_rows(images.num_events, data_cfg.get("val_fraction", 0.2), split)
        pred = self.outputs(model, images, data_cfg, rows, group)
        labels, scores, weights = pred["label"], pred["score"], pred["weight"]
        result = {
            "events": int(len(labels)),
            "signal_events": int(labels.sum()),
            "accuracy": float(((scores > 0.5) == (labels == 1)).mean()),
            "auc_unweighted": metrics.roc_auc(labels, scores),
            "auc_weighted": metrics.roc_auc(labels, scores, weights),
        }
        if "passes_selection" in pred:
            result.update(_operating_point(pred, data_cfg, group.is_root))
        if output_dir:
            plot_roc(labels, scores, weights, result, os.path.join(output_dir, "roc.png"))
        return result


def _operating_point(pred: dict[str, np.ndarray], data_cfg: dict, report: bool) -> dict:
    """The paper's comparison with bootstrap intervals, stratified by the generator's process
    (pT-hat slice) where the file records it; or, when too few background events pass the
    selection to fix its FPR, the reason instead of the numbers."""
    labels, weights, passed = pred["label"], pred["weight"], pred["passes_selection"]
    background = weights[(labels == 0) & (passed == 1)]
    counts = {
        "background_passing_selection": int(background.size),
        "background_passing_selection_effective": metrics.effective_count(background),
    }
    try:
        point = metrics.operating_point(
            labels, pred["score"], passed, weights, pred.get("process_id"),
            min_background=float(data_cfg.get("operating_point_min_background", 10)),
            replicates=int(data_cfg.get("bootstrap_replicates", 1000)),
        )
    except DataError as err:
        if report:
            print(f"lhc_classification: no operating point: {err}", file=sys.stderr)
        return {**counts, "operating_point_refused": str(err)}
    return point.as_dict()


def plot_roc(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, result: dict, path: str
) -> None:
    """Weighted ROC with the physics selection's operating point, the CNN's TPR at it, and
    their 95% bootstrap intervals where the evaluation computed them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = metrics.weighted_roc(labels, scores, weights)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.plot(fpr, tpr, label=f"CNN (weighted AUC {result['auc_weighted']:.4f})")
    lowest = fpr[fpr > 0].min() if (fpr > 0).any() else 1e-4
    left = min(lowest, 1e-4) / 2
    if "selection_fpr" in result:
        x, y = result["selection_fpr"], result["selection_tpr"]
        low = {k: result.get(f"{k}_ci95_low", result[k]) for k in
               ("selection_fpr", "selection_tpr", "cnn_tpr_at_selection_fpr")}
        high = {k: result.get(f"{k}_ci95_high", result[k]) for k in low}
        ax.errorbar(x, y, xerr=[[x - low["selection_fpr"]], [high["selection_fpr"] - x]],
                    yerr=[[y - low["selection_tpr"]], [high["selection_tpr"] - y]],
                    fmt="r*", ms=11, capsize=3, label="physics selection (95% CI)")
        cnn = result["cnn_tpr_at_selection_fpr"]
        ax.errorbar(x, cnn, yerr=[[cnn - low["cnn_tpr_at_selection_fpr"]],
                                  [high["cnn_tpr_at_selection_fpr"] - cnn]],
                    fmt="ko", ms=5, capsize=3, label="CNN at the selection's FPR (95% CI)")
        left = min(left, low["selection_fpr"] / 2) if low["selection_fpr"] > 0 else left
    ax.set_xscale("log")
    ax.set_xlim(left, 1)
    ax.set_xlabel("false-positive rate (weighted)")
    ax.set_ylabel("true-positive rate (weighted)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Consonant-vowel classification from ECoG (``ecog_mlp``, ``ecog_logreg``).

Splits follow Livezey et al. 2019: the trials are permuted with a fixed seed (the paper's
20141210) and cut into ``folds`` blocks; fold ``k`` tests on block ``k``, validates on block
``k + 1`` and trains on the rest (0.8 / 0.1 / 0.1 for 10 folds). ``folds: 0`` is a plain
train/validation split (``val_fraction``) without a test block.

The evaluation is the paper's: syllable accuracy against chance (1/57), the consonant and vowel
sub-task accuracies (the softmax summed over the syllables of each consonant or vowel),
per-syllable accuracy, the confusion matrix, and the Ward dendrogram of the softmax averaged per
target syllable ("soft confusion", the seed's figure 12), scored against the articulatory
grouping of the consonants.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from modelzoo import interpret
from modelzoo.distributed import ProcessGroup
from modelzoo.ecog import phonetics
from modelzoo.ecog.reader import ECoGTrials, RowView, open_ecog
from modelzoo.errors import ConfigError, DataError
from modelzoo.tasks import ClassLabels, Datasets, Task, gather_shards, split_streams

SPLITS = ("all", "train", "val", "test")


def split_indices(num_trials: int, data_cfg: dict) -> dict[str, np.ndarray]:
    """Row indices of the train, val and test splits of ``data_cfg`` (and ``all``)."""
    folds, fold = int(data_cfg.get("folds", 0)), int(data_cfg.get("fold", 0))
    order = np.random.default_rng(int(data_cfg.get("split_seed", 20141210))).permutation(
        num_trials)
    if folds:
        if folds < 3 or not 0 <= fold < folds:
            raise ConfigError(f"data.folds must be 0 or >= 3 and data.fold in 0..folds-1, got "
                              f"folds={folds}, fold={fold}")
        blocks = np.array_split(order, folds)
        rest = [blocks[(fold + i) % folds] for i in range(2, folds)]
        split = {"train": np.concatenate(rest), "val": blocks[(fold + 1) % folds],
                 "test": blocks[fold]}
    else:
        val_fraction = float(data_cfg.get("val_fraction", 0.1))
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        n_val = int(round(num_trials * val_fraction))
        split = {"train": order[:num_trials - n_val], "val": order[num_trials - n_val:],
                 "test": order[:0]}
    split["all"] = np.arange(num_trials)
    return split


def feature_moments(view: RowView, trials: ECoGTrials, block_rows: int = 256
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and variance of the flattened trials of ``view`` (float64 sums)."""
    total = np.zeros(trials.n_channels * trials.n_samples)
    squares = np.zeros_like(total)
    for start in range(0, view.num_rows, block_rows):
        x, _ = trials.to_example(view.read(start, min(start + block_rows, view.num_rows), ["X",
                                                                                          "y"]))
        flat = x.reshape(len(x), -1).astype(np.float64)
        total += flat.sum(axis=0)
        squares += (flat**2).sum(axis=0)
    mean = total / view.num_rows
    return mean, np.maximum(squares / view.num_rows - mean**2, 0.0)


def set_standardization(model: keras.Model, mean: np.ndarray, variance: np.ndarray) -> None:
    """Put the training rows' statistics into the model's ``standardize`` layer (part of its
    weights)."""
    layer = model.get_layer("standardize")
    layer.mean.assign(mean.astype(np.float32))
    layer.variance.assign(variance.astype(np.float32))


class _Standardize(keras.callbacks.Callback):
    """Sets the standardisation from the training rows when training starts (every rank
    computes the same numbers from the same rows). A resumed run sets the same values again."""

    def __init__(self, view: RowView, trials: ECoGTrials) -> None:
        super().__init__()
        self.view, self.trials = view, trials

    def on_train_begin(self, logs: dict | None = None) -> None:
        set_standardization(self.model, *feature_moments(self.view, self.trials))


def soft_confusion(labels: np.ndarray, probabilities: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) softmax outputs summed per target class (rows: target; not normalised)."""
    matrix = np.zeros((n_classes, n_classes))
    np.add.at(matrix, labels, probabilities)
    return matrix


def _articulatory_distance() -> np.ndarray:
    """Condensed distances between syllables in the articulatory tree: different major
    articulator 3, different consonant of one articulator 2, same consonant, other vowel 1."""
    from scipy.spatial.distance import squareform

    groups = np.asarray(phonetics.articulator_groups())
    consonant = np.arange(len(phonetics.SYLLABLES)) // len(phonetics.VOWELS)
    full = np.where(groups[:, None] != groups[None, :], 3.0,
                    np.where(consonant[:, None] != consonant[None, :], 2.0, 1.0))
    np.fill_diagonal(full, 0.0)
    return squareform(full)


def hierarchy_scores(matrix: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
    """Dendrogram of a 57-class soft confusion and how well it recovers the articulatory
    structure: cophenetic correlation with the articulator / consonant / vowel tree, and the
    purity and adjusted Rand index of its 4-cluster cut against the major articulators and of
    its 3-cluster cut against the vowels. Classes without trials are left out of the scores."""
    from scipy.cluster.hierarchy import cophenet

    if matrix.shape[0] != len(phonetics.SYLLABLES) or np.any(matrix.sum(axis=1) <= 0):
        return {}, None
    tree = interpret.confusion_dendrogram(matrix)
    scores = {"dendrogram_cophenetic_correlation": float(cophenet(tree["linkage"],
                                                                   _articulatory_distance())[0])}
    by_articulator = interpret.cluster_agreement(tree["linkage"], phonetics.articulator_groups())
    by_vowel = interpret.cluster_agreement(
        tree["linkage"], [phonetics.vowel_of(k) for k in range(len(phonetics.SYLLABLES))])
    scores.update({f"dendrogram_articulator_{k}": v for k, v in by_articulator.items()})
    scores.update({f"dendrogram_vowel_{k}": v for k, v in by_vowel.items()})
    return scores, tree


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Syllable, consonant and vowel accuracy (sub-tasks by summed softmax), chance, and
    per-syllable accuracy (NaN for syllables without trials)."""
    n_classes = probabilities.shape[1]
    predicted = probabilities.argmax(axis=1)
    result = {"trials": int(len(labels)), "accuracy": float(np.mean(predicted == labels)),
              "chance": 1.0 / n_classes}
    if n_classes == len(phonetics.SYLLABLES):
        n_vowels = len(phonetics.VOWELS)
        by_consonant = probabilities.reshape(len(labels), -1, n_vowels)
        result["consonant_accuracy"] = float(np.mean(
            by_consonant.sum(axis=2).argmax(axis=1) == labels // n_vowels))
        result["vowel_accuracy"] = float(np.mean(
            by_consonant.sum(axis=1).argmax(axis=1) == labels % n_vowels))
        result["consonant_chance"] = 1.0 / len(phonetics.CONSONANTS)
        result["vowel_chance"] = 1.0 / n_vowels
    counts = np.bincount(labels, minlength=n_classes)
    hits = np.bincount(labels[predicted == labels], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        result["per_class_accuracy"] = (hits / counts).tolist()
    return result


def write_figures(output_dir: str, labels: np.ndarray, probabilities: np.ndarray,
                  result: dict, tree: dict | None) -> None:
    """confusion.png, per_class_accuracy.png and (57 classes, all present) dendrogram.png."""
    from sklearn.metrics import confusion_matrix

    plt = interpret._pyplot()
    n_classes = probabilities.shape[1]
    names = (list(phonetics.SYLLABLES) if n_classes == len(phonetics.SYLLABLES)
             else [str(k) for k in range(n_classes)])
    counts = confusion_matrix(labels, probabilities.argmax(axis=1), labels=range(n_classes))
    order = tree["order"] if tree is not None else np.arange(n_classes)
    fig, ax = plt.subplots(figsize=(9, 8))
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = counts / counts.sum(axis=1, keepdims=True)
    image = ax.imshow(np.nan_to_num(rates[np.ix_(order, order)]), cmap="gray_r")
    ax.set_xticks(range(n_classes), [names[i] for i in order], rotation=90, fontsize=6)
    ax.set_yticks(range(n_classes), [names[i] for i in order], fontsize=6)
    ax.set_xlabel("predicted syllable")
    ax.set_ylabel("target syllable")
    ax.set_title(f"confusion (accuracy {result['accuracy']:.1%}, chance {result['chance']:.1%})")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(os.path.join(output_dir, "confusion.png"), dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 3.5))
    ax.bar(range(n_classes), np.nan_to_num(result["per_class_accuracy"]), color="0.4")
    ax.axhline(result["chance"], color="r", ls="--", label="chance")
    ax.axhline(result["accuracy"], color="k", ls=":", label="mean")
    ax.set_xticks(range(n_classes), names, rotation=90, fontsize=7)
    ax.set_ylabel("accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(output_dir, "per_class_accuracy.png"), dpi=100)
    plt.close(fig)
    if tree is not None:
        interpret.confusion_dendrogram(soft_confusion(labels, probabilities, n_classes), names,
                                       os.path.join(output_dir, "dendrogram.png"),
                                       groups=phonetics.articulator_groups())


class ECoGClassification(Task):
    name = "ecog_classification"
    # What `modelzoo tune` minimises: the validation loss without the weight-decay penalty
    # (Keras adds regularisation to val_loss, which would favour weak decay for its own sake).
    tune_monitor = "val_cross_entropy"
    model_outputs = {"probabilities": None}

    def open(self, path: str, data_cfg: dict) -> ECoGTrials:
        return open_ecog(path)

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """The trials as stored, (n, channels, samples) (the model standardises them itself)."""
        trials = self.open(path, data_cfg)
        x, y = trials.to_example(trials.source.read(rows[0], min(rows[1], trials.num_trials)))
        return {"inputs": x, "labels": y.astype(np.int64)}

    def class_labels(self, path: str, data_cfg: dict) -> list[ClassLabels]:
        return [ClassLabels(path, "y", self.open(path, data_cfg).labels())]

    def datasets(
        self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup, seed: int,
        first_epoch: int,
    ) -> Datasets:
        trials = self.open(path, data_cfg)
        split = split_indices(trials.num_trials, data_cfg)
        # Each part in file order: the stream shuffles (blocks, then rows across neighbouring
        # blocks), and near-contiguous rows are read as slices, not row by row.
        view = trials.view(np.concatenate([np.sort(split["train"]), np.sort(split["val"])]))
        n_train = len(split["train"])
        return split_streams(
            view, trials.to_example, (0, n_train), (n_train, view.num_rows),
            batch_size=batch_size, group=group, seed=seed, first_epoch=first_epoch,
            shuffle=bool(data_cfg.get("shuffle", True)), path=path, noun="trials",
        )

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, cfg: dict) -> None:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy",
                               keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")])

    def callbacks(self, model: keras.Model, path: str, data_cfg: dict, group: ProcessGroup,
                  seed: int) -> list[keras.callbacks.Callback]:
        trials = self.open(path, data_cfg)
        expected = tuple(model.input_shape[1:])
        if expected != (trials.n_channels, trials.n_samples):
            raise DataError(f"{path}: dataset 'X' holds trials of {trials.n_channels} channels "
                            f"x {trials.n_samples} samples, the model expects {expected[0]} x "
                            f"{expected[1]} (set model.n_channels / model.n_samples)")
        return [_Standardize(trials.view(split_indices(trials.num_trials, data_cfg)["train"]),
                             trials)]

    def outputs(self, model: keras.Model, trials: ECoGTrials, data_cfg: dict, rows: np.ndarray,
                group: ProcessGroup, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Softmax outputs and labels of the trials ``rows`` (indices: the splits interleave),
        computed shard-wise, gathered on all ranks."""
        view = trials.view(rows)
        n_classes = model.output_shape[-1]

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            x, y = trials.to_example(view.read(*shard, ["X", "y"]))
            return {"probabilities": model.predict(x, batch_size=batch_size, verbose=0),
                    "label": y.astype(np.int64)}

        empty = {"probabilities": ((n_classes,), "float32"), "label": ((), "int64")}
        return gather_shards((0, len(rows)), group, compute, empty)

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        trials = self.open(path, data_cfg)
        pred = self.outputs(model, trials, data_cfg, np.arange(trials.num_trials), group)
        return {"probabilities": pred["probabilities"],
                "predicted_syllable": pred["probabilities"].argmax(axis=1).astype(np.int32)}

    def evaluate(
        self, model: keras.Model, path: str, data_cfg: dict, split: str, output_dir: str | None,
        group: ProcessGroup,
    ) -> dict:
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        trials = self.open(path, data_cfg)
        n_classes = model.output_shape[-1]
        rows = split_indices(trials.num_trials, data_cfg)[split]
        if len(rows) == 0:
            raise ConfigError(f"split {split!r} is empty for data.folds="
                              f"{data_cfg.get('folds', 0)}")
        pred = self.outputs(model, trials, data_cfg, rows, group)
        labels, probabilities = pred["label"], pred["probabilities"]
        result = classification_metrics(labels, probabilities)
        per_class = result.pop("per_class_accuracy")  # metrics stay scalars (manifest, CLI)
        scores, tree = hierarchy_scores(soft_confusion(labels, probabilities, n_classes))
        result.update(scores)
        if output_dir:
            with open(os.path.join(output_dir, "per_class_accuracy.json"), "w") as fh:
                json.dump({"syllables": list(phonetics.SYLLABLES[:n_classes])
                           if n_classes == len(phonetics.SYLLABLES) else list(range(n_classes)),
                           "accuracy": [None if np.isnan(a) else a for a in per_class]}, fh)
            write_figures(output_dir, labels, probabilities,
                          {**result, "per_class_accuracy": per_class}, tree)
        return result

"""Training and evaluation of the extreme-weather models.

* ``climate_patch_classification`` (``climate_patch_cnn``): patches and labels from a patch
  file; evaluation is Liu et al. 2016's: accuracy per event type and the confusion matrix.
* ``climate_detection`` (``climate_detector``): ExtremeWeather images; loss = YOLO detection
  loss on the labelled images + lambda x reconstruction error on every image (Racah et al.
  2017; an image without boxes is unlabelled, and its detection loss is masked out through a
  per-image "labelled" flag carried in the grid target). Evaluation: VOC average precision per
  class and mAP at IoU 0.5 and 0.1, and seed figure 7 (fields with ground-truth and predicted
  boxes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from modelzoo.climate import boxes as boxes_lib
from modelzoo.climate.detection import bootstrap_map, mean_average_precision
from modelzoo.climate.patches import EVENT_TYPES
from modelzoo.climate.reader import (
    ClimatePatches,
    ExtremeWeatherImages,
    open_extreme_weather,
    open_patches,
    standardize,
)
from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError
from modelzoo.hdf5 import stream
from modelzoo.tasks import (
    ClassLabels,
    Datasets,
    Task,
    gather_shards,
    select_rows,
    split_rows,
    split_streams,
)

IOU_THRESHOLDS = (0.5, 0.1)
_FIGURE_SCORE = 0.3  # predicted boxes drawn in the figure


def _check_input(model: keras.Model, shape: tuple[int, int, int], path: str) -> None:
    expected = tuple(model.input_shape[1:])
    if any(e is not None and e != s for e, s in zip(expected, shape)):
        raise ConfigError(
            f"{path}: fields of shape {shape} (H, W, C), but the model takes {expected}; set "
            f"model.config.input_shape={list(shape)} (e.g. --set "
            f"model.config.input_shape=[{shape[0]},{shape[1]},{shape[2]}])"
        )


def _savefig(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Patch classification (Liu et al. 2016)


class ClimatePatchClassification(Task):
    name = "climate_patch_classification"
    model_outputs = {"probabilities": None}

    def open(self, path: str, data_cfg: dict) -> ClimatePatches:
        return open_patches(path)

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """The patches in physical units, channels-last (the file's NCHW transposed)."""
        patches = self.open(path, data_cfg)
        block = patches.source.read(rows[0], min(rows[1], patches.num_patches))
        x, y = patches.to_example(block)
        return {"inputs": x, "labels": y.astype(np.int64)}

    def model_config(self, path: str, data_cfg: dict) -> dict[str, Any]:
        patches = self.open(path, data_cfg)
        return {"input_shape": list(patches.patch_shape),
                "num_classes": len(patches.class_names), "channels": list(patches.channels)}

    def class_labels(self, path: str, data_cfg: dict) -> list[ClassLabels]:
        patches = open_patches(path)
        return [ClassLabels(path, "labels", patches.labels((0, patches.num_patches)),
                            patches.class_names)]

    def datasets(self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup,
                 seed: int, first_epoch: int) -> Datasets:
        patches = self.open(path, data_cfg)
        self.shape = patches.patch_shape
        train_rows, val_rows = split_rows(patches.num_patches, data_cfg["val_fraction"])
        return split_streams(patches.source, patches.to_example, train_rows, val_rows,
                             batch_size=batch_size, group=group, seed=seed,
                             first_epoch=first_epoch, shuffle=True, path=path, noun="patches",
                             block_rows=patches.block_rows)

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                cfg: dict) -> None:
        if hasattr(self, "shape"):
            _check_input(model, self.shape, "the data file")
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])

    def outputs(self, model: keras.Model, patches: ClimatePatches, data_cfg: dict,
                rows: tuple[int, int], group: ProcessGroup,
                batch_size: int = 256) -> dict[str, np.ndarray]:
        """Class probabilities and labels of ``rows``, computed shard-wise, on every rank."""
        classes = len(patches.class_names)

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            data = stream(patches.source, patches.to_example, rows=shard, batch_size=batch_size,
                          block_rows=patches.block_rows).map(lambda x, y: x)
            steps = -(-(shard[1] - shard[0]) // batch_size)
            probs = model.predict(data, steps=steps, verbose=0).astype(np.float32)
            return {"probabilities": probs, "label": patches.labels(shard).astype(np.int64)}

        return gather_shards(rows, group, compute, {"probabilities": ((classes,), "float32"),
                                                    "label": ((), "int64")})

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        patches = self.open(path, data_cfg)
        _check_input(model, patches.patch_shape, path)
        out = self.outputs(model, patches, data_cfg, (0, patches.num_patches), group)
        return {"probabilities": out["probabilities"]}

    def evaluate(self, model: keras.Model, path: str, data_cfg: dict, split: str,
                 output_dir: str | None, group: ProcessGroup) -> dict[str, Any]:
        from sklearn.metrics import confusion_matrix

        patches = self.open(path, data_cfg)
        _check_input(model, patches.patch_shape, path)
        rows = select_rows(patches.num_patches, data_cfg["val_fraction"], split)
        out = self.outputs(model, patches, data_cfg, rows, group)
        labels, predicted = out["label"], out["probabilities"].argmax(axis=1)
        names = patches.class_names
        matrix = confusion_matrix(labels, predicted, labels=list(range(len(names))))
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = matrix.diagonal() / matrix.sum(axis=1)
        event = patches.source.attrs().get("event", "")
        event = event.decode() if isinstance(event, bytes) else str(event)
        result: dict[str, Any] = {
            "patches": int(len(labels)),
            "event": event,
            "accuracy": float((predicted == labels).mean()),
            "chance_accuracy": float(np.bincount(labels).max() / len(labels)),
            "confusion_matrix": matrix.tolist(),
            "class_names": list(names),
            **{f"recall_{n}": float(r) for n, r in zip(names, recall) if np.isfinite(r)},
        }
        published = EVENT_TYPES[event].published_accuracy if event in EVENT_TYPES else None
        if published is not None:
            result["published_accuracy"] = published
        if output_dir:
            plot_confusion(matrix, names, result, os.path.join(output_dir, "confusion.png"))
        return result


def plot_confusion(matrix: np.ndarray, names: tuple[str, ...], result: dict, path: str) -> None:
    """Row-normalised confusion matrix with the counts, titled with the accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(names), 1.2 + 1.0 * len(names)))
    rows = matrix.sum(axis=1, keepdims=True)
    ax.imshow(matrix / np.maximum(rows, 1), vmin=0, vmax=1, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    reference = (f" (Liu et al. 2016: {result['published_accuracy']:.1%})"
                 if "published_accuracy" in result else "")
    ax.set_title(f"{result['event'] or 'patches'}: accuracy {result['accuracy']:.1%}{reference}",
                 fontsize=9)
    _savefig(fig, path)


# ----------------------------------------------------------------------------------------------
# Semi-supervised detection (Racah et al. 2017)


def yolo_loss(coord_weight: float = 5.0, size_weight: float = 7.0,
              noobject_weight: float = 0.5):
    """The detection loss of Racah et al. 2017 (hur-detect's ``get_detec_loss``), per image.

    Target (gh, gw, 7) from :func:`encode_targets`: has_object, ty, tx, th, tw, class,
    labelled. On cells with a box: ``coord_weight`` x smooth-L1 of the centre offset,
    ``size_weight`` x smooth-L1 of the size, -log p(object) and the class cross-entropy; on the
    others ``noobject_weight`` x -log p(no object); summed over cells. Unlabelled images give 0,
    and the batch mean is taken over the labelled images only, so that the detection term has
    the same scale whatever share of the batch is unlabelled.
    """

    def smooth_l1(d):
        a = ops.abs(d)
        return ops.where(a < 1.0, 0.5 * d * d, a - 0.5)

    def loss(y_true, y_pred):
        eps = 1e-7
        has_object = y_true[..., 0]
        labelled = y_true[:, 0, 0, 6]
        coord = ops.sum(smooth_l1(y_pred[..., 0:2] - y_true[..., 1:3]), axis=-1)
        size = ops.sum(smooth_l1(y_pred[..., 2:4] - y_true[..., 3:5]), axis=-1)
        classes = ops.one_hot(ops.cast(y_true[..., 5], "int32"), ops.shape(y_pred)[-1] - 6)
        class_nll = -ops.log(ops.sum(classes * y_pred[..., 6:], axis=-1) + eps)
        on_object = (coord_weight * coord + size_weight * size
                     - ops.log(y_pred[..., 5] + eps) + class_nll)
        off_object = -noobject_weight * ops.log(y_pred[..., 4] + eps)
        per_image = ops.sum(has_object * on_object + (1 - has_object) * off_object, axis=(1, 2))
        batch = ops.cast(ops.shape(labelled)[0], per_image.dtype)
        return per_image * labelled * batch / ops.maximum(ops.sum(labelled), 1.0)

    return loss


def encode_targets(boxes: np.ndarray, image_shape: tuple[int, int], cell: int,
                   size: str = "linear", classes: Sequence[int] | None = None) -> np.ndarray:
    """Grid targets (n, gh, gw, 7) of a batch of box tables (n, rows, 5): the grid encoding of
    :func:`modelzoo.climate.boxes.encode` plus the per-image "labelled" flag (has boxes).
    ``classes``: encode only the boxes of these classes (one head's share); the flag still
    says whether the image has any box, so the other classes' cells count as "no object"."""
    grid = (image_shape[0] // cell, image_shape[1] // cell)
    targets = np.zeros((len(boxes), *grid, boxes_lib.TARGET_CHANNELS), np.float32)
    for k, table in enumerate(boxes):
        valid = boxes_lib.valid_rows(table)
        kept = table if classes is None else table[valid & np.isin(table[:, 4], classes)]
        targets[k, ..., :6] = boxes_lib.encode(kept, grid, cell, size)
        targets[k, ..., 6] = float(valid.any())
    return targets


def head_classes(data_cfg: dict, num_classes: int = len(boxes_lib.CLASS_NAMES)
                 ) -> tuple[list[int], list[int]]:
    """(classes of the fine head, classes of the coarse head) under ``data.coarse_classes``."""
    coarse = sorted(int(c) for c in data_cfg.get("coarse_classes") or [])
    return [c for c in range(num_classes) if c not in coarse], coarse


class ClimateDetection(Task):
    name = "climate_detection"
    model_outputs = {"detection": "detection"}

    def open(self, path: str, data_cfg: dict) -> ExtremeWeatherImages:
        images = open_extreme_weather(path, box_order=data_cfg["box_order"])
        h, w, _ = images.image_shape
        cell = int(data_cfg["grid_cell"])
        if cell < 1 or h % cell or w % cell:
            raise ConfigError(
                f"{path}: images of {h} x {w} pixels do not divide into data.grid_cell={cell} "
                "cells; the cell is 2 ** (stride-2 encoder layers): set both, e.g. --set "
                "data.grid_cell=8 --model-config 'filters=[16,32,64]'")
        coarse_cell = int(data_cfg.get("coarse_cell") or 0)
        if data_cfg.get("coarse_classes"):
            _, coarse = head_classes(data_cfg)
            if any(not 0 <= c < len(boxes_lib.CLASS_NAMES) for c in coarse):
                raise ConfigError(f"data.coarse_classes {coarse} must be class numbers 0.."
                                  f"{len(boxes_lib.CLASS_NAMES) - 1}")
            if coarse_cell <= cell or coarse_cell % cell or h % coarse_cell or w % coarse_cell:
                raise ConfigError(
                    f"data.coarse_classes needs data.coarse_cell, the coarse head's cell "
                    f"(2 ** len(model.config.filters)): a multiple of data.grid_cell={cell} "
                    f"that divides {h} x {w}; got {coarse_cell}")
        if data_cfg.get("box_size", "linear") not in boxes_lib.BOX_SIZES:
            raise ConfigError(f"data.box_size must be one of {boxes_lib.BOX_SIZES}, got "
                              f"{data_cfg['box_size']!r}")
        return images

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        """The fields in physical units, channels-last (the file's NCHW transposed), and the
        standardised fields the reconstruction aims at."""
        images = self.open(path, data_cfg)
        fields = images.fields(images.source.read(rows[0], min(rows[1], images.num_images),
                                                  ["images"]))
        return {"inputs": fields, "targets": standardize(fields, images.channels)}

    def model_config(self, path: str, data_cfg: dict) -> dict[str, Any]:
        images = self.open(path, data_cfg)
        return {"input_shape": list(images.image_shape), "channels": list(images.channels)}

    def datasets(self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup,
                 seed: int, first_epoch: int) -> Datasets:
        images = self.open(path, data_cfg)
        self.shape, self.cell = images.image_shape, int(data_cfg["grid_cell"])
        train_rows, val_rows = split_rows(images.num_images, data_cfg["val_fraction"])
        size = data_cfg.get("box_size", "linear")
        fine, coarse = head_classes(data_cfg)
        self.coarse_cell = int(data_cfg.get("coarse_cell") or 0) if coarse else 0

        def to_example(block):
            x, table = images.fields(block), images.boxes_of(block)
            targets = [encode_targets(table, self.shape, self.cell, size,
                                      fine if coarse else None)]
            if coarse:
                targets.append(encode_targets(table, self.shape, self.coarse_cell, size, coarse))
            return (x, *targets, standardize(x, images.channels))

        streams = split_streams(images.source, to_example, train_rows, val_rows,
                                batch_size=batch_size, group=group, seed=seed,
                                first_epoch=first_epoch, shuffle=True, path=path, noun="images",
                                block_rows=images.block_rows)

        def as_outputs(x, *targets):  # the heads: detection (and coarse), reconstruction
            named = dict(zip(("detection", "detection_coarse")[:len(targets) - 1], targets))
            return x, {**named, "reconstruction": targets[-1]}

        streams.train = streams.train.map(as_outputs)
        if streams.validation is not None:
            streams.validation = streams.validation.map(as_outputs)
        return streams

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                cfg: dict) -> None:
        if hasattr(self, "shape"):
            _check_input(model, self.shape, "the data file")
            grid = tuple(model.get_layer("detection").output.shape[1:3])
            if grid != (self.shape[0] // self.cell, self.shape[1] // self.cell):
                raise ConfigError(
                    f"data.grid_cell={self.cell} makes a {self.shape[0] // self.cell} x "
                    f"{self.shape[1] // self.cell} grid, the model's is {grid[0]} x {grid[1]}; "
                    "set data.grid_cell to 2 ** len(model.config.filters)"
                )
            has_coarse = "detection_coarse" in model.output_names
            if bool(self.coarse_cell) != has_coarse:
                raise ConfigError(
                    "data.coarse_classes and model.config.coarse_head go together: set both "
                    "(e.g. --set 'data.coarse_classes=[2,3]' --set data.coarse_cell=8 "
                    "--set model.config.coarse_head=true) or neither")
        weights = cfg["loss"]
        detection = yolo_loss(weights["coord_weight"], weights["size_weight"],
                              weights["noobject_weight"])
        heads = [n for n in ("detection", "detection_coarse") if n in model.output_names]
        model.compile(
            optimizer=optimizer,
            loss={**{n: detection for n in heads}, "reconstruction": "mean_squared_error"},
            loss_weights={**{n: 1.0 for n in heads},
                          "reconstruction": float(weights["reconstruction_weight"])},
        )

    def outputs(self, model: keras.Model, images: ExtremeWeatherImages, data_cfg: dict,
                rows: tuple[int, int], group: ProcessGroup,
                batch_size: int = 8) -> dict[str, np.ndarray]:
        """The detection grid the model outputs, the detections decoded from it (n, k, 6; -1
        padded), ground truth (n, rows, 5) and each image's reconstruction error."""
        cell, k = int(data_cfg["grid_cell"]), int(data_cfg["max_detections"])
        fine, coarse = head_classes(data_cfg)
        heads = [("detection", cell, fine)]
        if "detection_coarse" in model.output_names:
            if not coarse:
                raise ConfigError("the model has a coarse head but data.coarse_classes is empty")
            heads.append(("detection_coarse", int(data_cfg["coarse_cell"]), coarse))

        def decoded(out: dict, index: int) -> np.ndarray:
            """The image's detections, each head contributing its own classes, best first."""
            found = []
            for name, head_cell, classes in heads:
                dets = boxes_lib.detections(
                    np.asarray(out[name][index], np.float64), head_cell,
                    score_threshold=float(data_cfg["score_threshold"]),
                    nms_iou=float(data_cfg["nms_iou"]), max_detections=k,
                    size=data_cfg.get("box_size", "linear"))
                found.append(dets if len(heads) == 1 else dets[np.isin(dets[:, 4], classes)])
            dets = np.concatenate(found)
            return dets[np.argsort(-dets[:, 5], kind="stable")][:k]

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            found, errors, grids = [], [], []
            for start in range(shard[0], shard[1], batch_size):
                block = images.source.read(start, min(start + batch_size, shard[1]), ["images"])
                fields = images.fields(block)
                out = model.predict_on_batch(fields)
                target = standardize(fields, images.channels)
                grids.append(np.asarray(out["detection"], np.float32))
                errors.append(np.mean((out["reconstruction"] - target) ** 2, axis=(1, 2, 3)))
                for index in range(len(fields)):
                    table = np.full((k, 6), -1.0)
                    dets = decoded(out, index)
                    table[: len(dets)] = dets
                    found.append(table)
            return {"detection": np.concatenate(grids), "detections": np.stack(found),
                    "truth": images.boxes(shard), "reconstruction_mse": np.concatenate(errors)}

        rows_per_image = images.source._file()["boxes"].shape[1]
        grid = tuple(model.get_layer("detection").output.shape[1:])
        return gather_shards(rows, group, compute, {
            "detection": (grid, "float32"),
            "detections": ((k, 6), "float64"), "truth": ((rows_per_image, 5), "float64"),
            "reconstruction_mse": ((), "float64")})

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        images = self.open(path, data_cfg)
        _check_input(model, images.image_shape, path)
        out = self.outputs(model, images, data_cfg, (0, images.num_images), group)
        return {"detection": out["detection"], "detections": out["detections"].astype(np.float32),
                "reconstruction_mse": out["reconstruction_mse"]}

    def evaluate(self, model: keras.Model, path: str, data_cfg: dict, split: str,
                 output_dir: str | None, group: ProcessGroup) -> dict[str, Any]:
        images = self.open(path, data_cfg)
        _check_input(model, images.image_shape, path)
        rows = select_rows(images.num_images, data_cfg["val_fraction"], split)
        out = self.outputs(model, images, data_cfg, rows, group)
        labelled = (out["truth"][..., 4] >= 0).any(axis=1)
        if not labelled.any():
            raise ConfigError(f"{path}: no labelled image among rows {rows}; AP needs boxes")
        dets = [d[d[:, 4] >= 0] for d in out["detections"][labelled]]
        truth = [t[t[:, 4] >= 0] for t in out["truth"][labelled]]
        names = boxes_lib.CLASS_NAMES
        result: dict[str, Any] = {
            "images": int(len(labelled)), "labelled_images": int(labelled.sum()),
            **{f"boxes_{n}": int(sum((t[:, 4] == c).sum() for t in truth))
               for c, n in enumerate(names)},
            "reconstruction_mse": float(out["reconstruction_mse"].mean()),
        }
        replicates = int(data_cfg.get("bootstrap_replicates", 1000))
        for threshold in IOU_THRESHOLDS:
            tag = f"{threshold:g}".replace("0.", "")
            m_ap, per_class = mean_average_precision(dets, truth, len(names), threshold)
            result[f"map_{tag}"] = m_ap
            result.update({f"ap_{tag}_{n}": ap for n, ap in zip(names, per_class)
                           if not np.isnan(ap)})
            if replicates:
                draws = bootstrap_map([dets], truth, len(names), threshold, replicates)[0]
                for k, key in enumerate([f"ap_{tag}_{n}" for n in names] + [f"map_{tag}"]):
                    if key in result:
                        low, high = np.nanpercentile(draws[:, k], [2.5, 97.5])
                        result[f"{key}_interval"] = [float(low), float(high)]
        if output_dir:
            first = np.flatnonzero(labelled)[:4]
            fields = np.concatenate([images.source.read(rows[0] + i, rows[0] + i + 1,
                                                        ["images"])["images"] for i in first])
            plot_detections(fields, images.channels, out["truth"][first],
                            out["detections"][first], os.path.join(output_dir,
                                                                   "detections.png"))
        return result


def plot_detections(fields: np.ndarray, channels: tuple[str, ...], truth: np.ndarray,
                    found: np.ndarray, path: str, channel: str = "TMQ") -> None:
    """Seed figure 7: a field (TMQ; PSL contours) of each image with the ground-truth boxes in
    green and the predicted boxes (score >= 0.3) in red, labelled by class and score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(fields)
    h, w = fields.shape[2:]
    fig, axes = plt.subplots(n, 1, figsize=(7, 0.4 + 4.6 * n * h / w), squeeze=False)
    short = ("TD", "TC", "ETC", "AR")
    for ax, image, gt, det in zip(axes[:, 0], fields, truth, found):
        ax.imshow(image[channels.index(channel)] if channel in channels else image[0],
                  origin="lower", cmap="viridis")
        if "PSL" in channels:
            ax.contour(image[channels.index("PSL")], levels=8, colors="white", linewidths=0.4)
        for ymin, xmin, ymax, xmax, cls in gt[gt[:, 4] >= 0]:
            ax.add_patch(plt.Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin,
                                       fill=False, ec="lime", lw=1.5))
            ax.text(xmin, ymax, short[int(cls)], color="lime", fontsize=7, va="bottom")
        for ymin, xmin, ymax, xmax, cls, score in det[(det[:, 4] >= 0)
                                                      & (det[:, 5] >= _FIGURE_SCORE)]:
            ax.add_patch(plt.Rectangle((xmin - 0.5, ymin - 0.5), xmax - xmin, ymax - ymin,
                                       fill=False, ec="red", lw=1.2, ls="--"))
            ax.text(xmax, ymin, f"{short[int(cls)]} {score:.2f}", color="red", fontsize=7,
                    ha="right", va="top")
        ax.set_axis_off()
    axes[0, 0].set_title(f"{channel} with ground truth (green) and predictions (red)", fontsize=9)
    _savefig(fig, path)

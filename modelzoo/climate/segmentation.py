"""Pixel segmentation of tropical cyclones and atmospheric rivers (DeepCAM) and its comparison.

* ``climate_segmentation`` (``climate_segmenter``) trains on a DeepCAM folder
  (:mod:`modelzoo.climate.deepcam`) with DeepCAM's class-weighted cross-entropy: the weight of
  class ``c`` is ``frequency_c ** power`` (the MLPerf reference: frequencies 0.986, 0.00046,
  0.0133 of background, cyclone and river pixels in CAM5, power -0.125).
* Evaluation: intersection over union per class and their mean over the three classes (DeepCAM's
  score; MLPerf HPC's target is 0.82 on CAM5, quoted as context, not as a claim for synthetic
  fields), with bootstrap intervals over samples, next to the threshold baseline a climate
  scientist would try first (:func:`threshold_baseline`).
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
from keras import ops

from modelzoo.climate.deepcam import SEGMENT_CLASSES, DeepCAMFolder, open_deepcam
from modelzoo.climate.masks import (
    ATMOSPHERIC_RIVER,
    GALE_WIND,
    IVT_THRESHOLD,
    TROPICAL_CYCLONE,
)
from modelzoo.climate.task import _check_input
from modelzoo.distributed import ProcessGroup
from modelzoo.errors import ConfigError
from modelzoo.tasks import Datasets, Task, gather_shards, select_rows, split_rows, split_streams

# Pixel frequencies of background, cyclone and river in DeepCAM's CAM5 labels (MLPerf HPC
# reference) and the power that turns them into class weights.
DEEPCAM_FREQUENCIES = (0.986267818390377, 0.0004578708870701058, 0.01327431072255291)
DEEPCAM_WEIGHT_POWER = -0.125
DEEPCAM_TARGET_IOU = 0.82
KM_PER_DEGREE = 111.2


def class_weights(frequencies=DEEPCAM_FREQUENCIES, power: float = DEEPCAM_WEIGHT_POWER):
    """DeepCAM's per-class loss weights ``frequency ** power``."""
    return [float(f) ** power for f in frequencies]


def weighted_crossentropy(weights):
    """Per-pixel cross-entropy of the true class's probability times its class weight, averaged
    over pixels (PyTorch's ``CrossEntropyLoss(weight, reduction='none')`` then the mean, as the
    DeepCAM reference takes it)."""
    weights = [float(w) for w in weights]

    def loss(y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        probs = ops.cast(y_pred, "float32")
        picked = ops.take_along_axis(probs, ops.expand_dims(labels, -1), axis=-1)[..., 0]
        pixel_weight = ops.take(ops.convert_to_tensor(weights, "float32"), labels)
        return ops.mean(-pixel_weight * ops.log(ops.maximum(picked, 1e-7)), axis=(1, 2))

    return loss


# ----------------------------------------------------------------------------------------------
# Intersection over union


def confusion_counts(truth: np.ndarray, predicted: np.ndarray,
                     num_classes: int = len(SEGMENT_CLASSES)) -> np.ndarray:
    """Per sample and class: (intersection, union) pixel counts, shape (n, 2, classes)."""
    truth = np.asarray(truth).reshape(len(truth), -1)
    predicted = np.asarray(predicted).reshape(len(predicted), -1)
    counts = np.zeros((len(truth), 2, num_classes), np.int64)
    for c in range(num_classes):
        t, p = truth == c, predicted == c
        counts[:, 0, c] = (t & p).sum(axis=1)
        counts[:, 1, c] = (t | p).sum(axis=1)
    return counts


def iou_from_counts(counts: np.ndarray) -> np.ndarray:
    """Per-class IoU of summed (n, 2, classes) counts (NaN for a class absent from both)."""
    total = counts.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total[1] > 0, total[0] / total[1], np.nan)


def _iou_scores(counts: np.ndarray) -> np.ndarray:
    """Per-class IoU, their mean and the mean over the event classes of (n, 2, classes)."""
    per_class = iou_from_counts(counts)
    return np.r_[per_class, np.nanmean(per_class), np.nanmean(per_class[1:])]


def iou_table(counts: np.ndarray, replicates: int = 1000, seed: int = 0,
              names: tuple[str, ...] = SEGMENT_CLASSES, prefix: str = "",
              other: np.ndarray | None = None) -> dict[str, Any]:
    """Per-class IoU, the mean over classes (DeepCAM's score) and the mean over the event
    classes, each with a 95% bootstrap percentile interval over samples (Efron & Tibshirani
    1993): resampling whole samples keeps the pixels of one field together. Keys start with
    ``prefix``. ``other``: counts of another prediction on the same samples; the table is then
    of the differences (``counts``' IoU minus ``other``'s), resampled in pairs."""
    def scores(rows: np.ndarray) -> np.ndarray:
        value = _iou_scores(counts[rows])
        return value if other is None else value - _iou_scores(other[rows])

    point = scores(np.arange(len(counts)))
    rng = np.random.default_rng(seed)
    draws = np.array([scores(rng.integers(0, len(counts), len(counts)))
                      for _ in range(replicates)])
    keys = [f"{prefix}iou_{n}" for n in names] + [f"{prefix}mean_iou", f"{prefix}mean_iou_events"]
    table: dict[str, Any] = {}
    for k, key in enumerate(keys):
        if np.isnan(point[k]):
            continue
        table[key] = float(point[k])
        if replicates:
            low, high = np.nanpercentile(draws[:, k], [2.5, 97.5])
            table[f"{key}_interval"] = [float(low), float(high)]
    return table


# ----------------------------------------------------------------------------------------------
# The threshold baseline


def _lat(height: int, lat_range: tuple[float, float]) -> np.ndarray:
    step = (lat_range[1] - lat_range[0]) / height
    return lat_range[0] + (np.arange(height) + 0.5) * step


def threshold_baseline(data: np.ndarray, channels: tuple[str, ...],
                       lat_range: tuple[float, float] = (-90.0, 90.0),
                       lon_range: tuple[float, float] = (0.0, 360.0),
                       tc_max_lat: float = 35.0, min_pressure_drop: float = 500.0,
                       ar_min_length_km: float = 2000.0) -> np.ndarray:
    """Labels (n, H, W) a climate scientist would draw from thresholds alone, no learning.

    * Cyclone: surface wind (UBOT, VBOT) at least gale force (17 m/s) where sea-level pressure
      lies ``min_pressure_drop`` Pa below its surroundings (PSL minus its ~2,000 km running
      mean): the pressure-minimum criterion, equatorward of ``tc_max_lat``.
    * River: IVT ~ TMQ x |V850| at least 250 kg/m/s in a connected region at least
      ``ar_min_length_km`` long and twice as long as wide (Ralph et al. 2004's geometry).
    """
    from scipy import ndimage

    index = {c: k for k, c in enumerate(channels)}
    missing = [c for c in ("UBOT", "VBOT", "PSL", "TMQ", "U850", "V850") if c not in index]
    if missing:
        raise ConfigError(f"the threshold baseline needs channels {missing}; the data has "
                          f"{list(channels)}")
    n, height, width, _ = data.shape
    lat = _lat(height, lat_range)[:, None] + np.zeros((1, width))
    dy = (lat_range[1] - lat_range[0]) / height * KM_PER_DEGREE
    dx = (lon_range[1] - lon_range[0]) / width * KM_PER_DEGREE * np.cos(np.radians(lat))
    window = (max(3, int(2000 / dy) | 1), max(3, int(2000 / max(dx.mean(), 1.0)) | 1))
    out = np.zeros((n, height, width), np.int32)
    for k, sample in enumerate(np.asarray(data, np.float64)):
        ivt = sample[..., index["TMQ"]] * np.hypot(sample[..., index["U850"]],
                                                   sample[..., index["V850"]])
        regions, count = ndimage.label(ivt >= IVT_THRESHOLD)
        for r, where in enumerate(ndimage.find_objects(regions), start=1):
            inside = regions[where] == r
            rows, cols = np.nonzero(inside)
            north = (rows.max() - rows.min() + 1) * dy
            east = (cols.max() - cols.min() + 1) * dx[where][inside].mean()
            length = np.hypot(north, east)
            area = inside.sum() * dy * dx[where][inside].mean()
            if length >= ar_min_length_km and length >= 2 * area / length:
                out[k][where][inside] = ATMOSPHERIC_RIVER
        psl = sample[..., index["PSL"]]
        drop = ndimage.uniform_filter(psl, window, mode=("nearest", "wrap")) - psl
        wind = np.hypot(sample[..., index["UBOT"]], sample[..., index["VBOT"]])
        cyclone = (wind >= GALE_WIND) & (drop >= min_pressure_drop) & (np.abs(lat) <= tc_max_lat)
        out[k][cyclone] = TROPICAL_CYCLONE
    return out


# ----------------------------------------------------------------------------------------------
# The task


def _domain(folder: DeepCAMFolder) -> tuple[tuple[float, float], tuple[float, float]]:
    """The grid's (lat_range, lon_range) from the first sample's attributes (the generator
    writes them), else the whole globe as in DeepCAM."""
    import h5py

    with h5py.File(folder.files[0], "r") as handle:
        lat = tuple(float(v) for v in handle.attrs.get("lat_range", (-90.0, 90.0)))
        lon = tuple(float(v) for v in handle.attrs.get("lon_range", (0.0, 360.0)))
    return lat, lon


class ClimateSegmentation(Task):
    name = "climate_segmentation"
    tune_monitor = "val_loss"
    model_outputs = {"probabilities": None}

    def open(self, path: str, data_cfg: dict) -> DeepCAMFolder:
        from modelzoo.hdf5 import _process_shard

        return open_deepcam(path, **dict(zip(("rank", "size"), _process_shard())))

    def model_config(self, path: str, data_cfg: dict) -> dict[str, Any]:
        folder = self.open(path, data_cfg)
        config: dict[str, Any] = {"input_shape": list(folder.sample_shape)}
        scaling = folder.scaling()
        if scaling is not None:
            config["channel_shift"], config["channel_scale"] = scaling
        return config

    def datasets(self, path: str, data_cfg: dict, batch_size: int, group: ProcessGroup,
                 seed: int, first_epoch: int) -> Datasets:
        folder = self.open(path, data_cfg)
        train_rows, val_rows = split_rows(folder.num_rows, data_cfg["val_fraction"])
        return split_streams(folder, lambda block: (block["data"], block["labels"]),
                             train_rows, val_rows, batch_size=batch_size, group=group,
                             seed=seed, first_epoch=first_epoch, shuffle=True, path=path,
                             noun="samples", block_rows=1)

    def compile(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                cfg: dict) -> None:
        loss_cfg = cfg.get("loss", {})
        weights = class_weights(loss_cfg.get("class_frequencies", DEEPCAM_FREQUENCIES),
                                float(loss_cfg.get("weight_power", DEEPCAM_WEIGHT_POWER)))
        model.compile(optimizer=optimizer, loss=weighted_crossentropy(weights),
                      metrics=[keras.metrics.MeanIoU(len(weights), sparse_y_pred=False,
                                                     name="mean_iou")])

    def inputs(self, path: str, data_cfg: dict, rows: tuple[int, int]) -> dict[str, np.ndarray]:
        folder = self.open(path, data_cfg)
        block = folder.read(rows[0], min(rows[1], folder.num_rows))
        return {"inputs": block["data"], "masks": block["labels"]}

    def outputs(self, model: keras.Model, folder: DeepCAMFolder, data_cfg: dict,
                rows: tuple[int, int], group: ProcessGroup,
                batch_size: int = 4) -> dict[str, np.ndarray]:
        """Per sample of ``rows``: the model's class probabilities, its labels (argmax), the
        threshold baseline's, the truth and both IoU counts, computed shard-wise and gathered
        on every rank."""
        lat_range, lon_range = _domain(folder)
        h, w, _ = folder.sample_shape
        classes = len(SEGMENT_CLASSES)

        def compute(shard: tuple[int, int]) -> dict[str, np.ndarray]:
            parts: dict[str, list[np.ndarray]] = {"probabilities": [], "predicted": [],
                                                  "baseline": [], "truth": []}
            for start in range(shard[0], shard[1], batch_size):
                block = folder.read(start, min(start + batch_size, shard[1]))
                probs = np.asarray(model.predict_on_batch(block["data"]), np.float32)
                parts["probabilities"].append(probs)
                parts["predicted"].append(np.argmax(probs, axis=-1).astype(np.int32))
                parts["baseline"].append(threshold_baseline(block["data"], folder.channels,
                                                            lat_range, lon_range))
                parts["truth"].append(block["labels"])
            out = {k: np.concatenate(v) for k, v in parts.items()}
            out["model_counts"] = confusion_counts(out["truth"], out["predicted"], classes)
            out["baseline_counts"] = confusion_counts(out["truth"], out["baseline"], classes)
            return out

        return gather_shards(rows, group, compute, {
            "probabilities": ((h, w, classes), "float32"), "predicted": ((h, w), "int32"),
            "baseline": ((h, w), "int32"), "truth": ((h, w), "int32"),
            "model_counts": ((2, classes), "int64"), "baseline_counts": ((2, classes), "int64")})

    def predict(self, model: keras.Model, path: str, data_cfg: dict,
                group: ProcessGroup) -> dict[str, np.ndarray]:
        folder = self.open(path, data_cfg)
        _check_input(model, folder.sample_shape, path)
        out = self.outputs(model, folder, data_cfg, (0, folder.num_rows), group)
        return {"probabilities": out["probabilities"], "labels": out["predicted"]}

    def evaluate(self, model: keras.Model, path: str, data_cfg: dict, split: str,
                 output_dir: str | None, group: ProcessGroup) -> dict[str, Any]:
        folder = self.open(path, data_cfg)
        _check_input(model, folder.sample_shape, path)
        rows = select_rows(folder.num_rows, data_cfg["val_fraction"], split)
        out = self.outputs(model, folder, data_cfg, rows, group)
        replicates = int(data_cfg.get("bootstrap_replicates", 1000))
        pixels = out["truth"].size
        result: dict[str, Any] = {
            "samples": int(rows[1] - rows[0]),
            **{f"pixel_fraction_{n}": float((out["truth"] == c).sum() / pixels)
               for c, n in enumerate(SEGMENT_CLASSES)},
            **iou_table(out["model_counts"], replicates),
            **iou_table(out["baseline_counts"], replicates, prefix="baseline_"),
            **iou_table(out["model_counts"], replicates, prefix="over_baseline_",
                        other=out["baseline_counts"]),
            **iou_table(confusion_counts(out["truth"], np.zeros_like(out["truth"])), 0,
                        prefix="all_background_"),
            "deepcam_target_iou_on_cam5": DEEPCAM_TARGET_IOU,
        }
        if output_dir:  # rank 0's staging folder; the core writes metrics.json
            first = min(3, len(out["truth"]))
            data = folder.read(rows[0], rows[0] + first, ["data"])["data"]
            plot_masks(data, folder.channels, out["truth"][:first], out["predicted"][:first],
                       os.path.join(output_dir, "masks.png"), baseline=out["baseline"][:first])
        return result


def plot_masks(data: np.ndarray, channels: tuple[str, ...], truth: np.ndarray,
               predicted: np.ndarray, path: str, baseline: np.ndarray | None = None,
               channel: str = "TMQ") -> None:
    """Per sample: a field (TMQ), the true mask, the predicted mask (and the baseline's),
    cyclones red and rivers blue, with each panel's mean IoU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["white", "red", "royalblue"])
    panels = [("true mask", truth), ("segmenter", predicted)]
    if baseline is not None:
        panels.append(("threshold baseline", baseline))
    n, (h, w) = len(data), truth.shape[1:]
    fig, axes = plt.subplots(n, 1 + len(panels), squeeze=False,
                             figsize=(3.2 * (1 + len(panels)), 0.5 + 3.2 * n * h / w))
    for row, sample in enumerate(data):
        ax = axes[row, 0]
        ax.imshow(sample[..., channels.index(channel) if channel in channels else 0],
                  origin="lower", cmap="viridis")
        ax.set_title(channel, fontsize=8)
        for col, (title, masks) in enumerate(panels, start=1):
            ax = axes[row, col]
            ax.imshow(masks[row], origin="lower", cmap=cmap, vmin=0, vmax=2,
                      interpolation="nearest")
            if col > 1:
                score = np.nanmean(iou_from_counts(confusion_counts(truth[row:row + 1],
                                                                    masks[row:row + 1])))
                title = f"{title}: mean IoU {score:.2f}"
            ax.set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Centred patches of one event type cut from an ExtremeWeather file (Liu et al. 2016's task).

Every box of the event's classes gives one patch centred on the box (moved inside the image at
its edges); no-event patches are cut at random places whose window holds no box of those
classes (more than 10% of a box's area inside the window counts as holding it). Labels: 0 = no
event, k = the k-th of the event's classes. Rows are shuffled (seeded), so the tail split of
training is a random split. Unlabelled images (no boxes) give no patches.

The event presets follow Liu et al. 2016's data (patch size at the published 768 x 1152 grid,
variables): tropical cyclones 32 x 32 with 8 variables, atmospheric rivers 148 x 224 with TMQ
and the land mask, weather fronts 27 x 60 with precipitation, pressure and temperature (the
synthetic fronts trail from the extratropical cyclones, so their boxes locate them). ``all``
is the multi-class variant over the four ExtremeWeather classes (give its size).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from modelzoo.climate.boxes import CLASS_NAMES, valid_rows
from modelzoo.climate.reader import CHANNELS, LAND_MASK, open_extreme_weather
from modelzoo.errors import ConfigError, DataError
from modelzoo.parallel import GeneratorReport, generated_file, generator_arguments


@dataclass(frozen=True)
class EventType:
    classes: tuple[int, ...]
    patch_size: tuple[int, int]
    channels: tuple[str, ...]
    published_accuracy: float | None  # Liu et al. 2016 (not verified against the tables)


EVENT_TYPES = {
    "tropical_cyclone": EventType((1,), (32, 32), ("PSL", "U850", "V850", "UBOT", "VBOT",
                                                   "TMQ", "T200", "T500"), 0.99),
    "atmospheric_river": EventType((3,), (148, 224), ("TMQ", LAND_MASK), 0.90),
    "weather_front": EventType((2,), (27, 60), ("PRECT", "PSL", "TREFHT"), 0.894),
    "all": EventType((0, 1, 2, 3), (32, 32), CHANNELS, None),
}


def _window(centre: float, size: int, extent: int) -> int:
    """First index of a ``size`` window centred on ``centre``, kept inside ``[0, extent)``."""
    return int(min(max(round(centre - size / 2), 0), extent - size))


def _holds_event(y0: int, x0: int, size: tuple[int, int], boxes: np.ndarray) -> bool:
    if not len(boxes):
        return False
    h = np.clip(np.minimum(boxes[:, 2], y0 + size[0]) - np.maximum(boxes[:, 0], y0), 0, None)
    w = np.clip(np.minimum(boxes[:, 3], x0 + size[1]) - np.maximum(boxes[:, 1], x0), 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return bool((h * w > 0.1 * area).any())


def extract_patches(
    images_path: str | os.PathLike, output: str | os.PathLike, *,
    event: str = "tropical_cyclone", patch_size: tuple[int, int] | None = None,
    channels: tuple[str, ...] | None = None, negatives_per_event: float = 1.0,
    box_order: str = "ymin_xmin_ymax_xmax", seed: int = 0, progress: bool = True,
) -> GeneratorReport:
    """Write the patch file of ``event`` (a key of :data:`EVENT_TYPES`) cut from
    ``images_path`` to ``output``: ``images`` (N, C, h, w) float32, ``labels`` (N,) int32."""
    arguments = generator_arguments(locals())
    if event not in EVENT_TYPES:
        raise ConfigError(f"event must be one of {sorted(EVENT_TYPES)}, got {event!r}")
    kind = EVENT_TYPES[event]
    size = tuple(int(s) for s in (patch_size or kind.patch_size))
    channels = tuple(channels or kind.channels)
    source = open_extreme_weather(images_path, box_order=box_order, check_finite=False)
    h, w, _ = source.image_shape
    if size[0] > h or size[1] > w or min(size) < 1:
        raise ConfigError(f"patch size {size} does not fit the {h} x {w} images of "
                          f"{os.fspath(images_path)}; pass a smaller patch size")
    with h5py.File(images_path, "r") as handle:
        land = handle["land_mask"][()] if "land_mask" in handle else None
    missing = [c for c in channels if c not in source.channels and c != LAND_MASK]
    if missing or (LAND_MASK in channels and (land is None or land.shape != (h, w))):
        raise DataError(
            f"{os.fspath(images_path)}: cannot cut channels {missing or [LAND_MASK]}; the file "
            f"has {list(source.channels)}"
            + ("" if land is not None else " and no dataset 'land_mask' (H, W)")
        )
    rng = np.random.default_rng([seed, 7])
    patches, labels = [], []
    for row in range(source.num_images):
        block = source.source.read(row, row + 1)
        boxes = source.boxes_of(block)[0]
        boxes = boxes[valid_rows(boxes)]
        if not len(boxes):
            continue  # unlabelled: its events are unknown
        fields = {c: block["images"][0, source.channels.index(c)] for c in source.channels}
        if land is not None:
            fields[LAND_MASK] = land
        stack = np.stack([fields[c] for c in channels])
        chosen = boxes[np.isin(boxes[:, 4], kind.classes)]

        windows = [(_window((ymin + ymax) / 2, size[0], h), _window((xmin + xmax) / 2, size[1], w),
                    1 + kind.classes.index(int(cls))) for ymin, xmin, ymax, xmax, cls in chosen]
        wanted = rng.poisson(negatives_per_event * max(1, len(chosen)) if len(kind.classes) == 1
                             else negatives_per_event * len(chosen))
        for _ in range(wanted):
            for _attempt in range(50):
                y0, x0 = rng.integers(0, h - size[0] + 1), rng.integers(0, w - size[1] + 1)
                if not _holds_event(y0, x0, size, chosen):
                    windows.append((int(y0), int(x0), 0))
                    break
        for y0, x0, label in windows:
            patches.append(stack[:, y0:y0 + size[0], x0:x0 + size[1]])
            labels.append(label)
    if not patches:
        raise DataError(f"{os.fspath(images_path)}: no labelled images to cut patches from")
    order = rng.permutation(len(patches))
    class_names = ["no_event"] + [CLASS_NAMES[c] for c in kind.classes]
    with generated_file(output, label="climate", noun=f"{event} patches", total=len(labels),
                        progress=progress,
                        arguments=arguments) as out:
        out.file.create_dataset("images", data=np.stack(patches)[order].astype(np.float32))
        out.file.create_dataset("labels", data=np.asarray(labels, np.int32)[order])
        out.file.attrs.update(
            channels=list(channels), event=event, class_names=class_names,
            patch_size=size, source=os.path.abspath(images_path), seed=seed,
        )
        out.advance(len(labels))
        counts = np.bincount(np.asarray(labels), minlength=len(class_names))
        out.details = {"patch_size": list(size), "per_class": dict(zip(class_names,
                                                                       counts.tolist()))}
    return out.report

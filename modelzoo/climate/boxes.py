"""Boxes of the ExtremeWeather layout and their encoding on the detector's coarse grid.

**The box convention (one, everywhere in this case).** A box row is
``(ymin, xmin, ymax, xmax, class)`` as the ExtremeWeather data set page states it: ``y`` runs
along the image's first spatial axis (768, latitude), ``x`` along the second (1152, longitude),
in pixel units, and the box covers rows ``ymin <= y < ymax`` and columns ``xmin <= x < xmax``
(continuous pixel-edge coordinates: pixel ``i`` spans ``[i, i + 1)``, so a box has height
``ymax - ymin`` and no "+1"). Rows filled with -1 are padding. Classes: 0 tropical depression,
1 tropical cyclone, 2 extratropical cyclone, 3 atmospheric river.
(The hur-detect converter builds rows from CSV columns in the order xmin, xmax, ymin, ymax;
:func:`reorder_boxes` reads that order too.)

**The grid encoding.** The detector sees the image on a grid of ``cell x cell`` pixel cells
(``cell = 2 ** encoder layers``). A box belongs to the cell holding its centre; the target of
that cell is ``(1, ty, tx, th, tw, class)`` with ``ty, tx`` the centre's offset inside the cell
in cell units ([0, 1)) and ``th, tw`` the box size in cell units (``size="linear"``, the
original's) or its square root (``size="sqrt"``, as YOLO v1 regresses it: an error of one unit
then weighs less on a large box than on a small one, so with fine cells the many-cell boxes of
rivers do not drown the few-cell cyclones). Decoding inverts this exactly. When two boxes
share a cell, the larger one is kept (YOLO v1 has one box per cell).

The detector's ``detection`` output has, per cell, 6 + classes channels:
``ty, tx, th, tw`` (box), ``p(no object), p(object)``, then the class probabilities.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("tropical_depression", "tropical_cyclone", "extratropical_cyclone",
               "atmospheric_river")
BOX_ORDERS = ("ymin_xmin_ymax_xmax", "xmin_xmax_ymin_ymax")
BOX_SIZES = ("linear", "sqrt")
MAX_BOXES = 15
BOX = slice(0, 4)
OBJECTNESS = 4  # channel of p(no object); p(object) follows
CLASSES = 6
TARGET_CHANNELS = 7  # has_object, ty, tx, th, tw, class, labelled


def reorder_boxes(boxes: np.ndarray, order: str) -> np.ndarray:
    """Rows of ``boxes`` (..., 5) in ``order`` as ``(ymin, xmin, ymax, xmax, class)``."""
    if order == "ymin_xmin_ymax_xmax":
        return boxes
    if order == "xmin_xmax_ymin_ymax":
        return boxes[..., [2, 0, 3, 1, 4]]
    raise ValueError(f"box order must be one of {BOX_ORDERS}, got {order!r}")


def valid_rows(boxes: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``boxes`` (..., 5) that are boxes, not -1 padding."""
    return boxes[..., 4] >= 0


def _check_size(size: str) -> None:
    if size not in BOX_SIZES:
        raise ValueError(f"box size encoding must be one of {BOX_SIZES}, got {size!r}")


def encode(boxes: np.ndarray, grid_shape: tuple[int, int], cell: int,
           size: str = "linear") -> np.ndarray:
    """Grid targets (gh, gw, 6) = ``has_object, ty, tx, th, tw, class`` of one image's boxes
    (rows ``(ymin, xmin, ymax, xmax, class)``, -1 padding allowed)."""
    _check_size(size)
    gh, gw = grid_shape
    target = np.zeros((gh, gw, 6), np.float64)
    area = np.zeros((gh, gw))
    for ymin, xmin, ymax, xmax, cls in np.asarray(boxes, np.float64)[valid_rows(boxes)]:
        cy, cx = (ymin + ymax) / 2 / cell, (xmin + xmax) / 2 / cell
        # A centre on the image's far edge belongs to the last cell.
        i, j = min(int(np.floor(cy)), gh - 1), min(int(np.floor(cx)), gw - 1)
        box_area = (ymax - ymin) * (xmax - xmin)
        if box_area <= area[i, j]:
            continue
        area[i, j] = box_area
        th, tw = (ymax - ymin) / cell, (xmax - xmin) / cell
        if size == "sqrt":
            th, tw = np.sqrt(th), np.sqrt(tw)
        target[i, j] = (1.0, cy - i, cx - j, th, tw, cls)
    return target


def decode(box: np.ndarray, cell: int, size: str = "linear") -> np.ndarray:
    """Pixel boxes (gh, gw, 4) = ``ymin, xmin, ymax, xmax`` of per-cell ``ty, tx, th, tw``."""
    _check_size(size)
    gh, gw = box.shape[:2]
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    cy, cx = (rows + box[..., 0]) * cell, (cols + box[..., 1]) * cell
    th, tw = (box[..., 2], box[..., 3]) if size == "linear" else (box[..., 2] ** 2,
                                                                   box[..., 3] ** 2)
    h, w = th * cell, tw * cell
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def target_boxes(target: np.ndarray, cell: int, size: str = "linear") -> np.ndarray:
    """The boxes (n, 5) a grid target from :func:`encode` holds, in row-major cell order."""
    occupied = target[..., 0] > 0
    corners = decode(target[..., 1:5], cell, size)[occupied]
    return np.concatenate([corners, target[..., 5][occupied][:, None]], axis=1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``a`` (n, >=4) and ``b`` (m, >=4), (n, m)."""
    a, b = np.asarray(a, np.float64)[:, None, :4], np.asarray(b, np.float64)[None, :, :4]
    h = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    w = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = h * w
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def detections(prediction: np.ndarray, cell: int, *, score_threshold: float = 0.05,
               nms_iou: float = 0.3, max_detections: int = 50,
               size: str = "linear") -> np.ndarray:
    """Boxes (k, 6) = ``ymin, xmin, ymax, xmax, class, score`` from one image's ``detection``
    output (gh, gw, 6 + classes), best first.

    A cell proposes one box per class, scored p(object) x p(class); boxes under
    ``score_threshold`` are dropped and greedy non-maximum suppression per class removes those
    overlapping a better one by more than ``nms_iou``.
    """
    corners = decode(prediction[..., BOX], cell, size).reshape(-1, 4)
    p_object = prediction[..., OBJECTNESS + 1].reshape(-1, 1)
    scores = p_object * prediction[..., CLASSES:].reshape(len(corners), -1)
    kept = []
    for cls in range(scores.shape[1]):
        candidates = np.flatnonzero(scores[:, cls] >= score_threshold)
        candidates = candidates[np.argsort(-scores[candidates, cls], kind="stable")]
        chosen: list[int] = []
        for index in candidates:
            if chosen and iou(corners[[index]], corners[chosen]).max() > nms_iou:
                continue
            chosen.append(index)
        kept += [(*corners[i], cls, scores[i, cls]) for i in chosen]
    found = np.asarray(kept, np.float64).reshape(-1, 6)
    return found[np.argsort(-found[:, 5], kind="stable")][:max_detections]

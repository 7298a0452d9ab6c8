"""VOC-style average precision of box detections, per class and averaged (mAP).

Matching follows the PASCAL VOC devkit (Everingham et al., IJCV 2010), as Racah et al. 2017 used:
detections of one class, best score first over all images, each compared with the ground-truth
box of that class in the same image with the highest IoU; a true positive when that IoU reaches
the threshold and the box is not yet taken, else a false positive. A detection whose best box is
taken does not fall through to its next-best box (COCO's greedy matching does; it scores higher
where boxes crowd). AP is the area under
the precision-recall curve with precision made monotone (VOC 2010 and later, every point).
Racah et al. 2017 report mAP at IoU 0.5 and 0.1. (scikit-learn's average_precision_score
ranks scored samples; it has no box matching and no missed boxes, hence this module.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelzoo.climate.boxes import iou


def match_detections(
    detections: Sequence[np.ndarray], truths: Sequence[np.ndarray], cls: int,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """VOC matching of class ``cls``: (scores, hits, image of each detection), best score first,
    and the number of true boxes per image. ``detections[i]``: image i's boxes (k, 6) = ymin,
    xmin, ymax, xmax, class, score; ``truths[i]``: its ground truth (n, 5) = ymin, xmin, ymax,
    xmax, class. A detection's hit depends only on its own image's better detections, so it
    stands when images are resampled (:func:`bootstrap_map`)."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detection lists for {len(truths)} images")
    gt = [np.asarray(t, np.float64).reshape(-1, 5) for t in truths]
    gt = [t[t[:, 4] == cls] for t in gt]
    found = [(i, d) for i, dets in enumerate(detections)
             for d in np.asarray(dets, np.float64).reshape(-1, 6) if d[4] == cls]
    found.sort(key=lambda item: -item[1][5])  # stable: ties keep image order
    matched = [np.zeros(len(t), bool) for t in gt]
    hits = np.zeros(len(found))
    for k, (image, det) in enumerate(found):
        if not len(gt[image]):
            continue
        overlaps = iou(det[None, :4], gt[image][:, :4])[0]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_threshold and not matched[image][best]:
            matched[image][best] = True
            hits[k] = 1.0
    return (np.array([d[5] for _, d in found]), hits,
            np.array([i for i, _ in found], np.int64), np.array([len(t) for t in gt]))


def _ap(hits: np.ndarray, weights: np.ndarray, total: float) -> float:
    """Every-point AP of detections in score order, each counted ``weights`` times."""
    if total <= 0:
        return float("nan")
    kept = weights > 0
    hits, weights = hits[kept], weights[kept]
    tp = np.cumsum(hits * weights)
    recall = np.r_[0.0, tp / total]
    precision = np.r_[1.0, tp / np.maximum(np.cumsum(weights), 1e-12)]
    # Monotone envelope from the right, then the area under the step curve in recall.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * envelope[1:]))


def average_precision(
    detections: Sequence[np.ndarray], truths: Sequence[np.ndarray], cls: int,
    iou_threshold: float = 0.5,
) -> float:
    """AP of class ``cls`` (arguments as :func:`match_detections`). NaN when no image holds a
    box of ``cls`` (the class does not enter the mean)."""
    _, hits, _, per_image = match_detections(detections, truths, cls, iou_threshold)
    return _ap(hits, np.ones(len(hits)), float(per_image.sum()))


def bootstrap_map(
    detection_sets: Sequence[Sequence[np.ndarray]], truths: Sequence[np.ndarray],
    num_classes: int, iou_threshold: float = 0.5, replicates: int = 1000, seed: int = 0,
) -> np.ndarray:
    """Bootstrap replicates (sets, replicates, num_classes + 1) of AP per class and mAP (last)
    for several models' detections on the same images, resampling whole images (Efron &
    Tibshirani 1993) with one draw per replicate shared by all sets, so that differences
    between sets are paired. The mAP of a replicate averages the classes present in it."""
    n = len(truths)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n)
                       for _ in range(replicates)]).astype(np.float64)
    draws = np.full((len(detection_sets), replicates, num_classes + 1), np.nan)
    for s, detections in enumerate(detection_sets):
        for cls in range(num_classes):
            _, hits, image, per_image = match_detections(detections, truths, cls, iou_threshold)
            for r in range(replicates):
                draws[s, r, cls] = _ap(hits, counts[r, image], float(counts[r] @ per_image))
        with np.errstate(invalid="ignore"):
            draws[s, :, -1] = np.nanmean(draws[s, :, :-1], axis=1)
    return draws


def mean_average_precision(
    detections: Sequence[np.ndarray], truths: Sequence[np.ndarray], num_classes: int,
    iou_threshold: float = 0.5,
) -> tuple[float, list[float]]:
    """(mAP over the classes present in ``truths``, AP per class (NaN where absent))."""
    per_class = [average_precision(detections, truths, c, iou_threshold)
                 for c in range(num_classes)]
    present = [ap for ap in per_class if not np.isnan(ap)]
    return (float(np.mean(present)) if present else float("nan")), per_class

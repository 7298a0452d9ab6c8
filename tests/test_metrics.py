"""Weighted ROC metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from modelzoo import metrics


def test_perfect_and_inverted_classifier():
    labels = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.roc_auc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_ties_count_half():
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_hand_computed_auc():
    # Pairs (pos, neg): scores pos {0.8, 0.4}, neg {0.6, 0.2}: 3 of 4 pairs ordered -> 0.75.
    assert metrics.roc_auc([1, 0, 1, 0], [0.8, 0.6, 0.4, 0.2]) == pytest.approx(0.75)


def test_weights_equal_to_duplicated_events():
    labels, scores = np.array([1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2])
    weights = np.array([1.0, 3.0, 2.0, 1.0])
    dup_labels = np.repeat(labels, weights.astype(int))
    dup_scores = np.repeat(scores, weights.astype(int))
    assert metrics.roc_auc(labels, scores, weights) == pytest.approx(
        metrics.roc_auc(dup_labels, dup_scores)
    )


def test_tpr_at_fpr_interpolates():
    labels = [1, 0, 1, 0]
    scores = [0.8, 0.6, 0.4, 0.2]
    # ROC points: (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    assert metrics.tpr_at_fpr(labels, scores, 0.0) == pytest.approx(0.5)
    assert metrics.tpr_at_fpr(labels, scores, 0.25) == pytest.approx(0.5)
    assert metrics.tpr_at_fpr(labels, scores, 0.5) == pytest.approx(1.0)
    # Between (0, 0) and (0.5, 1) for a one-pair curve: linear interpolation.
    assert metrics.tpr_at_fpr([1, 0], [0.5, 0.5], 0.25) == pytest.approx(0.25)


def test_selection_rates_weighted():
    labels = np.array([1, 1, 0, 0, 0])
    passed = np.array([1, 0, 1, 0, 0])
    weights = np.array([3.0, 1.0, 1.0, 1.0, 2.0])
    assert metrics.selection_rates(labels, passed, weights) == pytest.approx((0.75, 0.25))


def test_roc_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        metrics.roc_auc([1, 1], [0.2, 0.3])

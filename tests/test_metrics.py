"""Weighted ROC metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

import modelzoo
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


def _binomial_interval(p: float, n: int) -> tuple[float, float]:
    half = 1.96 * np.sqrt(p * (1 - p) / n)
    return p - half, p + half


def test_operating_point_bootstrap_matches_the_binomial_interval():
    """Unweighted events: a selection keeping 100 of 2,000 background and 400 of 1,000 signal
    events has binomial sampling errors, which the bootstrap must reproduce; a classifier whose
    score is the selection itself has, replicate by replicate, exactly the selection's TPR."""
    labels = np.r_[np.zeros(2000), np.ones(1000)]
    passed = np.r_[np.arange(2000) < 100, np.arange(1000) < 400]
    point = metrics.operating_point(labels, passed.astype(float), passed, replicates=2000)
    assert (point.selection_tpr, point.selection_fpr, point.classifier_tpr) == (0.4, 0.05, 0.4)
    assert point.background_passing == 100 and point.background_passing_effective == 100
    for key, (p, n) in {"selection_fpr": (0.05, 2000), "selection_tpr": (0.4, 1000)}.items():
        np.testing.assert_allclose(point.interval[key], _binomial_interval(p, n), atol=0.003)
    assert point.interval["classifier_tpr"] == point.interval["selection_tpr"]
    # Paired: the same events in every replicate leave no room for a difference, where the two
    # intervals' ends would allow +-0.06.
    assert point.interval["classifier_minus_selection_tpr"] == (0.0, 0.0)


def test_operating_point_of_a_perfect_classifier_and_weighted_strata():
    # Signal scores above every background score: TPR 1 at any FPR, in every replicate.
    labels = np.r_[np.zeros(3000), np.ones(500)]
    scores = np.r_[np.linspace(0, 0.5, 3000), np.linspace(0.6, 1, 500)]
    passed = np.r_[np.arange(3000) % 10 == 0, np.arange(500) % 2 == 0]
    # Two background strata with weights 1 and 4: FPR = (150 + 4 * 150) / (1500 + 4 * 1500).
    weights = np.r_[np.ones(1500), np.full(1500, 4.0), np.ones(500)]
    strata = np.r_[np.zeros(1500), np.ones(1500), np.zeros(500)]
    point = metrics.operating_point(labels, scores, passed, weights, strata, replicates=300)
    assert point.selection_fpr == pytest.approx(0.1) and point.selection_tpr == 0.5
    assert point.classifier_tpr == 1.0 and point.interval["classifier_tpr"] == (1.0, 1.0)
    low, high = point.interval["selection_tpr"]
    assert point.interval["classifier_minus_selection_tpr"] == pytest.approx((1 - high, 1 - low))
    assert point.as_dict()["cnn_minus_selection_tpr"] == 0.5
    assert point.background_passing == 300
    assert point.background_passing_effective == pytest.approx(750**2 / (150 + 16 * 150))
    low, high = point.interval["selection_fpr"]
    assert low < 0.1 < high and high - low < 0.05


def test_operating_point_refuses_too_few_background_events():
    labels = np.r_[np.zeros(1000), np.ones(100)]
    passed = np.r_[np.arange(1000) < 3, np.arange(100) < 50]
    with pytest.raises(modelzoo.DataError,
                       match=r"keeps 3 background events \(3\.0 effective, weighted\) of 1000; "
                             r"an operating point needs at least 10"):
        metrics.operating_point(labels, passed.astype(float), passed)
    # Ten events of which one carries most of the weight are fewer than ten effective events.
    weights = np.r_[np.full(9, 1.0), 100.0, np.ones(990), np.ones(100)]
    passed = np.r_[np.arange(1000) < 10, np.arange(100) < 50]
    with pytest.raises(modelzoo.DataError, match=r"keeps 10 background events \(1\.2 effective"):
        metrics.operating_point(labels, passed.astype(float), passed, weights)

"""Mode coverage, label-histogram KL divergences and label accuracy on constructed label sets."""

import math

import numpy as np
import pytest
import scipy.stats

from hubgen.metrics.modes import SMOOTHING, class_histogram, label_accuracy, mode_coverage

UNIFORM = np.full(10, 0.1)


def test_class_histogram_is_normalised_counts():
    h = class_histogram(np.array([0, 1, 1, 3]), num_classes=4)
    np.testing.assert_array_equal(h, [0.25, 0.5, 0.0, 0.25])
    with pytest.raises(ValueError, match="`labels`"):
        class_histogram(np.array([0, 10]), num_classes=10)
    with pytest.raises(ValueError, match="`labels`"):
        class_histogram(np.array([], dtype=int))


def test_a_missing_class_leaves_nine_covered():
    labels = np.repeat([c for c in range(10) if c != 3], 100)
    m = mode_coverage(labels, UNIFORM)
    assert m["classes_covered"] == 9 and m["missing_classes"] == [3]
    assert not m["covered"][3] and m["covered"].sum() == 9
    np.testing.assert_allclose(m["threshold"], 0.025)  # default: a quarter of the reference share
    assert m["num_samples"] == 900 and m["num_classes"] == 10 and m["num_modes"] == 10


def test_a_class_below_a_quarter_of_its_share_counts_as_dropped():
    # class 0 holds 2% of the samples against an expected 10%: below 0.25 * 10% = 2.5%
    labels = np.concatenate([np.zeros(2, int), np.repeat(np.arange(1, 10), 98 // 9 + 1)[:98]])
    assert mode_coverage(labels, UNIFORM)["missing_classes"] == [0]
    labels3 = np.concatenate([np.zeros(3, int), np.repeat(np.arange(1, 10), 11)[:97]])  # 3% >= 2.5%
    assert mode_coverage(labels3, UNIFORM)["classes_covered"] == 10
    assert mode_coverage(labels3, UNIFORM, threshold=0.05)["missing_classes"] == [0]


def test_uniform_samples_against_a_uniform_reference_have_zero_kl():
    m = mode_coverage(np.repeat(np.arange(10), 50), UNIFORM * 7)  # counts are normalised too
    assert m["classes_covered"] == 10
    assert m["kl_samples_to_reference"] == pytest.approx(0.0, abs=1e-12)
    assert m["kl_reference_to_samples"] == pytest.approx(0.0, abs=1e-12)


def test_kl_directions_match_scipy_on_the_smoothed_histograms():
    rng = np.random.default_rng(0)
    labels = rng.choice(10, size=500, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())
    ref = rng.dirichlet(np.ones(10))
    m = mode_coverage(labels, ref)
    p = (m["histogram"] + SMOOTHING) / (1 + 10 * SMOOTHING)
    q = (ref / ref.sum() + SMOOTHING) / (1 + 10 * SMOOTHING)
    assert m["kl_samples_to_reference"] == pytest.approx(scipy.stats.entropy(p, q), rel=1e-10)
    assert m["kl_reference_to_samples"] == pytest.approx(scipy.stats.entropy(q, p), rel=1e-10)


def test_mode_collapse_covers_one_class_and_has_a_large_reverse_kl():
    m = mode_coverage(np.full(1000, 7), UNIFORM)
    assert m["classes_covered"] == 1 and m["missing_classes"] == [c for c in range(10) if c != 7]
    # KL(p_samples || p_data) = log(1 / 0.1) only; KL(p_data || p_samples) sees the nine dropped classes
    assert m["kl_samples_to_reference"] == pytest.approx(math.log(10), abs=1e-3)
    assert m["kl_reference_to_samples"] > 9.0 > 3 * m["kl_samples_to_reference"]


def test_reference_histogram_and_threshold_are_validated():
    with pytest.raises(ValueError, match="`reference_histogram`"):
        mode_coverage(np.arange(10), np.ones(9))
    with pytest.raises(ValueError, match="`reference_histogram`"):
        mode_coverage(np.arange(10), -UNIFORM)
    with pytest.raises(ValueError, match="`threshold`"):
        mode_coverage(np.arange(10), UNIFORM, threshold=1.5)


def test_label_accuracy_on_a_constructed_example():
    assert label_accuracy(np.array([0, 1, 2, 3]), np.array([0, 1, 0, 3])) == 0.75
    assert label_accuracy([5, 5], [5, 5]) == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        label_accuracy([0, 1], [0])

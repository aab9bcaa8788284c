"""Calibration: the toolkit's figures, with the shipped classifiers, move the way they must on real digits.

Each check can fail: a broken feature network, a wrong sign or a swapped argument changes the ordering.
The 8x8 `digits` checks always run; the MNIST ones skip cleanly without ../shared/data/mnist.npz.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hubgen.data import load_dataset
from hubgen.metrics import (
    class_histogram,
    evaluate_samples,
    extract,
    feature_statistics,
    format_sample_quality,
    frechet_distance,
    load_classifier,
    mode_coverage,
    precision_recall_density_coverage,
)


def _images(ds, n=None):
    return (ds.images if n is None else ds.images[:n]).float() / 255.0


def _fd(classifier, images, reference_stats):
    features, _ = extract(classifier, images)
    return frechet_distance(*feature_statistics(features), *reference_stats)


def _blur(x, radius):
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), k, stride=1)


@pytest.fixture(scope="module")
def digits():
    classifier = load_classifier("digits")
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    test_features, _ = extract(classifier, _images(test))
    return classifier, train, test, feature_statistics(test_features)


def test_digits_frechet_distance_orders_real_degraded_and_mode_dropped_sets(digits):
    classifier, train, test, ref = digits
    g = torch.Generator().manual_seed(0)
    floor = _fd(classifier, _images(train), ref)  # train vs test: the floor
    keep = test.labels != 3
    dropped = _fd(classifier, _images(test)[keep], ref)  # test without the 3s vs test
    assert dropped > 2 * floor, (dropped, floor)
    noisy = [
        _fd(classifier, (_images(test) + s * torch.randn(_images(test).shape, generator=g)).clamp(0, 1), ref)
        for s in (0.05, 0.15, 0.3, 0.6)
    ]
    assert floor < noisy[1] and all(a < b for a, b in zip(noisy, noisy[1:], strict=False)), (floor, noisy)
    blurred = [_fd(classifier, _blur(_images(test), r), ref) for r in (1, 2, 3)]
    assert all(a < b for a, b in zip(blurred, blurred[1:], strict=False)) and blurred[0] > floor, (floor, blurred)


def test_digits_coverage_and_prdc_see_a_dropped_class(digits):
    classifier, train, test, _ = digits
    keep = test.labels != 7
    _, probs = extract(classifier, _images(test)[keep])
    report = mode_coverage(probs.argmax(1), class_histogram(train.labels.numpy()))
    assert report["classes_covered"] == 9 and 7 in report["missing_classes"]
    full_features, _ = extract(classifier, _images(train, 1000))
    real, _ = extract(classifier, _images(test))
    part, _ = extract(classifier, _images(test)[keep])
    whole = precision_recall_density_coverage(real, full_features[: len(real)], k=5)
    partial = precision_recall_density_coverage(real, part, k=5)
    assert partial["recall"] < whole["recall"] and partial["coverage"] < whole["coverage"]
    assert partial["precision"] > 0.9


def test_evaluate_samples_flags_copies_and_not_test_images(digits, tmp_path):
    _, train, test, _ = digits
    held_out = evaluate_samples(_images(test, 200), "digits", seed=0)
    copies = evaluate_samples(_images(train, 200), "digits", seed=0)
    assert held_out["memorization"]["fraction_closer_than_any_test"] < 0.05
    assert copies["memorization"]["fraction_closer_than_any_test"] > 0.95
    grid = held_out.pop("pictures")["nearest_neighbours.png"]  # metrics return pictures, they write no files
    assert grid.width > 8 * 20 and not list(tmp_path.iterdir())
    net = held_out["feature_network"]
    assert net["name"] == "digits" and len(net["sha256"]) == 64 and net["sha256"][:8] in net["id"]
    assert held_out["frechet_distance"]["name"] == "FD-digits" and held_out["num_samples"] == 200
    assert held_out["modes"]["classes_covered"] == 10
    json.dumps(held_out)  # the report goes to eval_results.json as it is
    text = format_sample_quality(held_out)
    assert "N=200" in text and net["sha256"][:8] in text and "k=5" in text


def test_evaluate_samples_rejects_bad_input():
    with pytest.raises(ValueError, match="No frozen digit classifier for 16x16"):
        evaluate_samples(torch.rand(20, 1, 16, 16), "digits", seed=0)
    with pytest.raises(ValueError, match="more samples than k"):
        evaluate_samples(torch.rand(3, 1, 8, 8), "digits", seed=0)
    with pytest.raises(ValueError, match="shape"):
        evaluate_samples(torch.rand(20, 3, 8, 8), "digits", seed=0)


def test_mnist_train_vs_test_is_near_the_floor_and_a_dropped_class_is_far(mnist_npz):
    classifier = load_classifier("mnist")
    train, test = load_dataset(mnist_npz, "train"), load_dataset(mnist_npz, "test")
    test_features, _ = extract(classifier, _images(test))
    ref = feature_statistics(test_features)
    floor = _fd(classifier, _images(train, 2000), ref)
    keep = np.asarray(test.labels != 0)
    dropped = _fd(classifier, _images(test)[keep][:2000], ref)
    noisy = _fd(classifier, (_images(test, 2000) + 0.2 * torch.randn(2000, 1, 28, 28)).clamp(0, 1), ref)
    assert dropped > 5 * floor and noisy > 5 * floor, (floor, dropped, noisy)


def test_reference_statistics_are_computed_once_and_cached_without_pickle(monkeypatch, tmp_path):
    import hubgen.metrics.sample_quality as sample_quality

    monkeypatch.setenv("HUBGEN_CACHE", str(tmp_path))
    test = load_dataset("digits", "test")
    mu, sigma, meta = sample_quality.reference_statistics(test, "digits")
    (cached,) = (tmp_path / "reference_stats").glob("digits-*-test-*.npz")
    with np.load(cached, allow_pickle=False) as f:
        assert set(f.files) >= {"mu", "sigma"}

    def recompute(*args, **kwargs):
        raise AssertionError("reference statistics were recomputed instead of read from the cache")

    monkeypatch.setattr(sample_quality, "extract", recompute)
    mu2, sigma2, meta2 = sample_quality.reference_statistics(test, "digits")
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)
    assert meta2["feature_network"] == meta["feature_network"] and meta2["num_images"] == 360

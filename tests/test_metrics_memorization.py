"""Nearest-neighbour memorization checks on scikit-learn's digits: copies are flagged, held-out data is not."""

import numpy as np
import pytest
import torch

from hubgen.data import load_dataset
from hubgen.metrics.memorization import memorization_report, nearest_neighbour_grid, nearest_neighbours


@pytest.fixture(scope="module")
def digits():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    return train.images.double() / 255.0, test.images.double() / 255.0  # (N, 1, 8, 8) in [0, 1]


def test_nearest_neighbours_match_brute_force_numpy():
    g = torch.Generator().manual_seed(0)
    queries = torch.rand(37, 1, 4, 4, generator=g, dtype=torch.float64)
    refs = torch.rand(101, 1, 4, 4, generator=g, dtype=torch.float64)
    q, r = queries.reshape(37, -1).numpy(), refs.reshape(101, -1).numpy()
    full = np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1))  # (37, 101)
    distances, indices = nearest_neighbours(queries, refs, batch_size=8)
    np.testing.assert_array_equal(indices, full.argmin(1))
    np.testing.assert_allclose(distances, full.min(1), rtol=1e-12, atol=0)
    assert distances.dtype == np.float64 and indices.dtype == np.int64
    with pytest.raises(ValueError, match="values per item"):
        nearest_neighbours(queries, refs[:, :, :2])


def test_exact_copies_of_training_images_are_flagged(digits):
    train, test = digits
    copies = train[10:60].clone()
    report = memorization_report(copies, train, test)
    assert report["fraction_closer_than_any_test"] == 1.0
    assert report["fraction_below_test_5th_percentile"] == 1.0
    np.testing.assert_array_equal(report["nn_distances"], 0.0)
    assert torch.equal(train[report["nn_indices"]], copies)
    assert report["sample_to_train"]["mean"] == report["sample_to_train"]["min"] == 0.0
    assert report["test_to_train"]["min"] > 0.1  # no test digit duplicates a training digit
    assert (report["num_samples"], report["num_train"], report["num_test"]) == (50, 1437, 360)


def test_held_out_images_are_not_flagged(digits):
    train, test = digits
    report = memorization_report(test[:180], train, test[180:])
    assert report["fraction_closer_than_any_test"] <= 0.02
    assert report["fraction_below_test_5th_percentile"] <= 0.15
    assert report["sample_to_train"]["median"] == pytest.approx(report["test_to_train"]["median"], rel=0.15)
    assert set(report["sample_to_train"]) == {"mean", "median", "min", "p5"}


def test_a_mix_of_copies_and_new_images_is_flagged_in_proportion(digits):
    train, test = digits
    samples = torch.cat([train[:30], test[:90]])  # a quarter copied
    report = memorization_report(samples, train, test[90:])
    assert report["fraction_closer_than_any_test"] == pytest.approx(0.25, abs=0.02)


def test_images_outside_the_unit_range_are_rejected(digits):
    train, test = digits
    with pytest.raises(ValueError, match="`samples`"):
        memorization_report(train[:5] * 2 - 1, train, test)


def test_grid_pairs_each_sample_with_its_neighbour(digits):
    train, test = digits
    report = memorization_report(test[:20], train, test[20:])
    grid = nearest_neighbour_grid(test[:20], train, report["nn_indices"], num=16)
    tile = 48  # 8x8 digits enlarged 6 times
    assert grid.size == (16 * (tile + 2) + 2, 2 * (tile + 2) + 2)  # (width, height): 16 columns, 2 rows, padding 2
    pixels = np.asarray(grid)
    big = np.kron(test[0, 0].numpy(), np.ones((6, 6)))
    np.testing.assert_array_equal(pixels[2 : 2 + tile, 2 : 2 + tile], (big * 255).round().astype(np.uint8))
    neighbour = np.kron(train[report["nn_indices"][0], 0].numpy(), np.ones((6, 6)))
    below = slice(4 + tile, 4 + 2 * tile)
    np.testing.assert_array_equal(pixels[below, 2 : 2 + tile], (neighbour * 255).round().astype(np.uint8))

"""Precision, recall, density and coverage: a brute-force reference and the behaviours the papers predict."""

import numpy as np
import pytest

from hubgen.metrics.prdc import kth_neighbour_radii, precision_recall_density_coverage


def _brute_force(real, fake, k):
    """The four definitions written over full numpy distance matrices (Kynkaanniemi et al.; Naeem et al.)."""
    d_rr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    d_ff = np.sqrt(((fake[:, None] - fake[None]) ** 2).sum(-1))
    d_fr = np.sqrt(((fake[:, None] - real[None]) ** 2).sum(-1))  # (M, N)
    r_real = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k]
    inside = d_fr <= r_real[None, :]
    return {
        "precision": inside.any(axis=1).mean(),
        "recall": (d_fr.T <= r_fake[None, :]).any(axis=1).mean(),
        "density": inside.sum() / (k * len(fake)),
        "coverage": (d_fr.min(axis=0) <= r_real).mean(),
    }


def test_matches_a_brute_force_computation_including_chunking():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((70, 3)), rng.standard_normal((55, 3)) * 1.3 + 0.4
    expected = _brute_force(real, fake, k=3)
    got = precision_recall_density_coverage(real, fake, k=3, batch_size=16)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert (got["k"], got["num_real"], got["num_fake"]) == (3, 70, 55)
    d = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    np.testing.assert_allclose(kth_neighbour_radii(real, k=3, batch_size=16), np.sort(d, 1)[:, 3], rtol=1e-12)


def test_identical_distributions_score_near_one():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((2000, 5)), rng.standard_normal((2000, 5))
    m = precision_recall_density_coverage(real, fake, k=5)
    assert m["precision"] > 0.95 and m["recall"] > 0.95
    assert m["density"] == pytest.approx(1.0, abs=0.05)  # E[density] = 1 for equal distributions
    assert m["coverage"] == pytest.approx(1 - 2.0**-5, abs=0.02)  # Naeem et al.: 1 - 1/2^k for N = M large


def test_fakes_in_a_sub_region_have_high_precision_but_low_recall_and_coverage():
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((2000, 5)), 0.3 * rng.standard_normal((1000, 5))
    m = precision_recall_density_coverage(real, fake, k=5)
    assert m["precision"] > 0.99
    assert m["recall"] < 0.2 and m["coverage"] < 0.3


def test_fakes_shifted_away_have_zero_precision_and_coverage():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((1000, 5)), rng.standard_normal((1000, 5)) + 10.0
    m = precision_recall_density_coverage(real, fake, k=5)
    assert m["precision"] < 0.01 and m["coverage"] < 0.01 and m["recall"] < 0.01 and m["density"] < 0.01


def test_fakes_duplicating_real_points_push_density_above_one():
    rng = np.random.default_rng(4)
    real = rng.standard_normal((2000, 5))
    copies = precision_recall_density_coverage(real, np.repeat(real[:500], 2, axis=0), k=5)
    fresh = precision_recall_density_coverage(real, rng.standard_normal((1000, 5)), k=5)
    assert copies["precision"] == 1.0
    assert copies["density"] > 1.15 > fresh["density"]
    # a fake on every real point lies in its own ball and in the k balls it is the k-NN of: density (k+1)/k
    assert precision_recall_density_coverage(real, real, k=5)["density"] == pytest.approx(1.2, abs=1e-12)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, 30])
def test_invalid_k_is_rejected(k):
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="`k`"):
        precision_recall_density_coverage(rng.standard_normal((30, 2)), rng.standard_normal((40, 2)), k=k)


def test_k_must_be_below_the_size_of_each_set_and_features_must_match():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="fake_features"):
        precision_recall_density_coverage(rng.standard_normal((30, 2)), rng.standard_normal((5, 2)), k=5)
    with pytest.raises(ValueError, match="features per row"):
        precision_recall_density_coverage(rng.standard_normal((30, 2)), rng.standard_normal((30, 3)), k=5)

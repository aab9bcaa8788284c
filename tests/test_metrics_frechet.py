"""The Frechet distance against closed forms and scipy.linalg.sqrtm; statistics files round-trip safely."""

import warnings

import numpy as np
import pytest
import scipy.linalg

from hubgen.metrics.frechet import feature_statistics, frechet_distance, load_statistics, save_statistics


def _random_spd(rng, f):
    a = rng.standard_normal((f, f))
    return a @ a.T / f + 0.1 * np.eye(f)


def test_feature_statistics_are_the_mean_and_unbiased_covariance():
    x = np.random.default_rng(0).standard_normal((50, 4))
    mu, sigma = feature_statistics(x)
    np.testing.assert_allclose(mu, x.mean(0), rtol=0, atol=1e-15)
    centred = x - x.mean(0)
    np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-12, atol=1e-15)
    assert mu.dtype == sigma.dtype == np.float64
    assert feature_statistics(x[:, :1])[1].shape == (1, 1)
    with pytest.raises(ValueError, match="at least 2 rows"):
        feature_statistics(x[:1])
    with pytest.raises(ValueError, match="2-D"):
        feature_statistics(x[0])


def test_identical_statistics_give_zero():
    mu, sigma = feature_statistics(np.random.default_rng(1).standard_normal((500, 16)))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_one_dimensional_gaussians_match_the_closed_form():
    # d^2 = (mu1 - mu2)^2 + (s1 - s2)^2 for N(mu1, s1^2), N(mu2, s2^2)
    d = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-0.5]), np.array([[0.25]]))
    assert d == pytest.approx(1.5**2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    v1, v2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_matches_scipy_sqrtm_on_random_spd_matrices(seed):
    rng = np.random.default_rng(seed)
    f = 20
    mu1, mu2 = rng.standard_normal(f), rng.standard_normal(f)
    s1, s2 = _random_spd(rng, f), _random_spd(rng, f)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(covmean))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_is_symmetric_and_a_pure_mean_shift_gives_f_delta_squared():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((300, 10)), rng.standard_normal((400, 10)) * 1.5
    sa, sb = feature_statistics(a), feature_statistics(b)
    assert frechet_distance(*sa, *sb) == pytest.approx(frechet_distance(*sb, *sa), rel=1e-9)
    # shifting every feature by delta leaves the covariance unchanged: d^2 = F delta^2
    shifted = feature_statistics(a + 0.7)
    assert frechet_distance(*sa, *shifted) == pytest.approx(10 * 0.7**2, rel=1e-9)


def test_rank_deficient_covariances_stay_finite_real_and_need_no_fallback():
    rng = np.random.default_rng(7)
    s1, s2 = feature_statistics(rng.standard_normal((10, 50))), feature_statistics(rng.standard_normal((12, 50)))
    assert np.linalg.matrix_rank(s1[1]) < 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the eigh route handles N < F without the eps * I fallback
        d = frechet_distance(*s1, *s2)
        d_same = frechet_distance(*s1, *s1)
    assert isinstance(d, float) and np.isfinite(d) and d > 0
    assert d == pytest.approx(frechet_distance(*s2, *s1), rel=1e-8)
    assert d_same == pytest.approx(0.0, abs=1e-8)


def test_a_covariance_that_is_not_psd_takes_the_epsilon_fallback_with_a_warning():
    mu = np.zeros(2)
    with pytest.warns(RuntimeWarning, match="positive semi-definite"):
        d = frechet_distance(mu, np.diag([1.0, -0.5]), mu, np.eye(2))
    assert np.isfinite(d)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="`sigma1`"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="`mu1` and `mu2`"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))


def test_distance_grows_monotonically_with_mean_shift_and_noise():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2000, 8))
    y = rng.standard_normal((2000, 8))
    ref = feature_statistics(x)
    shifts = [frechet_distance(*ref, *feature_statistics(y + delta)) for delta in (0.0, 0.1, 0.3, 1.0, 3.0)]
    assert all(a < b for a, b in zip(shifts, shifts[1:], strict=False)), shifts
    noise = rng.standard_normal(y.shape)
    noisy = [frechet_distance(*ref, *feature_statistics(y + s * noise)) for s in (0.0, 0.3, 0.6, 1.0, 2.0)]
    assert all(a < b for a, b in zip(noisy, noisy[1:], strict=False)), noisy


def test_statistics_round_trip_exactly_without_pickle(tmp_path):
    rng = np.random.default_rng(9)
    mu, sigma = feature_statistics(rng.standard_normal((40, 5)))
    path = tmp_path / "stats" / "real.npz"
    meta = {"feature_network": "lenet-v1", "sha256": "ab" * 32, "num_images": 40, "split": "test"}
    save_statistics(path, mu, sigma, **meta)
    assert sorted(p.name for p in path.parent.iterdir()) == ["real.npz"]  # no temporary file left behind
    mu2, sigma2, meta2 = load_statistics(path)
    assert np.array_equal(mu, mu2) and np.array_equal(sigma, sigma2)
    assert meta2 == meta
    with np.load(path, allow_pickle=False) as f:
        assert set(f.files) == {"mu", "sigma", "meta"}
        assert f["meta"].dtype.kind == "U"
    with pytest.raises(ValueError, match="JSON"):
        save_statistics(tmp_path / "bad.npz", mu, sigma, obj=object())
    assert not (tmp_path / "bad.npz").exists()
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="lacks"):
        load_statistics(tmp_path / "other.npz")

"""The Frechet distance between two Gaussians fitted to feature sets, and the statistics it is computed from.

Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"
(arXiv:1706.08500), which introduced FID; Dowson & Landau, "The Frechet distance between multivariate
normal distributions" (J. Multivariate Anal. 12, 1982), which gives the closed form.

Features f(x) of real and generated images (N, F) are summarised by their mean and covariance,

    mu = 1/N sum_i f_i,        Sigma = 1/(N - 1) sum_i (f_i - mu)(f_i - mu)^T          (unbiased),

and the squared 2-Wasserstein (Frechet) distance between N(mu1, S1) and N(mu2, S2) is

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}).

The number depends on the feature network: with Inception-v3 pool features it is "FID" proper (see
`hubgen.metrics.inception`); with a classifier trained on the data set it is a classifier Frechet distance
that is only comparable under the same frozen classifier. It also depends strongly on N (the estimate is
biased upwards at small N): compare figures at equal N and report the real-vs-real floor at that N.

Statistics are stored as .npz files read with `allow_pickle=False`, so a statistics file from the Hub can
be loaded without running code.
"""

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg

from ..errors import UserInputError

__all__ = ["feature_statistics", "frechet_distance", "save_statistics", "load_statistics"]


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """mu = mean_i f_i (F,) and the unbiased covariance Sigma = 1/(N-1) sum_i (f_i - mu)(f_i - mu)^T (F, F).

    `features` is an (N, F) array (numpy or torch) with N >= 2; both results are float64.
    """
    x = _as_float64(features, "features")
    if x.ndim != 2:
        raise UserInputError(f"`features` must be a 2-D array (N, F), got shape {x.shape}.")
    if x.shape[0] < 2:
        raise UserInputError(f"`features` needs at least 2 rows to estimate a covariance, got {x.shape[0]}.")
    if not np.all(np.isfinite(x)):
        raise UserInputError("`features` contains NaN or infinite values.")
    mu = x.mean(axis=0)  # (F,)
    sigma = np.atleast_2d(np.cov(x, rowvar=False))  # (F, F); atleast_2d keeps F = 1 a (1, 1) matrix
    return mu, sigma


def _as_float64(a, name: str) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise UserInputError(f"`{name}` must be a numeric array, got {type(a).__name__} ({e}).") from e


def _check_statistics(mu, sigma, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu, sigma = _as_float64(mu, f"mu{which}"), _as_float64(sigma, f"sigma{which}")
    if mu.ndim != 1:
        raise UserInputError(f"`mu{which}` must be a 1-D vector (F,), got shape {mu.shape}.")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise UserInputError(f"`sigma{which}` must have shape (F, F) = {(mu.shape[0],) * 2}, got {sigma.shape}.")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise UserInputError(f"`mu{which}` / `sigma{which}` contain NaN or infinite values.")
    scale = max(float(np.abs(sigma).max()), 1e-300)
    if np.abs(sigma - sigma.T).max() > 1e-6 * scale:
        raise UserInputError(f"`sigma{which}` is not symmetric: it is not a covariance matrix.")
    return mu, 0.5 * (sigma + sigma.T)


def _sqrtm_psd(s: np.ndarray) -> tuple[np.ndarray, float]:
    """S^{1/2} = V diag(sqrt(max(w, 0))) V^T from the symmetric eigendecomposition S = V diag(w) V^T.

    Also returns the most negative eigenvalue relative to the largest, the measure of how far S is from PSD.
    """
    w, v = scipy.linalg.eigh(s)
    rel_neg = float(-w.min() / max(np.abs(w).max(), 1e-300))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T, rel_neg


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> tuple[float, float]:
    """Tr((S1 S2)^{1/2}) = sum_j sqrt(lambda_j(S1^{1/2} S2 S1^{1/2})).

    S1 S2 = S1^{1/2} (S1^{1/2} S2) has the same eigenvalues as (S1^{1/2} S2) S1^{1/2} = M, and M is symmetric
    PSD, so its eigenvalues are real and >= 0 (up to rounding, which is clipped): no complex square root.
    Returns the trace and the worst relative negative eigenvalue met (0 for exactly PSD inputs).
    """
    sqrt_s1, neg1 = _sqrtm_psd(s1)
    m = sqrt_s1 @ s2 @ sqrt_s1  # (F, F), symmetric PSD
    w = scipy.linalg.eigh(0.5 * (m + m.T), eigvals_only=True)
    neg_m = float(-w.min() / max(np.abs(w).max(), 1e-300))
    return float(np.sqrt(np.clip(w, 0.0, None)).sum()), max(neg1, neg_m)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})  (Heusel et al. arXiv:1706.08500; Dowson & Landau 1982).

    Tr((S1 S2)^{1/2}) is the sum of the square roots of the eigenvalues of S1^{1/2} S2 S1^{1/2}, a symmetric
    PSD matrix, found with `scipy.linalg.eigh`; eigenvalues that rounding makes slightly negative are clipped
    to 0. This stays real and finite for rank-deficient covariances (N < F), where `scipy.linalg.sqrtm` of
    S1 S2 can return complex values or fail.

    Fallback: if an eigendecomposition fails or gives non-finite values, or an eigenvalue is negative by more
    than 1e-8 of the largest one (a covariance that is not PSD beyond rounding, i.e. ill-conditioned input),
    the computation is repeated with `eps` * I added to both covariances and a RuntimeWarning says so; that
    offset changes the result by O(eps * F).

    Returns a Python float >= 0 (a rounding-level negative result, e.g. for identical statistics, is
    returned as 0.0). Raises ValueError on mismatched or non-finite inputs.
    """
    mu1, sigma1 = _check_statistics(mu1, sigma1, "1")
    mu2, sigma2 = _check_statistics(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise UserInputError(f"`mu1` and `mu2` have different feature dimensions: {mu1.shape} vs {mu2.shape}.")
    diff = mu1 - mu2
    reason = None
    try:
        tr_covmean, neg = _trace_sqrt_product(sigma1, sigma2)
        if not np.isfinite(tr_covmean):
            reason = "non-finite trace"
        elif neg > 1e-8:
            reason = f"a covariance is not positive semi-definite (relative negative eigenvalue {neg:.2e})"
    except (np.linalg.LinAlgError, ValueError) as e:
        reason = f"eigendecomposition failed ({e})"
    if reason is not None:
        warnings.warn(
            f"frechet_distance: {reason}; adding {eps:g} * I to both covariances.", RuntimeWarning, stacklevel=2
        )
        offset = eps * np.eye(sigma1.shape[0])
        sigma1, sigma2 = sigma1 + offset, sigma2 + offset
        tr_covmean, _ = _trace_sqrt_product(sigma1, sigma2)
    # ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})
    d2 = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(d2, 0.0)


def save_statistics(path: str | os.PathLike, mu, sigma, **meta) -> Path:
    """Write mu (F,), sigma (F, F) and JSON-serializable `meta` (feature network, its hash, N, split, seed)
    to an .npz file at `path` (written to a temporary file in the same folder, then os.replace'd, so a
    reader never sees a half-written file). `meta` is stored as a 0-d string array holding JSON, so the file
    loads with `allow_pickle=False`. Returns the path.
    """
    mu, sigma = _check_statistics(mu, sigma, "")
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise UserInputError(f"`meta` must be JSON-serializable (str, numbers, lists, dicts), got {meta!r}: {e}") from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, mu=mu, sigma=sigma, meta=np.array(meta_json))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read (mu, sigma, meta) written by `save_statistics`, with `allow_pickle=False`. Raises ValueError."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"mu", "sigma"} - set(f.files)
            if missing:
                raise UserInputError(f"{path} is not a statistics file: it lacks {sorted(missing)}.")
            mu, sigma = f["mu"], f["sigma"]
            meta = json.loads(str(f["meta"])) if "meta" in f.files else {}
    except (OSError, EOFError, json.JSONDecodeError) as e:
        raise UserInputError(f"Cannot read statistics file {path}: {type(e).__name__}: {e}") from e
    mu, sigma = _check_statistics(mu, sigma, "")
    return mu, sigma, meta

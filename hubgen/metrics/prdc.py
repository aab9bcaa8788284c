"""Precision, recall, density and coverage of generated features against real features, with k-NN balls.

Kynkaanniemi et al., "Improved Precision and Recall Metric for Assessing Generative Models"
(arXiv:1904.06991); Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models"
(arXiv:2002.09797).

Real features X_1..X_N, fake features Y_1..Y_M. The k-NN radius of a point is the distance to its k-th
nearest neighbour in its own set, the point itself excluded:

    r_k(X_i) = || X_i - NN_k(X_i; {X_j}_{j != i}) ||,          r_k(Y_j) likewise among the fakes.

The balls B(X_i, r_k(X_i)) estimate the support of the real distribution (a k-NN manifold), and

    precision = 1/M sum_j 1[ exists i: ||Y_j - X_i|| <= r_k(X_i) ]         fakes inside the real manifold
    recall    = 1/N sum_i 1[ exists j: ||X_i - Y_j|| <= r_k(Y_j) ]         reals inside the fake manifold
    density   = 1/(k M) sum_j sum_i 1[ ||Y_j - X_i|| <= r_k(X_i) ]         how many real balls hold each fake
    coverage  = 1/N sum_i 1[ min_j ||X_i - Y_j|| <= r_k(X_i) ]             real balls that hold any fake

(precision and recall: Kynkaanniemi et al. section 2; density and coverage: Naeem et al. section 3.)
Precision, recall and coverage lie in [0, 1]; density is unbounded: its expectation is 1 when the two
distributions are equal, and it exceeds 1 when fakes crowd around real points. Unlike recall, coverage
builds its balls only around real points, so it is not inflated by outlying fakes.

Ties: the balls are closed (<=) as in Kynkaanniemi et al.; the reference `prdc` code uses strict <. The two
differ only when a distance equals a radius exactly (duplicate points).

Distances are exact Euclidean distances (all pairs, no approximate search) computed with `torch.cdist` in
float64, in row chunks, so that 10k x 10k fits in memory: a chunk holds `batch_size` x (N or M) distances.
cdist's matrix-product path (|a|^2 + |b|^2 - 2 a.b) is used for speed; its float64 rounding (up to about
1e-6 of the feature norms, after centring on the real mean) could decide a tie at a ball's edge, so every
radius, and every distance within 1e-5 x the largest norm of a radius, is recomputed directly as ||a - b||,
which is exactly symmetric. A fake that copies a real point then lands exactly on the edge of the balls of
which that real point is the k-th neighbour, and counts inside them.
"""

import numpy as np
import torch

from ..errors import UserInputError

__all__ = ["precision_recall_density_coverage", "kth_neighbour_radii"]


def _as_features(a, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        x = a.detach().to("cpu", torch.float64)
    else:
        x = torch.from_numpy(np.asarray(a, dtype=np.float64))
    if x.ndim != 2:
        raise UserInputError(f"`{name}` must be a 2-D array (N, F), got shape {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise UserInputError(f"`{name}` contains NaN or infinite values.")
    return x


def _check_k(k, n: int, name: str) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise UserInputError(f"`k` must be an integer >= 1, got {k!r}.")
    if k >= n:
        raise UserInputError(
            f"`k` must be smaller than the number of rows of `{name}` ({n}): the k-th neighbour excludes the "
            f"point itself, so at most {n - 1} neighbours exist; got k={k}."
        )


def kth_neighbour_radii(features, k: int = 5, batch_size: int = 1024) -> np.ndarray:
    """r_k(x_i) = distance from x_i to its k-th nearest neighbour among the other rows (self excluded), (N,).

    A duplicate of x_i is another row and counts as a neighbour at distance 0.
    """
    x = _as_features(features, "features")
    _check_k(k, x.shape[0], "features")
    return _kth_radii(x, k, batch_size).numpy()


def _kth_radii(x: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    n = x.shape[0]
    neighbour = torch.empty(n, dtype=torch.int64)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        d = torch.cdist(x[start:stop], x)  # (b, N)
        rows = torch.arange(stop - start)
        d[rows, rows + start] = float("inf")  # exclude the point itself
        neighbour[start:stop] = torch.topk(d, k, dim=1, largest=False).indices[:, -1]  # the k-th smallest
    return torch.linalg.vector_norm(x - x[neighbour], dim=1)  # (N,) ||x_i - NN_k(x_i)||, computed directly


def _distances_near_radii(a: torch.Tensor, b: torch.Tensor, radii: torch.Tensor, tol: float) -> torch.Tensor:
    """||a_i - b_j|| (A, B) by cdist, with the entries within `tol` of radii[j] recomputed directly."""
    d = torch.cdist(a, b)  # (A, B)
    i, j = torch.nonzero((d - radii[None, :]).abs() <= tol, as_tuple=True)
    block = max(1, 2**22 // a.shape[1])  # pairs per step: bounded memory even when many points coincide
    for s in range(0, i.numel(), block):
        ii, jj = i[s : s + block], j[s : s + block]
        d[ii, jj] = torch.linalg.vector_norm(a[ii] - b[jj], dim=1)
    return d


def precision_recall_density_coverage(real_features, fake_features, k: int = 5, batch_size: int = 1024) -> dict:
    """Precision and recall (Kynkaanniemi et al. arXiv:1904.06991), density and coverage (Naeem et al.
    arXiv:2002.09797) of `fake_features` (M, F) against `real_features` (N, F), with k-NN balls (formulas in
    the module docstring).

    Returns {"precision", "recall", "density", "coverage"} as floats and {"k", "num_real", "num_fake"}.
    Naeem et al. recommend k = 5 with N = M = 10k; the values depend on k and N, so state both.
    Raises ValueError for k < 1 or k >= the number of rows of either set, or mismatched feature sizes.
    """
    x = _as_features(real_features, "real_features")  # (N, F)
    y = _as_features(fake_features, "fake_features")  # (M, F)
    if x.shape[1] != y.shape[1]:
        raise UserInputError(f"`real_features` has {x.shape[1]} features per row but `fake_features` has {y.shape[1]}.")
    _check_k(k, x.shape[0], "real_features")
    _check_k(k, y.shape[0], "fake_features")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
    n, m = x.shape[0], y.shape[0]
    centre = x.mean(dim=0)
    x, y = x - centre, y - centre  # distances are unchanged; smaller norms mean smaller cdist rounding
    tol = 1e-5 * float(max(x.norm(dim=1).max(), y.norm(dim=1).max(), 1e-300))
    r_real = _kth_radii(x, k, batch_size)  # (N,) r_k(X_i)
    r_fake = _kth_radii(y, k, batch_size)  # (M,) r_k(Y_j)

    fake_in_real = torch.zeros(m, dtype=torch.bool)  # exists i: Y_j in B(X_i, r_k(X_i))
    balls_per_fake = torch.zeros(m, dtype=torch.float64)  # sum_i 1[Y_j in B(X_i, r_k(X_i))]
    nearest_fake = torch.full((n,), float("inf"), dtype=torch.float64)  # min_j ||X_i - Y_j||
    for start in range(0, m, batch_size):
        d = _distances_near_radii(y[start : start + batch_size], x, r_real, tol)  # (b, N)
        inside = d <= r_real[None, :]  # (b, N)
        fake_in_real[start : start + batch_size] = inside.any(dim=1)
        balls_per_fake[start : start + batch_size] = inside.sum(dim=1, dtype=torch.float64)
        nearest_fake = torch.minimum(nearest_fake, d.min(dim=0).values)

    real_in_fake = torch.zeros(n, dtype=torch.bool)  # exists j: X_i in B(Y_j, r_k(Y_j))
    for start in range(0, n, batch_size):
        d = _distances_near_radii(x[start : start + batch_size], y, r_fake, tol)  # (b, M)
        real_in_fake[start : start + batch_size] = (d <= r_fake[None, :]).any(dim=1)

    return {
        "precision": float(fake_in_real.double().mean()),
        "recall": float(real_in_fake.double().mean()),
        "density": float(balls_per_fake.sum() / (k * m)),
        "coverage": float((nearest_fake <= r_real).double().mean()),
        "k": int(k),
        "num_real": n,
        "num_fake": m,
    }

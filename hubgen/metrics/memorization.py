"""Memorization checks in pixel space: is each generated sample closer to a training image than held-out
data ever is?

A model that copies its training set produces samples whose nearest training image is (almost) identical.
The scale of "close" comes from held-out test images, which the model never saw: their distance to the
nearest training image is what a fresh draw from the data distribution gives (a comparison in the spirit of
Meehan et al., "A Non-Parametric Test to Detect Data-Copying in Generative Models", arXiv:2004.05675, and
the nearest-neighbour figures of generative-model papers since Goodfellow et al. arXiv:1406.2661). With
flattened images in [0, 1] and the Euclidean distance,

    d(s)      = min_{x in train} ||s - x||_2          for each generated sample s
    d(t)      = min_{x in train} ||t - x||_2          for each held-out test image t

    fraction_closer_than_any_test      = 1/N sum_s 1[ d(s) < min_t d(t) ]
    fraction_below_test_5th_percentile = 1/N sum_s 1[ d(s) < P5_t d(t) ]

The first counts samples nearer to the training set than every test image is: a strict signal (near 0 for
a model that does not copy, since even a fresh data draw seldom beats the minimum of many), but a single
test image that happens to duplicate a training image (d(t) = 0) silences it. The second, against the 5th
percentile of the test distances, is less extreme: about 5% for a model whose samples are as far from the
training set as new data; much more than 5% means samples sit closer to training images than new data does.

Pixel distance is a crude similarity (a one-pixel shift moves an image far away), so these numbers flag
exact or near-exact copies; look at `nearest_neighbour_grid` too.
"""

import numpy as np
import torch
from PIL import Image

from hubgen.pipeline_utils import make_grid

from ..errors import UserInputError

__all__ = ["nearest_neighbours", "memorization_report", "nearest_neighbour_grid"]


def _flatten(images, name: str) -> torch.Tensor:
    """(N, ...) numpy array or torch tensor -> (N, D) float64 tensor; uint8 pixels are divided by 255."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.ndim < 2 or x.shape[0] == 0:
        raise UserInputError(f"`{name}` must be a non-empty batch (N, ...), got shape {tuple(x.shape)}.")
    x = x.double() / 255.0 if x.dtype == torch.uint8 else x.double()
    if not torch.isfinite(x).all():
        raise UserInputError(f"`{name}` contains NaN or infinite values.")
    return x.reshape(x.shape[0], -1)  # (N, D)


def nearest_neighbours(queries, references, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """For each query q_i: j*(i) = argmin_j ||q_i - r_j||_2 and its distance, over flattened rows.

    `queries` (N, ...) and `references` (R, ...) may be images of any shape with the same number of values
    per item (uint8 pixels are scaled to [0, 1]). The search is exact (no approximate index): distances are
    computed with `torch.cdist` in float64, `batch_size` queries at a time (memory: batch_size x R x 8 bytes),
    and the distance to the chosen neighbour is recomputed directly as ||q_i - r_j*||, so an exact copy
    reports 0.0. Returns (distances (N,) float64, indices (N,) int64).
    """
    q = _flatten(queries, "queries")  # (N, D)
    distances, indices, _ = _nearest_over_chunks(q, [references], batch_size, "references", _flatten)
    return distances, indices


def _nearest_over_chunks(q: torch.Tensor, chunks, batch_size: int, name: str, prepare) -> tuple:
    """The nearest reference of each row of q (N, D), over references that come as consecutive chunks.

    Within a chunk the candidate is argmin_j of `torch.cdist`; its distance is recomputed exactly as
    ||q_i - r_j||; a later chunk replaces it only when strictly nearer (so ties keep the first index, as one
    argmin over all references would). Only one chunk is in memory at a time: a training split larger than
    memory is searched through `ds.take` of index ranges. Returns (distances (N,), indices (N,), R).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
    best = torch.full((q.shape[0],), float("inf"), dtype=torch.float64)  # (N,)
    best_index = torch.zeros(q.shape[0], dtype=torch.int64)  # (N,)
    offset = 0
    for chunk in chunks:
        r = prepare(chunk, name)  # (R_c, D)
        if q.shape[1] != r.shape[1]:
            raise UserInputError(f"`queries` have {q.shape[1]} values per item but `{name}` have {r.shape[1]}.")
        for start in range(0, q.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            j = torch.cdist(q[rows], r).argmin(dim=1)  # (b,)
            # ||q_i - r_j|| without the |q|^2 + |r|^2 - 2 q.r cancellation of the matrix-product path
            d = torch.linalg.vector_norm(q[rows] - r[j], dim=1)  # (b,)
            nearer = d < best[rows]
            best[rows] = torch.where(nearer, d, best[rows])
            best_index[rows] = torch.where(nearer, j + offset, best_index[rows])
        offset += r.shape[0]
    if offset == 0:
        raise UserInputError(f"`{name}` is empty: there is nothing to search.")
    return best.numpy(), best_index.numpy(), offset


def _summary(d: np.ndarray) -> dict:
    return {
        "mean": float(d.mean()),
        "median": float(np.median(d)),
        "min": float(d.min()),
        "p5": float(np.percentile(d, 5)),
    }


def _flatten_unit_range(images, name: str) -> torch.Tensor:
    x = _flatten(images, name)  # (N, D) float64
    if x.min() < -1e-6 or x.max() > 1 + 1e-6:
        raise UserInputError(
            f"`{name}` must hold pixels in [0, 1] (or uint8), got values from {float(x.min()):.3g} to "
            f"{float(x.max()):.3g}; distances between differently scaled images mean nothing."
        )
    return x


def memorization_report(samples, train_images, test_images, batch_size: int = 256) -> dict:
    """Nearest-training-image distances of generated samples, against the same statistic for test images.

    `samples` (N, C, H, W), `train_images` (R, C, H, W), `test_images` (T, C, H, W): float in [0, 1] or
    uint8. The test images must be held out from training (not in `train_images`). `train_images` may also
    be an iterable of consecutive batches (e.g. `ds.take` of index ranges), read once, one at a time, so the
    training split never has to fit in memory; indices then count across the batches.

    Returns a dict:
      sample_to_train: {mean, median, min, p5} of d(s) = min_x ||s - x|| over the samples,
      test_to_train:   {mean, median, min, p5} of d(t) over the test images,
      fraction_closer_than_any_test = mean_s 1[d(s) < min_t d(t)],
      fraction_below_test_5th_percentile = mean_s 1[d(s) < P5_t d(t)],
      nn_distances (N,) float64 and nn_indices (N,) int64 (index into `train_images`, for the grid),
      num_samples, num_train, num_test.
    """
    s = _flatten_unit_range(samples, "samples")  # (N, D)
    t = _flatten_unit_range(test_images, "test_images")  # (T, D)
    if s.shape[1] != t.shape[1]:
        raise UserInputError(f"`samples` have {s.shape[1]} values per item but `test_images` have {t.shape[1]}.")
    chunks = [train_images] if isinstance(train_images, (torch.Tensor, np.ndarray)) else train_images
    # one pass over the training images for samples and test images together
    d, idx, num_train = _nearest_over_chunks(torch.cat([s, t]), chunks, batch_size, "train_images", _flatten_unit_range)
    d_samples, d_test, idx = d[: len(s)], d[len(s) :], idx[: len(s)]  # (N,), (T,), (N,)
    return {
        "sample_to_train": _summary(d_samples),
        "test_to_train": _summary(d_test),
        "fraction_closer_than_any_test": float(np.mean(d_samples < d_test.min())),
        "fraction_below_test_5th_percentile": float(np.mean(d_samples < np.percentile(d_test, 5))),
        "nn_distances": d_samples,
        "nn_indices": idx,
        "num_samples": int(d_samples.shape[0]),
        "num_train": int(num_train),
        "num_test": int(d_test.shape[0]),
    }


def _as_image_batch(images, name: str) -> torch.Tensor:
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(1)  # (B, H, W) -> (B, 1, H, W)
    if x.ndim != 4:
        raise UserInputError(f"`{name}` must be images (B, C, H, W) or (B, H, W), got shape {tuple(x.shape)}.")
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def nearest_neighbour_grid(samples, train_images, indices, num: int = 16, min_tile_px: int = 48) -> Image.Image:
    """A PIL image of two rows: the first `num` samples on top, each one's nearest training image below it.

    `indices` are the `nn_indices` of `memorization_report` (or `nearest_neighbours`). Images are (B, C, H, W)
    in [0, 1] or uint8; tiles are enlarged by an integer factor (nearest neighbour) to at least `min_tile_px`
    pixels so 8x8 digits stay visible; the grid has 2-pixel padding.
    """
    s = _as_image_batch(samples, "samples")
    t = _as_image_batch(train_images, "train_images")
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
    if idx.ndim != 1 or idx.shape[0] != s.shape[0]:
        raise UserInputError(f"`indices` must be 1-D with one entry per sample ({s.shape[0]}), got {tuple(idx.shape)}.")
    if idx.numel() and (idx.min() < 0 or idx.max() >= t.shape[0]):
        raise UserInputError(
            f"`indices` must index `train_images` (0..{t.shape[0] - 1}), got {idx.min()}..{idx.max()}."
        )
    if s.shape[1:] != t.shape[1:]:
        raise UserInputError(f"`samples` {tuple(s.shape[1:])} and `train_images` {tuple(t.shape[1:])} differ in shape.")
    if not isinstance(num, int) or num < 1:
        raise UserInputError(f"`num` must be an integer >= 1, got {num!r}.")
    n = min(num, s.shape[0])
    rows = torch.cat([s[:n], t[idx[:n]]]).clamp(0, 1)  # (2n, C, H, W): samples, then their neighbours
    scale = max(1, -(-min_tile_px // s.shape[-1]))  # ceil(min_tile_px / W)
    rows = torch.nn.functional.interpolate(rows, scale_factor=scale, mode="nearest")  # (2n, C, sH, sW)
    return make_grid(rows, nrow=n)

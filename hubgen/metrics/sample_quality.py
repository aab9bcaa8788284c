"""Sample quality of a generative model on a digit dataset, in one call every family uses.

    report = evaluate_samples(samples, dataset="digits", seed=0)

`samples` are N generated images (N, 1, H, W) in [0, 1]. They are compared, in the penultimate features of the
frozen digit classifier for their size (28x28: "mnist", 8x8: "digits"), with the dataset's test split:

- FD-<network>: the Frechet distance between Gaussian fits of the two feature sets (Heusel et al. 2017's
  formula in a digit classifier's features, so it is *not* the Inception FID). Beside it, its floor at the
  same N: the distance from the first N *training* images to the same test statistics. Frechet distances
  depend strongly on N, so only figures at equal N compare.
- precision, recall, density, coverage (k nearest neighbours) against the first min(N, |test|) test images.
- mode coverage: the classifier's predicted-class histogram of the samples against the test labels'.
- memorization: pixel-space nearest training image of every sample, against the same statistic for as many
  held-out test images.

Every report carries the feature network's name, version and sha256, N, k, the seed and the split.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..data import ImageDataset, load_dataset
from ..errors import UserInputError
from .classifier import classifier_info, extract, feature_network_id, load_classifier
from .frechet import feature_statistics, frechet_distance, load_statistics, save_statistics
from .memorization import memorization_report, nearest_neighbour_grid
from .modes import class_histogram, mode_coverage
from .prdc import precision_recall_density_coverage

__all__ = ["evaluate_samples", "reference_statistics", "network_for_size", "format_sample_quality", "cache_dir"]

NETWORK_FOR_SIZE = {28: "mnist", 8: "digits"}


NEAREST_NEIGHBOURS = "nearest_neighbours.png"  # the picture name every card links


def network_for_size(size: int) -> str:
    if size not in NETWORK_FOR_SIZE:
        raise UserInputError(
            f"No frozen digit classifier for {size}x{size} images; sample-quality metrics exist for sizes "
            f"{sorted(NETWORK_FOR_SIZE)}."
        )
    return NETWORK_FOR_SIZE[size]


def cache_dir() -> Path:
    """Where reference statistics are cached: $HUBGEN_CACHE, else $HF_HOME/hubgen, else ~/.cache/hubgen."""
    import os

    if os.environ.get("HUBGEN_CACHE"):
        return Path(os.environ["HUBGEN_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hubgen"
    return Path.home() / ".cache" / "hubgen"


def _fingerprint(ds: ImageDataset) -> str:
    """A digest of the split's pixels and labels: the cache key does not depend on where the data came from."""
    h = hashlib.sha256(ds.images.numpy().tobytes())
    if ds.labels is not None:
        h.update(ds.labels.numpy().tobytes())
    return h.hexdigest()[:16]


def _intensities(ds: ImageDataset, n: int | None = None) -> torch.Tensor:
    images = ds.images if n is None else ds.images[:n]
    return images.float() / 255.0  # (N, C, H, W) in [0, 1]


def reference_statistics(ds: ImageDataset, network: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Feature mean and covariance of a whole split, computed once and cached as .npz (no pickle)."""
    sha = classifier_info(network)["sha256"]
    path = cache_dir() / "reference_stats" / f"{network}-{sha[:12]}-{ds.split}-{_fingerprint(ds)}.npz"
    if path.is_file():
        return load_statistics(path)
    features, _ = extract(load_classifier(network), _intensities(ds))
    mu, sigma = feature_statistics(features)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "dataset": ds.name,
        "split": ds.split,
        "num_images": len(ds),
        "feature_network": feature_network_id(network),
    }
    save_statistics(path, mu, sigma, **meta)
    return mu, sigma, meta


def evaluate_samples(
    samples: torch.Tensor,
    dataset: str,
    seed: int,
    k: int = 5,
    reference_split: str = "test",
) -> dict:
    """All sample-quality figures for `samples` (N, 1, H, W) in [0, 1]; see the module docstring.

    `seed` is the seed the caller drew the samples with (recorded, not used). The report's "pictures" entry
    ({file name: PIL image}, not JSON) holds the nearest-neighbour grid (samples beside their nearest training
    images): the caller pops it into its EvalResult, which hubgen.model_folder writes; metrics write no files.
    """
    if samples.ndim != 4 or samples.shape[1] != 1 or samples.shape[2] != samples.shape[3]:
        raise UserInputError(f"`samples` must have shape (N, 1, H, H), got {tuple(samples.shape)}.")
    n = samples.shape[0]
    if n <= k:
        raise UserInputError(f"Sample-quality metrics need more samples than k = {k}, got {n}.")
    network = network_for_size(samples.shape[-1])
    classifier = load_classifier(network)
    test, train = load_dataset(dataset, reference_split), load_dataset(dataset, "train")
    if test.image_shape != tuple(samples.shape[1:]):
        raise UserInputError(
            f"Samples of shape {tuple(samples.shape[1:])} do not match dataset images {test.image_shape}."
        )
    samples = samples.detach().float().cpu().clamp(0, 1)

    # 1. Frechet distance in the classifier's features, and its floor at the same N
    fake_features, fake_probs = extract(classifier, samples)
    mu_ref, sigma_ref, _ = reference_statistics(test, network)
    fd = frechet_distance(*feature_statistics(fake_features), mu_ref, sigma_ref)
    n_floor = min(n, len(train))
    train_features, _ = extract(classifier, _intensities(train, n_floor))
    floor = frechet_distance(*feature_statistics(train_features), mu_ref, sigma_ref)

    # 2. Precision, recall, density, coverage at equal N
    n_real = min(n, len(test))
    real_features, _ = extract(classifier, _intensities(test, n_real))
    prdc = precision_recall_density_coverage(real_features, fake_features[:n_real], k=k)

    # 3. Modes: the predicted-class histogram against the test labels'
    modes = None
    if test.labels is not None:
        predicted = fake_probs.argmax(axis=1)
        modes = mode_coverage(predicted, class_histogram(test.labels.numpy()))

    # 4. Memorization in pixel space, against as many held-out test images as samples
    memo = memorization_report(samples, _intensities(train), _intensities(test, n_real))
    grid = nearest_neighbour_grid(samples, _intensities(train), memo["nn_indices"])
    memo = {key: value for key, value in memo.items() if key not in ("nn_indices", "nn_distances")}
    if modes is not None:
        modes["threshold_description"] = "its share of the samples is at least a quarter of its share of the data"

    return {
        "feature_network": {**classifier_info(network), "id": feature_network_id(network)},
        "dataset": str(dataset),
        "reference_split": reference_split,
        "num_reference_images": len(test),
        "num_samples": n,
        "seed": seed,
        "frechet_distance": {"name": f"FD-{network}", "value": fd, "floor_train_vs_test": floor, "floor_n": n_floor},
        "prdc": prdc,
        "modes": _jsonable(modes),
        "memorization": _jsonable(memo),
        "pictures": {NEAREST_NEIGHBOURS: grid},
    }


def _jsonable(obj):
    if isinstance(obj, dict):
        return {key: _jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def format_sample_quality(report: dict) -> str:
    """A few printable lines: every figure with its N, k, seed, split and the feature network's hash."""
    fd, prdc, net = report["frechet_distance"], report["prdc"], report["feature_network"]
    lines = [
        f"  sample quality: N={report['num_samples']} samples (seed {report['seed']}) vs {report['dataset']} "
        f"{report['reference_split']}; features: {net['id']}",
        f"  {fd['name']:16s} {fd['value']:.3f}   (floor: train vs test at N={fd['floor_n']}: "
        f"{fd['floor_train_vs_test']:.3f})",
        f"  precision/recall {prdc['precision']:.3f} / {prdc['recall']:.3f}   density/coverage "
        f"{prdc['density']:.3f} / {prdc['coverage']:.3f}   (k={prdc['k']})",
    ]
    if report.get("modes"):
        m = report["modes"]
        lines.append(f"  classes covered  {m['classes_covered']} / {m['num_classes']}")
    memo = report["memorization"]
    lines.append(
        f"  memorization     fraction closer to train than any test image: {memo['fraction_closer_than_any_test']:.3f}"
    )
    return "\n".join(lines)

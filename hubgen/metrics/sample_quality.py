"""Sample quality of a generative model on its dataset, in one call every family uses.

    report = evaluate_samples(samples, dataset="digits", seed=0)
    report = evaluate_samples(samples, dataset=spec, seed=0, feature_network="classifiers/cifar")

`samples` are N generated images (N, C, H, W) in [0, 1], C = 1 or 3, the shape of the dataset's images. They
are compared with the dataset's `reference_split` (test by default) in the penultimate features of a frozen
classifier, the *feature network*:

- the shipped digit classifier for their shape (1x28x28: "mnist", 1x8x8: "digits"), or
- `feature_network`: a shipped name, or a folder written by `hubgen metrics train-classifier` on labelled
  images of the same shape (RGB included), recorded with the sha256 of its weights; it takes precedence.

With a feature network:

- FD-<network>: the Frechet distance between Gaussian fits of the two feature sets (Heusel et al. 2017's
  formula in a classifier's features, so it is *not* the Inception FID). Beside it, its floor at the
  same N: the distance from the first N *training* images to the same test statistics. Frechet distances
  depend strongly on N, so only figures at equal N compare.
- precision, recall, density, coverage (k nearest neighbours) against the first min(N, |test|) test images.
- mode coverage: the classifier's predicted-class histogram of the samples against the test labels'.

Without one (RGB or other sizes, no `feature_network`), those figures are NOT measured: the report sets
`frechet_distance`, `prdc` and `modes` to None and says why in `not_measured` (never a number in an unnamed
feature space). Always:

- memorization: pixel-space nearest training image of every sample, against the same statistic for as many
  held-out test images, and the nearest-neighbour picture.

Every report carries the feature network's name, id and sha256 (or None), N, k, the seed and the split. Images
of the dataset are read through `ds.take` in chunks of a few MB, so a large training split is never decoded
into memory at once.
"""

import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import load_dataset
from ..errors import UserInputError
from .classifier import (
    CLASSIFIERS,
    DigitClassifier,
    classifier_info,
    extract,
    load_classifier,
    load_feature_network,
    shipped_network_for,
)
from .frechet import feature_statistics, frechet_distance, load_statistics, save_statistics
from .memorization import memorization_report, nearest_neighbour_grid
from .modes import class_histogram, mode_coverage
from .prdc import precision_recall_density_coverage

__all__ = [
    "evaluate_samples",
    "reference_statistics",
    "network_for_size",
    "feature_network_for",
    "FeatureNetwork",
    "format_sample_quality",
    "cache_dir",
    "NOT_MEASURED",
]

NETWORK_FOR_SIZE = {28: "mnist", 8: "digits"}

NEAREST_NEIGHBOURS = "nearest_neighbours.png"  # the picture name every card links
NUM_NEAREST_SHOWN = 16  # samples in the nearest-neighbour picture
CHUNK_VALUES = 1 << 22  # pixels per chunk read through ds.take (16 MB as float32)
# What a report without a feature network leaves out (the card and the leaderboard show none of them).
NOT_MEASURED = ["frechet_distance", "precision", "recall", "density", "coverage", "modes"]


def network_for_size(size: int) -> str:
    if size not in NETWORK_FOR_SIZE:
        raise UserInputError(
            f"No frozen digit classifier for {size}x{size} images; sample-quality metrics exist for sizes "
            f"{sorted(NETWORK_FOR_SIZE)}."
        )
    return NETWORK_FOR_SIZE[size]


@dataclass(frozen=True)
class FeatureNetwork:
    """A frozen classifier whose penultimate features the figures are computed in, and its record."""

    model: DigitClassifier
    info: dict  # name, id, version, sha256, image_shape, feature_dim, test_accuracy, shipped, ...

    @property
    def name(self) -> str:
        return self.info["name"]


def _shipped(name: str) -> FeatureNetwork:
    return FeatureNetwork(load_classifier(name), classifier_info(name))


def _shape_text(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _shipped_text() -> str:
    return ", ".join(f"1x{e.sample_size}x{e.sample_size} ({e.name!r})" for e in CLASSIFIERS.values())


def feature_network_for(image_shape, feature_network: str | os.PathLike | None = None) -> FeatureNetwork | None:
    """The feature network for images of shape (C, H, W): `feature_network` when given (a shipped name or a
    folder from `hubgen metrics train-classifier`; it must take that shape), else the shipped classifier for the
    shape, else None (the figures that need one are then not measured)."""
    shape = tuple(int(s) for s in image_shape)
    if feature_network is None:
        name = shipped_network_for(shape)
        return None if name is None else _shipped(name)
    given = str(feature_network)
    if given in CLASSIFIERS and not Path(given).expanduser().is_dir():
        network = _shipped(given)
    else:
        network = FeatureNetwork(*load_feature_network(feature_network))
    taken = tuple(network.info["image_shape"])
    if taken != shape:
        raise UserInputError(
            f"`feature_network` {given!r} takes {_shape_text(taken)} images, but the samples are "
            f"{_shape_text(shape)}: train one on this data with `hubgen metrics train-classifier`."
        )
    return network


def cache_dir() -> Path:
    """Where reference statistics are cached: $HUBGEN_CACHE, else $HF_HOME/hubgen, else ~/.cache/hubgen."""
    if os.environ.get("HUBGEN_CACHE"):
        return Path(os.environ["HUBGEN_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hubgen"
    return Path.home() / ".cache" / "hubgen"


def _chunks(ds, n: int | None = None):
    """uint8 images (b, C, H, W) of the first n items of `ds` (all when None), a few MB at a time, via ds.take."""
    total = len(ds) if n is None else min(n, len(ds))
    step = max(1, CHUNK_VALUES // int(np.prod(ds.image_shape)))
    for start in range(0, total, step):
        yield ds.take(torch.arange(start, min(start + step, total)))


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0  # uint8 -> float32 intensities in [0, 1], as pipelines return them


def _intensities(ds, n: int) -> torch.Tensor:
    return _as_float(ds.take(min(n, len(ds))))  # (n, C, H, W) in [0, 1]


def _fingerprint(ds) -> str:
    """A digest of the split's pixels and labels: the cache key does not depend on where the data came from."""
    h = hashlib.sha256()
    for chunk in _chunks(ds):
        h.update(chunk.numpy().tobytes())
    if ds.labels is not None:
        h.update(ds.labels.numpy().tobytes())
    return h.hexdigest()[:16]


def _features(network: FeatureNetwork, ds) -> np.ndarray:
    return np.concatenate([extract(network.model, _as_float(chunk))[0] for chunk in _chunks(ds)])  # (N, F)


def reference_statistics(ds, network: str | FeatureNetwork) -> tuple[np.ndarray, np.ndarray, dict]:
    """Feature mean and covariance of a whole split, computed once and cached as .npz (no pickle).

    `network` is a shipped classifier's name or a `FeatureNetwork`; the cache key holds its sha256.
    """
    net = network if isinstance(network, FeatureNetwork) else _shipped(network)
    sha = net.info["sha256"]
    path = cache_dir() / "reference_stats" / f"{net.name}-{sha[:12]}-{ds.split}-{_fingerprint(ds)}.npz"
    if path.is_file():
        return load_statistics(path)
    mu, sigma = feature_statistics(_features(net, ds))
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": ds.name, "split": ds.split, "num_images": len(ds), "feature_network": net.info["id"]}
    save_statistics(path, mu, sigma, **meta)
    return mu, sigma, meta


def _dataset_label(dataset, ds) -> str:
    if isinstance(dataset, (str, os.PathLike)):
        return str(dataset)
    return str(getattr(dataset, "dataset", None) or ds.name)  # a hubgen.data.DataSpec


def _dataset_arguments(dataset) -> str:
    """The `--dataset ...` options of `hubgen metrics train-classifier` that load the same data."""
    if isinstance(dataset, (str, os.PathLike)):
        return f"--dataset {shlex.quote(str(dataset))}"
    args = [f"--dataset {shlex.quote(str(getattr(dataset, 'dataset', dataset)))}"]
    for field, option in [("config", "--dataset_config"), ("revision", "--dataset_revision"),
                          ("image_column", "--image_column"), ("label_column", "--label_column"),
                          ("resolution", "--resolution")]:  # fmt: skip
        value = getattr(dataset, field, None)
        if value is not None:
            args.append(f"{option} {shlex.quote(str(value))}")
    if getattr(dataset, "center_crop", False):
        args.append("--center_crop")
    return " ".join(args)


def _not_measured_reason(shape, dataset, has_labels: bool) -> str:
    what = f"no feature network for {_shape_text(shape)} images (hubgen ships digit classifiers for {_shipped_text()})"
    if has_labels:
        return (
            f"{what}: train one with `hubgen metrics train-classifier {_dataset_arguments(dataset)} --output_dir DIR` "
            "and pass --feature_network DIR"
        )
    return (
        f"{what}, and the dataset has no labels to train one on: pass --feature_network DIR with a classifier of "
        f"{_shape_text(shape)} images trained by `hubgen metrics train-classifier` on labelled data"
    )


def _modes(network: FeatureNetwork, probs: np.ndarray, test) -> dict | None:
    """Predicted-class histogram of the samples against the test labels' (None without labels it can score)."""
    labels = test.labels
    num_classes = int(network.model.config.num_classes)
    if labels is None:
        return None
    labels = labels.numpy()
    labels = labels[labels >= 0]  # -1: an unlabelled item
    if labels.size == 0 or labels.max() >= num_classes:
        return None  # the classifier's classes are not the dataset's labels
    modes = mode_coverage(probs.argmax(axis=1), class_histogram(labels, num_classes), num_classes=num_classes)
    modes["threshold_description"] = "its share of the samples is at least a quarter of its share of the data"
    return modes


def evaluate_samples(
    samples: torch.Tensor,
    dataset,
    seed: int,
    k: int = 5,
    reference_split: str = "test",
    feature_network: str | os.PathLike | None = None,
) -> dict:
    """All sample-quality figures for `samples` (N, C, H, W) in [0, 1], C = 1 or 3; see the module docstring.

    `dataset` is a name, a path or a `hubgen.data.DataSpec` (given to `hubgen.data.load_dataset` as it is).
    `feature_network` (a shipped name or a `hubgen metrics train-classifier` folder) chooses the feature
    network; by default the shipped one for the samples' shape, else none (then `frechet_distance`, `prdc` and
    `modes` are None and `not_measured` says why). `seed` is the seed the caller drew the samples with
    (recorded, not used). The report's "pictures" entry ({file name: PIL image}, not JSON) holds the
    nearest-neighbour grid (samples beside their nearest training images): the caller pops it into its
    EvalResult, which hubgen.model_folder writes; metrics write no files. The rest is JSON-serializable.
    """
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[1] not in (1, 3):
        shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise UserInputError(f"`samples` must have shape (N, C, H, W) with C = 1 or 3, got {shape}.")
    n, shape = samples.shape[0], tuple(samples.shape[1:])
    if n == 0:
        raise UserInputError("`samples` is empty: there is nothing to evaluate.")
    test, train = load_dataset(dataset, reference_split), load_dataset(dataset, "train")
    if tuple(test.image_shape) != shape:
        message = (
            f"`samples` have shape {shape} per image but the images of {_dataset_label(dataset, test)!r} have "
            f"shape {tuple(test.image_shape)}: samples are compared with the data they model."
        )
        if shipped_network_for(shape) is None:
            colour = "grey" if shape[0] == 1 else "RGB"
            message += (
                f" No frozen digit classifier for {shape[1]}x{shape[2]} {colour} images exists either (hubgen ships "
                f"{_shipped_text()})."
            )
        raise UserInputError(message)
    network = feature_network_for(shape, feature_network)
    if network is not None and n <= k:
        raise UserInputError(f"Sample-quality metrics need more samples than k = {k}, got {n}.")
    samples = samples.detach().float().cpu().clamp(0, 1)
    n_real = min(n, len(test))
    fd = prdc = modes = not_measured = None

    if network is not None:
        # 1. Frechet distance in the classifier's features, and its floor at the same N
        fake_features, fake_probs = extract(network.model, samples)
        mu_ref, sigma_ref, _ = reference_statistics(test, network)
        n_floor = min(n, len(train))
        train_features, _ = extract(network.model, _intensities(train, n_floor))
        fd = {
            "name": f"FD-{network.name}",
            "value": frechet_distance(*feature_statistics(fake_features), mu_ref, sigma_ref),
            "floor_train_vs_test": frechet_distance(*feature_statistics(train_features), mu_ref, sigma_ref),
            "floor_n": n_floor,
        }
        # 2. Precision, recall, density, coverage at equal N
        real_features, _ = extract(network.model, _intensities(test, n_real))
        prdc = precision_recall_density_coverage(real_features, fake_features[:n_real], k=k)
        # 3. Modes: the predicted-class histogram against the test labels'
        modes = _modes(network, fake_probs, test)
    else:
        has_labels = train.labels is not None and bool((train.labels >= 0).any())
        not_measured = {"metrics": list(NOT_MEASURED), "reason": _not_measured_reason(shape, dataset, has_labels)}

    # 4. Memorization in pixel space, against as many held-out test images as samples (one pass over train)
    memo = memorization_report(samples, map(_as_float, _chunks(train)), _intensities(test, n_real))
    shown = min(NUM_NEAREST_SHOWN, n)
    neighbours = _as_float(train.take(torch.as_tensor(memo["nn_indices"][:shown])))  # (shown, C, H, W)
    grid = nearest_neighbour_grid(samples[:shown], neighbours, np.arange(shown), num=shown)
    memo = {key: value for key, value in memo.items() if key not in ("nn_indices", "nn_distances")}

    return {
        "feature_network": None if network is None else network.info,
        "not_measured": not_measured,
        "dataset": _dataset_label(dataset, test),
        "reference_split": reference_split,
        "num_reference_images": len(test),
        "num_samples": n,
        "seed": seed,
        "image_shape": list(shape),
        "frechet_distance": fd,
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
    """A few printable lines: every figure with its N, k, seed, split and the feature network's hash; when no
    feature network measured them, one line that says so and why."""
    net = report["feature_network"]
    features = net["id"] if net else "none"
    lines = [
        f"  sample quality: N={report['num_samples']} samples (seed {report['seed']}) vs {report['dataset']} "
        f"{report['reference_split']}; features: {features}"
    ]
    if report.get("not_measured"):
        lines.append(
            "  NOT measured     Frechet distance, precision/recall/density/coverage, modes: "
            f"{report['not_measured']['reason']}"
        )
    else:
        fd, prdc = report["frechet_distance"], report["prdc"]
        lines += [
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

"""Mode coverage and label accuracy from the labels a frozen classifier predicts for generated images.

The modes of a labelled image distribution are its classes. A frozen classifier labels each generated
sample; the histogram of those labels, p_samples, is compared with the class histogram of the data,
p_data (Srivastava et al., "VEEGAN", arXiv:1705.07761, count modes this way, and Che et al., "Mode
Regularized GANs", arXiv:1612.02136, compare label histograms with a KL divergence):

    p_samples(c) = 1/N sum_i 1[classifier(x_i) = c]

    covered(c)   = 1[ p_samples(c) >= t_c  and  p_samples(c) > 0 ],   t_c = 0.25 p_data(c) by default,

so a class that gets less than a quarter of its expected share of the samples counts as dropped. Both
directions of the KL divergence are reported, in nats, after adding SMOOTHING = 1e-6 to every share and
renormalising (so a class with no samples gives a large but finite value):

    KL(p_samples || p_data) = sum_c p_samples(c) log(p_samples(c) / p_data(c))   mass the model puts where the
                                                                                 data has little: invented modes
    KL(p_data || p_samples) = sum_c p_data(c) log(p_data(c) / p_samples(c))     data mass the model misses:
                                                                                 dropped modes (mode collapse)

A model that collapses onto one class has a small KL(p_samples || p_data) (about log(1 / p_data(c)), 2.3
nats for 10 balanced classes) but a large KL(p_data || p_samples) (about 0.9 log(0.1 / 1e-6) - 0.1 log 10 = 10.1 nats):
the reverse direction is the one that measures mode dropping.

These numbers inherit the classifier's errors: a class that it confuses with another looks dropped or
invented. Report its test accuracy (and version) beside them.
"""

import numpy as np

from ..errors import UserInputError

__all__ = ["class_histogram", "mode_coverage", "label_accuracy", "SMOOTHING", "DEFAULT_THRESHOLD_FRACTION"]

SMOOTHING = 1e-6
DEFAULT_THRESHOLD_FRACTION = 0.25


def _as_labels(labels, name: str) -> np.ndarray:
    if hasattr(labels, "detach"):  # a torch tensor
        labels = labels.detach().cpu().numpy()
    a = np.asarray(labels)
    if a.ndim != 1 or a.size == 0:
        raise UserInputError(f"`{name}` must be a non-empty 1-D array of class indices, got shape {a.shape}.")
    if not np.issubdtype(a.dtype, np.integer):
        if not (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))):
            raise UserInputError(f"`{name}` must hold integer class indices, got dtype {a.dtype}.")
        a = a.astype(np.int64)
    return a.astype(np.int64)


def class_histogram(labels, num_classes: int = 10) -> np.ndarray:
    """p(c) = 1/N sum_i 1[label_i = c] for c = 0..num_classes-1: the normalised class histogram (float64)."""
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise UserInputError(f"`num_classes` must be an integer >= 1, got {num_classes!r}.")
    y = _as_labels(labels, "labels")
    if y.min() < 0 or y.max() >= num_classes:
        raise UserInputError(f"`labels` must lie in 0..{num_classes - 1}, got values from {y.min()} to {y.max()}.")
    return np.bincount(y, minlength=num_classes).astype(np.float64) / y.size


def _smoothed_kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) = sum_c p(c) log(p(c) / q(c)) in nats, both shares smoothed by SMOOTHING and renormalised."""
    p = (p + SMOOTHING) / (1.0 + SMOOTHING * p.size)
    q = (q + SMOOTHING) / (1.0 + SMOOTHING * q.size)
    return float(np.sum(p * np.log(p / q)))


def mode_coverage(predicted_labels, reference_histogram, threshold=None, num_classes: int = 10) -> dict:
    """Count the classes (modes) the samples cover and compare their label histogram with the data's.

    `predicted_labels`: the classifier's labels for N generated samples. `reference_histogram`: the data's
    class shares p_data (or counts; they are normalised), length `num_classes`. A class c is covered if
    p_samples(c) >= t_c and at least one sample has it; `threshold` None means t_c = 0.25 p_data(c) (a class
    with less than a quarter of its expected mass is dropped), a float sets the same share t for every class.
    Only classes with p_data(c) > 0 are modes.

    Returns a dict:
      histogram (p_samples, (C,)), reference_histogram (p_data, (C,)), covered (bool (C,)),
      classes_covered (int), missing_classes (list of int), num_modes (classes with p_data > 0),
      num_classes, num_samples, threshold (the per-class t_c used, (C,)),
      kl_samples_to_reference = KL(p_samples || p_data) (invented modes, nats),
      kl_reference_to_samples = KL(p_data || p_samples) (dropped modes, nats), smoothing.
    """
    p = class_histogram(predicted_labels, num_classes)
    q = np.asarray(reference_histogram, dtype=np.float64)
    if q.shape != (num_classes,):
        raise UserInputError(f"`reference_histogram` must have shape ({num_classes},), got {q.shape}.")
    if not np.all(np.isfinite(q)) or np.any(q < 0) or q.sum() <= 0:
        raise UserInputError(f"`reference_histogram` must be non-negative with a positive sum, got {q.tolist()}.")
    q = q / q.sum()
    if threshold is None:
        t = DEFAULT_THRESHOLD_FRACTION * q  # t_c = 0.25 p_data(c)
    else:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise UserInputError(f"`threshold` must be None or a share in [0, 1], got {threshold!r}.")
        t = np.full(num_classes, float(threshold))
    is_mode = q > 0
    covered = is_mode & (p > 0) & (p >= t)
    return {
        "histogram": p,
        "reference_histogram": q,
        "covered": covered,
        "classes_covered": int(covered.sum()),
        "missing_classes": [int(c) for c in np.flatnonzero(is_mode & ~covered)],
        "num_modes": int(is_mode.sum()),
        "num_classes": int(num_classes),
        "num_samples": int(np.asarray(predicted_labels).shape[0]),
        "threshold": t,
        "kl_samples_to_reference": _smoothed_kl(p, q),
        "kl_reference_to_samples": _smoothed_kl(q, p),
        "smoothing": SMOOTHING,
    }


def label_accuracy(predicted_labels, requested_labels) -> float:
    """1/N sum_i 1[classifier(x_i) = y_i]: how often a conditional model's sample for label (or prompt) y_i
    is classified as y_i. Both arguments are 1-D integer arrays of the same length."""
    pred = _as_labels(predicted_labels, "predicted_labels")
    req = _as_labels(requested_labels, "requested_labels")
    if pred.shape != req.shape:
        raise UserInputError(
            f"`predicted_labels` ({pred.shape[0]}) and `requested_labels` ({req.shape[0]}) differ in length."
        )
    return float(np.mean(pred == req))

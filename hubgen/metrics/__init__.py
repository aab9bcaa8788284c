"""hubgen's evaluation toolkit: one set of numbers every family reports, named for what they are.

- `classifier`: frozen digit classifiers (28x28 "mnist", 8x8 "digits") shipped as safetensors with their
  sha256, and `load_feature_network` for one a user trained with `hubgen metrics train-classifier` on any
  labelled data (RGB too); their penultimate features are the feature space of the figures below.
- `frechet`: the Frechet distance between Gaussian fits of two feature sets ("FD-mnist", "FD-digits"; an
  Inception FID only from `inception`, with user-supplied weights).
- `prdc`: precision, recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020).
- `modes`: predicted-class histograms, classes covered, KL to the data's histogram; label accuracy.
- `memorization`: nearest training images of samples against those of held-out images.
- `units`: nats, bits/dim, dequantization and logit-transform Jacobians, for every family.
- `sample_quality.evaluate_samples`: all of the above for a batch of samples, with N, k, seed and hashes;
  without a feature network for the data (RGB, other sizes) it says that the feature-space figures were not
  measured, and why, and reports memorization only.

Names load on first use (so `hubgen.vae.losses` can import `units` without pulling in scipy or the classifier).
"""

from .._lazy import lazy_names

__all__ = [
    "load_classifier",
    "load_feature_network",
    "extract",
    "feature_network_id",
    "classifier_info",
    "feature_statistics",
    "frechet_distance",
    "precision_recall_density_coverage",
    "class_histogram",
    "mode_coverage",
    "label_accuracy",
    "nearest_neighbours",
    "memorization_report",
    "nearest_neighbour_grid",
    "nats_to_bits_per_dim",
    "bits_per_dim_to_nats",
    "logit_transform_log_det",
    "inception_fid",
    "evaluate_samples",
    "format_sample_quality",
]

_LAZY = {
    "load_classifier": "classifier",
    "load_feature_network": "classifier",
    "extract": "classifier",
    "feature_network_id": "classifier",
    "classifier_info": "classifier",
    "feature_statistics": "frechet",
    "frechet_distance": "frechet",
    "precision_recall_density_coverage": "prdc",
    "class_histogram": "modes",
    "mode_coverage": "modes",
    "label_accuracy": "modes",
    "nearest_neighbours": "memorization",
    "memorization_report": "memorization",
    "nearest_neighbour_grid": "memorization",
    "nats_to_bits_per_dim": "units",
    "bits_per_dim_to_nats": "units",
    "logit_transform_log_det": "units",
    "inception_fid": "inception",
    "evaluate_samples": "sample_quality",
    "format_sample_quality": "sample_quality",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

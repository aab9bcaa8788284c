"""The frozen feature network of hubgen's metrics: a small convolutional digit classifier, shipped in the package.

Inception-v3 (the network of FID, Heusel et al. 1706.08500) is neither available offline here nor meaningful
on 28x28 grey digits. For MNIST the FID authors, and TF-GAN's `mnist_frechet_distance`, use the features of
a classifier trained on MNIST instead; hubgen does the same with `DigitClassifier`:

    phi(x) = ReLU(W_f flatten(CNN(x)) + b_f)        features(x), (B, feature_dim), the penultimate layer
    p(y|x) = softmax(W_c phi(x) + b_c)                forward(x) gives the logits, (B, 10)

Frechet distance, precision/recall and coverage are computed on phi(x); classifier-based scores (class
coverage, Inception-Score-like numbers) on p(y|x). Such figures are only comparable when computed with the
same frozen network, so every shipped network has a version and the sha256 of its weights file recorded
here; `load_classifier` refuses a file whose hash differs, and `feature_network_id` is printed beside every
figure computed with it.

The shipped networks (trained by `hubgen metrics train-classifier`, see `training.json` in each folder):

    name     images  data                                   folder
    mnist    1x28x28 ../shared/data/mnist.npz, 50k train    weights/mnist/
    digits   1x8x8   scikit-learn digits, 1437 train        weights/digits/

Any other data (RGB, other sizes) has no shipped network: `hubgen metrics train-classifier --dataset DATA
--output_dir DIR` trains the same architecture on its labels, and `load_feature_network(DIR)` loads it with its
sha256 (computed from the file, checked against the one its training.json recorded) and an id that names it.

Loading reads `config.json` and safetensors only (no pickle), from inside the package or the given folder
(no network).
"""

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME
from torch import nn

from ..errors import UserInputError

__all__ = [
    "DigitClassifier",
    "ShippedClassifier",
    "CLASSIFIERS",
    "load_classifier",
    "feature_network_id",
    "classifier_info",
    "extract",
    "file_sha256",
    "load_feature_network",
    "shipped_network_for",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
NETWORK_NAME = "hubgen-digit-classifier"


class DigitClassifier(ModelMixin, ConfigMixin):
    r"""A small CNN for images of C channels (grey or RGB) with intensities in [0, 1].

    `len(widths)` stages of conv3x3 (no bias) - BatchNorm - ReLU - max-pool 2x2 take (H, W) to
    (s_h, s_w) = (H, W) // 2**len(widths); the (widths[-1], s_h, s_w) map is flattened and mapped by a linear
    layer + ReLU to the `feature_dim` penultimate features; a last linear layer gives the class logits. For
    28x28 with widths (32, 64, 128): 28 -> 14 -> 7 -> 3; for 8x8 with widths (32, 64): 8 -> 4 -> 2.

    Parameters:
        sample_size: image height and width (an int for square images, or (height, width)).
        in_channels: image channels (1 for grey digits, 3 for RGB).
        num_classes: number of classes (10 digits).
        widths: channels of the convolution stages, one max-pooling per stage.
        feature_dim: size of the penultimate (feature) layer.
        dropout: dropout on the features before the classifier layer (training only).
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] = 28,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, ...] = (32, 64, 128),
        feature_dim: int = 128,
        dropout: float = 0.0,
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        height, width = _height_width(sample_size)
        if min(height, width, in_channels, num_classes, feature_dim) < 1 or not widths or min(widths) < 1:
            raise UserInputError(
                f"`sample_size`, `in_channels`, `num_classes`, `feature_dim` and `widths` must be positive, got "
                f"{sample_size}, {in_channels}, {num_classes}, {feature_dim}, {list(widths)}."
            )
        if min(height, width) // 2 ** len(widths) < 1:
            raise UserInputError(
                f"{len(widths)} stages (`widths`={list(widths)}) halve the image {len(widths)} times: "
                f"`sample_size` {sample_size} is too small (needs >= {2 ** len(widths)})."
            )
        if not 0.0 <= dropout < 1.0:
            raise UserInputError(f"`dropout` must be in [0, 1), got {dropout}.")
        stages, c = [], in_channels
        for w in widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(c, w, 3, padding=1, bias=False),  # (B, w, h, h)
                    nn.BatchNorm2d(w),
                    nn.ReLU(),
                    nn.MaxPool2d(2),  # (B, w, h // 2, h // 2)
                )
            )
            c = w
        self.stages = nn.ModuleList(stages)
        s_h, s_w = height // 2 ** len(widths), width // 2 ** len(widths)
        self.to_features = nn.Linear(c * s_h * s_w, feature_dim)
        self.feature_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_dim, num_classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        cfg = self.config
        return (cfg.in_channels, *_height_width(cfg.sample_size))

    def check_images(self, x: torch.Tensor, name: str = "images") -> None:
        expected = self.image_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise UserInputError(
                f"`{name}` must have shape (N, {', '.join(map(str, expected))}) for this classifier, "
                f"got {tuple(x.shape)}."
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): images (B, C, H, W) in [0, 1] -> penultimate features (B, feature_dim), after the ReLU."""
        h = 2.0 * x - 1.0  # [0, 1] -> [-1, 1]: callers pass raw intensities
        for stage in self.stages:
            h = stage(h)  # (B, C, H, W) -> (B, w, H // 2, W // 2)
        h = h.flatten(1)  # (B, widths[-1] * s_h * s_w)
        return torch.relu(self.to_features(h))  # (B, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) for images (B, C, H, W) in [0, 1]; p(y|x) = softmax(logits)."""
        return self.classifier(self.feature_dropout(self.features(x)))  # (B, num_classes)


def _height_width(sample_size) -> tuple[int, int]:
    """`sample_size` as (height, width): an int is a square image; a pair (a list when read from JSON) is (H, W)."""
    if isinstance(sample_size, (list, tuple)) and len(sample_size) == 2:
        return int(sample_size[0]), int(sample_size[1])
    if isinstance(sample_size, (list, tuple)):
        raise UserInputError(f"`sample_size` must be an int or (height, width), got {list(sample_size)}.")
    return int(sample_size), int(sample_size)


@dataclass(frozen=True)
class ShippedClassifier:
    """One network that ships inside the package: where it is, what it was trained on, how good it is."""

    name: str
    folder: Path
    sample_size: int
    sha256: str  # of `folder / diffusion_pytorch_model.safetensors`
    test_accuracy: float
    test_split: str
    version: str = "v1"

    @property
    def weights_file(self) -> Path:
        return Path(self.folder) / SAFETENSORS_WEIGHTS_NAME


CLASSIFIERS: dict[str, ShippedClassifier] = {
    "mnist": ShippedClassifier(
        name="mnist",
        folder=WEIGHTS_DIR / "mnist",
        sample_size=28,
        sha256="21bd9edf49621eae805424097f3aad9945bd91cec57ec9c3f44ca135923a3ee0",
        test_accuracy=0.9952,  # 9952/10000
        test_split="MNIST official test set (10,000 images)",
    ),
    "digits": ShippedClassifier(
        name="digits",
        folder=WEIGHTS_DIR / "digits",
        sample_size=8,
        sha256="38fc54434affd9946259b7ef4ccac9167b4712d0d68872e0c13b4efb996698ed",
        test_accuracy=0.9916666666666667,  # 357/360
        test_split="scikit-learn digits, hubgen's seeded test split (360 images)",
    ),
}


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entry(name_or_size: str | int) -> ShippedClassifier:
    accepted = ", ".join([repr(n) for n in CLASSIFIERS] + [str(e.sample_size) for e in CLASSIFIERS.values()])
    if isinstance(name_or_size, str) and name_or_size in CLASSIFIERS:
        return CLASSIFIERS[name_or_size]
    if not isinstance(name_or_size, bool):
        try:
            size = int(name_or_size)
        except (TypeError, ValueError):
            size = None
        for entry in CLASSIFIERS.values():
            if size is not None and entry.sample_size == size:
                return entry
    raise UserInputError(f"Unknown digit classifier {name_or_size!r}: accepted are {accepted} (a name or image size).")


@functools.lru_cache(maxsize=8)
def _load(folder: str, sha256: str) -> DigitClassifier:
    model = DigitClassifier.from_pretrained(folder, use_safetensors=True)
    model.eval()
    model.requires_grad_(False)
    return model


def load_classifier(name_or_size: str | int) -> DigitClassifier:
    """The shipped classifier "mnist" (or 28) or "digits" (or 8), frozen: eval mode, no gradients.

    The weights file's sha256 is checked against the constant in `CLASSIFIERS` on every call (ValueError on a
    mismatch); the model itself is loaded once per process and shared, so do not train or modify it.
    """
    entry = _entry(name_or_size)
    path = entry.weights_file
    if not path.is_file() or not (Path(entry.folder) / CONFIG_NAME).is_file():
        raise UserInputError(
            f"The {entry.name!r} digit classifier is missing: {entry.folder} must hold {CONFIG_NAME} and "
            f"{SAFETENSORS_WEIGHTS_NAME} (package data of hubgen.metrics; reinstall hubgen)."
        )
    found = file_sha256(path)
    if found != entry.sha256:
        raise UserInputError(
            f"The weights of the {entry.name!r} digit classifier ({path}) have sha256 {found}, but hubgen expects "
            f"{entry.sha256}: the file was changed or replaced, and figures computed with it would not be "
            "comparable. Reinstall hubgen, or retrain and update the constant in hubgen/metrics/classifier.py."
        )
    return _load(str(entry.folder), entry.sha256)


def feature_network_id(name_or_size: str | int) -> str:
    """A one-line identity to print beside every figure, e.g. 'hubgen-digit-classifier/mnist v1 (sha256 1a2b...)'."""
    entry = _entry(name_or_size)
    return f"{NETWORK_NAME}/{entry.name} {entry.version} (sha256 {entry.sha256[:12]}...)"


def classifier_info(name_or_size: str | int) -> dict:
    """What eval_results.json records about the feature network (no model is loaded)."""
    entry = _entry(name_or_size)
    config = json.loads((Path(entry.folder) / CONFIG_NAME).read_text())
    return {
        "name": entry.name,
        "id": feature_network_id(entry.name),
        "version": entry.version,
        "sha256": entry.sha256,
        "test_accuracy": entry.test_accuracy,
        "test_split": entry.test_split,
        "sample_size": entry.sample_size,
        "image_shape": [config["in_channels"], entry.sample_size, entry.sample_size],
        "feature_dim": config["feature_dim"],
        "shipped": True,
    }


def shipped_network_for(image_shape) -> str | None:
    """The shipped classifier for images of shape (C, H, W) ("digits" for 1x8x8, "mnist" for 1x28x28), or None."""
    for entry in CLASSIFIERS.values():
        if tuple(image_shape) == (1, entry.sample_size, entry.sample_size):
            return entry.name
    return None


def load_feature_network(folder: str | os.PathLike) -> tuple[DigitClassifier, dict]:
    """A classifier folder written by `hubgen metrics train-classifier`, frozen, and what a report records of it.

    The folder must hold config.json and the safetensors weights (no pickle); their sha256 is computed from the
    file, and refused when it differs from the `weights_sha256` the folder's training.json recorded (the file
    changed after training). The record ("name", "id", "version": "user", "sha256", "image_shape",
    "feature_dim", "num_classes", "test_accuracy", "trained_on", "command", "shipped": False) goes beside every
    figure computed with it; the id is `hubgen-classifier/<folder name> (sha256 <12 hex>...)`.
    """
    path = Path(folder).expanduser()
    config_file, weights = path / CONFIG_NAME, path / SAFETENSORS_WEIGHTS_NAME
    if not path.is_dir() or not config_file.is_file() or not weights.is_file():
        raise UserInputError(
            f"`feature_network` {str(folder)!r} must be a folder holding {CONFIG_NAME} and {SAFETENSORS_WEIGHTS_NAME}, "
            "as `hubgen metrics train-classifier --output_dir DIR` writes (or a shipped name: "
            f"{', '.join(repr(n) for n in CLASSIFIERS)})."
        )
    try:
        config = json.loads(config_file.read_text())
        training = json.loads((path / "training.json").read_text()) if (path / "training.json").is_file() else {}
    except (OSError, ValueError) as e:
        raise UserInputError(f"`feature_network` {str(folder)!r}: cannot read its JSON files ({e}).") from e
    if config.get("_class_name") != DigitClassifier.__name__:
        raise UserInputError(
            f"`feature_network` {str(folder)!r} holds a {config.get('_class_name')!r}, not a "
            f"{DigitClassifier.__name__} from `hubgen metrics train-classifier`."
        )
    sha256 = file_sha256(weights)
    recorded = training.get("weights_sha256")
    if recorded and recorded != sha256:
        raise UserInputError(
            f"The weights of `feature_network` {weights} have sha256 {sha256}, but its training.json recorded "
            f"{recorded}: the file changed after training, and figures computed with it would not be comparable."
        )
    model = _load(str(path.resolve()), sha256)
    name = re.sub(r"[^\w.-]+", "_", path.resolve().name) or "classifier"
    name = f"user-{name}" if name in CLASSIFIERS else name  # never mistaken for a shipped network's figures
    info = {
        "name": name,
        "id": f"hubgen-classifier/{name} (sha256 {sha256[:12]}...)",
        "version": "user",
        "sha256": sha256,
        "test_accuracy": training.get("test_accuracy"),
        "test_split": f"{training['dataset']} test split ({training.get('num_test_images')} images)"
        if training.get("dataset")
        else None,
        "trained_on": training.get("dataset"),
        "command": training.get("command"),
        "image_shape": list(model.image_shape),
        "feature_dim": model.config.feature_dim,
        "num_classes": model.config.num_classes,
        "shipped": False,
    }
    return model, info


@torch.no_grad()
def extract(
    classifier: DigitClassifier, images: torch.Tensor | np.ndarray, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Features phi(x) as float64 (N, feature_dim) and class probabilities p(y|x) as float64 (N, num_classes).

    `images`: float intensities in [0, 1], shape (N, C, H, W) matching the classifier's config. Runs in eval
    mode, in batches, on the classifier's device and dtype.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise UserInputError(f"`images` must be a tensor (N, C, H, W), got {type(images).__name__}.")
    classifier.check_images(images)
    if not images.is_floating_point():
        raise UserInputError(
            f"`images` must be float intensities in [0, 1], got dtype {images.dtype} (for uint8 pixels pass "
            "`images.float() / 255`)."
        )
    if len(images) == 0:
        raise UserInputError("`images` is empty: there is nothing to extract features from.")
    lo, hi = images.min().item(), images.max().item()
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise UserInputError(
            f"`images` must hold intensities in [0, 1], got values in [{lo:.3f}, {hi:.3f}] (map [-1, 1] outputs "
            "with (x + 1) / 2)."
        )
    if batch_size < 1:
        raise UserInputError(f"`batch_size` must be >= 1, got {batch_size}.")
    was_training = classifier.training
    classifier.eval()
    feats, probs = [], []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(classifier.device, classifier.dtype)  # (b, C, H, W)
        phi = classifier.features(x)  # (b, F)
        logits = classifier.classifier(phi)  # (b, 10)
        feats.append(phi.double().cpu())
        probs.append(torch.softmax(logits.double(), dim=1).cpu())
    classifier.train(was_training)
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()  # (N, F), (N, 10)

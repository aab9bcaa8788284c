"""Datasets by name or path, and the pixel modes every card states.

A dataset is one of:
- `digits`: scikit-learn's bundled 8x8 handwritten digits (1797 images, 17 grey levels 0..16), split once
  with a fixed seed into 1437 train and 360 test images. It ships inside scikit-learn: no network.
- `mnist`: the Hugging Face dataset `ylecun/mnist` (needs the `datasets` package and the Hub or its cache).
- a `.npz` file with uint8 arrays `x_train`, `x_test` (N, H, W) or (N, C, H, W), optional `x_valid` and
  `y_*` labels (as `../shared/data/mnist.npz`); loaded with `allow_pickle=False`.
- an image folder: `train/` and `test/` subfolders if present (otherwise a seeded 90/10 split of all
  images); images in class subfolders get the subfolder's index (sorted names) as label.

Images are kept as uint8 intensities (B, C, H, W) in 0..255, with `levels` the number of grey levels of
the source (17 for digits, 256 otherwise). Pixel modes turn them into model inputs at every use:
- "binary": dynamic binarization, x ~ Bernoulli(intensity / 255), drawn afresh each time
  (Burda et al. 2015 protocol; the IWAE paper's VAE reaches 86.76 nats on MNIST this way).
- "continuous": uniform dequantization, x = (k + u) / L with u ~ U[0, 1), k in 0..L-1 the grey level and
  L = `levels`, so x lies in [0, 1) and bits/dim carries the + log2(L) term.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .errors import UserInputError

__all__ = [
    "ImageDataset",
    "load_dataset",
    "binarize",
    "dequantize",
    "to_model_input",
    "to_signed_range",
    "to_intensities",
    "PIXEL_MODES",
]

PIXEL_MODES = ("binary", "continuous")
NAMED_DATASETS = ("digits", "mnist")
SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def _accepted() -> str:
    return (
        "a name (" + ", ".join(repr(n) for n in NAMED_DATASETS) + "), a .npz file with uint8 arrays "
        "x_train/x_test (and optional y_*), or a folder of images"
    )


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    """uint8 images (N, C, H, W) with optional int64 labels; items are (float intensities in [0, 1], label).

    `name` and `split` say where the images came from; `levels` is the number of grey levels in the source.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    split: str
    levels: int = 256
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise UserInputError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}."
            )
        if len(self.images) == 0:
            raise UserInputError(
                f"Dataset {self.name!r} split {self.split!r} is empty: there is nothing to train or evaluate on."
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise UserInputError(f"Dataset {self.name!r}: {len(self.labels)} labels for {len(self.images)} images.")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i].float() / 255.0
        y = -1 if self.labels is None else int(self.labels[i])
        return x, y

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def captions(self) -> list[str] | None:
        """One caption per image, when the data has them (None otherwise)."""
        return self.extra.get("captions")

    def take(self, n_or_indices) -> torch.Tensor:
        """uint8 images (n, C, H, W): the first n, or those at the given indices, without random augmentation.
        Every dataset, in memory or decoded on demand, has this: code outside hubgen.data reads images only
        through `take` (or items), never a whole `.images` tensor."""
        if isinstance(n_or_indices, int):
            return self.images[: min(n_or_indices, len(self))]
        return self.images[torch.as_tensor(n_or_indices, dtype=torch.long)]


def binarize(intensities: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarization: x_j ~ Bernoulli(p_j) with p_j the intensity in [0, 1], a fresh draw per call."""
    return torch.bernoulli(intensities.clamp(0.0, 1.0), generator=generator)


def dequantize(intensities: torch.Tensor, levels: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization: x = (k + u) / L, u ~ U[0, 1), for grey level k = round(p (L - 1)), L = levels."""
    k = torch.round(intensities * (levels - 1))
    u = torch.rand(intensities.shape, generator=generator, device=intensities.device, dtype=intensities.dtype)
    return (k + u) / levels


def to_model_input(
    intensities: torch.Tensor, pixel_mode: Literal["binary", "continuous"], levels: int = 256, generator=None
) -> torch.Tensor:
    if pixel_mode == "binary":
        return binarize(intensities, generator)
    if pixel_mode == "continuous":
        return dequantize(intensities, levels, generator)
    raise UserInputError(f"`pixel_mode` must be one of {PIXEL_MODES}, got {pixel_mode!r}.")


def to_signed_range(intensities: torch.Tensor, levels: int | None = None) -> torch.Tensor:
    """Stored intensities p in [0, 1] -> the model range [-1, 1] of the GAN, DDPM and text-to-image families.

    x = 2 p - 1; with `levels` = L, p is first snapped to its grey level k = round(p (L - 1)), so x lies on the
    L-point grid x = 2 k / (L - 1) - 1 that the DDPM's discretized decoder scores. The inverse is
    `to_intensities`."""
    if levels is not None:
        return 2 * torch.round(intensities * (levels - 1)) / (levels - 1) - 1
    return intensities * 2 - 1


def to_intensities(x: torch.Tensor) -> torch.Tensor:
    """The model range [-1, 1] -> intensities in [0, 1], clamped: p = (x + 1) / 2."""
    return ((x + 1) / 2).clamp(0, 1)


def _as_nchw(x: np.ndarray, what: str) -> torch.Tensor:
    if x.dtype != np.uint8:
        raise UserInputError(f"{what} must hold uint8 pixels 0..255, got dtype {x.dtype}.")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if x.ndim != 4:
        raise UserInputError(f"{what} must have shape (N, H, W) or (N, C, H, W), got {x.shape}.")
    return torch.from_numpy(np.ascontiguousarray(x))


def _load_digits(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 17 grey levels 0..16 -> uint8 0..255 exactly (16 -> 255); the level structure is kept in `levels`.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
    test_idx, train_idx = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    if split == "valid":
        raise UserInputError("Dataset 'digits' has splits 'train' and 'test' only, got `split`='valid'.")
    idx = np.sort(train_idx if split == "train" else test_idx)
    return ImageDataset(
        _as_nchw(images[idx], "digits"), torch.from_numpy(bunch.target[idx].astype(np.int64)), "digits", split, 17
    )


def _load_npz(path: Path, split: str) -> ImageDataset:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in (f"x_{split}", f"y_{split}") if key in f.files}
            have = sorted(k[2:] for k in f.files if k.startswith("x_"))
    except (OSError, ValueError) as e:
        raise UserInputError(f"Cannot read dataset file {path} as a .npz of uint8 arrays ({e}).") from e
    if f"x_{split}" not in arrays:
        raise UserInputError(f"{path} has no `x_{split}` array; it holds splits {have}.")
    y = arrays.get(f"y_{split}")
    labels = None if y is None else torch.from_numpy(y.astype(np.int64))
    return ImageDataset(_as_nchw(arrays[f"x_{split}"], f"{path}:x_{split}"), labels, str(path), split)


def _load_folder(path: Path, split: str) -> ImageDataset:
    from PIL import Image

    root = path / split if (path / "train").is_dir() and (path / "test").is_dir() else path
    if not root.is_dir():
        raise UserInputError(f"Image folder {path} has no `{split}/` subfolder.")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserInputError(f"Image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    classes = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
    if root == path:  # no train/test subfolders: a seeded 90/10 split
        order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(files))
        n_test = max(1, len(files) // 10)
        keep = order[:n_test] if split == "test" else order[n_test:]
        if split == "valid":
            raise UserInputError(f"Image folder {path} has splits 'train' and 'test' only, got `split`='valid'.")
        files = [files[i] for i in sorted(keep)]
    arrays, labels = [], []
    for p in files:
        with Image.open(p) as im:
            arrays.append(np.asarray(im.convert("L"), dtype=np.uint8))
        labels.append(classes.index(p.parent.relative_to(root).parts[0]) if p.parent != root else -1)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise UserInputError(f"Images in {root} differ in size ({sorted(shapes)}); hubgen needs one size per dataset.")
    y = torch.tensor(labels) if classes and all(lab >= 0 for lab in labels) else None
    return ImageDataset(_as_nchw(np.stack(arrays), str(root)), y, str(path), split, extra={"classes": classes})


def _load_hub_mnist(split: str) -> ImageDataset:
    try:
        import datasets
    except ImportError as e:
        raise UserInputError(
            "`--dataset mnist` reads the Hub dataset ylecun/mnist and needs `pip install hubgen[datasets]`; "
            "or pass a local .npz file with x_train/x_test arrays (for example ../shared/data/mnist.npz)."
        ) from e
    hub_split = {"train": "train", "test": "test"}.get(split)
    if hub_split is None:
        raise UserInputError("Dataset 'mnist' from the Hub has splits 'train' and 'test' only.")
    try:
        ds = datasets.load_dataset("ylecun/mnist", split=hub_split)
    except Exception as e:  # offline, not cached, or the Hub unreachable
        raise UserInputError(
            f"Could not load the Hub dataset ylecun/mnist ({type(e).__name__}: {e}). Without the Hub, pass a "
            "local .npz file with x_train/x_test arrays instead (for example ../shared/data/mnist.npz)."
        ) from e
    x = np.stack([np.asarray(im, dtype=np.uint8) for im in ds["image"]])
    return ImageDataset(_as_nchw(x, "mnist"), torch.tensor(ds["label"], dtype=torch.int64), "mnist", split)


def load_dataset(name_or_path: str | os.PathLike, split: Literal["train", "valid", "test"] = "train") -> ImageDataset:
    """Load one split of a dataset given by name or path (see the module docstring). Raises ValueError."""
    if split not in SPLITS:
        raise UserInputError(f"`split` must be one of {SPLITS}, got {split!r}.")
    name = str(name_or_path)
    if name == "digits":
        return _load_digits(split)
    if name == "mnist":
        return _load_hub_mnist(split)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".npz":
        return _load_npz(path, split)
    if path.is_dir():
        return _load_folder(path, split)
    reason = "is a file but not a .npz" if path.is_file() else "is neither a known name nor an existing path"
    raise UserInputError(f"Unknown dataset {name!r}: it {reason}. Accepted: {_accepted()}.")

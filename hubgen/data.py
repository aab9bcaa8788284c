"""Datasets by name, path or Hub id (the `datasets` library does the loading), and the pixel modes every card states.

`--dataset` (the `dataset` of a `DataSpec`) is one of:
- `digits`: scikit-learn's bundled 8x8 handwritten digits (1797 images, 17 grey levels 0..16), split once
  with a fixed seed into 1437 train and 360 test images. It ships inside scikit-learn: no network.
- `mnist`: the Hugging Face dataset `ylecun/mnist` (the Hub or its cache).
- a `.npz` file with uint8 arrays `x_train`, `x_test` (N, H, W) or (N, C, H, W), optional `x_valid` and
  `y_*` labels (as `../shared/data/mnist.npz`); loaded with `allow_pickle=False`.
- an image folder, read by `datasets`' `imagefolder` builder: `train/` and `test/` (or `validation/`)
  subfolders become splits, images in class subfolders get the subfolder's index (sorted names) as label, and
  an optional `metadata.jsonl` / `metadata.csv` (a `file_name` column plus caption or label columns) adds columns.
- a folder written by `datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk`.
- a `.parquet` file, or a folder of parquet files (split names from the file names, as on the Hub).
- a Hugging Face dataset id `user/name` (with `config` and `revision`): needs the Hub or its cache.

Columns (the defaults and checks of diffusers' train_text_to_image.py / train_unconditional.py): the image
column is `image_column`, else "image", else the first column of `datasets.Image` feature; the caption column
is `caption_column`, else "text" when it exists; the label column is `label_column`, else "label" when it
exists. A named column that does not exist is a UserInputError naming the columns that do.

Splits: the data's own `train`, `test` and `validation` (or `valid`) splits. Without a test split the test
split is the validation split; without either it is a seeded 90/10 split of train (seed 0, the same for every
run; stated in `ds.extra["split"]`).

Images are 8-bit: `levels` = 256 (17 for digits). Channels come from the data: C = 1 when every image is grey
(L, 1, I;16 ... converted to L), C = 3 when any is colour: RGBA (alpha dropped, as diffusers' `convert("RGB")`),
palette (P), CMYK ... and the grey images among colour ones are converted to RGB. Images of other sizes than
the most common one are resized to it (bilinear). Every conversion is counted in `ds.extra["conversions"]`
(for the card). With `resolution` N (diffusers' examples): the shorter side is resized to N (bilinear), then
an N x N crop, random for the train split (center with `center_crop`, and always for other splits); with
`random_flip` a horizontal flip with probability 1/2 for the train split. `max_train_samples` keeps that many
train images after a shuffle with `seed` (as diffusers' `dataset.shuffle(seed).select(range(n))`).

Datasets from `datasets` are lazy: the Arrow table is memory-mapped and each image is decoded when an item
is read, converted and transformed there; only labels and captions are held in memory. Loading reads every
image's header once (mode and size, for C, the common size and the conversion counts). The random crop and
flip of item i in epoch e come from a generator seeded with (seed, e, i): a resumed run sees the same
augmentation, and the training loop's own random draws are untouched (`training_batches` calls
`ds.set_epoch(e)`). In-memory datasets (digits, .npz, mnist) take the same options.

Every dataset has: `len`, `ds[i] -> (float intensities (C, H, W) in [0, 1], int label or -1)`,
`ds.image_shape` (C, H, W), `ds.levels`, `ds.labels` (int64 tensor or None), `ds.captions` (list[str] or
None), `ds.take(n_or_indices)` (uint8 (n, C, H, W): no random crop or flip), `ds.name`, `ds.split`,
`ds.extra` and `ds.spec` (the DataSpec it was loaded from).

Pixel modes turn intensities into model inputs at every use. Each of the D = C*H*W values (every colour
channel of every pixel, so D = 3*H*W for RGB) is one dimension; likelihoods are in nats per image and
bits/dim = nats / (D ln 2):
- "binary": dynamic binarization, x ~ Bernoulli(intensity / 255) per value, drawn afresh each time
  (Burda et al. 2015 protocol; the IWAE paper's VAE reaches 86.76 nats on MNIST this way). For RGB each
  channel is binarized on its own (8 colours); for 256 levels the binary data is no longer the 8-bit image.
- "continuous": uniform dequantization, x = (k + u) / L with u ~ U[0, 1), k in 0..L-1 the level of the value
  and L = `levels` (256 for 8-bit RGB), so x lies in [0, 1)^D; a density p(x) on it bounds the discrete
  likelihood, -log2 P(k) <= -E_u[log2 p(x)] + D log2(L), and bits/dim carries the + log2(L) term (8 bits for
  256 levels).
"""

import dataclasses
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .draws import bernoulli, rand_tensor
from .errors import UserInputError
from .model_folder import HUB_ID as _HUB_ID  # one "user/name" pattern for loading and for cards

__all__ = [
    "DataSpec",
    "ImageDataset",
    "ArrowImageDataset",
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
MAX_RESOLUTION = 4096  # --resolution: beyond it a resize is a memory bomb, not a training set
SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0  # also the seed of the 90/10 split of data without a test split
VALID_NAMES = ("validation", "valid", "val", "dev")
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def _accepted() -> str:
    return (
        "a name (" + ", ".join(repr(n) for n in NAMED_DATASETS) + "), a .npz file with uint8 arrays "
        "x_train/x_test (and optional y_*), an image folder (optionally with metadata.jsonl/metadata.csv), a "
        "folder saved with datasets' save_to_disk, a .parquet file or folder, or a Hub dataset id 'user/name'"
    )


# -- what to load ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """Everything that decides which images a run sees: recorded as "data" in the training record, so that the
    evaluation loads the same images (test split) as training did (train split).

    `seed` seeds the `max_train_samples` shuffle and the random crop and flip (training sets it to `--seed`).
    """

    dataset: str
    config: str | None = None
    revision: str | None = None
    image_column: str | None = None
    caption_column: str | None = None
    label_column: str | None = None
    resolution: int | None = None
    center_crop: bool = False
    random_flip: bool = False
    max_train_samples: int | None = None
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "dataset", os.fspath(self.dataset) if isinstance(self.dataset, os.PathLike)
                           else str(self.dataset))  # fmt: skip
        for name in ("resolution", "max_train_samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UserInputError(f"`{name}` must be a whole number >= 1 (or None), got {value!r}.")
        if self.resolution is not None and self.resolution > MAX_RESOLUTION:  # a record may be untrusted
            raise UserInputError(f"`resolution` must be at most {MAX_RESOLUTION}, got {self.resolution}.")

    def __str__(self) -> str:
        return self.dataset

    def load(self, split: Literal["train", "valid", "test"] = "train"):
        """One split of the data (see the module docstring)."""
        return load_dataset(self, split)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> "DataSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(record, dict) or "dataset" not in record or set(record) - known:
            raise UserInputError(f"Not a data record: {record!r} (expected the keys {sorted(known)}).")
        return cls(**record)

    @classmethod
    def from_args(cls, args) -> "DataSpec":
        """The spec of a training script's data options (hubgen.training.add_common_arguments)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("dataset", "config", "revision")]
        options = {name: getattr(args, name) for name in names if hasattr(args, name)}
        return cls(args.dataset, getattr(args, "dataset_config", None), getattr(args, "dataset_revision", None),
                   **options)  # fmt: skip


# -- per-item conversion and augmentation ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Transform:
    """Mode conversion, resize and crop (diffusers' Resize(N, BILINEAR) + Center/RandomCrop(N)) and flip of one
    PIL image into uint8 (C, H, W). Random draws only with `augment`, from (seed, epoch, index)."""

    mode: str  # "L" or "RGB"
    size: tuple[int, int] | None  # (W, H) of every image when no resolution is given
    resolution: int | None = None
    random_crop: bool = False
    random_flip: bool = False
    seed: int = 0

    def __call__(self, image, index: int, epoch: int = 0, augment: bool = False) -> torch.Tensor:
        from PIL import Image

        image = _convert(image, self.mode)
        random = augment and (self.random_crop or self.random_flip)
        rng = np.random.default_rng((self.seed, epoch, index)) if random else None
        if self.resolution is not None:
            n, (w, h) = self.resolution, image.size
            if (w, h) != (n, n):  # torchvision's Resize(n): the shorter side to n, the longer in proportion
                size = (n, int(n * h / w)) if w <= h else (int(n * w / h), n)
                image = image.resize(size, Image.BILINEAR)
            w, h = image.size
            if self.random_crop and rng is not None:  # RandomCrop: top in 0..h-n, left in 0..w-n
                top, left = int(rng.integers(0, h - n + 1)), int(rng.integers(0, w - n + 1))
            else:  # CenterCrop
                top, left = int(round((h - n) / 2.0)), int(round((w - n) / 2.0))
            if (w, h) != (n, n):
                image = image.crop((left, top, left + n, top + n))
        elif self.size is not None and image.size != self.size:
            image = image.resize(self.size, Image.BILINEAR)
        if self.random_flip and rng is not None and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        x = np.asarray(image, dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(x[None] if x.ndim == 2 else x.transpose(2, 0, 1)))

    def shape(self, channels: int) -> tuple[int, int, int]:
        if self.resolution is not None:
            return (channels, self.resolution, self.resolution)
        return (channels, self.size[1], self.size[0])


def _convert(image, mode: str):
    """A PIL image in `mode` ("L" or "RGB"): 16-bit grey scaled to 8 bits, alpha dropped (diffusers)."""
    if image.mode == mode:
        return image
    if image.mode.startswith("I"):  # 16/32-bit grey: 0..65535 -> 0..255 (PIL's convert would clip)
        from PIL import Image

        grey = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8), "L")
        return image if mode == "L" else image.convert(mode)
    return image.convert(mode)  # RGBA -> RGB drops alpha; P, CMYK ... -> RGB; LA, 1 -> L


def _transform_for(spec: "DataSpec", split: str, mode: str, size) -> "_Transform":
    train = split == "train"
    return _Transform(mode, size, spec.resolution, train and not spec.center_crop, train and spec.random_flip,
                      spec.seed)  # fmt: skip


# -- datasets ----------------------------------------------------------------------------------------------------


class _Images(torch.utils.data.Dataset):
    """The API every dataset shares (see the module docstring)."""

    name: str
    split: str
    levels: int
    labels: torch.Tensor | None
    extra: dict
    spec: DataSpec | None
    _epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose random crops and flips items are drawn with (hubgen.training sets it)."""
        self._epoch = int(epoch)

    @property
    def captions(self) -> list[str] | None:
        """One caption per image, when the data has them (None otherwise)."""
        return self.extra.get("captions")

    def take(self, n_or_indices) -> torch.Tensor:
        """uint8 images (n, C, H, W): the first n, or those at the given indices, decoded now, with the
        deterministic resize and center crop and no flip. Code outside hubgen.data reads images only through
        `take` (or items), never a whole `.images` tensor."""
        idx = self._indices(n_or_indices)
        if not idx:
            return torch.zeros((0, *self.image_shape), dtype=torch.uint8)
        return torch.stack([self.transform(self._pil(i), i) for i in idx])

    def _indices(self, n_or_indices) -> list[int]:
        if isinstance(n_or_indices, (int, np.integer)):
            return list(range(min(int(n_or_indices), len(self))))
        if isinstance(n_or_indices, slice):
            return list(range(len(self)))[n_or_indices]
        return [int(i) for i in torch.as_tensor(list(n_or_indices) if isinstance(n_or_indices, range)
                                                else n_or_indices, dtype=torch.long).reshape(-1)]  # fmt: skip


@dataclass
class ImageDataset(_Images):
    """uint8 images (N, C, H, W) held in memory, with optional int64 labels; items are (float intensities in
    [0, 1], label). `transform` (from a DataSpec's resolution / crop / flip) is applied per item."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    split: str
    levels: int = 256
    extra: dict = field(default_factory=dict)
    spec: DataSpec | None = None
    transform: _Transform | None = None

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

    def _pil(self, i: int):
        from PIL import Image

        x = self.images[i].numpy()
        return Image.fromarray(x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0), "L" if x.shape[0] == 1 else "RGB")

    def __getitem__(self, i):
        y = -1 if self.labels is None else int(self.labels[i])
        if self.transform is None:
            return self.images[i].float() / 255.0, y
        return self.transform(self._pil(i), int(i), self._epoch, augment=True).float() / 255.0, y

    def __getitems__(self, indices) -> list:
        """The items of a batch of indices (torch's DataLoader asks for a batch this way when a dataset has it): the
        same items as __getitem__, untransformed images gathered in one indexing operation instead of one per
        index (a flow's step on 32 MNIST images spent about 0.2 ms fetching them one by one)."""
        if self.transform is not None:
            return [self[i] for i in indices]
        idx = torch.as_tensor(indices, dtype=torch.long)
        images = (self.images[idx].float() / 255.0).unbind(0)
        labels = [-1] * len(images) if self.labels is None else self.labels[idx].tolist()
        return list(zip(images, labels, strict=True))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        if self.transform is None:
            return tuple(self.images.shape[1:])
        return self.transform.shape(self.images.shape[1])

    def take(self, n_or_indices) -> torch.Tensor:
        if self.transform is not None:
            return super().take(n_or_indices)
        if isinstance(n_or_indices, (int, np.integer)):  # in memory, untransformed: a view of the tensor
            return self.images[: min(int(n_or_indices), len(self))]
        return self.images[torch.as_tensor(self._indices(n_or_indices), dtype=torch.long)]


class ArrowImageDataset(_Images):
    """Images of a `datasets.Dataset` (memory-mapped Arrow), decoded, converted and transformed per item.

    Holds the rows it uses (`rows`, indices into the split), the labels and captions; never the decoded images.
    """

    def __init__(self, hf, column: str, rows: np.ndarray, labels, captions, name: str, split: str,
                 transform: _Transform, extra: dict, spec: DataSpec):  # fmt: skip
        import datasets

        feature = hf.features[column]
        if isinstance(feature, datasets.Image):
            hf = hf.cast_column(column, datasets.Image(decode=False))  # no data is rewritten
        self._hf, self._column, self._rows = hf.select_columns([column]), column, rows
        self.labels, self.name, self.split, self.levels = labels, name, split, 256
        self.transform, self.extra, self.spec = transform, extra, spec
        if captions is not None:
            self.extra["captions"] = captions

    def __len__(self) -> int:
        return len(self._rows)

    def _pil(self, i: int):
        row = int(self._rows[i])
        image = _open(self._hf[row][self._column], self.name, self.split, row)
        try:
            image.load()
        except Exception as e:  # truncated or corrupt pixel data behind a readable header
            raise UserInputError(f"{_where(self.name, self.split, row, image)} cannot be decoded: {e}") from e
        return image

    def __getitem__(self, i):
        y = -1 if self.labels is None else int(self.labels[i])
        return self.transform(self._pil(i), int(i), self._epoch, augment=True).float() / 255.0, y

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.transform.shape(1 if self.transform.mode == "L" else 3)


def _where(name: str, split: str, row: int, value=None) -> str:
    path = value.get("path") if isinstance(value, dict) else getattr(value, "filename", None)
    return f"Image {path!r} (row {row} of split {split!r} of {name!r})" if path else \
        f"The image in row {row} of split {split!r} of {name!r}"  # fmt: skip


def _open(value, name: str, split: str, row: int):
    """A lazily opened PIL image (header read) from an image cell: {"bytes", "path"} or raw bytes."""
    from PIL import Image

    data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (value, None)
    try:
        if data is not None:
            return Image.open(io.BytesIO(data))
        if path:
            return Image.open(path)
    except Exception as e:  # not an image, unreadable file, missing file
        raise UserInputError(f"{_where(name, split, row, value)} cannot be read as an image: {e}") from e
    raise UserInputError(f"{_where(name, split, row, value)} is empty (no bytes and no path).")


# -- in-memory sources -------------------------------------------------------------------------------------------


def _as_nchw(x: np.ndarray, what: str) -> torch.Tensor:
    if x.dtype != np.uint8:
        raise UserInputError(f"{what} must hold uint8 pixels 0..255, got dtype {x.dtype}.")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if x.ndim != 4:
        raise UserInputError(f"{what} must have shape (N, H, W) or (N, C, H, W), got {x.shape}.")
    if x.shape[1] not in (1, 3):
        raise UserInputError(f"{what} must hold grey (1 channel) or RGB (3 channel) images, as (N, H, W), "
                             f"(N, C, H, W) or (N, H, W, C); got shape {x.shape}.")  # fmt: skip
    if 0 in x.shape:
        raise UserInputError(f"{what} holds no images (shape {x.shape}).")
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
    except Exception as e:  # noqa: BLE001 -- a truncated or foreign file fails in zipfile, zlib or numpy alike
        raise UserInputError(f"Cannot read dataset file {path} as a .npz of uint8 arrays "
                             f"({type(e).__name__}: {e}).") from e  # fmt: skip
    if f"x_{split}" not in arrays:
        raise UserInputError(f"{path} has no `x_{split}` array; it holds splits {have}.")
    y = arrays.get(f"y_{split}")
    labels = None if y is None else torch.from_numpy(y.astype(np.int64))
    return ImageDataset(_as_nchw(arrays[f"x_{split}"], f"{path}:x_{split}"), labels, str(path), split)


def _load_hub_mnist(split: str) -> ImageDataset:
    import datasets

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
    return ImageDataset(_as_nchw(x, "mnist"), torch.tensor(list(ds["label"]), dtype=torch.int64), "mnist", split)


def _in_memory(ds: ImageDataset, spec: DataSpec) -> ImageDataset:
    """A DataSpec's options on an in-memory dataset: max_train_samples, then the per-item transform."""
    for option in ("image_column", "caption_column", "label_column", "config", "revision"):
        if getattr(spec, option) is not None:
            raise UserInputError(
                f"`{option}` {getattr(spec, option)!r} applies to data with columns or Hub datasets; {spec.dataset!r}"
                " has none (digits, mnist and .npz files hold images and labels only)."
            )
    if spec.max_train_samples is not None and ds.split == "train" and spec.max_train_samples < len(ds):
        keep = torch.from_numpy(np.random.default_rng(spec.seed).permutation(len(ds))[: spec.max_train_samples])
        ds.images, ds.labels = ds.images[keep], None if ds.labels is None else ds.labels[keep]
        ds.extra["max_train_samples"] = f"{spec.max_train_samples} images after a shuffle with seed {spec.seed}"
    if spec.resolution is not None or (spec.random_flip and ds.split == "train"):
        c, h, w = ds.images.shape[1:]
        ds.transform = _transform_for(spec, ds.split, "L" if c == 1 else "RGB", (w, h))
        ds.extra["transform"] = _describe(ds.transform)
    ds.spec = spec
    return ds


# -- sources read with `datasets` --------------------------------------------------------------------------------


def _hf_source(spec: DataSpec, path: Path | None):
    """(a DatasetDict-like {split: datasets.Dataset}, what it is) for a folder, parquet file or Hub id."""
    import datasets

    if path is not None and (spec.config or spec.revision):
        option = "config" if spec.config else "revision"
        raise UserInputError(f"`dataset_{option}` applies to Hub dataset ids only; {spec.dataset!r} is a local path.")
    try:
        if path is None:
            found = datasets.load_dataset(spec.dataset, name=spec.config, revision=spec.revision)
            kind = f"the Hub dataset {spec.dataset}"
        elif path.is_file():
            import pyarrow.parquet as pq

            if pq.ParquetFile(path).metadata.num_rows == 0:
                raise UserInputError(f"Dataset {spec.dataset!r} is empty: the parquet file has no rows.")
            found, kind = datasets.load_dataset("parquet", data_files={"train": str(path)}), "a parquet file"
        elif (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            found, kind = datasets.load_from_disk(str(path)), "a save_to_disk folder"
        elif any(path.rglob("*.parquet")):
            found, kind = datasets.load_dataset("parquet", data_dir=str(path)), "a folder of parquet files"
        else:  # split folders named here: datasets' own split inference globs the tree ~60 times (minutes at 100k)
            dirs = [d.name for d in sorted(path.iterdir()) if d.is_dir() and d.name in ("train", "test", *VALID_NAMES)]
            files = {d: f"{d}/**" for d in dirs} if "train" in dirs else {"train": "**"}
            found = datasets.load_dataset("imagefolder", data_dir=str(path), data_files=files)
            kind = "an image folder"
    except UserInputError:
        raise
    except Exception as e:  # offline, not on the Hub, a malformed metadata file or parquet file
        if path is None:
            raise UserInputError(
                f"Could not load the Hub dataset {spec.dataset!r} (config {spec.config!r}, revision "
                f"{spec.revision!r}): {type(e).__name__}: {e}. A Hub dataset needs the Hub or its cache; offline, "
                f"pass a local image folder, .parquet or save_to_disk folder. Accepted: {_accepted()}."
            ) from e
        raise UserInputError(f"Cannot load {path} with `datasets` ({type(e).__name__}: {e}).") from e
    return ({"train": found} if isinstance(found, datasets.Dataset) else dict(found)), kind


def _choose_split(splits: dict, split: str, name: str) -> tuple[str, str | None]:
    """(the data's split to read, None or "train-90" / "test-10" when a seeded 90/10 split of train is used)."""
    names = list(splits)
    train = "train" if "train" in splits else (names[0] if len(names) == 1 else None)
    if train is None:
        raise UserInputError(f"Dataset {name!r} has splits {names} and none is 'train'.")
    valid = next((v for v in VALID_NAMES if v in splits), None)
    if split == "train":
        return train, "train-90" if "test" not in splits and valid is None else None
    if split == "test":
        if "test" in splits:
            return "test", None
        return (valid, None) if valid is not None else (train, "test-10")
    if valid is None:
        raise UserInputError(f"Dataset {name!r} has no validation split (it has {names}), got `split`='valid'.")
    return valid, None


def _column(hf, wanted: str | None, default: str | None, option: str, name: str) -> str | None:
    if wanted is None:
        return default if default in hf.column_names else None
    if wanted not in hf.column_names:
        raise UserInputError(f"`--{option}` {wanted!r} is not a column of {name!r}; its columns are {hf.column_names}.")
    return wanted


def _image_column(hf, wanted: str | None, name: str) -> str:
    import datasets

    def is_image(col):
        feature = hf.features[col]
        return isinstance(feature, datasets.Image) or (isinstance(feature, dict) and "bytes" in feature) or \
            getattr(feature, "dtype", None) == "binary"  # fmt: skip

    column = _column(hf, wanted, "image", "image_column", name)
    if column is None:
        column = next((c for c in hf.column_names if isinstance(hf.features[c], datasets.Image)), None)
    if column is None:
        raise UserInputError(f"Dataset {name!r} has no image column (its columns are {hf.column_names}): pass "
                             "`--image_column`.")  # fmt: skip
    if not is_image(column):
        raise UserInputError(
            f"`--image_column` {column!r} of {name!r} holds {hf.features[column]}, not images; its columns are "
            f"{hf.column_names}."
        )
    return column


def _labels(splits: dict, selected, column: str | None, explicit: bool, name: str, extra: dict):
    """int64 labels of the `selected` rows (class names from a ClassLabel, or from string values sorted over all
    splits, so that train and test agree)."""
    import datasets

    if column is None:
        return None
    feature = selected.features[column]
    values = list(selected[column])
    if isinstance(feature, datasets.ClassLabel):
        extra["classes"] = list(feature.names)
    elif values and all(isinstance(v, str) for v in values):
        classes = sorted({v for s in splits.values() if column in s.column_names for v in s[column]})
        extra["classes"], index = classes, {c: i for i, c in enumerate(classes)}
        values = [index[v] for v in values]
    is_class = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0  # noqa: E731
    if not all(is_class(v) for v in values):
        if not explicit:
            return None
        bad = next(v for v in values if not is_class(v))
        raise UserInputError(f"`--label_column` {column!r} of {name!r} must hold class indices >= 0 or class names, "
                             f"got {bad!r}.")  # fmt: skip
    return torch.tensor(values, dtype=torch.int64)


def _captions(hf, column: str | None, explicit: bool, name: str, extra: dict) -> list[str] | None:
    """Captions of the split: a string per row, or the first of a list (diffusers picks a random one)."""
    if column is None:
        return None
    captions = []
    for row, value in enumerate(hf[column]):
        if isinstance(value, (list, tuple)):
            value = value[0] if value else ""
        if value is not None and not isinstance(value, str):
            raise UserInputError(f"`--caption_column` {column!r} of {name!r} must hold strings or lists of strings; "
                                 f"row {row} holds {value!r}.")  # fmt: skip
        captions.append(value or "")
    empty = sum(not c.strip() for c in captions)
    if empty == len(captions):
        if explicit:
            raise UserInputError(f"`--caption_column` {column!r} of {name!r} is empty: none of its "
                                 f"{len(captions)} rows has a caption.")  # fmt: skip
        extra["captions_note"] = f"column {column!r} is empty: no captions"
        return None
    if empty:
        extra["empty_captions"] = empty
    return captions


_SCANS: dict = {}  # fingerprint of a split and its image column -> (mode of each row, (W, H) of each row)


def _scan(hf, column: str, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every image's mode and size from its header (no pixels decoded); cached per split for the process."""
    import datasets

    key = (getattr(hf, "_fingerprint", None), column)
    if key[0] is not None and key in _SCANS:
        return _SCANS[key]
    if isinstance(hf.features[column], datasets.Image):
        hf = hf.cast_column(column, datasets.Image(decode=False))
    modes, sizes, row = [], np.zeros((len(hf), 2), np.int64), 0
    for batch in hf.select_columns([column]).iter(batch_size=256):
        for value in batch[column]:
            image = _open(value, name, split, row)
            modes.append(image.mode)
            sizes[row] = image.size
            image.close()
            row += 1
    _SCANS[key] = (np.array(modes, dtype=object), sizes)
    return _SCANS[key]


def _load_arrow(spec: DataSpec, path: Path | None, split: str) -> ArrowImageDataset:
    splits, kind = _hf_source(spec, path)
    name = spec.dataset
    source_split, part = _choose_split(splits, split, name)
    hf = splits[source_split]
    column = _image_column(hf, spec.image_column, name)
    extra = {"source": kind, "columns": {"image": column}}
    if source_split != split:
        extra["split"] = f"the data's {source_split!r} split"
    # The split's rows: all, or a seeded 90/10 split of train; then max_train_samples after a seeded shuffle.
    rows = np.arange(len(hf))
    if part is not None:
        order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(hf))
        n_test = max(1, len(hf) // 10)
        rows = np.sort(order[n_test:] if part == "train-90" else order[:n_test])
        extra["split"] = (f"a seeded 90/10 split (seed {DIGITS_SPLIT_SEED}) of the data's {source_split!r} split "
                          f"({len(hf) - n_test} train / {n_test} test images): it has no test split")  # fmt: skip
    if split == "train" and spec.max_train_samples is not None and spec.max_train_samples < len(rows):
        rows = rows[np.random.default_rng(spec.seed).permutation(len(rows))[: spec.max_train_samples]]
        extra["max_train_samples"] = f"{spec.max_train_samples} images after a shuffle with seed {spec.seed}"
    if len(rows) == 0:
        raise UserInputError(f"Dataset {name!r} split {split!r} is empty: there is nothing to train or evaluate on.")
    # Channels and the common size over every split (train and test must agree); conversions of this split.
    scans = {s: _scan(d, column, name, s) for s, d in splits.items() if column in d.column_names}
    all_modes = Counter(m for modes, _ in scans.values() for m in modes)
    mode = "L" if all(m in GREY_MODES for m in all_modes) else "RGB"
    all_sizes = Counter(tuple(s) for _, sizes in scans.values() for s in sizes.tolist())
    common = all_sizes.most_common(1)[0][0]
    modes, sizes = scans[source_split][0][rows], scans[source_split][1][rows]
    conversions = [f"{m} -> {mode}: {n} images" for m, n in sorted(Counter(modes).items()) if m != mode]
    if spec.resolution is None and len(all_sizes) > 1:
        other = Counter(f"{w}x{h}" for w, h in sizes.tolist() if (w, h) != common)
        conversions += [f"{s} -> {common[0]}x{common[1]} (the most common size): {n} images"
                        for s, n in sorted(other.items())]  # fmt: skip
    extra["conversions"] = conversions
    transform = _transform_for(spec, split, mode, common)
    extra["transform"] = _describe(transform)
    selected = hf.select(rows) if part is not None or len(rows) != len(hf) else hf
    label_col = _column(hf, spec.label_column, "label", "label_column", name)
    caption_col = _column(hf, spec.caption_column, "text", "caption_column", name)
    labels = _labels(splits, selected, label_col, spec.label_column is not None, name, extra)
    captions = _captions(selected, caption_col, spec.caption_column is not None, name, extra)
    extra["columns"].update(caption=caption_col if captions is not None else None,
                            label=label_col if labels is not None else None)  # fmt: skip
    return ArrowImageDataset(hf, column, rows, labels, captions, name, split, transform, extra, spec)


def _describe(t: _Transform) -> str:
    if t.resolution is None:
        text = f"{'grey' if t.mode == 'L' else 'RGB'} {t.size[0]}x{t.size[1]}"
    else:
        crop = "random" if t.random_crop else "center"
        text = f"shorter side resized to {t.resolution} (bilinear), {crop} {t.resolution}x{t.resolution} crop"
    return text + (", random horizontal flip" if t.random_flip else "")


# -- the entry point ---------------------------------------------------------------------------------------------


def load_dataset(name_or_spec: "str | os.PathLike | DataSpec",
                 split: Literal["train", "valid", "test"] = "train"):  # fmt: skip
    """Load one split of a dataset given by name, path, Hub id or DataSpec (see the module docstring).
    Raises UserInputError (a ValueError) for anything the user can fix."""
    if split not in SPLITS:
        raise UserInputError(f"`split` must be one of {SPLITS}, got {split!r}.")
    spec = name_or_spec if isinstance(name_or_spec, DataSpec) else DataSpec(name_or_spec)
    name = spec.dataset
    if name == "digits":
        return _in_memory(_load_digits(split), spec)
    if name == "mnist":
        return _in_memory(_load_hub_mnist(split), spec)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".npz":
        return _in_memory(_load_npz(path, split), spec)
    if path.is_file() and path.suffix == ".parquet":
        return _load_arrow(spec, path, split)
    if path.is_dir():
        saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
        if not saved and not any(p.suffix.lower() in (*IMAGE_SUFFIXES, ".parquet") for p in path.rglob("*")):
            raise UserInputError(f"Image folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no "
                                 ".parquet files.")  # fmt: skip
        return _load_arrow(spec, path, split)
    if not path.exists() and _HUB_ID.match(name):
        return _load_arrow(spec, None, split)
    reason = "is a file but not a .npz or .parquet" if path.is_file() else "is neither a known name nor a path"
    raise UserInputError(f"Unknown dataset {name!r}: it {reason}. Accepted: {_accepted()}.")


def binarize(intensities: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarization: x_j ~ Bernoulli(p_j) with p_j the intensity in [0, 1], a fresh draw per call."""
    return bernoulli(intensities.clamp(0.0, 1.0), generator)  # drawn on the generator's device (hubgen.draws)


def dequantize(intensities: torch.Tensor, levels: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization: x = (k + u) / L, u ~ U[0, 1), for level k = round(p (L - 1)), L = levels."""
    k = torch.round(intensities * (levels - 1))
    u = rand_tensor(intensities.shape, generator, intensities.device, intensities.dtype)
    return (k + u) / levels


def to_model_input(
    intensities: torch.Tensor, pixel_mode: Literal["binary", "continuous"], levels: int = 256, generator=None
) -> torch.Tensor:
    """The model input of `pixel_mode` for intensities (B, C, H, W) in [0, 1]: every channel value is one
    dimension (see the module docstring)."""
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

"""What every hubgen pipeline shares: safetensors-only loading and image conversion.

`SafetensorsLoadingMixin` sits before `DiffusionPipeline` in a family pipeline's bases. Its
`from_pretrained` forwards every argument to diffusers unchanged, except that it forces
`use_safetensors=True` (so a pickle weight file is never unpickled), fetches a Hub repo id ("user/name") with
`hubgen.hub.download_model` (through the Hub cache, so it loads offline afterwards), refuses local folders that
carry pickle weights, and turns the loader's errors about a missing or corrupted weight file into one
ValueError that names the folder. diffusers never runs code from a repo unless `custom_pipeline`/`trust_remote_code` is
passed, and hubgen never passes them.

Publishing goes through hubgen, never through diffusers' generic upload: `pipe.push_to_hub(repo_id)` and
`pipe.save_pretrained(folder, push_to_hub=True, repo_id=...)` save into a lasting local model folder and call
`hubgen.publish.push` on it, so the repo gets the same card, figures, samples and checks as `hubgen push`
(hubgen.publish.push_pipeline). A pipeline saved with the weights of the folder it was loaded from keeps that
folder's records (training record, evaluation, samples): they describe exactly these weights.

Defining a hubgen pipeline class also makes it known to diffusers (`register_with_diffusers`), so that
`DiffusionPipeline.from_pretrained` returns it once its module is imported.
"""

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import model_folder as mf
from .draws import check_generators, randn_tensor
from .errors import UserInputError

__all__ = [
    "SafetensorsLoadingMixin",
    "check_no_pickle",
    "check_output_type",
    "check_sampling_inputs",
    "draw_latents",
    "seed_or_latent",
    "images_to_tensor",
    "convert_images",
    "make_grid",
    "card_grid",
    "MIN_CARD_PX",
    "SCALE_KEY",
    "PICKLE_SUFFIXES",
]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def check_no_pickle(folder: str | os.PathLike) -> None:
    """Raise ValueError if a model folder holds pickle-style weight files (checkpoints/ is not part of a model)."""
    folder = Path(folder)
    bad = [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in PICKLE_SUFFIXES and "checkpoints" not in p.relative_to(folder).parts
    ]
    if bad:
        raise UserInputError(
            f"{folder} holds pickle weight files {bad}; hubgen reads safetensors only and will not unpickle "
            "them. Convert them to .safetensors (safetensors.torch.save_file) in a trusted environment."
        )


class SafetensorsLoadingMixin:
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        from .diffusers_loading import register_with_diffusers

        register_with_diffusers(cls)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        if kwargs.get("use_safetensors", True) is not True:
            raise UserInputError("hubgen loads safetensors weights only: `use_safetensors` must be True.")
        for name in ("trust_remote_code", "custom_pipeline", "custom_revision"):
            if kwargs.get(name):
                raise UserInputError(
                    f"`{name}` is refused: loading a hubgen model never runs code from the model's folder or repo "
                    "(every hubgen pipeline class is installed with hubgen). To run a repo's own code, load it with "
                    "diffusers' DiffusionPipeline.from_pretrained and its flag yourself."
                )
        kwargs.pop("trust_remote_code", None)
        kwargs["use_safetensors"] = True
        path = Path(pretrained_model_name_or_path)
        if not path.is_dir():
            from .hub import REPO_ID_PATTERN, download_model

            if not REPO_ID_PATTERN.match(str(pretrained_model_name_or_path)):
                return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
            # A Hub repo id: fetch the snapshot (safetensors/JSON only) through the Hub cache, then load it as a
            # local folder. diffusers' own download would reject hubgen's component libraries (not diffusers).
            hub_args = ("revision", "cache_dir", "token", "local_files_only", "force_download")
            path = download_model(
                str(pretrained_model_name_or_path), **{k: kwargs.pop(k) for k in hub_args if k in kwargs}
            )
        from .model_folder import complete_interrupted_save

        complete_interrupted_save(path)  # a save killed after its commit: the new model
        check_no_pickle(path)
        if not (path / "model_index.json").is_file():
            raise UserInputError(f"{path} is not a pipeline folder: it has no model_index.json.")
        try:
            pipe = super().from_pretrained(path, **kwargs)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            raise UserInputError(f"Cannot load {cls.__name__} from {path}: {type(e).__name__}: {e}") from e
        # Weights holding another model's keys load "successfully" with the missing tensors left on the meta
        # device, and sampling fails later with "Cannot copy out of meta tensor": refuse them here, by file.
        for name, component in pipe.components.items():
            if isinstance(component, torch.nn.Module):
                tensors = [*component.named_parameters(), *component.named_buffers()]
                missing = [key for key, t in tensors if t.is_meta]
                if missing:
                    raise UserInputError(
                        f"Cannot load {cls.__name__} from {path}: the weights in {path / name} do not match its "
                        f"config ({len(missing)} of {len(tensors)} tensors missing, e.g. {missing[0]!r})."
                    )
        pipe._hubgen_source = Path(path)  # the folder its weights came from (save_pretrained keeps its records)
        return pipe

    def save_pretrained(self, save_directory, safe_serialization: bool = True, push_to_hub: bool = False, **kwargs):
        """diffusers' save, safetensors only. With `push_to_hub` the folder becomes a hubgen model folder (the records
        of the folder this pipeline was loaded from when the weights are still its, and a card) and is published by
        `hubgen.publish.push` (`repo_id`, `private`, `revision`, `create_pr`, `commit_message`, `token` in `kwargs`;
        `repo_id` defaults to the folder's name under the token's user, as in diffusers)."""
        from .publish import PUSH_OPTIONS

        if safe_serialization is not True:
            raise UserInputError("hubgen saves safetensors weights only: `safe_serialization` must be True.")
        options = {k: kwargs.pop(k) for k in PUSH_OPTIONS if k in kwargs}
        if not push_to_hub:
            if options:
                raise UserInputError(f"{sorted(options)} are push options: pass `push_to_hub=True` with them.")
            return super().save_pretrained(save_directory, safe_serialization=True, **kwargs)
        if kwargs:
            raise UserInputError(f"`save_pretrained(push_to_hub=True)` takes {', '.join(PUSH_OPTIONS)}; got "
                                 f"{sorted(kwargs)}.")  # fmt: skip
        from .publish_pipeline import push_pipeline

        repo_id = options.pop("repo_id", None) or _default_repo_id(save_directory, options.get("token"))
        return push_pipeline(self, repo_id, save_directory, **options)

    def push_to_hub(self, repo_id: str, folder: str | os.PathLike | None = None, **options) -> str:
        """Publish this pipeline to the Hub repo `repo_id` as `hubgen push` does (card, figures, samples, offline
        checks, one commit) and return the repo's URL. `folder`: the lasting local model folder to save into and
        upload from (hubgen never uploads a temporary copy); by default the local folder this pipeline was
        loaded from, when its weights there are still these. `options`: `private`, `revision`, `create_pr`,
        `commit_message`, `token` (those of `hubgen.push`)."""
        from .publish_pipeline import push_pipeline

        return push_pipeline(self, repo_id, folder, **options)


def _default_repo_id(folder: Path, token) -> str:
    """diffusers' default repo id for `save_pretrained(push_to_hub=True)`: the folder's name under the token's user."""
    from huggingface_hub import HfApi

    return f"{HfApi(token=token).whoami()['name']}/{Path(folder).resolve().name}"


def images_to_tensor(images, name: str = "images", channels: int | None = None) -> torch.Tensor:
    """PIL images, a (B, H, W[, C]) / (H, W) numpy array in [0, 1] or 0..255, or a (B, C, H, W) tensor in [0, 1]
    or uint8 0..255 -> a float (B, C, H, W) tensor in [0, 1]. PIL images become grey ("L") for a 1-channel model
    and RGB for a 3-channel one (`channels`; None: grey, as for the digit models). Channel count and size are
    checked by the model; an empty batch and NaN or infinite values are refused here."""
    x = _as_image_tensor(images, name, channels)
    if x.ndim >= 1 and x.shape[0] == 0:
        raise UserInputError(f"`{name}` holds no images (an empty batch).")
    if not torch.isfinite(x).all():
        raise UserInputError(f"`{name}` holds NaN or infinite values.")
    return x


def _as_image_tensor(images, name: str, channels: int | None) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if x.ndim == 3:
            x = x.unsqueeze(0)
        return x
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], Image.Image):
        mode = "RGB" if channels == 3 else "L"
        arrays = [np.asarray(im if im.mode == mode else im.convert(mode)) for im in images]
        images = np.stack(arrays)
    if not isinstance(images, np.ndarray):
        raise UserInputError(
            f"`{name}` must be PIL images, a numpy array or a torch tensor, got {type(images).__name__}."
        )
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]  # (B, H, W) -> (B, 1, H, W)
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    return torch.from_numpy(np.ascontiguousarray(x))


def convert_images(images: torch.Tensor, output_type: str):
    """(B, C, H, W) in [0, 1] -> "pt" tensor, "np" array (B, H, W, C) float, or a list of "pil" images."""
    if output_type == "pt":
        return images
    arr = images.detach().cpu().permute(0, 2, 3, 1).float().numpy()  # (B, H, W, C)
    if output_type == "np":
        return arr
    u8 = (arr * 255).round().clip(0, 255).astype(np.uint8)
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in u8]


def check_output_type(output_type: str) -> None:
    if output_type not in ("pil", "np", "pt"):
        raise UserInputError(f"`output_type` must be 'pil', 'np' or 'pt', got {output_type!r}.")


def check_sampling_inputs(batch_size, generator, latents, latent_dim: int, output_type: str, device=None) -> None:
    """`check_inputs` of every sampling `__call__`: a ValueError names the argument, the value and what is allowed."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UserInputError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    check_output_type(output_type)
    check_generators(generator, batch_size, device)
    if latents is not None and tuple(latents.shape) != (batch_size, latent_dim):
        raise UserInputError(f"`latents` must have shape ({batch_size}, {latent_dim}), got {tuple(latents.shape)}.")


def draw_latents(batch_size: int, latent_dim: int, generator, sample=None, device=None) -> torch.Tensor:
    """(batch_size, latent_dim) latents on `device` from one generator, or row i from generator i of a list.

    `sample(shape, generator, device)` draws them (default: z ~ N(0, I) by hubgen.draws.randn_tensor: a CPU
    generator draws on the CPU, so a seed gives the same latents on any device).
    """
    return (sample or randn_tensor)((batch_size, latent_dim), generator, device)


def seed_or_latent(value, latent_dim: int) -> torch.Tensor | None:
    """An int seed -> z ~ N(0, I) drawn from torch.Generator().manual_seed(seed); a tensor with `latent_dim`
    entries -> itself; both as a (1, latent_dim) CPU tensor. Anything else -> None (the caller decides)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return randn_tensor((1, latent_dim), torch.Generator().manual_seed(value))
    if isinstance(value, torch.Tensor) and value.numel() == latent_dim:
        return value.reshape(1, latent_dim).float().cpu()
    return None


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """Tile (B, C, H, W) images in [0, 1] into one PIL image, `nrow` per row (default: a square-ish grid)."""
    b, c, h, w = images.shape
    nrow = nrow or int(np.ceil(np.sqrt(b)))
    ncol = int(np.ceil(b / nrow))
    grid = torch.ones(c, ncol * (h + padding) + padding, nrow * (w + padding) + padding)
    for i in range(b):
        r, q = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i].detach().float().cpu()
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr[..., 0] if c == 1 else arr)


MIN_CARD_PX = 256  # a card's picture is at least this wide: an 82 px grid of 8x8 digits could not be seen
SCALE_KEY = mf.SCALE_KEY


def card_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, min_tile_px: int = 0) -> Image.Image:
    """make_grid, enlarged by an integer factor k with nearest neighbour (every model pixel a k x k block, nothing
    interpolated) until it is MIN_CARD_PX wide and a tile at least `min_tile_px`; k is kept in the image's
    `info[SCALE_KEY]`, which hubgen's write_image stores in the PNG so that the card can say it."""
    grid = make_grid(images, nrow=nrow, padding=padding)
    k = max(1, -(-MIN_CARD_PX // grid.width), -(-min_tile_px // images.shape[-1]))
    big = grid.resize((grid.width * k, grid.height * k), Image.Resampling.NEAREST) if k > 1 else grid
    big.info[SCALE_KEY] = str(k)
    return big

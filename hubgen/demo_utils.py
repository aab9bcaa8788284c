"""What every family's Gradio demo shares: input limits and checks, loading, image tiling, UI pieces.

gradio is imported inside the functions that build UI components, so importing a demo module stays cheap.
"""

import functools
import math
import os

import numpy as np
import torch
from PIL import Image

from .pipeline_utils import make_grid

__all__ = [
    "MAX_SEED",
    "MAX_IMAGES",
    "MAX_STEPS",
    "MIN_TILE_PX",
    "check_int",
    "load_family_pipeline",
    "upscale",
    "show_grid",
    "show_value_errors",
    "seed_box",
    "image_out",
]

MAX_SEED = 2**32 - 1
MAX_IMAGES = 64
MAX_STEPS = 32
MIN_TILE_PX = 64  # images are upscaled (nearest neighbour) until one tile is at least this many pixels


def check_int(value, name: str, low: int, high: int) -> int:
    """Return `value` as an int if it is a whole number in [low, high]; else raise ValueError naming `name`.

    Whole floats (3.0) are accepted because number fields may send them; bools and strings are not.
    """
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not float(value).is_integer() or not low <= value <= high:
        raise ValueError(f"`{name}` must be an integer in [{low}, {high}], got {value!r}.")
    return int(value)


def load_family_pipeline(pipeline_or_path, pipeline_class) -> tuple:
    """A `pipeline_class` instance, or a folder path / Hub repo id to load one from -> (pipeline, name to show)."""
    if isinstance(pipeline_or_path, pipeline_class):
        return pipeline_or_path, pipeline_or_path.name_or_path or f"an in-memory {pipeline_class.__name__}"
    if isinstance(pipeline_or_path, (str, os.PathLike)):
        name = os.fspath(pipeline_or_path)
        return pipeline_class.from_pretrained(name), name
    kind = type(pipeline_or_path).__name__
    raise TypeError(f"`pipeline_or_path` must be a {pipeline_class.__name__}, a folder path or a repo id, got {kind}.")


def upscale(image: Image.Image, tile_px: int) -> Image.Image:
    """Enlarge by an integer factor (nearest neighbour) so that a `tile_px`-pixel tile reaches MIN_TILE_PX."""
    factor = max(1, math.ceil(MIN_TILE_PX / tile_px))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def show_grid(images: torch.Tensor, nrow: int, padding: int = 2) -> Image.Image:
    """(B, 1, H, W) in [0, 1] -> one upscaled PIL grid, `nrow` tiles per row."""
    return upscale(make_grid(images, nrow=nrow, padding=padding), images.shape[-1])


def show_value_errors(fn):
    """Wrap an event handler so a ValueError's message shows in the browser as a gr.Error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # gradio passes gr.Progress and event data through the wrapped signature
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            import gradio as gr

            raise gr.Error(str(e)) from e

    return wrapper


def seed_box(label: str, value: int = 0):
    import gradio as gr

    return gr.Number(value=value, label=label, precision=0, minimum=0, maximum=MAX_SEED)


def image_out(label: str):
    import gradio as gr

    return gr.Image(label=label, format="png", type="pil", interactive=False)

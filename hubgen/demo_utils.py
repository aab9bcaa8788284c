"""What every family's Gradio demo shares: input limits and checks, loading, the training record, image tiling,
sketchpad input, UI pieces.

gradio is imported inside the functions that build UI components, so importing a demo module stays cheap.
"""

import atexit
import contextlib
import functools
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import UserInputError
from .pipeline_utils import SCALE_KEY, make_grid

__all__ = [
    "MAX_SEED",
    "MAX_IMAGES",
    "MAX_STEPS",
    "MIN_TILE_PX",
    "TRAINING_INFO",
    "CANVAS_PX",
    "INK_THRESHOLD",
    "MAX_SKETCH_PX",
    "EmptyCanvasError",
    "DatasetUnavailableError",
    "check_int",
    "load_family_pipeline",
    "recorded_training_dataset",
    "upscale",
    "show_grid",
    "sketch_to_ink",
    "fit_to_model",
    "preprocess_sketch",
    "demo_event",
    "seed_box",
    "image_out",
    "sketchpad",
    "space_demo",
]

MAX_SEED = 2**32 - 1
MAX_IMAGES = 64
MAX_STEPS = 32
MIN_TILE_PX = 64  # images are upscaled (nearest neighbour) until one tile is at least this many pixels
TRAINING_INFO = "hubgen_training.json"  # hubgen.model_folder.TRAINING_RECORD, named in the demos' messages
CANVAS_PX = 280  # side of the sketchpad canvas
MAX_SKETCH_PX = 4096  # a sent sketch larger than this on either side is refused (the canvas is CANVAS_PX)
# Uploads are bounded before hubgen sees them: Gradio decodes an image upload (PIL) before any handler runs, so a
# 0.7 MB PNG of 13000 x 13000 pixels would cost 676 MB of RGBA each time. PIL refuses to decode images above twice
# Image.MAX_IMAGE_PIXELS (DecompressionBombError), so a demo process lowers that bound to MAX_SKETCH_PX squared;
# and `launch_options()` caps the bytes of any upload (Gradio's max_file_size).
MAX_UPLOAD_PIXELS = MAX_SKETCH_PX * MAX_SKETCH_PX
MAX_UPLOAD_BYTES = "10mb"
INK_THRESHOLD = 0.1  # ink below this (anti-aliasing, faint smudges) does not count toward the bounding box


class EmptyCanvasError(UserInputError):
    """The sketchpad holds no ink: there is nothing to encode."""


class DatasetUnavailableError(UserInputError):
    """No dataset is known for the model, or it cannot be loaded or does not match the model."""


def check_int(value, name: str, low: int, high: int) -> int:
    """Return `value` as an int if it is a whole number in [low, high]; else raise ValueError naming `name`.

    Whole floats (3.0) are accepted because number fields may send them; bools and strings are not.
    """
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not is_number or not float(value).is_integer() or not low <= value <= high:
        raise UserInputError(f"`{name}` must be an integer in [{low}, {high}], got {value!r}.")
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


def recorded_training_dataset(pipeline_or_path, pipeline_class):
    """The data the model was trained on, as its training record states it: a hubgen.data.DataSpec (name,
    columns, resolution, crop: what `load_dataset` needs to give the same images), or None when there is no
    record. Works for a local folder, or a Hub repo id if the record can be fetched; a `pipeline_class` instance
    is looked up by its `name_or_path`."""
    from .model_folder import training_record

    if isinstance(pipeline_or_path, pipeline_class):
        pipeline_or_path = pipeline_or_path.name_or_path
    if not isinstance(pipeline_or_path, (str, os.PathLike)) or not os.fspath(pipeline_or_path):
        return None
    try:
        record = training_record(pipeline_or_path)
    except ValueError:  # an unreadable record: the dataset is simply unknown
        return None
    if not record.get("dataset"):
        return None
    from .data import DataSpec

    return DataSpec.from_json(record["data"]) if record.get("data") else DataSpec(str(record["dataset"]))


def upscale(image: Image.Image, tile_px: int) -> Image.Image:
    """Enlarge by an integer factor (nearest neighbour) so that a `tile_px`-pixel tile reaches MIN_TILE_PX."""
    factor = max(1, math.ceil(MIN_TILE_PX / tile_px))
    big = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    big.info[SCALE_KEY] = str(factor)  # a card that shows it says so
    return big


def show_grid(images: torch.Tensor, nrow: int, padding: int = 2) -> Image.Image:
    """(B, 1, H, W) in [0, 1] -> one upscaled PIL grid, `nrow` tiles per row."""
    return upscale(make_grid(images, nrow=nrow, padding=padding), images.shape[-1])


# -- sketchpad input ------------------------------------------------------------------------------------


def _as_pil(image) -> Image.Image:
    """A numpy array (H, W[, C]) uint8, a PIL image or a file path (the sketchpad's `type` options) -> PIL."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        return Image.fromarray(image.astype(np.uint8))
    if isinstance(image, (str, os.PathLike)):
        return Image.open(image)
    raise UserInputError(f"Cannot read a sketch image of type {type(image).__name__}.")


def _sketch_image(value) -> Image.Image | None:
    """The drawn picture as RGBA: the sketchpad's `composite`, or its layers stacked over the background."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return _as_pil(value).convert("RGBA")
    if value.get("composite") is not None:
        return _as_pil(value["composite"]).convert("RGBA")
    parts = [value.get("background"), *value.get("layers", [])]
    parts = [_as_pil(p).convert("RGBA") for p in parts if p is not None]
    if not parts:
        return None
    image = Image.new("RGBA", parts[0].size, (0, 0, 0, 0))
    for part in parts:
        image = Image.alpha_composite(image, part.resize(image.size))
    return image


def sketch_to_ink(value) -> np.ndarray:
    """A Gradio sketchpad value -> ink intensity (H, W) in [0, 1]: 1 where the stroke is black, 0 on paper.

    Gradio 6 sends {"background", "layers", "composite"}; with the default image_mode "RGBA" the untouched
    canvas is transparent with RGB 0 under alpha 0, so the picture is laid on white paper before the
    luminance Y is read: ink = 1 - Y / 255. Dropping the alpha channel instead would read it as all black.
    """
    image = _sketch_image(value)
    if image is None:
        raise EmptyCanvasError("The canvas is empty: draw a digit first.")
    paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
    grey = np.asarray(Image.alpha_composite(paper, image).convert("L"), dtype=np.float32)  # (H, W) in 0..255
    return 1.0 - grey / 255.0


def _resize(ink: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased resize of a float image (H, W) -> (height, width)."""
    image = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32))  # mode "F"
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)


def fit_to_model(ink: np.ndarray, size: int) -> np.ndarray:
    """Crop ink (H, W) to its bounding box and scale it into a (size, size) image in [0, 1], peak 1.

    MNIST's recipe for size >= 16 (LeCun et al.: the digit fit into a 20x20 box, keeping its aspect ratio,
    then placed in 28x28 with its centre of mass at the centre). Small images are made as sklearn's 8x8 digits
    are: the full height, and one empty column on each side (in that data set columns 0 and 7 hold ink above 2 of
    16 in 8% of the images), aspect kept, centred: a round drawn 0 stretched to the frame's edges became a square
    ring that no training digit looks like.
    """
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    if rows.size == 0:
        raise EmptyCanvasError("The canvas is empty: draw a digit first.")
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]  # (h, w)
    box = round(size * 20 / 28) if size >= 16 else size
    box_w = box if size >= 16 else max(1, size - 2)
    scale = min(box / crop.shape[0], box_w / crop.shape[1])
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    digit = np.clip(_resize(crop, h, w), 0.0, None)  # (h, w)
    digit = np.clip(digit / digit.max(), 0.0, 1.0)

    if box < size:
        # Put the centre of mass (cy, cx) of the digit at the centre (size - 1) / 2 of the frame.
        ys, xs = np.mgrid[0:h, 0:w]
        cy, cx = (ys * digit).sum() / digit.sum(), (xs * digit).sum() / digit.sum()
        top, left = round((size - 1) / 2 - cy), round((size - 1) / 2 - cx)
    else:
        top, left = (size - h) // 2, (size - w) // 2
    top, left = min(max(top, 0), size - h), min(max(left, 0), size - w)
    out = np.zeros((size, size), dtype=np.float32)
    out[top : top + h, left : left + w] = digit
    return out


def preprocess_sketch(value, size: int) -> np.ndarray:
    """Sketchpad value -> the model's input (size, size) in [0, 1]. Raises EmptyCanvasError without ink, and
    ValueError for a picture larger than MAX_SKETCH_PX on a side (an API caller can send any array)."""
    for part in value.values() if isinstance(value, dict) else [value]:
        shape = getattr(part, "shape", None) or (getattr(part, "size", None) if isinstance(part, Image.Image) else None)
        if shape is not None and max(shape[:2]) > MAX_SKETCH_PX:
            raise UserInputError(
                f"The sketch is {shape[0]} x {shape[1]} pixels; at most {MAX_SKETCH_PX} on a side is accepted "
                f"(the canvas is {CANVAS_PX})."
            )
    return fit_to_model(sketch_to_ink(value), size)


# -- UI pieces ------------------------------------------------------------------------------------------


def demo_event(fn):
    """Wrap a demo's event handler: a ValueError's message shows in the browser as a gr.Error, and every PIL image
    in what it returns (alone, in a tuple of outputs, in a gallery's list) goes to gradio as a file of its own
    (serve_image) instead of as an image object."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # gradio passes gr.Progress and event data through the wrapped signature
        try:
            return _served(fn(*args, **kwargs))
        except ValueError as e:
            import gradio as gr

            raise gr.Error(str(e)) from e

    return wrapper


SERVED_MAX_AGE_S = 600  # an output file older than this is removed by a later call (gradio has long copied it)


@functools.cache
def _served_dir() -> Path:
    folder = tempfile.mkdtemp(prefix="hubgen-outputs-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the app's outputs go with its process
    return Path(folder)


def serve_image(image: Image.Image) -> str:
    """Write an output image to a PNG file of its own and return the path, for a gradio output to serve.

    Why not hand gradio the image object: gradio 6 writes it into its cache under a name made from the image's
    bytes, in place, so two requests at once that produce the same image (the same seed) write that one file while
    it is being sent for the other, and a client can read a truncated image (seen in the gallery's load test). A
    path takes gradio's route for files, a copy into its cache written under a temporary name and renamed into
    place. This folder keeps the files of the last SERVED_MAX_AGE_S seconds."""
    folder, now = _served_dir(), time.time()
    for old in folder.glob("*.png"):
        with contextlib.suppress(FileNotFoundError):  # another request removed it first
            if now - old.stat().st_mtime > SERVED_MAX_AGE_S:
                old.unlink()
    fd, path = tempfile.mkstemp(suffix=".png", dir=folder)
    with os.fdopen(fd, "wb") as f:
        image.save(f, format="PNG")
    return path


def _served(value):
    if isinstance(value, Image.Image):
        return serve_image(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_served(v) for v in value)
    return value


def seed_box(label: str, value: int = 0):
    import gradio as gr

    return gr.Number(value=value, label=label, precision=0, minimum=0, maximum=MAX_SEED, interactive=True)


def image_out(label: str):
    import gradio as gr

    return gr.Image(label=label, format="png", type="pil", interactive=False)


def sketchpad(label: str = "Your digit"):
    """A CANVAS_PX-square sketchpad with a fixed black brush, sending numpy RGBA (see sketch_to_ink)."""
    import gradio as gr

    return gr.Sketchpad(
        label=f"{label}: choose the brush (the pen in the toolbar), then draw",
        placeholder="Choose the brush in the toolbar, then draw one digit, large and in the middle.",
        type="numpy",
        image_mode="RGBA",
        format="png",
        layers=False,
        canvas_size=(CANVAS_PX, CANVAS_PX),
        brush=gr.Brush(default_size=CANVAS_PX // 28, colors=["#000000"], color_mode="fixed"),
        interactive=True,
    )


def limit_uploads() -> None:
    """Bound what an image upload can cost before it is decoded (see MAX_UPLOAD_PIXELS); every demo and the gallery
    call this when they build their Blocks. Process-wide: PIL's bound only ever goes down."""
    limit = MAX_UPLOAD_PIXELS // 2  # PIL raises above 2 x MAX_IMAGE_PIXELS, and warns above it
    if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > limit:
        Image.MAX_IMAGE_PIXELS = limit


# Page style of every hubgen app (Gradio 6 takes css at launch): the gallery's tiles wrap to the screen's width
# (a fixed 4 columns put tiles off a 390 px phone screen) with their whole caption; leaderboard tables wrap.
DEMO_CSS = """
#gallery-tiles .grid-container { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)) !important; }
#gallery-tiles .caption-label { white-space: normal; overflow-wrap: anywhere; max-width: 95%; }
.hubgen-board table { table-layout: auto; }
.hubgen-board td, .hubgen-board th { white-space: normal; overflow-wrap: anywhere; }
"""


def launch_options() -> dict:
    """The keyword arguments hubgen passes to `Blocks.launch` (the CLI, Spaces): uploads capped in bytes, and
    the page style (DEMO_CSS)."""
    return {"max_file_size": MAX_UPLOAD_BYTES, "css": DEMO_CSS}


# -- Spaces --------------------------------------------------------------------------------------------------------


def space_demo(model: str | None):
    """The demo a model Space serves: `model` (a Hub repo id or a local folder) built by its family's demo, or,
    when no model is set or it cannot be loaded, a page that says so and what to set: a Space that crashed at
    start showed its visitors nothing but a build log."""
    import gradio as gr

    from .hub import family_of

    how = ("Set the variable `HUBGEN_MODEL` to a hubgen model: a Hub repo id such as `your-name/vae-digits` "
           "(on a Space: Settings, Variables and secrets, New variable; then restart the Space), or a local folder "
           "written by `hubgen train FAMILY` (`HUBGEN_MODEL=./models/vae-digits python app.py`).")  # fmt: skip
    if model and str(model).strip():
        try:
            return family_of(model).load("build_demo")(model)
        except (OSError, ValueError) as e:  # a missing repo or folder, a foreign model: say so on the page
            problem = f"The model `{model}` could not be loaded: {type(e).__name__}: {e}"
    else:
        problem = "No model is set."
    with gr.Blocks(title="hubgen model demo") as demo:
        gr.Markdown(f"# hubgen model demo\n\n**{problem}**\n\n{how}")
    return demo

"""`pipe.push_to_hub(...)` and `pipe.save_pretrained(..., push_to_hub=True)` for every hubgen pipeline.

diffusers' own methods upload from a temporary directory with a generic `library_name: diffusers` card. hubgen's
go through `hubgen.publish.push` instead, from a lasting local model folder:

1. The folder: the one given, else the local folder the pipeline was loaded from (never a Hub cache snapshot).
2. The pipeline is saved there (hubgen.model_folder.save_pipeline: atomic). A folder that holds another model, or
   files that are not a model's, is refused; so is saving weights that differ from a model folder's own over it
   (its evaluation and card would then describe other weights).
3. When the saved weights are byte for byte those of the folder the pipeline was loaded from (`weights_sha256`),
   that folder's records come along: training record, evaluation, samples, curves and evaluation pictures. They
   describe exactly these weights, so the card shows the same figures and pictures as the original's.
4. `hubgen.publish.push(folder, repo_id, ...)`: the offline checks, the card rendered for the repo id, one commit.
"""

import os
import shutil
import tempfile
from pathlib import Path

from . import model_folder as mf
from .errors import UserInputError

__all__ = ["push_pipeline", "save_model_folder"]

# The records of a model folder that describe its weights (besides the evaluation's own pictures).
RECORDS = (mf.TRAINING_RECORD, mf.EVAL_RESULTS, mf.SAMPLES, mf.LOSS_CURVE)


def _in_hub_cache(path: Path) -> bool:
    from huggingface_hub import constants

    try:
        path.resolve().relative_to(Path(constants.HF_HUB_CACHE).resolve())
        return True
    except ValueError:
        return False


def _same_weights(pipeline, folder: Path) -> bool:
    """Whether saving `pipeline` would write exactly the weights `folder` holds (saved once to compare)."""
    if not mf.is_model_folder(folder):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        pipeline.save_pretrained(tmp)
        return mf.weights_sha256(tmp) == mf.weights_sha256(folder)


def save_model_folder(pipeline, folder: str | os.PathLike) -> Path:
    """Save `pipeline` into the model folder `folder` with the records that describe its weights (module docstring,
    steps 2 and 3). Returns the folder."""
    folder = Path(folder)
    source = getattr(pipeline, "_hubgen_source", None)
    source = Path(source) if source is not None else None
    class_name = type(pipeline).__name__
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"`folder` {folder} exists and is not a folder.")
    if folder.is_dir() and any(folder.iterdir()):
        if not mf.is_model_folder(folder):
            raise UserInputError(f"`folder` {folder} is not empty and holds no hubgen model; choose a new or empty "
                                 "folder (push uploads everything in it).")  # fmt: skip
        found = mf.read_model_index(folder).get("_class_name")
        if found != class_name:
            raise UserInputError(f"`folder` {folder} holds another model ({found}, not {class_name}); choose a new or "
                                 "empty folder.")  # fmt: skip
        if not _same_weights(pipeline, folder):
            raise UserInputError(f"`folder` {folder} holds a {class_name} with other weights than this pipeline's: "
                                 "saving over it would leave its evaluation and card describing other weights. "
                                 "Choose a new or empty folder.")  # fmt: skip
        if source is not None and source.resolve() == folder.resolve():
            return folder  # the folder the pipeline came from, unchanged: push it as it is
    mf.save_pipeline(pipeline, folder)
    if source is not None and source.is_dir() and source.resolve() != folder.resolve():
        if mf.weights_sha256(source) == mf.weights_sha256(folder):
            pictures = mf.eval_results(source).get("pictures") or []
            for name in [*RECORDS, *pictures]:
                if Path(name).name == name and (source / name).is_file():
                    shutil.copyfile(source / name, folder / name)
    return folder


def push_pipeline(pipeline, repo_id: str, folder: str | os.PathLike | None = None, **options) -> str:
    """Save `pipeline` into a lasting model folder and publish it with `hubgen.publish.push` (module docstring).
    `options` are push's: private, revision, create_pr, commit_message, token."""
    from .publish import PUSH_OPTIONS, push

    unknown = sorted(set(options) - set(PUSH_OPTIONS))
    if unknown:
        raise UserInputError(f"`push_to_hub` takes {', '.join(o for o in PUSH_OPTIONS if o != 'repo_id')} besides "
                             f"`repo_id` and `folder`; got {unknown}.")  # fmt: skip
    if folder is None:
        source = getattr(pipeline, "_hubgen_source", None)
        if source is None or _in_hub_cache(Path(source)):
            raise UserInputError(
                "`push_to_hub` uploads from a lasting local model folder: pass `folder=` (a new or empty folder, or "
                "the model's own) to save this pipeline in before the upload."
            )
        folder = source
    return push(save_model_folder(pipeline, folder), repo_id, **options)

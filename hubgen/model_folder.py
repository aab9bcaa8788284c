"""The model folder: the only module that knows its layout, reads its records and writes into it.

A hubgen model folder is a diffusers pipeline folder plus what hubgen adds:

    model_index.json, <component>/...      the pipeline (save_pretrained, safetensors only)
    README.md                              the model card (hubgen.hub.render_card)
    .eval_results/hubgen.yaml              the card's figures in the Hub's metrics format
    samples.png                            the headline sample grid
    loss_curve.png                         the training curves
    hubgen_training.json                   the training record: how it was trained (the command, data, time)
    eval_results.json                      the evaluation: what it scored, with N, k, split and seeds
    <picture>.png                          the evaluation's pictures (nearest neighbours, per-sampler grids)
    checkpoints/checkpoint-<step>/         resumable training state (hubgen.training; never published)
    hubgen_run.json                        the run marker, written when training starts (never published)
    .replaced-checkpoints/                 an overwritten run's checkpoints, until the new run has its first
    .tmp-pipeline/, .hubgen-swap.json      a pipeline being saved, and its commit (see below)
    samples/step-<step>.png                sample grids written during training
    logs/                                  tensorboard logs

Every write is atomic (a temporary file beside the target, then one `os.replace`), so a crash leaves the old
file or the new one, never half of either. A pipeline is several files and folders, which no single rename can
swap in place, so `save_pipeline` writes the new pipeline beside the old one and then commits it with one
atomic write of a journal (.hubgen-swap.json) before moving its entries in; a save killed after the commit is
completed by the next hubgen reader of the folder (`complete_interrupted_save`), one killed before it leaves
the old model. Either way a hubgen reader sees the old model or the new one, never a mix. Evaluation code
returns figures and pictures; it never writes here itself: `write_evaluation` does.
"""

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserInputError

if TYPE_CHECKING:
    from .data import DataSpec

__all__ = [
    "MODEL_INDEX",
    "CARD",
    "EVAL_YAML",
    "SAMPLES",
    "LOSS_CURVE",
    "TRAINING_RECORD",
    "EVAL_RESULTS",
    "CHECKPOINTS",
    "PROGRESS_SAMPLES",
    "LOGS",
    "NOT_PUBLISHED",
    "read_model_index",
    "read_json_file",
    "training_record",
    "eval_results",
    "recorded_dataset",
    "write_json",
    "write_text",
    "write_image",
    "save_pipeline",
    "write_evaluation",
    "is_model_folder",
    "complete_interrupted_save",
    "RUN_MARKER",
    "write_run_marker",
    "read_run_marker",
    "hub_dataset_id",
    "weights_sha256",
    "weight_files",
]

MODEL_INDEX = "model_index.json"
CARD = "README.md"
EVAL_YAML = ".eval_results/hubgen.yaml"
SAMPLES = "samples.png"
LOSS_CURVE = "loss_curve.png"
TRAINING_RECORD = "hubgen_training.json"
EVAL_RESULTS = "eval_results.json"
CHECKPOINTS = "checkpoints"
PROGRESS_SAMPLES = "samples"
LOGS = "logs"
RUN_MARKER = "hubgen_run.json"
_PIPELINE_TMP = ".tmp-pipeline"
_SWAP_JOURNAL = ".hubgen-swap.json"
REPLACED_CHECKPOINTS = ".replaced-checkpoints"  # an overwritten run's checkpoints, until the new run has one
# Not part of a published model: training checkpoints (optimizer state), logs, the run marker, save leftovers.
NOT_PUBLISHED = [f"{CHECKPOINTS}/**", f"{LOGS}/**", f"{_PIPELINE_TMP}/**", ".old-*", ".old-*/**", "**/__pycache__/**",
                 RUN_MARKER, _SWAP_JOURNAL, f"{REPLACED_CHECKPOINTS}/**"]  # fmt: skip


# The Hub copy a named dataset (or a saved copy of it) stands for, for the card's `datasets:` field.
SCALE_KEY = "hubgen:scale"  # the PNG text chunk that says how much a picture was enlarged (the card states it)
HUB_DATASET_IDS = {"mnist": "ylecun/mnist"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # "user/name": what hubgen.data loads from the Hub


def hub_dataset_id(dataset: str) -> str | None:
    """The Hub dataset id of a named dataset or of a saved copy of it (`mnist`, `.../mnist.npz` -> ylecun/mnist),
    or the id itself for data loaded from the Hub (`user/name` that is no local path: a card's `datasets`
    entry); None for local data. (Here and not in hubgen.data, which imports torch: `hubgen push` stays light.)"""
    name = str(dataset)
    known = HUB_DATASET_IDS.get(name) or HUB_DATASET_IDS.get(Path(name).stem)
    if known is None and HUB_ID.match(name) and not Path(name).expanduser().exists():
        return name
    return known


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The model's .safetensors files in a model folder, in path order: checkpoints, logs and save leftovers
    (.tmp-pipeline, .old-*, replaced checkpoints) are not the model's."""
    folder = Path(folder)
    skipped = {CHECKPOINTS, LOGS, _PIPELINE_TMP, REPLACED_CHECKPOINTS}
    found = []
    for path in folder.rglob("*.safetensors"):
        parts = path.relative_to(folder).parts
        if path.is_file() and not skipped & set(parts) and not any(part.startswith(".") for part in parts):
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def weights_sha256(folder: str | os.PathLike) -> str:
    """One sha256 over the model's weight files (`weight_files`), each file's relative path, size and bytes in
    path order: it ties a figure to the exact weights (BENCHMARKS.md rows, the weights a fine-tune started from).
    `sha256sum` of the files gives the per-file digests; this is their one fingerprint."""
    import hashlib

    folder = Path(folder)
    files = weight_files(folder)
    if not files:
        raise UserInputError(f"{folder} holds no .safetensors weights.")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def is_model_folder(path: str | os.PathLike) -> bool:
    """A pipeline folder: it has a model index, or an interrupted save's journal that reading it completes."""
    return (Path(path) / MODEL_INDEX).is_file() or (Path(path) / _SWAP_JOURNAL).is_file()


def read_model_index(path_or_repo_id: str | os.PathLike, **hub_kwargs) -> dict:
    """model_index.json of a local folder, or of a Hub repo id ("user/name", through the Hub cache)."""
    path = Path(path_or_repo_id)
    if path.is_dir():
        complete_interrupted_save(path)
        index = path / MODEL_INDEX
        if not index.is_file():
            raise UserInputError(f"{path} is not a hubgen model folder: it has no {MODEL_INDEX}.")
    elif path.exists():
        raise UserInputError(f"{path} is a file; a hubgen model is a folder or a Hub repo id.")
    elif path.is_absolute() or str(path_or_repo_id).startswith(".") or str(path_or_repo_id).count("/") != 1:
        raise UserInputError(f"Model folder {path} does not exist (and it is not a Hub repo id 'user/name').")
    else:
        from huggingface_hub import hf_hub_download

        try:
            index = Path(hf_hub_download(str(path_or_repo_id), MODEL_INDEX, **hub_kwargs))
        except OSError as e:  # offline and not cached, no such repo, or the Hub unreachable
            raise UserInputError(f"Cannot fetch {MODEL_INDEX} of {path_or_repo_id!r} from the Hub: {e}") from e
    try:
        found = json.loads(index.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"{index} is not valid JSON ({e}).") from e
    if not isinstance(found, dict) or not isinstance(found.get("_class_name"), str):
        raise UserInputError(f"{index} is not a pipeline index (a JSON object naming its `_class_name`), got "
                             f"{json.dumps(found)[:80]}.")  # fmt: skip
    return found


def read_json_file(path_or_repo_id: str | os.PathLike, name: str, **hub_kwargs) -> dict:
    """The JSON record `name` of a local folder or a Hub repo; {} when there is none (or it cannot be fetched)."""
    path = Path(path_or_repo_id)
    if path.is_dir():
        file = path / name
        if not file.is_file():
            return {}
    elif path.exists() or path.is_absolute() or str(path_or_repo_id).count("/") != 1:
        return {}
    else:
        try:
            from huggingface_hub import hf_hub_download

            file = Path(hf_hub_download(str(path_or_repo_id), name, **hub_kwargs))
        except Exception:  # offline and not cached, no such file or repo: the record is simply unknown
            return {}
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise UserInputError(f"{file} is not a readable JSON record ({e}).") from e
    return record if isinstance(record, dict) else {}


def training_record(path_or_repo_id: str | os.PathLike, **hub_kwargs) -> dict:
    """hubgen_training.json: the command, dataset, image shape, steps, time and versions of the run."""
    return read_json_file(path_or_repo_id, TRAINING_RECORD, **hub_kwargs)


def eval_results(path_or_repo_id: str | os.PathLike, **hub_kwargs) -> dict:
    """eval_results.json: the figures and the protocol (N, k, split, seeds) of the last evaluation."""
    return read_json_file(path_or_repo_id, EVAL_RESULTS, **hub_kwargs)


def recorded_dataset(folder: str | os.PathLike, dataset=None) -> tuple["DataSpec", dict]:
    """What an evaluation of `folder` runs on: the hubgen.data.DataSpec of its training record ("data"; from
    "dataset" alone for a record written before there was one), with `dataset`, when given, in place of the
    recorded dataset name only (columns, resolution and crop stay as trained). Returned with that record ({}
    when the folder has none). A DataSpec as `dataset` is used as it is. `str(spec)` is the dataset name."""
    from .data import DataSpec  # here, not at the top: hubgen.data imports torch and `hubgen push` stays light

    record = training_record(folder)
    if isinstance(dataset, DataSpec):
        return dataset, record
    if "data" in record:
        spec = DataSpec.from_json(record["data"])
    elif record.get("dataset") is not None:
        spec = DataSpec(str(record["dataset"]))
    elif dataset is None:
        raise UserInputError(f"{folder} does not record its dataset (no {TRAINING_RECORD}): pass `dataset`.")
    else:
        spec = DataSpec(str(dataset))
    if dataset is not None:
        spec = dataclasses.replace(spec, dataset=os.fspath(dataset) if isinstance(dataset, os.PathLike)
                                   else str(dataset))  # fmt: skip
    return spec, record


def _replace_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj) -> None:
    _replace_atomic(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def write_text(path: str | os.PathLike, text: str) -> None:
    _replace_atomic(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


def write_image(path: str | os.PathLike, image) -> None:
    """A PIL image (or a matplotlib figure) as PNG."""
    if hasattr(image, "savefig"):
        _replace_atomic(Path(path), lambda tmp: image.savefig(tmp, format="png", dpi=100))
    else:
        from PIL.PngImagePlugin import PngInfo

        text = PngInfo()
        for key, value in image.info.items():  # e.g. the enlargement of a card grid (pipeline_utils.SCALE_KEY)
            if isinstance(key, str) and key.startswith("hubgen:"):
                text.add_text(key, str(value))
        _replace_atomic(Path(path), lambda tmp: image.save(tmp, format="PNG", pnginfo=text))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _swap_in(folder: Path, names: list[str]) -> None:
    """Move each entry of the written pipeline (folder/.tmp-pipeline/<name>) over folder/<name>; idempotent, so a
    swap killed half-way is finished by running it again. Then drop the old entries, the temporary folder and,
    last, the journal."""
    tmp = folder / _PIPELINE_TMP
    for name in names:
        new, target, old = tmp / name, folder / name, folder / f".old-{name}"
        if not (new.exists() or new.is_symlink()):
            continue  # moved in before the interruption
        if target.exists() or target.is_symlink():
            _remove(old)  # our own leftover
            os.replace(target, old)
        os.replace(new, target)
    for name in names:
        _remove(folder / f".old-{name}")
    _remove(tmp)
    (folder / _SWAP_JOURNAL).unlink()


def complete_interrupted_save(folder: str | os.PathLike) -> None:
    """Finish a `save_pipeline` that was killed after its commit (the journal .hubgen-swap.json exists): the new
    pipeline was complete on disk when the journal was written, so its remaining entries are moved in. A folder
    without a journal is left as it is. Raises UserInputError when the folder cannot be written to."""
    folder = Path(folder)
    journal = folder / _SWAP_JOURNAL
    if not journal.is_file():
        return
    try:
        names = json.loads(journal.read_text())["entries"]
        if not (isinstance(names, list) and all(isinstance(n, str) and n and Path(n).name == n for n in names)):
            raise ValueError(f"entries {names!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserInputError(f"{journal} (an interrupted save's journal) is unreadable ({e}); the new model is in "
                             f"{folder / _PIPELINE_TMP}.") from e  # fmt: skip
    try:
        _swap_in(folder, names)
    except OSError as e:
        raise UserInputError(f"Cannot finish the interrupted save in {folder}: {e}") from e


def save_pipeline(pipeline, folder: str | os.PathLike) -> None:
    """save_pretrained into a temporary folder inside the target, commit, then move each entry into place.

    The commit is one atomic write of the journal naming the new entries, made once every new file is on
    disk: a failure or a kill before it leaves the previous model untouched (and the temporary folder, removed
    by the next save); after it, the save is finished here or by the next hubgen reader
    (`complete_interrupted_save`). Files of the folder that the pipeline does not write (card, samples,
    checkpoints) are left alone.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    complete_interrupted_save(folder)
    tmp = folder / _PIPELINE_TMP
    _remove(tmp)  # our own leftover from a save interrupted before its commit
    pipeline.save_pretrained(tmp, safe_serialization=True)
    names = sorted(entry.name for entry in tmp.iterdir())
    # the model index last: a reader that races the swap without the journal sees the old index until the end
    names = [n for n in names if n != MODEL_INDEX] + [n for n in names if n == MODEL_INDEX]
    write_json(folder / _SWAP_JOURNAL, {"entries": names})  # the commit point
    _swap_in(folder, names)


def write_run_marker(folder: str | os.PathLike, family: str, pipeline_class: str, command: str) -> None:
    """hubgen_run.json, written as a training run starts: the folder is recognisably a hubgen run of `family`
    from its first second, before any checkpoint or model exists."""
    import time

    write_json(Path(folder) / RUN_MARKER, {"family": family, "pipeline_class": pipeline_class, "command": command,
                                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})  # fmt: skip


def read_run_marker(folder: str | os.PathLike) -> dict | None:
    """The run marker of a training folder, None when there is none; UserInputError when it is unreadable."""
    path = Path(folder) / RUN_MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserInputError(f"{path} is not a readable run marker ({e}).") from e
    if not isinstance(marker, dict):
        raise UserInputError(f"{path} is not a run marker (a JSON object), got {type(marker).__name__}.")
    return marker


def write_evaluation(folder: str | os.PathLike, result) -> dict:
    """Write an evaluation (a hubgen.registry.EvalResult) into the folder: its pictures, then eval_results.json.
    Returns the JSON record."""
    folder = Path(folder)
    for name, image in result.pictures.items():
        if Path(name).name != name or not name.endswith(".png"):
            raise ValueError(f"An evaluation picture must be a plain .png file name, got {name!r}.")
        write_image(folder / name, image)
    record = result.to_json()
    write_json(folder / EVAL_RESULTS, record)
    return record

"""Small helpers the training scripts share: functions, not a Trainer; each script writes its own loop.

Checkpoints are written here rather than with `accelerator.save_state`, because accelerate pickles the
optimizer, scaler and RNG states (`torch.save`) and resuming would unpickle them. hubgen keeps every file it
writes or reads pickle-free: tensors go to safetensors, everything else to JSON.

    output_dir/checkpoints/checkpoint-<step>/
        model_<name>.safetensors        model weights (unwrapped state_dict)
        optimizer_<name>.safetensors    optimizer tensors (flattened "state.<param>.<key>")
        optimizer_<name>.json           optimizer param_groups and non-tensor state
        rng_<rank>.safetensors / .json  torch (and CUDA) RNG as tensors; numpy and python RNG as JSON
        state.json                      step, epoch, the script's own state (loss history, ...), GradScaler

A checkpoint is written to a temporary folder and renamed into place only when complete, so a crash never
leaves a partial checkpoint where a good one was.
"""

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "resolve_checkpoint",
    "check_output_dir",
    "make_accelerator",
    "versions",
    "config_dict",
    "write_json_atomic",
]

CHECKPOINTS = "checkpoints"


def make_accelerator(args, family: str, **kwargs):
    """The Accelerator every training script starts with, seeded, with its output folder and trackers.

    `args` needs output_dir, mixed_precision, report_to and seed; `kwargs` go to `Accelerator` (e.g.
    gradient_accumulation_steps). The data order is accelerate's seedable sampler (seed + epoch). Raises
    ValueError when a launcher started several processes that accelerate does not see as one group: they would
    all write the same files.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

    out = Path(args.output_dir)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        **kwargs,
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise ValueError(
            f"The launcher started {launched} processes but accelerate sees {accelerator.num_processes}: without "
            f"GPUs, set ACCELERATE_USE_CPU=1 (e.g. `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu "
            f"--num_processes 2 -m hubgen train {family} ...`) so the processes join one CPU (gloo) group."
        )
    set_seed(args.seed)
    if accelerator.is_main_process:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        if args.report_to != "none":
            config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers(family, config=config)
    return accelerator


def versions() -> dict:
    """Versions of the packages a training record names."""
    import importlib.metadata as md

    found = {}
    for name in ["hubgen", "torch", "diffusers", "accelerate", "huggingface_hub"]:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def config_dict(model) -> dict:
    """A model's config as it reads back from config.json: JSON types, without diffusers' private keys."""
    return {k: v for k, v in json.loads(json.dumps(dict(model.config), default=str)).items() if not k.startswith("_")}


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def recorded_dataset(folder: str | os.PathLike, dataset: str | None = None) -> tuple[str, dict]:
    """What an evaluation of `folder` runs on: `dataset` if given, else the dataset its hubgen_training.json
    records; returned with that record ({} when the folder has none)."""
    info_path = Path(folder) / "hubgen_training.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    dataset = dataset or info.get("dataset")
    if dataset is None:
        raise ValueError(f"{folder} does not record its dataset (no hubgen_training.json): pass `dataset`.")
    return dataset, info


def check_output_dir(output_dir: str | os.PathLike, pipeline_class: str, resume: bool, overwrite: bool) -> None:
    """Refuse an output folder that would lose the user's files. Raises ValueError.

    Allowed: a missing or empty folder; a folder from an earlier run of the same family when resuming or
    when `overwrite` is set (then only hubgen's own files are replaced, nothing is deleted).
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`--output_dir` {out} exists and is not a folder.")
    if not out.exists() or not any(out.iterdir()):
        return
    index = out / "model_index.json"
    ours = index.is_file() or (out / CHECKPOINTS).is_dir() or (out / "hubgen_training.json").is_file()
    if not ours:
        raise ValueError(
            f"`--output_dir` {out} is not empty and does not hold a hubgen run; choose a new or empty folder."
        )
    if index.is_file():
        try:
            found = json.loads(index.read_text()).get("_class_name")
        except (json.JSONDecodeError, OSError) as e:
            raise ValueError(f"`--output_dir` {out} holds an unreadable model_index.json ({e}).") from e
        if found != pipeline_class:
            raise ValueError(
                f"`--output_dir` {out} holds a different model ({found}, not {pipeline_class}); choose another folder."
            )
    if not (resume or overwrite):
        raise ValueError(
            f"`--output_dir` {out} already holds a {pipeline_class} run. Pass `--resume_from_checkpoint latest` "
            "to continue it, `--overwrite_output_dir` to train a new model there, or choose another folder."
        )


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for pid, pstate in state_dict["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                meta["state"].setdefault(str(pid), {})[key] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {int(pid): dict(values) for pid, values in meta["state"].items()}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _save_rng(folder: Path, rank: int) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    py_version, py_state, py_gauss = random.getstate()
    save_file(tensors, folder / f"rng_{rank}.safetensors")
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [py_version, list(py_state), py_gauss]}
    (folder / f"rng_{rank}.json").write_text(json.dumps(meta))


def _load_rng(folder: Path, rank: int) -> None:
    path = folder / f"rng_{rank}.safetensors"
    if not path.is_file():  # resumed with more processes than saved: keep the seeded state
        return
    tensors = load_file(path)
    meta = json.loads((folder / f"rng_{rank}.json").read_text())
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py_version, py_state, py_gauss = meta["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


def save_checkpoint(
    accelerator,
    output_dir: str | os.PathLike,
    step: int,
    models: dict[str, torch.nn.Module],
    optimizers: dict,
    state: dict,
    total_limit: int | None = None,
) -> Path:
    """Write checkpoint-<step> (see the module docstring); every process calls this. Returns its path."""
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # our own leftover from a crashed save
        tmp.mkdir()
    accelerator.wait_for_everyone()
    _save_rng(tmp, accelerator.process_index)
    if accelerator.is_main_process:
        for name, model in models.items():
            weights = {
                k: v.detach().cpu().contiguous() for k, v in accelerator.unwrap_model(model).state_dict().items()
            }
            save_file(weights, tmp / f"model_{name}.safetensors")
        for name, opt in optimizers.items():
            tensors, meta = _flatten_optimizer(opt.state_dict())
            save_file(tensors, tmp / f"optimizer_{name}.safetensors")
            (tmp / f"optimizer_{name}.json").write_text(json.dumps(meta))
        scaler = getattr(accelerator, "scaler", None)
        full = {"step": step, "state": state, "scaler": scaler.state_dict() if scaler is not None else None}
        (tmp / "state.json").write_text(json.dumps(full))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():  # the same step saved again: swap, then drop the old copy
            old = root / f".old-checkpoint-{step}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        if total_limit is not None:
            for stale in _checkpoints(root)[:-total_limit]:
                shutil.rmtree(stale)  # only checkpoint-<n> folders this function wrote
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str | os.PathLike, models: dict, optimizers: dict) -> dict:
    """Restore models, optimizers, GradScaler and this process's RNG from `path`; return the saved state."""
    path = Path(path)
    for name, model in models.items():
        accelerator.unwrap_model(model).load_state_dict(load_file(path / f"model_{name}.safetensors"), strict=True)
    for name, opt in optimizers.items():
        tensors = load_file(path / f"optimizer_{name}.safetensors")
        meta = json.loads((path / f"optimizer_{name}.json").read_text())
        opt.load_state_dict(_unflatten_optimizer(tensors, meta))
    full = json.loads((path / "state.json").read_text())
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and full.get("scaler"):
        scaler.load_state_dict(full["scaler"])
    _load_rng(path, accelerator.process_index)
    return full


def _checkpoints(root: Path) -> list[Path]:
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    found = _checkpoints(Path(output_dir) / CHECKPOINTS)
    return found[-1] if found else None


def resolve_checkpoint(output_dir: str | os.PathLike, value: str | None) -> Path | None:
    """`--resume_from_checkpoint`: "latest" (None if there is none yet), or a checkpoint folder path."""
    if value is None:
        return None
    if value == "latest":
        return latest_checkpoint(output_dir)
    path = Path(value)
    if not path.is_absolute() and not path.exists():
        path = Path(output_dir) / CHECKPOINTS / value
    if not (path / "state.json").is_file():
        raise ValueError(f"`--resume_from_checkpoint` {value!r} is not a hubgen checkpoint folder (no state.json).")
    return path

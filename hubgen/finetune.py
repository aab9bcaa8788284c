"""Fine-tuning: `hubgen train FAMILY --pretrained_model_name_or_path REPO_OR_FOLDER --dataset ...` for every family.

The run starts from the weights of a published (or local) hubgen model of the same family instead of a fresh
initialization; everything else is the family's training script as it is. Three steps, all in the shared
training code, none naming a family:

1. `apply_pretrained(parser, args, argv)`, when the options are checked: the model is fetched (a Hub repo id
   through the Hub cache, safetensors/JSON/Markdown only) and the options the *family* declares (its model,
   pixel-mode and objective options; not the common data, optimization and output ones) default to the values of
   the pretrained run's recorded command (for a model option that run left at its default, the value its saved
   component configs state, since defaults change between versions), so the architecture is the pretrained
   model's without repeating it. A model option given on the command line that contradicts the recorded one is a
   UserInputError naming both (a recorded absolute path that does not exist here may be replaced by the user's
   own copy).
2. `check_pretrained(args, pipeline_class)`, before anything is written: the model is of this family.
3. `load_pretrained(run, models)`, at a fresh start (a resumed run takes its checkpoint's weights): every trained
   model (and its EMA copy) gets the weights of the pipeline component of the same class, after its config is
   checked against the component's config.json (UserInputError listing the differences: a dataset of another
   image size or channel count, another pixel mode). A model with no published counterpart (a GAN's
   discriminator, which the pipeline does not carry) starts fresh, and the run says so. Optimizer state and
   the step count start fresh.

The training record gets `base_model` (the repo id, or the folder's absolute path) and the sha256 of its weights
(`hubgen.model_folder.weights_sha256`); the card names the base model, and a Hub repo id goes into its
`base_model` metadata.
"""

import argparse
import contextlib
import io
import json
import shlex
from pathlib import Path

from . import model_folder as mf
from .errors import UserInputError

__all__ = ["add_pretrained_argument", "apply_pretrained", "check_pretrained", "load_pretrained", "pretrained_record"]

# Keys of a transformers config that say where and how it was saved, not what the model is.
_SAVE_KEYS = {"transformers_version", "_name_or_path", "architectures", "torch_dtype", "dtype", "_commit_hash"}


def add_pretrained_argument(group) -> None:
    group.add_argument("--pretrained_model_name_or_path", default=None, metavar="REPO_OR_FOLDER",
                       help="fine-tune: start from this hubgen model of the same family (a Hub repo id or a local "
                            "model folder); its architecture options are the defaults")  # fmt: skip


def _fetch(name: str) -> Path:
    from .hub import REPO_ID_PATTERN, download_model

    path = Path(name).expanduser()
    if path.is_dir():
        if not mf.is_model_folder(path):
            raise UserInputError(f"`--pretrained_model_name_or_path` {name} is a folder without {mf.MODEL_INDEX}: not "
                                 "a hubgen model folder.")  # fmt: skip
        return path.resolve()
    if path.exists() or not REPO_ID_PATTERN.match(name) or name.startswith("."):
        raise UserInputError(f"`--pretrained_model_name_or_path` {name!r} is neither a model folder nor a Hub repo id "
                             "'user/name'.")  # fmt: skip
    try:
        return download_model(name)
    except OSError as e:
        raise UserInputError(f"`--pretrained_model_name_or_path` {name}: cannot fetch it from the Hub ({e}).") from e


def _given(parser, argv: list[str]) -> set[str]:
    """The options present on the command line (argparse dests), whatever their values."""
    saved, saved_defaults = [(action, action.default) for action in parser._actions], parser._defaults
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        parser._defaults = {}  # set_defaults() values too (the GAN's recipe): argparse adds them to any namespace
        found, _ = parser.parse_known_args(argv)
    finally:
        for action, default in saved:
            action.default = default
        parser._defaults = saved_defaults
    return set(vars(found))


def _recorded(parser, command: str) -> argparse.Namespace | None:
    """The pretrained run's options, its recorded `hubgen train FAMILY ...` parsed by this script's parser; None
    when they do not parse (a run of another hubgen version)."""
    try:
        argv = shlex.split(command)[3:]
        with contextlib.redirect_stderr(io.StringIO()):
            found, _ = parser.parse_known_args(argv)
        return found
    except (ValueError, SystemExit):
        return None


def _saved_values(folder: Path) -> dict:
    """The values the pretrained model's component configs (config.json, scheduler_config.json) agree on: key ->
    value, leaving out a key two components give different values (e.g. two networks' widths)."""
    values, clashes = {}, set()
    for component in mf.read_model_index(folder):
        for file in ("config.json", "scheduler_config.json"):
            path = folder / component / file
            if component.startswith("_") or not path.is_file():
                continue
            for key, value in json.loads(path.read_text()).items():
                if key in values and values[key] != value:
                    clashes.add(key)
                values.setdefault(key, value)
    return {k: v for k, v in values.items() if k not in clashes and not k.startswith("_")}


def _elsewhere(value) -> bool:
    """A recorded option value that is an absolute path on the author's machine, absent here (e.g. a local text
    encoder folder): the user's own copy of it is no contradiction (the weights and configs are still checked)."""
    return isinstance(value, str) and Path(value).is_absolute() and not Path(value).exists()


def apply_pretrained(parser, args, argv: list[str]) -> None:
    """Step 1 of the module docstring. The parser is hubgen.training.add_common_arguments's: it knows the dests of
    the options every family takes (`hubgen_common_options`) and the model group (`hubgen_model_group`)."""
    if not args.pretrained_model_name_or_path:
        return
    common, model_options = parser.hubgen_common_options, parser.hubgen_model_group._group_actions
    name = str(args.pretrained_model_name_or_path)
    args.pretrained_folder = _fetch(name)
    args.base_model = name if not Path(name).expanduser().is_dir() else str(args.pretrained_folder)
    record = mf.training_record(args.pretrained_folder)
    recorded = _recorded(parser, record.get("command", "")) if record.get("command") else None
    if recorded is None:
        print(f"note: {name} records no hubgen training command this version reads: the model options are this "
              "command's, and its weights load only if they describe the same architecture.")  # fmt: skip
        return
    given = _given(parser, argv)
    model_dests = {action.dest for action in model_options}
    # A model option the pretrained run left at its default took the default of that hubgen version, which may have
    # changed since (the GAN's width did): where the saved configs state it, their value is the model's.
    left_default = model_dests - _given(parser, shlex.split(record["command"])[3:]) - set(common)
    for dest, value in _saved_values(args.pretrained_folder).items():
        if dest in left_default and isinstance(value, type(getattr(recorded, dest))):
            setattr(recorded, dest, value)
    contradictions = [
        f"--{dest} {getattr(args, dest)!r} (the pretrained model has {getattr(recorded, dest)!r})"
        for dest in sorted(model_dests & given)
        if dest not in common
        and getattr(args, dest) != getattr(recorded, dest)
        and not _elsewhere(getattr(recorded, dest))
    ]
    if contradictions:
        raise UserInputError(f"Fine-tuning {name} keeps its architecture, which these options contradict: "
                             f"{'; '.join(contradictions)}. Leave them out (they default to the pretrained "
                             "model's) or train from scratch.")  # fmt: skip
    for dest, value in vars(recorded).items():
        if dest not in common and dest not in given and hasattr(args, dest):
            setattr(args, dest, value)


def check_pretrained(args, pipeline_class: str) -> None:
    """Step 2: the pretrained model is a model of this family."""
    folder = getattr(args, "pretrained_folder", None)
    if folder is None:
        return
    found = mf.read_model_index(folder).get("_class_name")
    if found != pipeline_class:
        raise UserInputError(f"`--pretrained_model_name_or_path` {args.pretrained_model_name_or_path} is a {found} "
                             f"model; this script fine-tunes {pipeline_class} models.")  # fmt: skip


def _config_differences(model, config: dict) -> list[str]:
    """Config entries of `model` that differ from a saved component's config.json."""
    if hasattr(model, "save_config"):  # diffusers ModelMixin: the config is the constructor's arguments
        mine = {k: v for k, v in json.loads(json.dumps(dict(model.config), default=str)).items()
                if not k.startswith("_")}  # fmt: skip
    else:  # transformers PreTrainedModel
        mine = json.loads(json.dumps(model.config.to_dict(), default=str))
    theirs = {k: v for k, v in config.items() if not k.startswith("_") and k not in _SAVE_KEYS}
    mine = {k: v for k, v in mine.items() if k not in _SAVE_KEYS}
    return [f"{k}: {mine.get(k)!r} here, {theirs.get(k)!r} in the pretrained model"
            for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)
            and (k in theirs or hasattr(model, "save_config"))]  # fmt: skip


def _component_for(name: str, model, index: dict, folder: Path) -> str | None:
    """The pipeline component holding this trained model's weights: the one of the same class (by name first,
    then `<component>_ema`'s component)."""
    same_class = [c for c, v in index.items() if isinstance(v, list) and len(v) == 2 and v[1] == type(model).__name__
                  and (folder / c).is_dir()]  # fmt: skip
    for candidate in (name, name.removesuffix("_ema")):
        if candidate in same_class:
            return candidate
    return same_class[0] if len(same_class) == 1 else None


def load_pretrained(run, models: dict) -> None:
    """Step 3 of the module docstring."""
    from safetensors.torch import load_file

    folder = Path(run.args.pretrained_folder)
    index = mf.read_model_index(folder)
    for name, wrapped in models.items():
        model = run.accelerator.unwrap_model(wrapped)
        component = _component_for(name, model, index, folder)
        if component is None:
            run.accelerator.print(f"fine-tuning: {name} starts from a fresh initialization ({run.args.base_model} "
                                  f"publishes no {type(model).__name__}).")  # fmt: skip
            continue
        differences = _config_differences(model, mf.read_json_file(folder / component, "config.json"))
        if differences:
            raise UserInputError(f"The {component} of {run.args.base_model} does not match this run's {name}: "
                                 f"{'; '.join(differences)}. The options and the dataset must give the pretrained "
                                 "model's architecture and image shape (e.g. --resolution, --pixel_mode).")  # fmt: skip
        tensors = {}
        for file in sorted((folder / component).glob("*.safetensors")):
            tensors.update(load_file(file))
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as e:
            raise UserInputError(f"The weights of {run.args.base_model}'s {component} do not fit this run's {name}: "
                                 f"{e}") from e  # fmt: skip
    run.accelerator.print(f"fine-tuning from {run.args.base_model}")


def pretrained_record(args) -> dict:
    """The training record's fields for a fine-tune ({} otherwise)."""
    folder = getattr(args, "pretrained_folder", None)
    if folder is None:
        return {}
    return {"base_model": args.base_model, "base_model_weights_sha256": mf.weights_sha256(folder)}

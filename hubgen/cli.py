"""`hubgen`: train, evaluate, sample, card and demo, dispatched through the family registry.

    hubgen families
    hubgen train FAMILY --dataset digits --output_dir out/model [--max_train_steps N] [--seed S] ...
    hubgen eval out/model [--num_images 1000] [--num_samples 1000] [--split test] [--seed 0] [family options]
    hubgen sample out/model --num_images 16 --seed 0 --out grid.png [family options, e.g. --prompt]
    hubgen card out/model
    hubgen demo out/model               (a folder of model folders: the gallery over it)
    hubgen push out/model user/model-digits [--private] [--revision BRANCH] [--create-pr] [--commit-message M]
    hubgen verify user/model-digits     (or a local folder)
    hubgen space create user/model-digits --out space/ [--push] [--space_id user/model-demo]

The options of `train`, `eval` and `sample` after the family or folder are the family's own (its training
script's parser, its `EvalRequest` fields, its `SampleOption`s: hubgen.registry); `hubgen eval FOLDER --help`
lists them. Bad input (unknown family, dataset or option; unreadable folders) ends with one message and exit
code 2, and so does a push the Hub cannot take (unreachable, no or a wrong token, HF_HUB_OFFLINE set): only
hubgen.errors.UserInputError is caught, so a bug keeps its traceback. `verify` exits 1 when a figure of the
card is not reproduced.
"""

import argparse
import collections
import dataclasses
import errno
import re
import sys
from pathlib import Path

from .errors import UserInputError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from .registry import list_families

    families = {f.name: f.description for f in list_families()}
    p = argparse.ArgumentParser(prog="hubgen", description="Train, publish, load and demo classic generative models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("families", help="list the registered model families")

    t = sub.add_parser("train", help="train a model: hubgen train FAMILY --help", add_help=False)
    t.add_argument("family", metavar="FAMILY", help="one of: " + ", ".join(families))
    t.add_argument("family_args", nargs=argparse.REMAINDER)

    e = sub.add_parser("eval", help="evaluate a model folder and update its card: hubgen eval FOLDER --help",
                       add_help=False)  # fmt: skip
    e.add_argument("-h", "--help", action="store_true", dest="show_help")
    e.add_argument("folder_and_options", nargs=argparse.REMAINDER, metavar="FOLDER [OPTIONS]")

    s = sub.add_parser("sample", help="write a grid of samples: hubgen sample FOLDER --help", add_help=False)
    s.add_argument("-h", "--help", action="store_true", dest="show_help")
    s.add_argument("folder_and_options", nargs=argparse.REMAINDER, metavar="FOLDER [OPTIONS]")

    c = sub.add_parser("card", help="re-render README.md from the folder's config, metrics and samples")
    c.add_argument("folder")
    c.add_argument("--repo_id", default=None, help="the Hub repo id to show in the usage snippet")

    d = sub.add_parser(
        "demo", help="launch the family's Gradio demo on a model folder or repo id; without one, the model gallery"
    )
    d.add_argument("folder", nargs="?", default=None, help="default: the gallery over $HUBGEN_GALLERY_DIR or models/")

    u = sub.add_parser("push", help="upload a saved model folder to the Hugging Face Hub (one commit)")
    u.add_argument("folder")
    u.add_argument("repo_id", metavar="REPO_ID", help="user/name or org/name")
    u.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its own)")
    u.add_argument("--revision", default=None, metavar="BRANCH", help="push to this branch (created from main)")
    u.add_argument("--create-pr", action="store_true", help="open a pull request against main instead")
    u.add_argument("--commit-message", default=None, metavar="M")

    v = sub.add_parser("verify", help="re-run a published model's evaluation and compare it with its card")
    v.add_argument("model", metavar="REPO_ID_OR_FOLDER")
    v.add_argument("--revision", default=None)
    v.add_argument("--dataset", default=None, help="your copy of the dataset when the records name a local path")
    v.add_argument("--feature_network", default=None, metavar="FOLDER",
                   help="your copy of the feature network when the evaluation used one")  # fmt: skip

    sp = sub.add_parser("space", help="Gradio Spaces for published models: hubgen space create --help")
    space_sub = sp.add_subparsers(dest="space_command", required=True, metavar="ACTION")
    sc = space_sub.add_parser("create", help="write (and optionally push) a Space for a model repo")
    sc.add_argument("repo_id", metavar="REPO_ID")
    sc.add_argument("--out", required=True, metavar="DIR", help="where to write app.py, requirements.txt, README.md")
    sc.add_argument("--push", action="store_true", help="upload it as a Space repo")
    sc.add_argument("--space_id", default=None, metavar="ID", help="the Space repo id (default: REPO_ID)")
    sc.add_argument("--overwrite", action="store_true", help="replace the Space files of a non-empty --out")
    requirement_help = ("how the Space installs hubgen, a pip requirement such as 'hubgen @ git+https://github.com/"
                        "OWNER/hubgen' (default: the installed hubgen's wheel, copied into the Space)")  # fmt: skip
    sc.add_argument("--hubgen_requirement", default=None, metavar="REQ", help=requirement_help)
    su = space_sub.add_parser("update", help="refresh a Space folder's hubgen wheel, requirements and sdk_version")
    su.add_argument("folder", metavar="DIR", help="a Space folder, e.g. spaces/model")
    su.add_argument("--space_id", required=True, metavar="ID", help="the Space repo it will be pushed to")
    su.add_argument("--hubgen_requirement", default=None, metavar="REQ", help=requirement_help)

    q = sub.add_parser("quickstart", help="train a small model of every family on the bundled digits (offline)")
    q.add_argument("--models", default="models", help="where to write <family>-digits model folders")
    q.add_argument("--families", nargs="+", default=None, metavar="FAMILY", help="default: every registered one")

    m = sub.add_parser("metrics", help="the evaluation toolkit: hubgen metrics train-classifier --help", add_help=False)
    m.add_argument("action", choices=("train-classifier",))
    m.add_argument("action_args", nargs=argparse.REMAINDER)
    return p


def _train(family_name: str, argv: list[str]) -> int:
    from .registry import get_family

    family = get_family(family_name)
    return int(family.load("train")(argv) or 0)


def _folder_and_family(command: str, argv: list[str]):
    """`hubgen eval|sample FOLDER ...`: the folder, its family and the options after it."""
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: hubgen {command} FOLDER [OPTIONS]\n\nThe options depend on the model's family: "
              f"`hubgen {command} FOLDER --help` lists them.")  # fmt: skip
        raise SystemExit(0)
    from .hub import family_of

    return Path(argv[0]), family_of(argv[0]), argv[1:]


def _add_dataclass_options(parser: argparse.ArgumentParser, request_class) -> None:
    """One option per field of an EvalRequest dataclass: its type, default, choices and help. An `int | None`
    count takes `all` for None; a tuple takes one or more values."""
    import types
    import typing

    from .registry import count_or_all

    for f in dataclasses.fields(request_class):
        optional = typing.get_origin(f.type) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
            f.type
        )
        kind = next(t for t in typing.get_args(f.type) if t is not type(None)) if optional else f.type
        kwargs = {"default": f.default, "help": f.metadata.get("help", "")}
        if typing.get_origin(kind) in (tuple, list):
            kwargs.update(nargs="+", type=typing.get_args(kind)[0])
        elif kind is int and f.metadata.get("all"):
            kwargs["type"] = count_or_all
        elif kind in (int, float, str):
            kwargs["type"] = kind
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        shown = "all" if f.default is None and kwargs.get("type") is count_or_all else f.default
        kwargs["help"] += f" (default: {shown})"
        parser.add_argument(f"--{f.name}", **kwargs)


def _eval(args) -> int:
    from . import model_folder as mf
    from .hub import render_card

    folder, family, rest = _folder_and_family("eval", ["--help"] if args.show_help else args.folder_and_options)
    request_class = family.load("eval_request")
    parser = argparse.ArgumentParser(prog=f"hubgen eval {folder}",
                                     description=f"Evaluate a {family.name} model and update its card.")  # fmt: skip
    _add_dataclass_options(parser, request_class)
    options = vars(parser.parse_args(rest))
    request = request_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    if not folder.is_dir():
        folder = _local_copy(str(folder))
    result = family.load("evaluate")(folder, request)
    record = mf.write_evaluation(folder, result)
    render_card(folder)
    from .registry import EvalRequest

    common = {f.name for f in dataclasses.fields(EvalRequest)}
    own = "".join(f"{f.name}={getattr(request, f.name)}, " for f in dataclasses.fields(request) if f.name not in common)
    scored = f"N={result.num_images}, " if result.num_images is not None else ""
    print(f"{folder}: {result.dataset} {result.split}, {scored}{own}seed={result.seed}")
    for key, value in result.metrics.items():
        spec = family.metric(key)
        label = (result.metric_labels.get(key) or "") if spec is None or "{label}" in spec.label else spec.label
        label = label.format_map(collections.defaultdict(lambda: "?", record))
        err = f" ± {value['stderr']:.3g}" if value.get("stderr") else ""
        print(f"  {key:24s} {value['mean']:.4f}{err}   {label}")
    if result.sample_quality:
        from .metrics import format_sample_quality

        print(format_sample_quality(result.sample_quality))
    for line in result.notes:
        print(f"  {line}")
    return 0


def _local_copy(repo_id: str) -> Path:
    """`hubgen eval REPO_ID`: the repo's model (hubgen.hub.download_model: weights, configs, records) copied into
    ./NAME, the folder the evaluation then writes its figures, pictures and card into. An existing ./NAME is used
    only when it holds the same weights."""
    import shutil

    from . import model_folder as mf
    from .hub import REPO_ID_PATTERN, download_model

    if not REPO_ID_PATTERN.match(repo_id):
        raise UserInputError(f"`hubgen eval` needs a local model folder or a Hub repo id, got {repo_id}.")
    snapshot, target = download_model(repo_id), Path(repo_id.split("/")[1])
    if target.exists():
        if not mf.is_model_folder(target) or mf.weights_sha256(target) != mf.weights_sha256(snapshot):
            raise UserInputError(
                f"`hubgen eval {repo_id}` evaluates a copy of the repo in ./{target}, which exists and holds something "
                "else: run it from another folder, or pass a model folder."
            )
        return target
    shutil.copytree(snapshot, target)
    print(f"copied {repo_id} into ./{target}: the evaluation writes its figures and card there")
    return target


MAX_SAMPLE_IMAGES = 1024  # `hubgen sample --num_images`: one grid


def _sample(args) -> int:
    import torch

    from .hub import load_pipeline
    from .pipeline_utils import card_grid

    folder, family, rest = _folder_and_family("sample", ["--help"] if args.show_help else args.folder_and_options)
    parser = argparse.ArgumentParser(prog=f"hubgen sample {folder}", description=f"Samples of a {family.name} model.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    parser.add_argument("--num_images", type=int, default=16, help=f"images in the grid, 1 to {MAX_SAMPLE_IMAGES}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler's generator")
    # no default: a grid written into whatever folder the shell is in surprised users
    parser.add_argument("--out", required=True, help="the PNG to write, e.g. samples/grid.png (its folder must exist)")
    kinds = {"int": int, "float": float, "text": str, "prompt": str, "choice": str}
    for option in family.sample_options:  # the family's declared sampling arguments, with its own defaults
        parser.add_argument(f"--{option.name}", type=kinds[option.kind], default=option.default, help=option.help,
                            choices=option.choices or None, required=option.required)  # fmt: skip
    options = parser.parse_args(rest)
    if not 1 <= options.num_images <= MAX_SAMPLE_IMAGES:
        raise UserInputError(f"`--num_images` must be in [1, {MAX_SAMPLE_IMAGES}], got {options.num_images}.")
    if not 0 <= options.seed < 2**63:
        raise UserInputError(f"`--seed` must be in [0, 2**63), got {options.seed}.")
    out = Path(options.out)
    if out.suffix.lower() != ".png":
        raise UserInputError(f"`--out` {out} must name a .png file.")
    if not out.parent.is_dir():
        raise UserInputError(f"`--out` {out}: the folder {out.parent} does not exist.")
    if out.is_dir():
        raise UserInputError(f"`--out` {out} is a folder; name a .png file.")
    pipe = load_pipeline(folder)
    kwargs = family.sample_call(options.num_images, vars(options))
    images = pipe(**kwargs, generator=torch.Generator().manual_seed(options.seed), output_type="pt").images
    from .model_folder import write_image

    # at least 256 px wide (nearest neighbour); atomic: a failed write leaves any earlier file whole
    write_image(out, card_grid(images))
    print(f"wrote {out} ({options.num_images} samples, seed {options.seed})")
    return 0


def _card(args) -> int:
    from .hub import render_card

    render_card(args.folder, repo_id=args.repo_id)
    print(f"wrote {Path(args.folder) / 'README.md'}")
    return 0


def _demo(args) -> int:
    from . import model_folder as mf
    from .demo_utils import launch_options, limit_uploads

    limit_uploads()
    folder = Path(args.folder) if args.folder is not None else None
    if folder is None or (folder.is_dir() and not mf.is_model_folder(folder)):  # a folder of model folders
        from .gallery import build_gallery, gallery_from_env

        gallery = gallery_from_env() if folder is None else build_gallery(local_dir=folder)
        if folder is not None and not len(gallery.catalog):
            raise UserInputError(f"{folder} is neither a hubgen model folder nor a folder of model folders.")
        gallery.launch(**launch_options())
        return 0
    from .hub import family_of

    family = family_of(args.folder)
    demo = family.load("build_demo")(args.folder)
    demo.launch(**launch_options())
    return 0


def _push(args) -> int:
    from .publish import PublishError, push

    try:
        push(args.folder, args.repo_id, private=args.private, revision=args.revision, create_pr=args.create_pr,
             commit_message=args.commit_message)  # fmt: skip
    except PublishError as e:
        print(f"hubgen: {e}", file=sys.stderr)
        return 2
    return 0


def _verify(args) -> int:
    from .publish import verify

    report = verify(args.model, revision=args.revision, dataset=args.dataset, feature_network=args.feature_network)
    print(report.format())
    return 0 if report.ok else 1


def _space(args) -> int:
    from .publish import PublishError, create_space, update_space

    if args.space_command == "update":
        update_space(args.folder, args.space_id, args.hubgen_requirement)
        return 0
    try:
        create_space(args.repo_id, args.out, push=args.push, space_id=args.space_id, overwrite=args.overwrite,
                     hubgen_requirement=args.hubgen_requirement)  # fmt: skip
    except PublishError as e:
        print(f"hubgen: {e}", file=sys.stderr)
        return 2
    return 0


def _quickstart(args) -> int:
    """The README's main job: each family's declared quickstart run on the bundled digits, one after another,
    into MODELS/<family>-digits (an earlier quickstart folder is overwritten, nothing else)."""
    import shlex

    from .registry import get_family, list_families

    families = [get_family(name) for name in args.families] if args.families else list_families()
    for family in families:
        out = Path(args.models) / f"{family.name}-digits"
        argv = ["--dataset", "digits", "--output_dir", str(out), "--overwrite_output_dir"]
        argv += shlex.split(family.quickstart)
        print(f"hubgen train {family.name} {shlex.join(argv)}", flush=True)
        code = _train(family.name, argv)
        if code:
            return code
    print(f"Model folders: {', '.join(f'{args.models}/{f.name}-digits' for f in families)}")
    return 0


def _families() -> int:
    from .registry import list_families

    for f in list_families():
        print(f"{f.name:10s} {f.description}\n{'':10s} model {f.model_class}, pipeline {f.pipeline_class}")
    return 0


# The filesystem refusing a write (permissions, read-only, full disk, quota): the user's to fix, not a bug
ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}

# A Hugging Face access token (hf_ and at least 8 more characters), wherever it appears in what hubgen prints
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def redact(text: str) -> str:
    """`text` with every Hugging Face token replaced by hf_***."""
    return TOKEN_PATTERN.sub("hf_***", text)


class _Redacting:
    """A text stream that writes to `stream` with tokens redacted: argparse echoes a mistyped `--token hf_...` in
    its error, and a message may quote a command line."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Redacting(stdout), _Redacting(stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            return _train(args.family, args.family_args)
        if args.command == "metrics":
            from .metrics.train_classifier import main as train_classifier

            return int(train_classifier(args.action_args) or 0)
        handlers = {"eval": _eval, "sample": _sample, "card": _card, "demo": _demo}
        handlers.update(push=_push, verify=_verify, space=_space, quickstart=_quickstart)
        return _families() if args.command == "families" else handlers[args.command](args)
    except UserInputError as e:
        print(f"hubgen: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise  # anything else keeps its traceback
        print(f"hubgen: error: {e.strerror}: {e.filename or 'a file hubgen reads or writes'}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse's own errors (exit code 2) and --help (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


if __name__ == "__main__":
    sys.exit(main())

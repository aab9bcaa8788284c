"""`hubgen`: train, evaluate, sample, card and demo, dispatched through the family registry.

    hubgen families
    hubgen train vae --dataset digits --output_dir out/vae [--max_train_steps N] [--seed S] ...
    hubgen eval out/vae [--k 1000] [--num_images 1000] [--split test] [--seed 0]
    hubgen sample out/vae --num_images 16 --seed 0 --out grid.png
    hubgen card out/vae
    hubgen demo out/vae
    hubgen push out/vae user/vae-digits [--private] [--revision BRANCH] [--create-pr] [--commit-message M]
    hubgen verify user/vae-digits        (or a local folder)
    hubgen space create user/vae-digits --out space/ [--push] [--space_id user/vae-demo]

Bad input (unknown family, dataset or option; unreadable folders) ends with one message and exit code 2, and
so does a push the Hub cannot take (unreachable, no or a wrong token, HF_HUB_OFFLINE set). `verify` exits 1
when a figure of the card is not reproduced.
"""

import argparse
import sys
from pathlib import Path

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

    e = sub.add_parser("eval", help="evaluate a model folder and update its card")
    e.add_argument("folder")
    e.add_argument("--dataset", default=None, help="default: the dataset the model was trained on")
    e.add_argument("--split", default="test", choices=("train", "valid", "test"))
    e.add_argument("--num_images", type=int, default=1000, help="first N images of the split (0: all)")
    e.add_argument("--k", type=int, default=1000, help="importance samples for the IWAE bound (VAE)")
    e.add_argument(
        "--num_samples",
        type=int,
        default=1000,
        help="generated samples for the sample-quality metrics (Frechet distance, coverage, memorization); 0: skip",
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--num_timesteps", type=int, default=None,
                   help="DDPM: timesteps per image for the variational bound (default: all T)")  # fmt: skip
    e.add_argument("--samplers", nargs="+", default=None, metavar="NAME[:STEPS]",
                   help="DDPM: samplers to compare (default: ddpm ddim:50 dpmsolver++:20)")  # fmt: skip

    s = sub.add_parser("sample", help="write a grid of samples")
    s.add_argument("folder")
    s.add_argument("--num_images", type=int, default=16)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="grid.png")

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

    sp = sub.add_parser("space", help="Gradio Spaces for published models: hubgen space create --help")
    space_sub = sp.add_subparsers(dest="space_command", required=True, metavar="ACTION")
    sc = space_sub.add_parser("create", help="write (and optionally push) a Space for a model repo")
    sc.add_argument("repo_id", metavar="REPO_ID")
    sc.add_argument("--out", required=True, metavar="DIR", help="where to write app.py, requirements.txt, README.md")
    sc.add_argument("--push", action="store_true", help="upload it as a Space repo")
    sc.add_argument("--space_id", default=None, metavar="ID", help="the Space repo id (default: REPO_ID)")

    m = sub.add_parser("metrics", help="the evaluation toolkit: hubgen metrics train-classifier --help", add_help=False)
    m.add_argument("action", choices=("train-classifier",))
    m.add_argument("action_args", nargs=argparse.REMAINDER)
    return p


def _train(family_name: str, argv: list[str]) -> int:
    from .registry import get_family

    family = get_family(family_name)
    return int(family.load("train")(argv) or 0)


def _eval(args) -> int:
    from .hub import family_of, render_card
    from .training import write_json_atomic

    if args.k < 1 or args.num_images < 0 or args.num_samples < 0:
        raise ValueError(
            f"`--k` must be >= 1, `--num_images` and `--num_samples` >= 0; got {args.k}, {args.num_images}, "
            f"{args.num_samples}."
        )
    folder = Path(args.folder)
    family = family_of(folder)
    results = family.load("evaluate")(
        folder,
        dataset=args.dataset,
        split=args.split,
        k=args.k,
        num_images=args.num_images,
        num_samples=args.num_samples,
        seed=args.seed,
        # family-specific options, passed only when given (families without them need not accept them)
        **{k: getattr(args, k) for k in ("num_timesteps", "samplers") if getattr(args, k) is not None},
    )
    if results.get("metrics"):
        print(
            f"{folder}: {results.get('dataset')} {results.get('split')}, N={results.get('num_images')}, "
            + (f"k={results.get('k')}, " if results.get("k") is not None else "")
            + (f"{results['num_timesteps']} timesteps, " if results.get("num_timesteps") else "")
            + f"seed={results.get('seed')}"
        )
    for name, value in results.get("metrics", {}).items():
        err = f" ± {value['stderr']:.3f}" if value.get("stderr") else ""
        print(f"  {name:16s} {value['mean']:.4f}{err}")
    quality = results.get("sample_quality")
    if quality:
        from .metrics import format_sample_quality

        print(format_sample_quality(quality))
    for label, run in (results.get("samplers") or {}).items():  # DDPM: one line per sampler
        fd = run["report"]["frechet_distance"]
        print(f"  {label:22s} {fd['name']} {fd['value']:.3f}   coverage {run['report']['prdc']['coverage']:.3f}   "
              f"{run['seconds_per_image']:.4f} s/image")  # fmt: skip
    if folder.is_dir():
        write_json_atomic(folder / "eval_results.json", results)
        render_card(folder)
    return 0


def _sample(args) -> int:
    import torch

    from .hub import load_pipeline
    from .pipeline_utils import make_grid

    if args.num_images < 1:
        raise ValueError(f"`--num_images` must be >= 1, got {args.num_images}.")
    pipe = load_pipeline(args.folder)
    images = pipe(
        batch_size=args.num_images, generator=torch.Generator().manual_seed(args.seed), output_type="pt"
    ).images
    make_grid(images).save(args.out)
    print(f"wrote {args.out} ({args.num_images} samples, seed {args.seed})")
    return 0


def _card(args) -> int:
    from .hub import render_card

    render_card(args.folder, repo_id=args.repo_id)
    print(f"wrote {Path(args.folder) / 'README.md'}")
    return 0


def _demo(args) -> int:
    if args.folder is None:
        from .gallery import gallery_from_env

        gallery_from_env().launch()
        return 0
    from .hub import family_of

    family = family_of(args.folder)
    demo = family.load("build_demo")(args.folder)
    demo.launch()
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

    report = verify(args.model, revision=args.revision)
    print(report.format())
    return 0 if report.ok else 1


def _space(args) -> int:
    from .publish import PublishError, create_space

    try:
        create_space(args.repo_id, args.out, push=args.push, space_id=args.space_id)
    except PublishError as e:
        print(f"hubgen: {e}", file=sys.stderr)
        return 2
    return 0


def _families() -> int:
    from .registry import list_families

    for f in list_families():
        print(f"{f.name:10s} {f.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            return _train(args.family, args.family_args)
        if args.command == "metrics":
            from .metrics.train_classifier import main as train_classifier

            return int(train_classifier(args.action_args) or 0)
        handlers = {"eval": _eval, "sample": _sample, "card": _card, "demo": _demo}
        handlers.update(push=_push, verify=_verify, space=_space)
        return _families() if args.command == "families" else handlers[args.command](args)
    except ValueError as e:
        print(f"hubgen: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse's own errors (exit code 2) and --help (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


if __name__ == "__main__":
    sys.exit(main())

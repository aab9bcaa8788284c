"""Benchmark: text-to-image diffusion on MNIST under a fixed CPU budget; prompt accuracy on training and held-out
templates.

    python bench/text2img_mnist.py --data ../shared/data/mnist.npz --minutes 30 --threads 2

Trains through the real CLI (`hubgen train text2img`, the family's default model: UNet widths 16-32-64 with
cross-attention at 7x7 and in the middle block, a 2-layer CLIP text encoder of width 64 trained from scratch,
batch 64, lr 1e-3, caption dropout 0.1) on the 50k MNIST training images for `--minutes` of wall-clock
training time (at most 45) with `--threads` torch threads, then draws `--num_samples` images per template set
(num_samples / 10 per digit) at guidance scale 3 with 20-step DPM-Solver++ (seed 0 for the training
templates, 1 for the held-out ones) and labels them with the frozen MNIST classifier. Goals (issue 7): prompt
accuracy >= 95% on training templates and >= 85% on held-out templates. Also reported: training images/s,
and the classifier Frechet distance and coverage of the training-template samples against the test split.
JSON beside the model folder; a Markdown row on stdout.
"""

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

from hubgen.cli import main as hubgen
from hubgen.hub import render_card
from hubgen.model_folder import write_evaluation
from hubgen.text2img.evaluation import Text2ImageEvalRequest, evaluate

GOALS = {"train": 0.95, "heldout": 0.85}
GUIDANCE = 3.0
STEPS = 20
MAX_MINUTES = 45.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="MNIST .npz with x_train/y_train/x_test/y_test")
    p.add_argument("--out", default="bench/out")
    p.add_argument("--minutes", type=float, default=30.0, help=f"training budget, wall clock (at most {MAX_MINUTES:g})")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_samples", type=int, default=1000, help="samples per template set (a multiple of 10)")
    p.add_argument("--eval_only", action="store_true", help="evaluate the existing model folder, do not train")
    p.add_argument("train_args", nargs="*", help="extra `hubgen train text2img` options after --")
    args = p.parse_args()
    if not 0 < args.minutes <= MAX_MINUTES:
        p.error(f"--minutes must be in (0, {MAX_MINUTES:g}], got {args.minutes}")
    if args.threads < 1 or args.num_samples < 10:
        p.error("--threads must be >= 1 and --num_samples >= 10")
    torch.set_num_threads(args.threads)

    out = Path(args.out) / "text2img-mnist"
    if not args.eval_only:
        code = hubgen([
            "train", "text2img", "--dataset", args.data, "--output_dir", str(out), "--overwrite_output_dir",
            "--num_epochs", "1000", "--max_train_time", str(args.minutes * 60), "--seed", str(args.seed),
            "--checkpointing_steps", "100000", "--checkpoints_total_limit", "1", "--sample_steps", "2000",
            "--logging_steps", "50", "--eval_num_samples", "0", "--report_to", "none", *args.train_args,
        ])  # fmt: skip
        if code != 0:
            return code
    info = json.loads((out / "hubgen_training.json").read_text())
    start = time.perf_counter()
    request = Text2ImageEvalRequest(
        dataset=args.data,
        num_samples=args.num_samples,
        seed=0,
        guidance_scales=(GUIDANCE,),
        num_inference_steps=STEPS,
        sampler="dpmsolver++",
    )
    result = evaluate(out, request)
    eval_seconds = time.perf_counter() - start
    results = write_evaluation(out, result)  # the JSON record of eval_results.json
    render_card(out)

    key = f"{GUIDANCE:g}"
    accuracy = {which: results["prompt_accuracy"][which][key]["overall"] for which in GOALS}
    stderr = {which: results["metrics"][f"prompt_accuracy_{which}_w{key}"]["stderr"] for which in GOALS}
    q = results["sample_quality"]
    record = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "budget_minutes": args.minutes,
        "train": {k: info.get(k) for k in ("train_seconds", "steps", "epochs", "images_per_second", "unet_parameters")},
        "text_encoder_parameters": info["text_encoder"]["parameters"],
        "guidance_scale": GUIDANCE,
        "sampler": f"dpmsolver++, {STEPS} steps",
        "num_samples_per_set": results["num_samples_per_set"],
        "prompt_accuracy": accuracy,
        "prompt_accuracy_stderr": stderr,
        "goals": GOALS,
        "goals_met": {which: accuracy[which] >= GOALS[which] for which in GOALS},
        "frechet_distance": q["frechet_distance"],
        "coverage": q["prdc"]["coverage"],
        "eval_seconds": round(eval_seconds, 1),
        "classifier": results["classifier"]["id"],
    }
    (out / f"bench_n{args.num_samples}.json").write_text(json.dumps(record, indent=2) + "\n")
    fd = q["frechet_distance"]
    cells = [
        record["date"],
        f"{info['train_seconds']:.0f} s, {info['steps']} steps, {info['epochs']} epochs, {args.threads} thread(s)",
        info["images_per_second"],
        results["num_samples_per_set"],
        f"{100 * accuracy['train']:.1f}% ± {100 * stderr['train']:.1f}"
        + (" ✓" if record["goals_met"]["train"] else " ✗"),
        f"{100 * accuracy['heldout']:.1f}% ± {100 * stderr['heldout']:.1f}"
        + (" ✓" if record["goals_met"]["heldout"] else " ✗"),
        f"{fd['value']:.2f} (floor {fd['floor_train_vs_test']:.2f})",
        f"{q['prdc']['coverage']:.3f}",
    ]
    header = ["date", "training", "images/s", "N per set", "accuracy, training templates (goal 95%)",
              "accuracy, held-out templates (goal 85%)", "FD-mnist", "coverage"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Profiles of training steps, one family after another (issue 22): where the time goes, and how close to this
machine's matmul peak training runs.

    OMP_NUM_THREADS=1 taskset -c 0 python bench/profile_step.py --data ../shared/data/mnist.npz --threads 1

Each family trains through the real CLI (`hubgen train FAMILY`) on MNIST with the recipe of its benchmark (bench/*.py,
listed in RECIPES); torch.profiler skips the first `--wait` optimizer steps (the set-up, first allocations, oneDNN's
kernel choice) and one warm-up step, then records `--active` steps. The step boundaries are hubgen.training.end_of_step
(every family calls it once per optimizer step; one EM iteration over the training set for the mixture); the run goes
on for one more step, so that the final checkpoint falls outside the window. Reported per family:

- the wall time of one step without the profiler (steps 2 to `--wait`), and images per second;
- the top operators by self CPU time, each as its share of the step (torch.profiler's key_averages);
- the floating-point operations the profiler counts (`with_flops`: matrix products and convolutions only) per second
  of the recorded steps, and that rate as a fraction of the peak measured here: the best of `--repeats` float32
  square matrix products (n = 512, 1024, 2048) on the same threads. The profiler counts no FLOPs for a convolution's
  backward pass, so a second figure adds twice the convolutions' forward FLOPs (the input and weight gradients).
  Elementwise work, data movement and Python count as time but not as FLOPs.

Writes bench/out/profiles/<family>.json and prints one Markdown table per family and a summary table.
"""

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

import hubgen.training as tr
from hubgen.cli import main as hubgen

# The recipe of each family's MNIST benchmark (bench/vae_mnist.py, gan_mnist.py, flow_mnist.py, ddpm_mnist.py,
# pixelcnn_mnist.py, mixture_mnist.py, text2img_mnist.py), without its time budget.
RECIPES = {
    "vae": "--architecture mlp --hidden_dims 512 256 --latent_dim 32 --activation elu --train_batch_size 128 "
    "--learning_rate 1e-3 --kl_warmup_steps 4000",
    "gan": "--loss non_saturating --latent_dim 64 --base_channels 32 --train_batch_size 64 --extra_layers 1 "
    "--learning_rate 1.6e-3 --d_learning_rate 3.2e-3 --ema_decay 0.999 --divergence_steps 100000",
    "flow": "--num_levels 2 --steps_per_level 6 --hidden_channels 64 --train_batch_size 32 "
    "--learning_rate 2e-3 --lr_warmup_steps 500 --max_grad_norm 100 --no_eval",
    "ddpm": "--train_batch_size 128 --learning_rate 2e-4",
    "pixelcnn": "--architecture pixelcnn --hidden_channels 64 --num_layers 7 --learning_rate 3e-3",
    "mixture": "--num_components 500 --tolerance 0",
    "text2img": "",
}
QUIET = "--checkpointing_steps 1000000 --sample_steps 1000000 --logging_steps 1000000 --report_to none --seed 0"
LIKELIHOOD = "--eval_num_images 0 --eval_num_samples 0"
SAMPLES = "--eval_num_samples 0"
NO_EVAL = {"vae": LIKELIHOOD, "pixelcnn": LIKELIHOOD, "ddpm": LIKELIHOOD, "mixture": LIKELIHOOD, "gan": SAMPLES,
           "flow": SAMPLES, "text2img": SAMPLES}  # fmt: skip


def matmul_peak(repeats: int) -> dict:
    """The best float32 GFLOP/s of a square matrix product (2 n^3 operations) over n = 512, 1024, 2048."""
    best = {}
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # first call: allocation, kernel choice
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        best[n] = 2 * n**3 / min(times) / 1e9
    return {"gflops_by_n": {str(n): round(v, 2) for n, v in best.items()}, "gflops": round(max(best.values()), 2)}


def profile_family(family: str, data: str, out: Path, wait: int, active: int) -> dict:
    """Train `family` for wait + 1 + active + 1 steps through the CLI with the profiler on the active ones."""
    stamps: list[float] = []  # when each step ended
    images: list[int] = []  # run.images_seen then
    original = tr.end_of_step
    schedule = torch.profiler.schedule(wait=wait, warmup=1, active=active, repeat=1)
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True, schedule=schedule)

    def end_of_step(run, *args, **kwargs):  # the step boundary: after the family's optimizer step
        stop = original(run, *args, **kwargs)
        stamps.append(time.perf_counter())
        images.append(run.images_seen)
        prof.step()
        return stop

    folder = out / family
    argv = ["train", family, "--dataset", data, "--output_dir", str(folder), "--overwrite_output_dir",
            "--max_train_steps", str(wait + 1 + active + 1), *RECIPES[family].split(), *QUIET.split(),
            *NO_EVAL[family].split()]  # fmt: skip
    tr.end_of_step = end_of_step
    try:
        with prof:
            code = hubgen(argv)
    finally:
        tr.end_of_step = original
    if code != 0:
        raise SystemExit(f"hubgen {' '.join(argv)} exited with {code}")
    # stamps[k] ends step k + 1. Steps 2 .. wait run without the profiler: their wall time is the step's cost (the
    # profiler's own overhead per operator is large for small models); steps wait + 2 .. wait + 1 + active are recorded.
    first, last = wait + 1, wait + 1 + active
    profiled = (stamps[last - 1] - stamps[first - 1]) / active
    seconds = (stamps[wait - 1] - stamps[0]) / (wait - 1)
    per_step_images = (images[last - 1] - images[first - 1]) / active
    events = prof.key_averages()
    flops = sum(e.flops for e in events if e.flops) / active
    # torch.profiler counts a convolution's forward FLOPs and none for aten::convolution_backward; the backward does
    # about twice the forward's work (the gradients of the input and of the weight), so the estimate adds 2x that.
    conv = sum(e.flops for e in events if e.flops and "conv" in e.key) / active
    estimated = flops + 2 * conv
    total_self = sum(e.self_cpu_time_total for e in events) / active / 1e6
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    return {
        "family": family,
        "command": "hubgen " + " ".join(argv),
        "step_seconds": round(seconds, 4),
        "profiled_step_seconds": round(profiled, 4),
        "images_per_step": per_step_images,
        "images_per_second": round(per_step_images / seconds, 1) if seconds > 0 else None,
        "profiled_self_cpu_seconds_per_step": round(total_self, 4),
        "counted_gflop_per_step": round(flops / 1e9, 3),
        "achieved_gflops": round(flops / seconds / 1e9, 2),
        "counted_conv_forward_gflop_per_step": round(conv / 1e9, 3),
        "estimated_gflop_per_step": round(estimated / 1e9, 3),
        "estimated_gflops": round(estimated / seconds / 1e9, 2),
        "top_ops": [
            {
                "op": e.key,
                "self_cpu_ms_per_step": round(e.self_cpu_time_total / active / 1e3, 2),
                "share_of_step": round(e.self_cpu_time_total / active / 1e6 / profiled, 3),
                "calls_per_step": e.count / active,
            }
            for e in top
        ],  # fmt: skip
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/mnist.npz")
    p.add_argument("--out", default="bench/out/profiles")
    p.add_argument("--families", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--wait",
        type=int,
        default=10,
        help="steps before the profiler's warm-up step (steps 2 to wait time the step without it)",
    )
    p.add_argument("--active", type=int, default=5, help="steps recorded")
    p.add_argument("--repeats", type=int, default=10, help="timings of each matrix product for the peak")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peak = matmul_peak(args.repeats)
    machine = f"{platform.machine()}, {args.threads} torch thread(s), {platform.processor() or 'cpu'}"
    print(f"matmul peak: {peak}", flush=True)
    summary = []
    for family in args.families:
        result = profile_family(family, args.data, out / "runs", args.wait, args.active)
        step = "one EM iteration over the training set" if family == "mixture" else "one optimizer step"
        result |= {"date": date.today().isoformat(), "machine": machine, "matmul_peak": peak, "step": step,
                   "fraction_of_peak": round(result["achieved_gflops"] / peak["gflops"], 3),
                   "estimated_fraction_of_peak": round(result["estimated_gflops"] / peak["gflops"], 3)}  # fmt: skip
        (out / f"{family}.json").write_text(json.dumps(result, indent=2) + "\n")
        summary.append(result)
        print(f"\n#### {family}: {result['step_seconds'] * 1e3:.1f} ms per step "
              f"({result['profiled_step_seconds'] * 1e3:.1f} profiled), {result['images_per_second']} images/s, "
              f"{result['achieved_gflops']} GFLOP/s counted = {result['fraction_of_peak']:.1%} of the matmul peak, "
              f"{result['estimated_fraction_of_peak']:.1%} with the convolutions' backward estimated\n\n"
              "| operator | self CPU ms per profiled step | share of the profiled step | calls per step |\n"
              "|---|---|---|---|")  # fmt: skip
        for op in result["top_ops"]:
            print(f"| `{op['op']}` | {op['self_cpu_ms_per_step']} | {op['share_of_step']:.1%} | "
                  f"{op['calls_per_step']:g} |")  # fmt: skip
    print("\n| family | step | ms per step | images/s | GFLOP per step: counted / with conv backward | fraction of "
          "the matmul peak: counted / with conv backward | top operator (share) |\n"
          "|---|---|---|---|---|---|---|")  # fmt: skip
    for r in summary:
        top = r["top_ops"][0]
        print(f"| {r['family']} | {r['step']} | {r['step_seconds'] * 1e3:.1f} | {r['images_per_second']} | "
              f"{r['counted_gflop_per_step']} / {r['estimated_gflop_per_step']} | {r['fraction_of_peak']:.1%} / "
              f"{r['estimated_fraction_of_peak']:.1%} | "
              f"`{top['op']}` ({top['share_of_step']:.0%}) |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

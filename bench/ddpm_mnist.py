"""Benchmark: hubgen's DDPM family on a CPU, in three parts, in one run.

    python bench/ddpm_mnist.py --minutes 30                      # the real budget (at most 90 minutes of training)
    python bench/ddpm_mnist.py --minutes 0.3 --num_samples 50 --speed_steps 3 --bound_images 20 \\
        --bound_timesteps 10                                     # a smoke test
    python bench/ddpm_mnist.py --dataset ../shared/data/mnist.npz --minutes 60 --skip speed --bound_images 1000 \\
        --bound_timesteps 100                                    # (b) and (c) on MNIST 28x28 (issue 22)

(a) Training speed: images/s of hubgen's loop (`hubgen train ddpm`) against a reference loop written here in the
    style of diffusers' examples/unconditional_image_generation/train_unconditional.py (accelerate, add_noise,
    F.mse_loss, clip_grad_norm_, an lr scheduler, EMAModel, a per-step log), with the same UNet configuration,
    batch, optimizer (AdamW, same hyperparameters and warm-up) and precision (fp32), alternating runs in the same
    process. On MNIST 28x28 (`--mnist`, the UNet for 28x28) when the file exists, else on digits 8x8. Goal:
    hubgen at least as fast (ratio >= 0.97, the run-to-run noise of this shared CPU).
(b) Samplers after a fixed CPU budget: `hubgen train ddpm` on `--dataset` (scikit-learn's 8x8 `digits`, 1437
    training images, 17 grey levels, by default; or an MNIST .npz, 50,000 training images, 28x28, 256 levels) for
    `--minutes` of training (the UNet options and a learning-rate schedule can be given), then DDPM (1000 ancestral
    steps), DDIM (50) and DPM-Solver++ (20) from the same `--num_samples` initial noises (seed 0), scored with
    hubgen.metrics (the Frechet distance in the frozen digit classifier's features against the test split, its
    train-versus-test floor at the same N, coverage). Goals on digits: DPM-Solver++-20's FD within 10% of
    DDPM-1000's, at 1/50 of its wall time (<= 0.022 of it, allowing per-call overhead); on MNIST (issue 22):
    DPM-Solver++-20 within 5x of the floor at N = 1,000.
(c) The variational bound in bits/dim on the first `--bound_images` test images (`--bound_timesteps` of the T per
    image), beside the flow's exact figure when `--flow_result` names a flow's eval_results.json, and an
    independent per-pixel categorical fitted on the training split.

Everything runs with `--threads` torch threads (default 1: on a CPU shared with other work, two threads per process
made per-step costs swing by an order of magnitude). Writes `<out>/ddpm-bench.json` and prints Markdown rows for
BENCHMARKS.md.
"""

import argparse
import json
import math
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch
from _train_options import add_train_arguments, train_argv  # bench/_train_options.py (the script's own folder)

from hubgen import data as hdata
from hubgen.cli import main as hubgen
from hubgen.ddpm.evaluation import DDPMEvalRequest, evaluate
from hubgen.ddpm.train_ddpm import unet_config

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
SPEED_TOLERANCE = 0.97
OPTIMIZER = dict(learning_rate=2e-4, betas=(0.9, 0.999), weight_decay=0.0, eps=1e-8, warmup=100, max_grad_norm=1.0)


# -- (a) training speed ------------------------------------------------------------------------------------------------


class _ReferenceImages(torch.utils.data.Dataset):
    """train_unconditional.py's dataset: a {"input": tensor} per item, normalized to [-1, 1] on access."""

    def __init__(self, images: torch.Tensor):
        self.images = images  # uint8 (N, C, H, W)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"input": self.images[i].float() / 255 * 2 - 1}  # ToTensor + Normalize([0.5], [0.5])


def reference_loop(dataset: str, batch: int, steps: int, seed: int) -> float:
    """Images/s of a loop written the way train_unconditional.py writes it (without its sampling and saving)."""
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    train = hdata.load_dataset(dataset, "train")
    accelerator = Accelerator(mixed_precision="no", gradient_accumulation_steps=1)
    set_seed(seed)
    model = UNet2DModel(**unet_config(train.image_shape[-1], train.image_shape[0]))
    ema_model = EMAModel(model.parameters(), decay=0.999, use_ema_warmup=True, inv_gamma=1.0, power=0.75,
                         model_cls=UNet2DModel, model_config=model.config)  # fmt: skip
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    optimizer = torch.optim.AdamW(model.parameters(), lr=OPTIMIZER["learning_rate"], betas=OPTIMIZER["betas"],
                                  weight_decay=OPTIMIZER["weight_decay"], eps=OPTIMIZER["eps"])  # fmt: skip
    loader = torch.utils.data.DataLoader(_ReferenceImages(train.images), batch_size=batch, shuffle=True,
                                         num_workers=0, drop_last=True)  # fmt: skip
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer=optimizer, num_warmup_steps=OPTIMIZER["warmup"])
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    ema_model.to(accelerator.device)
    progress_bar = tqdm(total=steps, disable=True)
    global_step, start = 0, time.perf_counter()
    while global_step < steps:
        for batch_ in loader:
            clean_images = batch_["input"]
            noise = torch.randn(clean_images.shape, dtype=clean_images.dtype, device=clean_images.device)
            bsz = clean_images.shape[0]
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bsz,),
                                      device=clean_images.device).long()  # fmt: skip
            noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)
            with accelerator.accumulate(model):
                model_output = model(noisy_images, timesteps).sample
                loss = F.mse_loss(model_output.float(), noise.float())
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), OPTIMIZER["max_grad_norm"])
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                ema_model.step(model.parameters())
                progress_bar.update(1)
                global_step += 1
                logs = {"loss": loss.detach().item(), "lr": lr_scheduler.get_last_lr()[0], "step": global_step,
                        "ema_decay": ema_model.cur_decay_value}  # fmt: skip
                progress_bar.set_postfix(**logs)
                accelerator.log(logs, step=global_step)
            if global_step >= steps:
                break
    seconds = time.perf_counter() - start
    accelerator.end_training()
    return steps * batch / seconds


def hubgen_loop(dataset: str, batch: int, steps: int, seed: int, out: Path) -> float:
    """Images/s of `hubgen train ddpm` over the same steps (its own clock: the loop, without setup and saving)."""
    code = hubgen([
        "train", "ddpm", "--dataset", dataset, "--output_dir", str(out), "--overwrite_output_dir",
        "--train_batch_size", str(batch), "--max_train_steps", str(steps), "--seed", str(seed),
        "--learning_rate", str(OPTIMIZER["learning_rate"]), "--lr_warmup_steps", str(OPTIMIZER["warmup"]),
        "--adam_beta1", str(OPTIMIZER["betas"][0]), "--adam_beta2", str(OPTIMIZER["betas"][1]),
        "--adam_weight_decay", str(OPTIMIZER["weight_decay"]), "--max_grad_norm", str(OPTIMIZER["max_grad_norm"]),
        "--checkpointing_steps", "1000000", "--sample_steps", "1000000", "--logging_steps", "10",
        "--eval_num_images", "0", "--eval_num_samples", "0", "--report_to", "none",
    ])  # fmt: skip
    if code != 0:
        raise SystemExit(f"hubgen train ddpm failed with exit code {code}")
    return json.loads((out / "hubgen_training.json").read_text())["images_per_second"]


def speed(args) -> dict:
    dataset = str(args.mnist) if Path(args.mnist).is_file() else "digits"
    size = hdata.load_dataset(dataset, "test").image_shape[-1]
    hub, ref = [], []
    for r in range(args.speed_rounds):  # alternate, so that load changes on the shared CPU hit both
        ref.append(reference_loop(dataset, args.batch_size, args.speed_steps, args.seed))
        hub.append(hubgen_loop(dataset, args.batch_size, args.speed_steps, args.seed, args.out / "ddpm-speed"))
        print(f"  speed round {r + 1}: reference {ref[-1]:.1f} images/s, hubgen {hub[-1]:.1f} images/s", flush=True)
    ratio = statistics.median(hub) / statistics.median(ref)
    return {
        "dataset": dataset,
        "image_size": size,
        "unet": {k: list(v) if isinstance(v, tuple) else v for k, v in unet_config(size).items()},
        "batch_size": args.batch_size,
        "steps_per_run": args.speed_steps,
        "optimizer": {**OPTIMIZER, "name": "AdamW"},
        "precision": "fp32",
        "reference_images_per_second": ref,
        "hubgen_images_per_second": hub,
        "ratio_of_medians": ratio,
        "goal_met": ratio >= SPEED_TOLERANCE,
    }


# -- (b) samplers after a fixed budget, (c) the bound ------------------------------------------------------------------


def unet_argv(args) -> list[str]:
    """The UNet options given (the family's preset for the image side otherwise)."""
    argv = []
    if args.block_out_channels:
        argv += ["--block_out_channels", *map(str, args.block_out_channels)]
    if args.layers_per_block is not None:
        argv += ["--layers_per_block", str(args.layers_per_block)]
    if args.attention:
        argv += ["--attention", *args.attention]
    return argv


TRAIN_KEYS = ("train_seconds", "train_cpu_seconds", "torch_threads", "steps", "epochs", "images_per_second",
              "final_loss", "command", "lr_scheduler", "lr_warmup_steps")  # fmt: skip


def train_budget(args, out: Path) -> dict:
    code = hubgen([
        "train", "ddpm", "--dataset", args.dataset, "--output_dir", str(out), "--overwrite_output_dir",
        "--train_batch_size", str(args.batch_size), "--learning_rate", str(args.learning_rate),
        "--num_epochs", "100000", "--max_train_time", str(args.minutes * 60), "--seed", str(args.seed),
        "--checkpointing_steps", "2000", "--checkpoints_total_limit", "1", "--sample_steps", "2000",
        "--logging_steps", "50", "--eval_num_images", "0", "--eval_num_samples", "0", "--report_to", "none",
        *unet_argv(args), *train_argv(args),
    ])  # fmt: skip
    if code != 0:
        raise SystemExit(f"hubgen train ddpm failed with exit code {code}")
    info = json.loads((out / "hubgen_training.json").read_text())
    return {k: info.get(k) for k in TRAIN_KEYS}


def flow_figure(path) -> float | None:
    if not path or not Path(path).is_file():
        return None
    metrics = json.loads(Path(path).read_text()).get("metrics", {})
    return metrics.get("exact_bits_per_dim", {}).get("mean")


def per_pixel_baseline(dataset: str = "digits", num_images: int | None = None) -> float:
    """bits/dim of an independent per-pixel categorical over the L levels, fit on train, scored on the first
    `num_images` test images (None: all), the images the bound is scored on."""
    train, test = hdata.load_dataset(dataset, "train"), hdata.load_dataset(dataset, "test")
    levels = train.levels

    def codes(ds):
        return torch.round(hdata.to_signed_range(ds.images.float() / 255, levels) * (levels - 1) / 2 + (levels - 1) / 2)

    k_train, k_test = codes(train).long().flatten(1), codes(test).long().flatten(1)[:num_images]  # (N, D)
    counts = torch.stack([(k_train == k).sum(0) for k in range(levels)]).double() + 1  # (L, D), add-one smoothing
    logp = (counts / counts.sum(0)).log()
    nll = -logp.gather(0, k_test).sum(1)  # logp[k_nd, d] summed over d: (N,)
    return (nll.mean() / (k_test.shape[1] * math.log(2))).item()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    p.add_argument("--dataset", default="digits",
                   help="the data of (b) and (c): digits (8x8) or an MNIST .npz (28x28, issue 22)")  # fmt: skip
    p.add_argument("--minutes", type=float, default=30.0, help="training budget for (b), at most 90")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--learning_rate", type=float, default=2e-4)
    p.add_argument("--num_samples", type=int, default=1000, help="samples per sampler in (b), >= 1000 for the goal")
    p.add_argument("--samplers", nargs="+", default=["ddpm:1000", "ddim:50", "dpmsolver++:20"])
    p.add_argument("--bound_images", type=int, default=0, help="first test images for the bound (0: all)")
    p.add_argument("--bound_timesteps", type=int, default=None, help="timesteps per image (default: all 1000)")
    p.add_argument("--mnist", type=Path, default=MNIST, help="MNIST .npz for (a); digits if it does not exist")
    p.add_argument("--speed_steps", type=int, default=40)
    p.add_argument("--speed_rounds", type=int, default=2)
    p.add_argument("--flow_result", default=None, help="a flow's eval_results.json, for (c)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 keeps timings steady on a CPU shared with other work (2 threads there "
                        "made a 1000-step run 15x slower per step than a 20-step one)")  # fmt: skip
    p.add_argument("--skip", nargs="*", default=[], choices=("speed", "samplers", "bound"))
    p.add_argument("--block_out_channels", type=int, nargs="+", default=None, help="UNet widths of (b)")
    p.add_argument("--layers_per_block", type=int, default=None, help="ResNet layers per UNet block of (b)")
    p.add_argument("--attention", nargs="+", default=None, help="none, mid, low or resolutions, for (b)")
    p.add_argument("--eval_only", action="store_true",
                   help="score the model folder an earlier run left in --out (no training; the result is written to "
                   "ddpm-bench-eval.json)")  # fmt: skip
    add_train_arguments(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not 0 < args.minutes <= 90:
        p.error(f"--minutes must be in (0, 90], got {args.minutes}")
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {torch.get_num_threads()} torch "
              "threads", "command": " ".join([Path(sys.executable).name, *sys.argv])}  # fmt: skip
    rows = []

    if "speed" not in args.skip:
        s = record["speed"] = speed(args)
        rows.append(
            f"| (a) training speed, {s['dataset']} {s['image_size']}x{s['image_size']}, UNet "
            f"{s['unet']['block_out_channels']}, batch {s['batch_size']}, AdamW fp32, {s['steps_per_run']} steps x "
            f"{args.speed_rounds} alternating runs | reference loop (train_unconditional style) "
            f"{statistics.median(s['reference_images_per_second']):.1f} images/s | hubgen "
            f"{statistics.median(s['hubgen_images_per_second']):.1f} images/s | ratio {s['ratio_of_medians']:.3f} "
            f"({'met' if s['goal_met'] else 'NOT met'}: >= {SPEED_TOLERANCE}) |"
        )
        print(rows[-1], flush=True)

    data_name = "digits" if args.dataset == "digits" else "mnist"
    test_set = hdata.load_dataset(args.dataset, "test")
    side = test_set.image_shape[-1]
    folder = args.out / f"ddpm-{data_name}"
    if args.eval_only:  # the model folder of an earlier run with the same --out and --dataset
        info = json.loads((folder / "hubgen_training.json").read_text())
        record["train"] = {k: info.get(k) for k in TRAIN_KEYS}
    elif not {"samplers", "bound"} <= set(args.skip):
        record["train"] = train_budget(args, folder)
        record["budget_minutes"] = args.minutes

    if "samplers" not in args.skip:
        request = DDPMEvalRequest(dataset=args.dataset, split="test", num_images=0, num_samples=args.num_samples,
                                  seed=0, samplers=tuple(args.samplers))  # fmt: skip
        results = evaluate(folder, request).to_json()
        record["samplers"] = results["samplers"]
        by_name = {r["sampler"]: (label, r) for label, r in results["samplers"].items()}
        for label, r in sorted(results["samplers"].items(), key=lambda kv: kv[1]["order"]):
            fd = r["report"]["frechet_distance"]
            rows.append(
                f"| (b) {label}, {data_name} {side}x{side}, {record['train']['steps']} steps / {args.minutes:g} "
                f"minutes of training, N={r['num_samples']} (seed 0) | {fd['name']} {fd['value']:.2f} (floor "
                f"{fd['floor_train_vs_test']:.2f}, ratio {fd['value'] / fd['floor_train_vs_test']:.2f}x) "
                f"| coverage {r['report']['prdc']['coverage']:.3f} | {r['seconds_per_image'] * 1000:.2f} ms/image |"
            )
            print(rows[-1], flush=True)
        if "ddpm" in by_name and "dpmsolver++" in by_name:
            (_, ddpm), (_, dpm) = by_name["ddpm"], by_name["dpmsolver++"]
            fd_ratio = dpm["report"]["frechet_distance"]["value"] / ddpm["report"]["frechet_distance"]["value"]
            time_ratio = dpm["seconds_per_image"] / ddpm["seconds_per_image"]
            record["goals"] = {
                "fd_dpmsolver_over_ddpm": fd_ratio,
                "fd_within_10_percent": fd_ratio <= 1.10,
                "time_dpmsolver_over_ddpm": time_ratio,
                "time_at_most_1_50th": time_ratio <= 0.022,
                "samples_per_sampler_at_least_1000": args.num_samples >= 1000,
            }
            rows.append(
                f"| (b) goal: DPM-Solver++-{dpm['steps']} vs DDPM-{ddpm['steps']} | FD ratio {fd_ratio:.3f} "
                f"({'met' if fd_ratio <= 1.10 else 'NOT met'}: <= 1.10) | time ratio {time_ratio:.4f} = "
                f"1/{1 / time_ratio:.0f} ({'met' if time_ratio <= 0.022 else 'NOT met'}: <= 1/50 + 10%) | "
                f"N={args.num_samples}{'' if args.num_samples >= 1000 else ' (< 1000: smoke test only)'} |"
            )
            print(rows[-1], flush=True)

    if "bound" not in args.skip:
        request = DDPMEvalRequest(dataset=args.dataset, split="test", num_images=args.bound_images or None,
                                  num_timesteps=args.bound_timesteps, num_samples=0, seed=0)  # fmt: skip
        results = evaluate(folder, request).to_json()
        m = results["metrics"]["vlb_bits_per_dim"]
        record["bound"] = {k: results[k] for k in ("num_images", "num_timesteps", "num_train_timesteps",
                                                   "vlb_terms_nats", "bound_protocol", "vlb_seconds")}  # fmt: skip
        record["bound"]["vlb_bits_per_dim"] = m
        record["bound"]["per_pixel_categorical_bits_per_dim"] = baseline = per_pixel_baseline(
            args.dataset, results["num_images"]
        )
        record["bound"]["flow_exact_bits_per_dim"] = flow = flow_figure(args.flow_result)
        rows.append(
            f"| (c) variational bound, {data_name} test, N={results['num_images']}, {results['num_timesteps']} of "
            f"{results['num_train_timesteps']} timesteps | {m['mean']:.3f} ± {m['stderr']:.3f} bits/dim | "
            f"flow (exact): {'n/a' if flow is None else f'{flow:.3f}'} bits/dim | per-pixel categorical "
            f"{baseline:.3f} bits/dim |"
        )
        print(rows[-1], flush=True)

    record["markdown_rows"] = rows
    path = args.out / ("ddpm-bench-eval.json" if args.eval_only else "ddpm-bench.json")
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nwrote {path}\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

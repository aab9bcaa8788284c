"""Benchmark: naive Monte Carlo against importance sampling for log p(x) of a trained VAE (a plot and a table).

    python bench/vae_naive_mc.py bench/out/vae-mnist --data ../shared/data/mnist.npz --num_images 20 \
        --ks 1 10 100 1000 10000 --repeats 10 --out bench/out/naive-mc

On the first `--num_images` test images (binarized once from seed 0 for a Bernoulli decoder), log p(x) is
estimated `--repeats` times for every k in `--ks` by

    naive:       log (1/k) sum_i p(x|z_i),                   z_i ~ p(z)     (the prior)
    importance:  log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x)   (the IWAE bound L_k)

(hubgen.vae.evaluation.naive_vs_importance). Each estimate's bias is measured against the reference
L_{repeats * max k}, the importance-sampled estimate pooling every repeat (the best estimate of log p(x) the run
has; itself a lower bound up to Monte Carlo error), and its spread is the standard deviation across repeats. Writes
naive_vs_importance.png (bias with a +-1 standard deviation band, and the standard deviation, against k), a
Markdown table and a JSON record to `--out`. Cost: 2 * repeats * max(ks) decoder passes per image.
"""

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

from hubgen.model_folder import recorded_dataset
from hubgen.vae import VAEPipeline
from hubgen.vae.evaluation import naive_vs_importance


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["k"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, label, colour in (("naive", "naive: z ~ p(z)", "tab:red"), ("importance", "importance: z ~ q(z|x)",
                                                                                    "tab:blue")):  # fmt: skip
        bias = [r[f"{name}_bias"] for r in rows]
        std = [r[f"{name}_std"] for r in rows]
        left.plot(ks, bias, "o-", color=colour, label=label)
        left.fill_between(ks, [b - s for b, s in zip(bias, std, strict=True)],
                          [b + s for b, s in zip(bias, std, strict=True)], color=colour, alpha=0.2)  # fmt: skip
        right.plot(ks, std, "o-", color=colour, label=label)
    left.axhline(0.0, color="black", linewidth=0.8)
    left.set_xscale("log")
    left.set_yscale("symlog", linthresh=1.0)
    left.set_xlabel("k (samples per estimate)")
    left.set_ylabel("estimate - reference (nats), +-1 sd")
    left.legend()
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("k (samples per estimate)")
    right.set_ylabel("sd across repeats (nats)")
    right.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    lines = [
        "| k | naive: bias | naive: sd | importance: bias | importance: sd |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['k']:,} | {r['naive_bias']:.3f} | {r['naive_std']:.3f} | {r['importance_bias']:.4f} | "
            f"{r['importance_std']:.4f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a trained VAE model folder (hubgen train vae)")
    p.add_argument("--data", default=None, help="the dataset (default: the one the model was trained on)")
    p.add_argument("--out", default="bench/out/naive-mc")
    p.add_argument("--num_images", type=int, default=20, help="the first N test images")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100, 1000, 10_000])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    folder, out = Path(args.model), Path(args.out)
    dataset, _ = recorded_dataset(folder, args.data)
    test = dataset.load("test")
    n = min(args.num_images, len(test))
    images = test.take(range(n)).float() / 255  # (N, C, H, W) intensities
    pipe = VAEPipeline.from_pretrained(folder)
    t0 = time.perf_counter()
    result = naive_vs_importance(
        pipe, images, ks=args.ks, repeats=args.repeats, generator=torch.Generator().manual_seed(args.seed)
    )
    seconds = time.perf_counter() - t0
    rows = result.summary()
    out.mkdir(parents=True, exist_ok=True)
    title = (
        f"{folder.name}: log p(x) of {n} {dataset} test images, {args.repeats} repeats; "
        f"reference L_{args.repeats * max(args.ks)} = {result.reference.mean():.2f} nats (mean)"
    )
    plot(rows, out / "naive_vs_importance.png", title)
    record = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": str(folder),
        "dataset": str(dataset),
        "num_images": n,
        "repeats": args.repeats,
        "seconds": round(seconds, 1),
        "reference_mean_nats": result.reference.mean().item(),
        "reference": f"L_{args.repeats * max(args.ks)}: the importance-sampled estimate pooling every repeat",
        "rows": rows,
    }
    (out / "naive_vs_importance.json").write_text(json.dumps(record, indent=2) + "\n")
    text = f"{title}\n\n{table(rows)}\n"
    (out / "naive_vs_importance.md").write_text(text)
    print(text)
    print(f"wrote {out} (naive_vs_importance.png, .md, .json) in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

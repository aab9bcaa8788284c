"""One likelihood table across families: every family with a likelihood, on the same test images, one table per
data encoding (never two encodings in one column), each figure with its bound type, N and training budget.

    python bench/likelihood_table.py --data digits --out bench/out/likelihood-digits --minutes 2
    python bench/likelihood_table.py --data digits --out bench/out/likelihood-digits --table_only
    python bench/likelihood_table.py --data ../shared/data/mnist.npz --out bench/out/likelihood-mnist --minutes 3 \
        --num_images 1000

Trains each configuration below through the real CLI (`hubgen train ...`, seed 0, the same `--minutes` of wall clock
each, evaluated on the whole test split or its first --num_images images), then reads every folder's
eval_results.json and training record and prints
the Markdown tables for BENCHMARKS.md. The per-pixel baselines are computed here: independent Bernoulli pixels
(binarized) and independent categorical pixels over the L levels with add-one smoothing (L levels), both exact.

Which figure is which (the families' declared `Metric.bound`): "exact" is log p(x) of the discrete data; "IWAE-k"
and "ELBO" are upper bounds on -log p(x) (the IWAE one up to Monte Carlo error); "dequantization bound" is
-log p(x + u) + D log L for one uniform draw u per pixel, an upper bound on the discrete data's NLL in expectation;
"variational bound" is the DDPM's L_vlb. Nats are of the discrete data throughout (binarized or L levels).
"""

import argparse
import json
from pathlib import Path

import torch

from hubgen.cli import main as hubgen
from hubgen.data import binarize, load_dataset
from hubgen.hub import data_encoding, format_declared
from hubgen.metrics.units import mean_and_stderr, nats_to_bits_per_dim
from hubgen.registry import get_family
from hubgen.vae.losses import bernoulli_log_likelihood

# (name, family, encoding, options): one configuration per family and data encoding it can score.
CONFIGS = [
    ("vae", "vae", "binarized", "--pixel_mode binary --latent_dim 16 --hidden_dims 256 128 --eval_k 1000"),
    ("hvae", "vae", "binarized", "--pixel_mode binary --latent_dims 16 8 --hidden_dims 256 128 --eval_k 1000"),
    ("pixelcnn", "pixelcnn", "binarized", "--pixel_mode binary --hidden_channels 32 --num_layers 5"),
    ("mixture", "mixture", "binarized", "--distribution bernoulli --num_components 20 --num_epochs 100000"),
    ("vae", "vae", "levels", "--pixel_mode discrete --latent_dim 16 --hidden_dims 256 128 --eval_k 1000"),
    ("vae-gaussian", "vae", "levels", "--pixel_mode continuous --latent_dim 16 --hidden_dims 256 128 --eval_k 1000"),
    ("pixelcnn", "pixelcnn", "levels", "--pixel_mode discrete --hidden_channels 32 --num_layers 5"),
    ("mixture", "mixture", "levels", "--distribution gaussian --num_components 20 --num_epochs 100000"),
    ("flow", "flow", "levels", ""),
    ("ddpm", "ddpm", "levels", ""),
]
COMMON = ("--num_epochs 100000 --checkpointing_steps 100000 --sample_steps 100000 --eval_num_images all "
          "--eval_num_samples 0 --seed 0")  # fmt: skip


def per_pixel_baselines(data: str, seed: int = 0, num_images: int | None = None) -> dict[str, dict]:
    """Independent pixels, fitted on the training split, exact NLL (nats/image) on the test split (its first
    `num_images` images when given, as the families' --eval_num_images N)."""
    train, test = load_dataset(data, "train"), load_dataset(data, "test")
    test_images = test.images[:num_images] if num_images else test.images
    levels = int(train.levels or 256)  # the data's grey levels per channel (17 for the digits, 256 for MNIST)
    d = test.images[0].numel()
    out = {}
    # Binarized: p_j = mean intensity of pixel j; test images binarized once from `seed` (the evaluations' protocol).
    p = (train.images.double() / 255).mean(0).clamp(1e-4, 1 - 1e-4)
    x = binarize(test_images.double() / 255, generator=torch.Generator().manual_seed(seed))
    nll = -bernoulli_log_likelihood(x, torch.logit(p).expand_as(x))
    out["binarized"] = _summary(nll, d)

    # L levels: p_j(k) = (count_j(k) + 1) / (N + L), the add-one (Laplace) estimate.
    def to_level(images):  # stored intensities 0..255 -> level index 0..L-1, (N, D)
        return (images.double() / 255 * (levels - 1)).round().long().flatten(1)

    k = to_level(train.images)
    counts = torch.zeros(d, levels, dtype=torch.float64).scatter_add_(1, k.T, torch.ones_like(k.T, dtype=torch.float64))
    log_p = ((counts + 1) / (len(k) + levels)).log()  # (D, L)
    nll = -log_p.gather(1, to_level(test_images).T).T.sum(1)
    out["levels"] = _summary(nll, d) | {"levels": levels}
    return out


def _summary(nll: torch.Tensor, num_dims: int) -> dict:
    figure = mean_and_stderr(nll)
    return {"nats": figure["mean"], "stderr": figure["stderr"], "n": len(nll),
            "bits_per_dim": nats_to_bits_per_dim(figure["mean"], num_dims)}  # fmt: skip


def train_all(data: str, out: Path, minutes: float, num_images: int | None) -> None:
    for name, family, encoding, options in CONFIGS:
        folder = out / f"{name}-{encoding}"
        argv = [
            "train",
            family,
            "--dataset",
            data,
            "--output_dir",
            str(folder),
            "--overwrite_output_dir",
            "--max_train_time",
            str(minutes * 60),
            *COMMON.split(),
            *options.split(),
            *(["--eval_num_images", str(num_images)] if num_images else []),
        ]  # fmt: skip  (the last one wins)
        print("hubgen", " ".join(argv), flush=True)
        if hubgen(argv) != 0:
            raise SystemExit(f"training {name} ({encoding}) failed")


def rows(out: Path) -> dict[str, list[list]]:
    """{data encoding: [[model, family, figure, bound, nats, bits/dim, N, budget], ...]} from the folders."""
    tables: dict[str, list[list]] = {}
    for folder in sorted(p for p in out.iterdir() if (p / "eval_results.json").is_file()):
        results = json.loads((folder / "eval_results.json").read_text())
        info = json.loads((folder / "hubgen_training.json").read_text())
        family = get_family(results["family"])
        metric = {m.key: m for m in family.metrics}
        nll = next((k for k in results["metrics"] if k in metric and metric[k].unit == "nats/image"), None)
        bpd = next((k for k in results["metrics"] if k in metric and metric[k].unit == "bits/dim"), None)
        if nll is None and bpd is None:
            continue
        figure = metric[nll or bpd]
        bound = format_declared(figure.bound, results) or "unstated"
        if "dequantization bound" in str(results.get("protocol", "")) and "dequantization" not in bound:
            bound += " on dequantized data (so also a dequantization bound)"  # a Gaussian-decoder VAE's IWAE-k
        value = results["metrics"].get(nll) if nll else None
        budget = (f"{info.get('steps', 0):,} steps, {info.get('train_seconds', 0):.0f} s wall, "
                  f"{info.get('train_cpu_seconds', 0):.0f} CPU-s")  # fmt: skip
        tables.setdefault(data_encoding(results, info), []).append([
            folder.name, family.name, format_declared(figure.label, results), bound,
            f"{value['mean']:.2f} ± {value['stderr']:.2f}" if value else "",
            f"{results['metrics'][bpd]['mean']:.4f}" if bpd else "", results.get("num_images", ""), budget,
        ])  # fmt: skip
    return tables


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--out", default="bench/out/likelihood-digits")
    p.add_argument("--minutes", type=float, default=2.0, help="wall-clock training budget of each configuration")
    p.add_argument("--table_only", action="store_true", help="only read the folders and print the tables")
    p.add_argument("--num_images", type=int, default=None, help="score the first N test images (default: all)")
    args = p.parse_args()
    out = Path(args.out)
    if not args.table_only:
        out.mkdir(parents=True, exist_ok=True)
        train_all(args.data, out, args.minutes, args.num_images)
    baselines = per_pixel_baselines(args.data, num_images=args.num_images)
    tables = rows(out)
    header = "| model | family | figure | bound | NLL (nats/image) | bits/dim | test images (N) | training |\n|---|---|---|---|---|---|---|---|"  # noqa: E501
    for encoding in sorted(tables):
        base = baselines["binarized" if encoding == "binarized" else "levels"]
        print(f"\n### {args.data}, {encoding}\n\n{header}")
        for row in sorted(tables[encoding], key=lambda r: float(r[5] or "inf")):
            print("| " + " | ".join(str(c) for c in row) + " |")
        nats = f"{base['nats']:.2f} ± {base['stderr']:.2f}"
        print(f"| per-pixel baseline | independent pixels | exact NLL | exact | {nats} | {base['bits_per_dim']:.4f} "
              f"| {base['n']} | fitted on the training split |")  # fmt: skip
    (out / "likelihood_table.json").write_text(json.dumps({"tables": tables, "baselines": baselines}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

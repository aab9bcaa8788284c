"""Train a classifier for the metrics: `hubgen metrics train-classifier --dataset digits --output_dir out/c`.

The networks shipped in hubgen/metrics/weights/ were made with this command (see `training.json` there). It
takes any labelled dataset hubgen.data loads, grey or RGB, of any size: the network takes the data's channels
and image size, and as many classes as the labels have (max label + 1). Its folder is then a feature network
for `hubgen.metrics.evaluate_samples(..., feature_network=DIR)` (`--feature_network DIR`), recorded there with
the sha256 of its weights.
The loop is written out and deterministic on CPU for a given seed, torch build and thread count:
`torch.manual_seed(seed)` for the initialization, one seeded `torch.Generator` for the shuffling, the
augmentation and dropout, and `torch.use_deterministic_algorithms(True)` while training.

Each step minimizes the cross-entropy of a batch of randomly translated images,
    loss = -1/B sum_b log softmax(f(T_b x_b))[y_b],   T_b a shift by (dy, dx) ~ U{-m, ..., m}^2
with AdamW and a learning rate that warms up linearly over the first `warmup_fraction` of the steps, then
follows a cosine to zero: lr_t = lr * min(1, t / t_w) * (1 + cos(pi t / T)) / 2. The shift fills the
uncovered border with zeros (black: the background of grey digits) or, by default for colour images, with the
edge pixels (`--shift_fill`). Images are read a batch at a time through `ds.take`, never all decoded at once.
"""

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import data as hdata
from ..draws import randint_tensor
from ..model_folder import write_json
from ..training import config_dict

__all__ = ["parse_args", "main", "random_translate", "accuracy", "defaults_for_size"]

# Options naming the data as hubgen.data.DataSpec does (flag -> DataSpec field), as the training scripts take them.
DATA_OPTIONS = {
    "dataset_config": "config",
    "dataset_revision": "revision",
    "image_column": "image_column",
    "label_column": "label_column",
    "resolution": "resolution",
    "center_crop": "center_crop",
    "max_train_samples": "max_train_samples",
}

OUR_FILES = {"config.json", "diffusion_pytorch_model.safetensors", "training.json"}


def defaults_for_size(sample_size: int) -> dict:
    """Architecture and optimization defaults: one set for the 8x8 digits, one for MNIST-sized images and up.

    From 16 px: three stages (32, 64, 128), and one more stage (256 channels) each time the last map would be
    more than 8 pixels across (64 px: 8x8 after three stages; 128 px: four stages).
    """
    if sample_size >= 16:
        widths = [32, 64, 128]
        while sample_size // 2 ** len(widths) > 8:
            widths.append(256)
        return dict(widths=widths, feature_dim=128, epochs=6, batch_size=128, learning_rate=3e-3, max_shift=2)
    return dict(widths=[32, 64], feature_dim=128, epochs=60, batch_size=64, learning_rate=3e-3, max_shift=1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="hubgen metrics train-classifier",
        description="Train the small classifier whose features hubgen's metrics use (Frechet distance, ...), on any "
        "labelled dataset, grey or RGB; pass its folder as --feature_network. Options left unset take defaults for "
        "the image size.",
    )
    p.add_argument(
        "--dataset",
        default="digits",
        help="digits | a .npz file with x_train/y_train, x_test/y_test | any labelled dataset hubgen's data layer "
        "loads (an image folder with class subfolders, a Hub dataset id with --label_column, ...)",
    )
    p.add_argument("--dataset_config", default=None, help="the Hub dataset's configuration name")
    p.add_argument("--dataset_revision", default=None, help="the Hub dataset's revision")
    p.add_argument("--image_column", default=None, help="the column holding the images")
    p.add_argument("--label_column", default=None, help="the column holding the integer class labels")
    p.add_argument("--resolution", type=int, default=None, help="resize (and crop) the images to this size")
    p.add_argument("--center_crop", action="store_true", help="crop the center (else a random crop)")
    p.add_argument("--max_train_samples", type=int, default=None, help="use only the first N training images")
    p.add_argument("--output_dir", required=True, help="folder for config.json, the safetensors weights, training.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--learning_rate", type=float, default=None)
    p.add_argument("--weight_decay", type=float, default=1e-2, help="AdamW's decoupled weight decay")
    p.add_argument("--warmup_fraction", type=float, default=0.05, help="share of the steps with a linear warm-up")
    p.add_argument("--max_shift", type=int, default=None, help="random translations of +-max_shift pixels (0: none)")
    p.add_argument(
        "--shift_fill",
        choices=("zeros", "edge"),
        default=None,
        help="what a translation shifts in: zeros (black, grey digits' background; the default for 1 channel) or "
        "the edge pixels (the default for 3 channels)",
    )
    p.add_argument("--widths", type=int, nargs="+", default=None, help="channels of the conv stages")
    p.add_argument("--feature_dim", type=int, default=None, help="size of the penultimate (feature) layer")
    p.add_argument("--dropout", type=float, default=0.0)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    for name in ("epochs", "batch_size", "feature_dim"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.widths is not None and min(args.widths) < 1:
        p.error(f"--widths must be positive, got {args.widths}")
    if args.learning_rate is not None and not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        p.error(f"--learning_rate must be a positive number, got {args.learning_rate}")
    if not (args.weight_decay >= 0 and math.isfinite(args.weight_decay)):
        p.error(f"--weight_decay must be >= 0, got {args.weight_decay}")
    if not 0 <= args.warmup_fraction < 1:
        p.error(f"--warmup_fraction must be in [0, 1), got {args.warmup_fraction}")
    if args.max_shift is not None and args.max_shift < 0:
        p.error(f"--max_shift must be >= 0, got {args.max_shift}")
    if not 0 <= args.dropout < 1:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        p.error(f"--output_dir {out} exists and is not a folder")
    if out.is_dir():
        foreign = sorted(f.name for f in out.iterdir() if f.name not in OUR_FILES)
        if foreign:
            p.error(
                f"--output_dir {out} holds files this command does not write ({', '.join(foreign)}); choose another"
            )

    # Data: labelled train and test splits of one image shape.
    args.data = _data_spec(args, p)
    try:
        args.train_set = hdata.load_dataset(args.data, "train")
        args.test_set = hdata.load_dataset(args.data, "test")
    except ValueError as e:
        p.error(f"--dataset: {e}")
    args.num_classes = 0
    for split in (args.train_set, args.test_set):
        if split.labels is None:
            p.error(
                f"--dataset {args.dataset!r}: the {split.split!r} split has no labels (y_{split.split} in a .npz, "
                "class subfolders in an image folder, or --label_column); a classifier needs them"
            )
        if len(split.labels) == 0 or split.labels.min() < 0:
            p.error(f"--dataset {args.dataset!r}: every {split.split!r} image needs a class label >= 0")
        args.num_classes = max(args.num_classes, int(split.labels.max()) + 1)
    if args.num_classes < 2:
        p.error(f"--dataset {args.dataset!r}: the labels hold one class only; a classifier needs at least 2")
    c, h, w = args.train_set.image_shape
    if args.test_set.image_shape != (c, h, w):
        p.error(
            f"--dataset {args.dataset!r}: needs images of one shape, got {c}x{h}x{w} train and "
            f"{'x'.join(map(str, args.test_set.image_shape))} test"
        )
    for name, value in defaults_for_size(min(h, w)).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.shift_fill is None:
        args.shift_fill = "zeros" if c == 1 else "edge"
    if min(h, w) // 2 ** len(args.widths) < 1:
        p.error(f"--widths: {len(args.widths)} stages halve {h}x{w} images to nothing; use fewer stages")
    if args.batch_size > len(args.train_set):
        p.error(f"--batch_size {args.batch_size} is larger than the {len(args.train_set)} training images")
    return args


def _data_spec(args: argparse.Namespace, p: argparse.ArgumentParser):
    """--dataset alone is given to hubgen.data.load_dataset as it is; with any data option, as a DataSpec."""
    given = {
        field: getattr(args, flag) for flag, field in DATA_OPTIONS.items() if getattr(args, flag) not in (None, False)
    }
    if not given:
        return args.dataset
    try:
        return hdata.DataSpec(dataset=args.dataset, **given)
    except ValueError as e:
        p.error(f"--dataset: {e}")


def random_translate(x: torch.Tensor, max_shift: int, generator: torch.Generator, fill: str = "zeros") -> torch.Tensor:
    """Shift each image of (B, C, H, W) by its own (dy, dx) ~ U{-m, ..., m}^2, filling the uncovered border with
    zeros (`fill="zeros"`: black, the background of grey digits) or with the nearest edge pixels (`"edge"`)."""
    if max_shift == 0:
        return x
    b, c, h, w = x.shape
    m = max_shift
    if fill == "edge":
        padded = F.pad(x, (m, m, m, m), mode="replicate")  # (B, C, H + 2m, W + 2m)
    elif fill == "zeros":
        padded = F.pad(x, (m, m, m, m))  # (B, C, H + 2m, W + 2m)
    else:
        raise ValueError(f"`fill` must be 'zeros' or 'edge', got {fill!r}.")
    offsets = randint_tensor(0, 2 * m + 1, (b, 2), generator, x.device)  # top-left corner in the padded image
    rows = torch.arange(h, device=x.device)[None, :] + offsets[:, :1]  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] + offsets[:, 1:]  # (B, W)
    x = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * m))  # (B, C, H, W + 2m)
    return x.gather(3, cols[:, None, None, :].expand(b, c, h, w))  # (B, C, H, W)


@torch.no_grad()
def accuracy(model, images, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of images whose argmax_y p(y|x) is the label; in eval mode. `images` are (N, C, H, W) in [0, 1], or
    a dataset (read `batch_size` images at a time through `take`)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)))  # (b,)
        x = images.take(idx).float() / 255.0 if hasattr(images, "take") else images[idx]  # (b, C, H, W)
        logits = model(x)  # (b, num_classes)
        correct += (logits.argmax(1) == labels[idx]).sum().item()
    model.train(was_training)
    return correct / len(images)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .classifier import DigitClassifier, file_sha256

    out = Path(args.output_dir)
    train_set, test_set = args.train_set, args.test_set
    labels = train_set.labels  # (N,)
    c, h, w = train_set.image_shape

    deterministic_before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        # 1. Model, optimizer, the run's generator
        torch.manual_seed(args.seed)
        model = DigitClassifier(
            sample_size=h if h == w else (h, w),
            in_channels=c,
            num_classes=args.num_classes,
            widths=tuple(args.widths),
            feature_dim=args.feature_dim,
            dropout=args.dropout,
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
        generator = torch.Generator().manual_seed(args.seed)
        steps_per_epoch = len(train_set) // args.batch_size  # the last partial batch is dropped (BatchNorm)
        total_steps = args.epochs * steps_per_epoch
        warmup_steps = max(1, round(args.warmup_fraction * total_steps))
        print(
            f"train-classifier: {args.dataset} {c}x{h}x{w}, {len(train_set)} train / {len(test_set)} test images, "
            f"{args.num_classes} classes, {sum(p.numel() for p in model.parameters())} parameters, "
            f"{args.epochs} epochs x {steps_per_epoch} steps"
        )

        # 2. The loop
        step, start = 0, time.perf_counter()
        model.train()
        for epoch in range(args.epochs):
            order = torch.randperm(len(train_set), generator=generator)  # a fresh shuffle per epoch
            loss_sum, correct = 0.0, 0
            for i in range(steps_per_epoch):
                idx = order[i * args.batch_size : (i + 1) * args.batch_size]  # (B,)
                x = train_set.take(idx).float() / 255.0  # (B, C, H, W) in [0, 1]
                x = random_translate(x, args.max_shift, generator, args.shift_fill)  # (B, C, H, W)
                y = labels[idx]  # (B,)
                # lr_t = lr * min(1, t / t_w) * (1 + cos(pi t / T)) / 2
                lr = args.learning_rate * min(1.0, (step + 1) / warmup_steps)
                lr *= 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                logits = model(x)  # (B, num_classes)
                loss = F.cross_entropy(logits, y)  # -1/B sum_b log p(y_b | x_b)
                if not torch.isfinite(loss):
                    print(f"hubgen: training stopped: non-finite loss at step {step + 1}; lower --learning_rate.")
                    return 1
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                loss_sum += loss.item() * len(idx)
                correct += (logits.argmax(1) == y).sum().item()
            seen = steps_per_epoch * args.batch_size
            print(
                f"epoch {epoch + 1}/{args.epochs}: loss {loss_sum / seen:.4f}, train accuracy (augmented) "
                f"{correct / seen:.4f}, {time.perf_counter() - start:.0f} s"
            )
        seconds = time.perf_counter() - start
    finally:
        torch.use_deterministic_algorithms(deterministic_before)

    # 3. Evaluate, save (safetensors + config), record
    model.eval()
    test_accuracy = accuracy(model, test_set, test_set.labels)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    weights = out / "diffusion_pytorch_model.safetensors"
    sha256 = file_sha256(weights)
    dataset_path = Path(str(args.dataset))
    info = {
        "command": "hubgen metrics train-classifier " + shlex.join(args.argv),
        "dataset": str(args.dataset),
        "dataset_sha256": file_sha256(dataset_path) if dataset_path.is_file() else None,
        **({"data": args.data.to_json()} if not isinstance(args.data, str) else {}),
        "num_train_images": len(train_set),
        "num_test_images": len(test_set),
        "seed": args.seed,
        "epochs": args.epochs,
        "steps": step,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "warmup_fraction": args.warmup_fraction,
        "max_shift": args.max_shift,
        **({"shift_fill": args.shift_fill} if args.shift_fill != "zeros" else {}),
        "model_config": config_dict(model),
        "test_accuracy": test_accuracy,
        "weights_sha256": sha256,
        "weights_bytes": weights.stat().st_size,
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
    }
    write_json(out / "training.json", info)
    print(f"test accuracy {test_accuracy:.4f} ({len(test_set)} images of {args.dataset})")
    print(f"weights {weights} sha256 {sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

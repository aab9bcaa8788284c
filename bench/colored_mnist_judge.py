"""The judge of coloured MNIST (bench/colored_mnist.py): names the digit, foreground and background of an image.

    python bench/colored_mnist_judge.py train --data /tmp/colored_mnist [--output_dir /tmp/colored_mnist_judge]
    python bench/colored_mnist_judge.py evaluate --data /tmp/colored_mnist [--judge /tmp/colored_mnist_judge]
    python bench/colored_mnist_judge.py score-text2img MODEL_FOLDER --data /tmp/colored_mnist --n 100 \
        --guidance 3 --steps 20 --sampler dpmsolver++

The judge of an image x (3, 32, 32) in [0, 1] returns three palette indices:

- digit: argmax of a classifier trained on the coloured training split (`train`: hubgen's DigitClassifier,
  3 x 32 x 32 input, widths 32-64-128, 3 epochs, saved as config.json + safetensors, the same layout
  `hubgen metrics train-classifier` writes, so a folder made by that tool also loads here). Training adds
  `random_recolour` (random channel permutations and inversions): without it the classifier learns colour as a
  digit cue and misreads the held-out (digit, colour) pairs (measured on the real test split, 16-32-64 widths:
  93.6% on held-out pairs against 99.0% on training pairs; with it 98.6% and 98.8%).
- background: b = the per-channel median of the FRAME-pixel border ring (pure background in every real image:
  the digits are padded by 2 pixels); bg = the nearest BACKGROUNDS entry to b (Euclidean in RGB).
- foreground, without the classifier: the contrast of pixel i is d_i = ||x_i - b||; the stroke is
  S = {i : d_i >= STROKE_FRACTION * d_ref}, d_ref the k-th largest d_i (k = H*W // 100: the 99th percentile,
  so a few stray pixels cannot set it); fg = the nearest FOREGROUNDS entry to the mean colour of S. On the real
  data every pixel is b + t (f - b), so S holds the pixels with t >= 0.75 t_ref (t_ref about 1) and their mean
  is such a blend with t >= 0.75, while for every palette pair any blend with t > 1/2 is nearest to f. An image
  without contrast (d_ref < MIN_CONTRAST) has no foreground: fg = -1, never correct.

`score(images, requested)` returns the fractions of images whose digit, fg, bg, and all three, equal the request.
"""

import argparse
import hashlib
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:  # run as `python bench/colored_mnist_judge.py`: bench/ is on sys.path
    import colored_mnist as cm
except ImportError:  # imported as bench.colored_mnist_judge
    from . import colored_mnist as cm

from hubgen.errors import UserInputError

__all__ = [
    "FRAME",
    "STROKE_FRACTION",
    "MIN_CONTRAST",
    "palettes",
    "colours",
    "Judge",
    "load_judge",
    "load_split",
    "train_judge",
    "evaluate_judge",
    "prompt_set",
    "score_text2img",
    "main",
]

FRAME = 2  # border ring width, pixels
STROKE_FRACTION = 0.75
MIN_CONTRAST = 0.25  # in [0, 1] RGB units; the smallest foreground-background distance is 0.865 (grey vs red)
JUDGE_FILE = "judge.json"


def palettes() -> tuple[np.ndarray, np.ndarray]:
    """FOREGROUNDS (6, 3) and BACKGROUNDS (3, 3) as float64 RGB in [0, 1]."""
    fg = np.array([rgb for _, rgb in cm.FOREGROUNDS], dtype=np.float64) / 255
    bg = np.array([rgb for _, rgb in cm.BACKGROUNDS], dtype=np.float64) / 255
    return fg, bg


def _as_numpy(images, start: int = 0, stop: int | None = None) -> np.ndarray:
    """images[start:stop] as float32 numpy in [0, 1], shape checked."""
    if len(images.shape) != 4 or images.shape[1] != 3 or min(images.shape[2:]) <= 2 * FRAME:
        raise UserInputError(f"`images` must have shape (N, 3, H, W) with H, W > {2 * FRAME}, got "
                             f"{tuple(images.shape)}.")  # fmt: skip
    x = images[start:stop]
    x = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)
    return np.clip(x, 0.0, 1.0)


def _nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette row (Euclidean) for each colour (N, 3)."""
    return np.linalg.norm(colours[:, None, :] - palette[None, :, :], axis=2).argmin(1)


def colours(images, fg_palette: np.ndarray | None = None, bg_palette: np.ndarray | None = None):
    """The classifier-free colour rule of the module docstring: images (N, 3, H, W) in [0, 1] ->
    (fg, bg) palette indices, each (N,) int64; fg is -1 for an image without contrast."""
    fg_pal, bg_pal = palettes()
    fg_pal = fg_pal if fg_palette is None else np.asarray(fg_palette, np.float64)
    bg_pal = bg_pal if bg_palette is None else np.asarray(bg_palette, np.float64)
    images = images if hasattr(images, "shape") else np.asarray(images, np.float32)
    _as_numpy(images, 0, 0)  # checks the shape
    n, _, h, w = images.shape
    ring = np.ones((h, w), dtype=bool)
    ring[FRAME:-FRAME, FRAME:-FRAME] = False
    k = max(1, h * w // 100)
    fg, bg = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    for start in range(0, n, 1000):  # 1000 images at a time: bounded memory
        x = _as_numpy(images, start, start + 1000)  # (B, 3, H, W)
        border = np.median(x[:, :, ring], axis=2)  # (B, 3): b
        pixels = x.reshape(len(x), 3, h * w)  # (B, 3, HW)
        d = np.linalg.norm(pixels - border[:, :, None], axis=1)  # (B, HW): d_i = ||x_i - b||
        d_ref = -np.partition(-d, k - 1, axis=1)[:, k - 1]  # (B,): the k-th largest d_i
        stroke = d >= STROKE_FRACTION * d_ref[:, None]  # (B, HW): S
        mean = (pixels * stroke[:, None, :]).sum(2) / np.maximum(stroke.sum(1), 1)[:, None]  # (B, 3)
        fg[start : start + len(x)] = np.where(d_ref >= MIN_CONTRAST, _nearest(mean, fg_pal), -1)
        bg[start : start + len(x)] = _nearest(border, bg_pal)
    return fg, bg


def _as_indices(values, names: list[str], what: str) -> np.ndarray:
    out = []
    for v in values:
        if isinstance(v, str):
            if v not in names:
                raise UserInputError(f"`requested` {what} {v!r} is not a palette colour; allowed: {names}.")
            v = names.index(v)
        out.append(int(v))
    return np.asarray(out, dtype=np.int64)


class Judge:
    """digit by `classifier` (images (N, 3, 32, 32) in [0, 1] -> logits (N, 10)), colours by `colours`."""

    def __init__(self, classifier, batch_size: int = 500):
        self.classifier = classifier
        self.batch_size = batch_size
        self.fg_names = [name for name, _ in cm.FOREGROUNDS]
        self.bg_names = [name for name, _ in cm.BACKGROUNDS]

    @torch.no_grad()
    def digits(self, images) -> np.ndarray:
        x = torch.as_tensor(_as_numpy(images))
        if hasattr(self.classifier, "eval"):
            self.classifier.eval()
        logits = [self.classifier(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return torch.cat(logits).argmax(1).numpy().astype(np.int64)

    def judge(self, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """images (N, 3, 32, 32) in [0, 1] -> (digit, fg, bg), each (N,) int64 (fg -1: no foreground)."""
        fg, bg = colours(images)
        return self.digits(images), fg, bg

    __call__ = judge

    def score(self, images, requested) -> dict:
        """Fractions of images whose digit / fg / bg / all three equal `requested` = (digits, fgs, bgs), colours as
        palette indices or names. Returns {"all_correct", "digit", "fg", "bg", "n"}."""
        digit, fg, bg = self.judge(images)
        want_digit = np.asarray(requested[0], dtype=np.int64)
        want_fg = _as_indices(requested[1], self.fg_names, "fg")
        want_bg = _as_indices(requested[2], self.bg_names, "bg")
        if not len(want_digit) == len(want_fg) == len(want_bg) == len(digit):
            raise UserInputError(f"`requested` must hold 3 sequences of {len(digit)} values (one per image).")
        ok = np.stack([digit == want_digit, fg == want_fg, bg == want_bg])  # (3, N)
        return {"all_correct": float(ok.all(0).mean()), "digit": float(ok[0].mean()), "fg": float(ok[1].mean()),
                "bg": float(ok[2].mean()), "n": int(len(digit))}  # fmt: skip


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_judge(folder: str | Path) -> Judge:
    """A Judge from a folder of a DigitClassifier for 3 x 32 x 32 images (this module's `train`, or
    `hubgen metrics train-classifier --dataset DIR`)."""
    from hubgen.metrics.classifier import DigitClassifier

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserInputError(f"`--judge` {folder} holds no config.json; train one with `... train --data DIR`.")
    model = DigitClassifier.from_pretrained(folder, use_safetensors=True)
    if (model.config.in_channels, model.config.sample_size) != (3, cm.SIZE):
        raise UserInputError(f"`--judge` {folder} classifies {model.config.in_channels} x {model.config.sample_size} "
                             f"px images; the judge needs 3 x {cm.SIZE}.")  # fmt: skip
    return Judge(model.eval())


def load_split(data: str | Path, split: str, limit: int | None = None):
    """The images of DIR/<split> (the first `limit`) as uint8 (N, 3, 32, 32) and the (digit, fg, bg) palette
    indices, each (N,)."""
    from PIL import Image

    rows = cm.read_metadata(data, split)[:limit]
    fg_names, bg_names = [n for n, _ in cm.FOREGROUNDS], [n for n, _ in cm.BACKGROUNDS]
    images = np.empty((len(rows), 3, cm.SIZE, cm.SIZE), dtype=np.uint8)
    for i, row in enumerate(rows):
        with Image.open(Path(data) / split / row["file_name"]) as im:
            images[i] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    labels = [np.array([r["digit"] for r in rows]), np.array([fg_names.index(r["fg"]) for r in rows]),
              np.array([bg_names.index(r["bg"]) for r in rows])]  # fmt: skip
    return torch.from_numpy(images), *(a.astype(np.int64) for a in labels)


# -- training the digit classifier -----------------------------------------------------------------------------


def random_recolour(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random symmetry of the RGB cube per image: permute the channels, then invert each with probability 1/2.
    It maps the palette's corners to corners (grey to grey), so the classifier cannot learn colour as a digit cue
    (some (digit, colour) pairs never occur in training)."""
    b = x.shape[0]
    perm = torch.rand(b, 3, generator=generator).argsort(1)  # (B, 3)
    x = x.gather(1, perm[:, :, None, None].expand_as(x))  # (B, 3, H, W)
    flip = torch.rand(b, 3, 1, 1, generator=generator) < 0.5
    return torch.where(flip, 1 - x, x)


def train_judge(
    data: str | Path,
    output_dir: str | Path,
    epochs: int = 3,
    batch_size: int = 128,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-2,
    widths=(32, 64, 128),
    feature_dim: int = 128,
    max_shift: int = 2,
    recolour: bool = True,
    seed: int = 0,
    limit: int | None = None,
) -> dict:
    """Train the digit classifier on DIR/train (the loop of `hubgen metrics train-classifier`: AdamW, linear
    warm-up over 5% of the steps then a cosine to zero, random shifts of +-max_shift pixels (here filled with the
    image's background colour, not black), plus `random_recolour` when `recolour`); save it (safetensors) and
    judge.json; returns the record. Deterministic on CPU for a seed, torch build and thread count."""
    import torch.nn.functional as F

    from hubgen.metrics.classifier import DigitClassifier
    from hubgen.metrics.train_classifier import random_translate

    out = Path(output_dir)
    start_all = time.perf_counter()
    images, labels, _, _ = load_split(data, "train", limit)
    labels = torch.from_numpy(labels)
    load_seconds = time.perf_counter() - start_all
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        model = DigitClassifier(sample_size=cm.SIZE, in_channels=3, widths=tuple(widths), feature_dim=feature_dim)
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
        generator = torch.Generator().manual_seed(seed)
        steps_per_epoch = len(images) // batch_size
        total_steps = epochs * steps_per_epoch
        warmup_steps = max(1, round(0.05 * total_steps))
        step, start, cpu_start = 0, time.perf_counter(), time.process_time()
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(images), generator=generator)
            loss_sum = 0.0
            for i in range(steps_per_epoch):
                idx = order[i * batch_size : (i + 1) * batch_size]
                x = images[idx].float() / 255  # (B, 3, 32, 32)
                b = x[:, :, :1, :1]  # (B, 3, 1, 1): the corner pixel, the background colour
                x = random_translate(x - b, max_shift, generator) + b  # shifted, background shifted in
                if recolour:
                    x = random_recolour(x, generator)
                # lr_t = lr * min(1, t / t_w) * (1 + cos(pi t / T)) / 2
                lr = learning_rate * min(1.0, (step + 1) / warmup_steps)
                lr *= 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = F.cross_entropy(model(x), labels[idx])  # -1/B sum_b log p(y_b | x_b)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                loss_sum += loss.item()
            print(f"epoch {epoch + 1}/{epochs}: loss {loss_sum / steps_per_epoch:.4f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    weights = out / "diffusion_pytorch_model.safetensors"
    record = {
        "what": "digit classifier of the coloured MNIST judge (bench/colored_mnist_judge.py)",
        "data": str(data),
        "num_train_images": len(images),
        "epochs": epochs, "steps": step, "batch_size": batch_size, "learning_rate": learning_rate,
        "weight_decay": weight_decay, "max_shift": max_shift, "recolour": recolour, "seed": seed,
        "model_config": {k: v for k, v in dict(model.config).items() if not k.startswith("_")},
        "weights_sha256": _sha256(weights),
        "load_seconds": round(load_seconds, 1), "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1),
        "torch": torch.__version__, "torch_num_threads": torch.get_num_threads(),
        "colour_rule": {"frame": FRAME, "stroke_fraction": STROKE_FRACTION, "min_contrast": MIN_CONTRAST},
        "foregrounds": [[n, list(c)] for n, c in cm.FOREGROUNDS],
        "backgrounds": [[n, list(c)] for n, c in cm.BACKGROUNDS],
    }  # fmt: skip
    (out / JUDGE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def evaluate_judge(judge: Judge, data: str | Path, split: str = "test", limit: int | None = None) -> dict:
    """The judge's accuracies on the real images of DIR/<split>: overall, and on the images with a training
    (digit, fg) pair and with a held-out pair."""
    images, digit, fg, bg = load_split(data, split, limit)
    heldout = cm.read_heldout(data)
    is_heldout = np.array([(int(d), int(f)) in heldout for d, f in zip(digit, fg, strict=True)])
    x = images.float() / 255
    out = {"split": split, "n": len(digit), "all": judge.score(x, (digit, fg, bg))}
    for name, mask in (("training_pairs", ~is_heldout), ("heldout_pairs", is_heldout)):
        if mask.any():
            idx = torch.from_numpy(np.flatnonzero(mask))
            out[name] = judge.score(x[idx], (digit[mask], fg[mask], bg[mask]))
    return out


# -- scoring a text-to-image model -------------------------------------------------------------------------------


def prompt_set(heldout: set[tuple[int, int]], which: str, n: int) -> list[tuple[int, int, int, int]]:
    """n requests (digit, fg, bg, template). "train": digit i % 10; for the k = i // 10-th request of a digit, its
    (k % 5)-th training colour, background k % 3. "heldout": the held-out pair (sorted by digit) i % 10,
    background k % 3. Template (k + digit) % len(TEMPLATES) in both."""
    pairs = sorted(heldout)
    out = []
    for i in range(n):
        k = i // 10
        if which == "train":
            d = i % 10
            allowed = [f for f in range(len(cm.FOREGROUNDS)) if (d, f) not in heldout]
            f = allowed[k % len(allowed)]
        elif which == "heldout":
            d, f = pairs[i % len(pairs)]
        else:
            raise UserInputError(f"`which` must be 'train' or 'heldout', got {which!r}.")
        out.append((d, f, k % len(cm.BACKGROUNDS), (k + d) % len(cm.TEMPLATES)))
    return out


@torch.no_grad()
def score_text2img(
    pipe,
    judge: Judge,
    heldout: set[tuple[int, int]],
    n: int = 100,
    guidance: float = 3.0,
    steps: int = 20,
    sampler: str = "dpmsolver++",
    seed: int = 0,
    batch_size: int = 100,
) -> dict:
    """Prompt `pipe` with the captions of `prompt_set` (n per set; seed `seed` for the training combinations,
    `seed` + 1 for the held-out ones) and judge the samples. Returns {set: score + prompts + judged, ...} and the
    sample images under "images" ({set: (n, 3, H, W) tensor})."""
    c, s = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    if (c, s) != (3, cm.SIZE):
        raise UserInputError(f"The model makes {c} x {s} x {s} images; coloured MNIST needs 3 x {cm.SIZE} x {cm.SIZE}.")
    result, images_out = {}, {}
    for offset, which in enumerate(("train", "heldout")):
        requests = prompt_set(heldout, which, n)
        prompts = [cm.caption(t, d, f, b) for d, f, b, t in requests]
        unknown = sorted({w for p in set(prompts) for w in getattr(pipe, "unknown_words", lambda _: [])(p)})
        generator = torch.Generator().manual_seed(seed + offset)
        images = torch.cat([
            pipe(prompts[i : i + batch_size], guidance_scale=guidance, num_inference_steps=steps, sampler=sampler,
                 generator=generator, output_type="pt").images.cpu()
            for i in range(0, n, batch_size)
        ])  # fmt: skip
        want = np.array([r[:3] for r in requests]).T  # (3, n)
        got = np.stack(judge.judge(images))  # (3, n)
        score = judge.score(images, want)
        a = score["all_correct"]
        score["all_correct_stderr"] = math.sqrt(a * (1 - a) / n)  # binomial standard error
        result[which] = {**score, "seed": seed + offset, "unknown_words": unknown,
                         "samples": [{"prompt": p, "requested": want[:, i].tolist(), "judged": got[:, i].tolist()}
                                     for i, p in enumerate(prompts)]}  # fmt: skip
        images_out[which] = images
    return {**result, "images": images_out}


# -- command line -----------------------------------------------------------------------------------------------


def _default_judge(data: str) -> str:
    return str(Path(data)).rstrip("/") + "_judge"


def _cmd_train(args) -> int:
    torch.set_num_threads(args.threads)
    out = args.output_dir or _default_judge(args.data)
    record = train_judge(args.data, out, epochs=args.epochs, widths=args.widths, feature_dim=args.feature_dim,
                         recolour=not args.no_recolour, seed=args.seed, limit=args.limit)  # fmt: skip
    evaluation = evaluate_judge(load_judge(out), args.data, "test")
    record["command"] = "python bench/colored_mnist_judge.py " + shlex.join(args.argv)
    record["test"] = evaluation
    record["total_seconds"] = round(time.perf_counter() - args.start, 1)
    record["total_cpu_seconds"] = round(time.process_time(), 1)
    (Path(out) / JUDGE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(evaluation, indent=1))
    print(
        f"judge saved to {out}: training {record['train_seconds']} s ({record['train_cpu_seconds']} CPU-s), "
        f"in all {record['total_seconds']} s ({record['total_cpu_seconds']} CPU-s)"
    )
    return 0


def _cmd_evaluate(args) -> int:
    torch.set_num_threads(args.threads)
    print(json.dumps(evaluate_judge(load_judge(args.judge or _default_judge(args.data)), args.data, args.split),
                     indent=1))  # fmt: skip
    return 0


def _cmd_score(args) -> int:
    from hubgen.hub import load_pipeline
    from hubgen.pipeline_utils import make_grid

    torch.set_num_threads(args.threads)
    judge_dir = args.judge or _default_judge(args.data)
    judge = load_judge(judge_dir)
    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    result = score_text2img(
        pipe,
        judge,
        cm.read_heldout(args.data),
        n=args.n,
        guidance=args.guidance,
        steps=args.steps,
        sampler=args.sampler,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    images = result.pop("images")
    record = {"model": str(args.model), "data": str(args.data), "judge": judge_dir,
              "judge_sha256": _sha256(Path(judge_dir) / "diffusion_pytorch_model.safetensors"), "n": args.n,
              "guidance": args.guidance, "steps": args.steps, "sampler": args.sampler,
              "seconds": round(time.perf_counter() - start, 1), **result}  # fmt: skip
    output = Path(args.output or Path("bench/out/colored_mnist_score") / f"{Path(args.model).name}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=1) + "\n")
    for which, x in images.items():
        make_grid(x[:100], nrow=10).save(output.with_name(f"{output.stem}_{which}.png"))
    for which in ("train", "heldout"):
        r = result[which]
        words = f"  unknown words: {r['unknown_words']}" if r["unknown_words"] else ""
        print(f"{which:8s} combinations: all correct {r['all_correct']:.3f} +- {r['all_correct_stderr']:.3f}  "
              f"(digit {r['digit']:.3f}, fg {r['fg']:.3f}, bg {r['bg']:.3f}; n {r['n']}){words}")  # fmt: skip
    print(f"wrote {output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the judge's digit classifier on DIR/train, then evaluate it on DIR/test")
    t.add_argument("--data", required=True, help="the dataset folder written by bench/colored_mnist.py")
    t.add_argument("--output_dir", default=None, help="where to save the judge (default: DATA_judge)")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128], help="conv stage channels")
    t.add_argument("--feature_dim", type=int, default=128)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no_recolour", action="store_true", help="train without the random colour symmetries")
    t.add_argument("--limit", type=int, default=None, help="train on the first LIMIT images only (tests)")
    e = sub.add_parser("evaluate", help="the judge's accuracies on the real images of a split")
    e.add_argument("--data", required=True)
    e.add_argument("--judge", default=None, help="the judge folder (default: DATA_judge)")
    e.add_argument("--split", default="test", choices=("train", "test"))
    s = sub.add_parser("score-text2img", help="prompt a text-to-image model, judge its samples")
    s.add_argument("model", help="a text-to-image model folder (hubgen train text2img ... on DATA)")
    s.add_argument("--data", required=True)
    s.add_argument("--judge", default=None, help="the judge folder (default: DATA_judge)")
    s.add_argument("--n", type=int, default=100, help="samples per prompt set (training / held-out combinations)")
    s.add_argument("--guidance", type=float, default=3.0)
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--sampler", default="dpmsolver++")
    s.add_argument("--seed", type=int, default=0, help="seed of the training combinations; +1 for the held-out")
    s.add_argument("--batch_size", type=int, default=100)
    s.add_argument("--output", default=None, help="the JSON (default bench/out/colored_mnist_score/MODEL.json)")
    for q in (t, e, s):
        q.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    args.start, args.argv = time.perf_counter(), list(sys.argv[1:] if argv is None else argv)
    if not (Path(args.data) / "heldout.json").is_file():
        p.error(f"--data {args.data} is not a folder written by bench/colored_mnist.py (no heldout.json)")
    for name in ("epochs", "n", "steps", "batch_size", "threads"):
        if getattr(args, name, 1) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    command = {"train": _cmd_train, "evaluate": _cmd_evaluate, "score-text2img": _cmd_score}[args.command]
    try:
        return command(args)
    except UserInputError as err:
        print(f"colored_mnist_judge: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

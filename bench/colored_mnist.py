"""Coloured MNIST 32x32: a colour benchmark that can be judged exactly (issue 15).

    python bench/colored_mnist.py --mnist ../shared/data/mnist.npz --out /tmp/colored_mnist [--seed 0]

Writes an `imagefolder` dataset (the convention of `datasets.load_dataset("imagefolder", data_dir=DIR)`):

    DIR/train/00000.png ...  DIR/train/metadata.jsonl     from MNIST x_train (50,000; file k is x_train[k])
    DIR/test/00000.png ...   DIR/test/metadata.jsonl      from MNIST x_test (10,000; file k is x_test[k])
    DIR/heldout.json         the held-out (digit, foreground colour) pairs
    DIR/colored_mnist.json   everything that defines the data: seed, palettes, templates, held-out pairs, counts
    DIR/README.md            the same for people

Each metadata.jsonl line: {"file_name", "text" (the caption), "label" (= digit), "digit", "fg", "bg"} (colour
names). Each image is the 28x28 digit padded by 2 pixels on every side to 32x32 (intensity 0), then coloured by
blending two palette colours with the stroke intensity t in 0..255:

    pixel = bg + (fg - bg) * t / 255        per channel, rounded to the nearest integer (exact integer arithmetic)

Colours (palette indices) are drawn by a seeded rule, independently per image: bg uniform over BACKGROUNDS;
fg uniform over FOREGROUNDS in the test split, and uniform over the 5 colours other than the digit's held-out
colour in the training split. The held-out pairs: each digit d has one held-out foreground colour, a seeded
permutation of the 6 colours plus 4 of them drawn again (so every colour is held out for 1 or 2 digits and
still seen with at least 8 digits in training). Those 10 of the 60 (digit, fg) pairs never occur in the training
split; the test split has all 60 (about 1/6 of it is held-out pairs). The caption is one of TEMPLATES, drawn
per image. Everything is deterministic given the seed and the input arrays: two runs write identical bytes.

The palettes are corners of the RGB cube (and mid grey): foregrounds at least 255 apart (in 0..255 units), the
backgrounds at least 220 apart, and every foreground at least 220 from every background; for every (fg, bg) pair
any blend bg + t (fg - bg) with t > 1/2 is nearest to fg among the foregrounds. So the judge
(bench/colored_mnist_judge.py) can name both colours by the nearest palette entry.
"""

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "FOREGROUNDS",
    "BACKGROUNDS",
    "DIGIT_NAMES",
    "TEMPLATES",
    "PAD",
    "SIZE",
    "caption",
    "heldout_colours",
    "draw_colours",
    "colorize",
    "write_dataset",
    "read_metadata",
    "read_heldout",
]

# name -> RGB in 0..255. Order matters: palette indices are positions in these tuples.
FOREGROUNDS = (
    ("red", (255, 0, 0)),
    ("green", (0, 255, 0)),
    ("blue", (0, 0, 255)),
    ("yellow", (255, 255, 0)),
    ("magenta", (255, 0, 255)),
    ("cyan", (0, 255, 255)),
)
BACKGROUNDS = (
    ("white", (255, 255, 255)),
    ("black", (0, 0, 0)),
    ("gray", (128, 128, 128)),
)
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# {fg}, {bg}: colour names; {name}: "seven"; {a_name}: "a seven" / "an eight"; {digit}: "7". The colour words sit
# in different orders on purpose.
TEMPLATES = (
    "a {fg} {name} on a {bg} background",
    "the digit {digit} in {fg} on {bg}",
    "a handwritten {name} in {fg} on a {bg} background",
    "{fg} {digit} on {bg}",
    "{a_name} written in {fg} on {bg}",
    "{bg} background with a {fg} digit {name}",
)
PAD = 2  # 28 + 2 * PAD = 32
SIZE = 28 + 2 * PAD
NUM_HELDOUT = 10  # one per digit
VERSION = 1


def caption(template: int, digit: int, fg: int, bg: int) -> str:
    """The caption of TEMPLATES[template] for a digit and palette indices fg, bg."""
    name = DIGIT_NAMES[digit]
    a_name = ("an " if name[0] in "aeiou" else "a ") + name
    return TEMPLATES[template].format(
        fg=FOREGROUNDS[fg][0], bg=BACKGROUNDS[bg][0], name=name, a_name=a_name, digit=digit
    )


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent generators: held-out pairs, train split, test split."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def heldout_colours(seed: int) -> np.ndarray:
    """(10,) int: the held-out foreground colour of each digit d (the pair (d, heldout[d]) is never trained on)."""
    rng = _streams(seed)[0]
    k = len(FOREGROUNDS)
    extra = rng.choice(k, NUM_HELDOUT - k, replace=False)  # 4 colours held out twice
    return rng.permutation(np.concatenate([np.arange(k), extra]))


def draw_colours(digits: np.ndarray, heldout: np.ndarray | None, rng: np.random.Generator):
    """Palette indices (fg, bg) and a template per image, each (N,) int64. With `heldout`, fg avoids the digit's
    held-out colour: uniform over the other 5 (k drawn from 0..4, shifted past heldout[d])."""
    n, k = len(digits), len(FOREGROUNDS)
    if heldout is None:
        fg = rng.integers(0, k, n)
    else:
        j = rng.integers(0, k - 1, n)
        fg = j + (j >= heldout[digits])
    bg = rng.integers(0, len(BACKGROUNDS), n)
    template = rng.integers(0, len(TEMPLATES), n)
    return fg.astype(np.int64), bg.astype(np.int64), template.astype(np.int64)


def colorize(x: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Grey digits (N, 28, 28) uint8 -> (N, 32, 32, 3) uint8: padded by PAD, pixel = bg + (fg - bg) * t / 255.

    Integer arithmetic: v = bg * 255 + (fg - bg) * t lies in [0, 255^2]; the pixel is round(v / 255).
    """
    t = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD))).astype(np.int32)[..., None]  # (N, 32, 32, 1)
    f = np.array([rgb for _, rgb in FOREGROUNDS], dtype=np.int32)[fg][:, None, None, :]  # (N, 1, 1, 3)
    b = np.array([rgb for _, rgb in BACKGROUNDS], dtype=np.int32)[bg][:, None, None, :]  # (N, 1, 1, 3)
    v = b * 255 + (f - b) * t  # (N, 32, 32, 3)
    return ((v + 127) // 255).astype(np.uint8)


def _write_split(out: Path, x: np.ndarray, y: np.ndarray, fg, bg, template) -> None:
    from PIL import Image

    out.mkdir(parents=True)
    width = max(5, len(str(len(x) - 1)))
    lines = []
    for start in range(0, len(x), 1000):  # colour 1000 at a time (bounded memory)
        rgb = colorize(x[start : start + 1000], fg[start : start + 1000], bg[start : start + 1000])
        for i, image in enumerate(rgb, start):
            name = f"{i:0{width}d}.png"
            Image.fromarray(image, "RGB").save(out / name, format="PNG")
            d, f, b = int(y[i]), int(fg[i]), int(bg[i])
            row = {"file_name": name, "text": caption(int(template[i]), d, f, b), "label": d, "digit": d,
                   "fg": FOREGROUNDS[f][0], "bg": BACKGROUNDS[b][0]}  # fmt: skip
            lines.append(json.dumps(row))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def _write_npz(path: Path, arrays: dict) -> None:
    """np.savez with a fixed zip timestamp, so the file is identical across runs."""
    import io

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())


def _readme(spec: dict) -> str:
    fg = ", ".join(f"{n} {tuple(c)}" for n, c in spec["foregrounds"])
    bg = ", ".join(f"{n} {tuple(c)}" for n, c in spec["backgrounds"])
    pairs = "\n".join(f"| {p['digit']} | {p['fg']} |" for p in spec["heldout_pairs"])
    templates = "\n".join(f"- `{t}`" for t in spec["templates"])
    counts = ", ".join(f"{k}: {v}" for k, v in spec["num_images"].items())
    return f"""# Coloured MNIST 32x32 (hubgen issue 15)

Written by `{spec["command"]}` (seed {spec["seed"]}, format version {spec["version"]}) from MNIST
`{spec["source"]}` (sha256 {spec["source_sha256"]}). Images: {counts} ({spec["num_test_images_heldout_pairs"]}
test images show a held-out pair). File `k.png` of `train/` is `x_train[k]`, of `test/` is `x_test[k]`.

Each 28x28 digit is padded by {spec["pad"]} pixels to {spec["size"]}x{spec["size"]} RGB and coloured with
`pixel = bg + (fg - bg) * t / 255` (t the MNIST intensity 0..255, rounded to the nearest integer).

- Foreground colours (RGB 0..255): {fg}
- Background colours: {bg}
- Colours are drawn uniformly per image (seeded); training foregrounds avoid the digit's held-out colour.

## Held-out (digit, foreground) pairs: never in `train/`, present in `test/` (also in `heldout.json`)

| digit | foreground |
|---|---|
{pairs}

## Caption templates (one drawn per image; `metadata.jsonl` column `text`)

`{{name}}` is the digit's word ("seven"), `{{a_name}}` the same with its article ("an eight"), `{{digit}}` its
numeral ("7").

{templates}

Columns of `metadata.jsonl`: `file_name`, `text` (caption), `label` (= `digit`), `digit`, `fg`, `bg`.
Load with `datasets.load_dataset("imagefolder", data_dir=...)`. Judge generated images with
`bench/colored_mnist_judge.py`.
"""


def write_dataset(mnist: str | Path, out: str | Path, seed: int = 0, npz: str | Path | None = None,
                  command: str | None = None) -> dict:  # fmt: skip
    """Write the dataset (see the module docstring) into the new folder `out`; returns its spec (colored_mnist.json).
    `npz`: also write the same images as a .npz of uint8 x_train/x_test (N, 3, 32, 32) with y_train/y_test."""
    import hashlib

    mnist, out = Path(mnist), Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty; choose a new folder")
    with np.load(mnist, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or len(y) != len(x):
            raise ValueError(f"{mnist}: x_{split} must be uint8 (N, 28, 28) with N labels, got {x.dtype} {x.shape}")
        if y.min() < 0 or y.max() > 9:
            raise ValueError(f"{mnist}: y_{split} must hold digits 0..9")
    heldout = heldout_colours(seed)
    _, train_rng, test_rng = _streams(seed)
    out.mkdir(parents=True, exist_ok=True)
    colours = {}
    for split, rng, rule in (("train", train_rng, heldout), ("test", test_rng, None)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"].astype(np.int64)
        colours[split] = draw_colours(y, rule, rng)
        _write_split(out / split, x, y, *colours[split])
    pairs = [{"digit": d, "fg": FOREGROUNDS[int(c)][0]} for d, c in enumerate(heldout)]
    test_fg, test_y = colours["test"][0], arrays["y_test"]
    spec = {
        "name": "colored_mnist",
        "version": VERSION,
        "command": command or f"python bench/colored_mnist.py --mnist {mnist} --out {out} --seed {seed}",
        "seed": seed,
        "source": str(mnist),
        "source_sha256": hashlib.sha256(mnist.read_bytes()).hexdigest(),
        "size": SIZE,
        "pad": PAD,
        "foregrounds": [[n, list(c)] for n, c in FOREGROUNDS],
        "backgrounds": [[n, list(c)] for n, c in BACKGROUNDS],
        "templates": list(TEMPLATES),
        "heldout_pairs": pairs,
        "num_images": {"train": len(arrays["x_train"]), "test": len(arrays["x_test"])},
        "num_test_images_heldout_pairs": int((test_fg == heldout[test_y]).sum()),
    }
    (out / "heldout.json").write_text(json.dumps({"heldout_pairs": pairs}, indent=2) + "\n")
    (out / "colored_mnist.json").write_text(json.dumps(spec, indent=2) + "\n")
    (out / "README.md").write_text(_readme(spec))
    if npz is not None:
        _write_npz(Path(npz), {
            "x_train": colorize(arrays["x_train"], *colours["train"][:2]).transpose(0, 3, 1, 2),
            "y_train": arrays["y_train"],
            "x_test": colorize(arrays["x_test"], *colours["test"][:2]).transpose(0, 3, 1, 2),
            "y_test": arrays["y_test"],
        })  # fmt: skip
    return spec


def read_metadata(folder: str | Path, split: str) -> list[dict]:
    """The rows of DIR/<split>/metadata.jsonl."""
    path = Path(folder) / split / "metadata.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_heldout(folder: str | Path) -> set[tuple[int, int]]:
    """The held-out (digit, fg palette index) pairs of a written dataset."""
    names = [n for n, _ in FOREGROUNDS]
    pairs = json.loads((Path(folder) / "heldout.json").read_text())["heldout_pairs"]
    return {(int(p["digit"]), names.index(p["fg"])) for p in pairs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", required=True, help="MNIST .npz with uint8 x_train/y_train/x_test/y_test")
    p.add_argument("--out", required=True, help="a new (or empty) folder for the image folder dataset")
    p.add_argument("--seed", type=int, default=0, help="seed of the colours, held-out pairs and captions")
    p.add_argument("--npz", default=None, help="also write the images as a .npz (x_train/x_test (N, 3, 32, 32))")
    args = p.parse_args(argv)
    if not Path(args.mnist).is_file():
        p.error(f"--mnist {args.mnist} is not a file")
    command = "python bench/colored_mnist.py " + " ".join(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    try:
        spec = write_dataset(args.mnist, args.out, args.seed, args.npz, command=command)
    except (FileExistsError, ValueError) as e:
        p.error(str(e))
    print(f"wrote {args.out}: {spec['num_images']} images, held-out pairs "
          f"{[(q['digit'], q['fg']) for q in spec['heldout_pairs']]}, "
          f"{spec['num_test_images_heldout_pairs']} test images with a held-out pair, "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory and throughput of one training epoch over a large image folder: hubgen.data decodes per item.

    python bench/data_memory.py                       # 100,000 64x64 RGB PNGs, an imagefolder under /tmp
    python bench/data_memory.py --num_images 2000     # a quick check
    python bench/data_memory.py --format saved        # the same images as a save_to_disk copy

Writes (once; kept for the next run) an `imagefolder` dataset of `--num_images` RGB PNGs `--size` x `--size`
with a metadata.jsonl (a caption and a label per image) under `--root`, each image a smooth colour gradient
with noise (PNGs of realistic size, not a constant colour). Then, in this process: `hubgen.data.load_dataset`
of the train split (datasets' imagefolder builder, its Arrow cache in a fresh HF_HOME under --root, and
hubgen's header scan of every image), and one epoch through a DataLoader as hubgen.training.make_loader builds
it (shuffled, drop_last, batch 128, no workers) doing what a training step does to the batch before the
model (to_signed_range). Prints the peak resident memory (resource.getrusage ru_maxrss) after the imports,
after loading and after the epoch, the load time and the epoch's images/s. An in-memory copy of the decoded
images would hold N * 3 * size^2 bytes (1.23 GB for 100,000 64x64 images) as uint8, 4x that as float32.
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_folder(root: Path, n: int, size: int) -> None:
    """n PNGs in 1000-image subfolders (a flat folder of 100,000 files is slow to list), with metadata.jsonl."""
    import numpy as np
    from PIL import Image

    done = root / "done.json"
    if done.is_file() and json.loads(done.read_text()) == {"num_images": n, "size": size}:
        return
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)[:, None, None]  # (H, 1, 1)
    start = time.perf_counter()
    with open(root / "metadata.jsonl", "w") as meta:
        for i in range(n):
            a, b = rng.uniform(0, 255, (2, 1, 1, 3))
            noise = rng.normal(0, 8, (size, size, 3))
            x = a + (b - a) * (ramp if i % 2 else ramp.transpose(1, 0, 2)) + noise  # (H, W, 3)
            name = f"{i // 1000:03d}/{i:06d}.png"
            (root / name).parent.mkdir(exist_ok=True)
            Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(root / name, compress_level=1)
            meta.write(json.dumps({"file_name": name, "text": f"a gradient number {i}", "label": i % 10}) + "\n")
    done.write_text(json.dumps({"num_images": n, "size": size}))
    print(f"wrote {n} PNGs in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def rss_parts() -> str:
    """Resident memory now: private (anonymous) and memory-mapped file pages (the Arrow file; reclaimable)."""
    parts = dict(line.split(":") for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mb = {k: int(parts[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile") if k in parts}
    return ", ".join(f"{k} {v:.0f} MB" for k, v in mb.items())


def save_copy(folder: Path, saved: Path) -> None:
    """The imagefolder as a save_to_disk folder (image bytes embedded in the Arrow file), once."""
    import datasets

    if not (saved / "dataset_dict.json").is_file():
        start = time.perf_counter()
        datasets.load_dataset("imagefolder", data_dir=str(folder), data_files={"train": "**"}).save_to_disk(saved)
        print(f"wrote the save_to_disk copy in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num_images", type=int, default=100_000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--root", default="/tmp/hubgen_data_memory")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--format", choices=("imagefolder", "saved"), default="imagefolder",
                   help="the PNG folder, or a save_to_disk copy of it (bytes in one memory-mapped file)")  # fmt: skip
    args = p.parse_args()
    root = Path(args.root)
    folder = root / f"images_{args.num_images}_{args.size}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HOME", str(root / "hf_home"))  # its own datasets cache, read before the import
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    write_folder(folder, args.num_images, args.size)
    if args.format == "saved":
        folder, images = folder.with_name(folder.name + "_saved"), folder
        save_copy(images, folder)

    import datasets  # noqa: F401  (imported before the first figure: pyarrow and pandas are part of the baseline)
    import torch

    from hubgen import data as hdata

    torch.set_num_threads(1)
    imports = peak_mb()
    start = time.perf_counter()
    train = hdata.load_dataset(folder, "train")
    load_seconds, loaded = time.perf_counter() - start, peak_mb()
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    seen, checksum, start = 0, 0.0, time.perf_counter()
    for intensities, _ in loader:
        x = hdata.to_signed_range(intensities, train.levels)  # (B, C, H, W) in [-1, 1]
        checksum += float(x.mean())
        seen += len(x)
    epoch_seconds = time.perf_counter() - start
    held = args.num_images * 3 * args.size**2 / 1e9
    print(f"dataset: {folder} ({train.extra['source']}), train split {len(train)} images {train.image_shape}, "
          f"{train.extra.get('split', '')}")  # fmt: skip
    print(f"load_dataset: {load_seconds:.1f} s (Arrow cache + header scan)")
    print(f"one epoch: {seen} images in {epoch_seconds:.1f} s = {seen / epoch_seconds:.0f} images/s "
          f"(batch {args.batch_size}, no workers, 1 torch thread)")  # fmt: skip
    print(f"peak RSS: {imports:.0f} MB after imports, {loaded:.0f} MB after loading, {peak_mb():.0f} MB after the "
          f"epoch (now {current_mb():.0f} MB: {rss_parts()}); the decoded images as uint8: {held:.2f} GB")  # fmt: skip


if __name__ == "__main__":
    main()

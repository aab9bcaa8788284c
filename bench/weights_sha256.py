"""The weights fingerprint of model folders, for BENCHMARKS.md: one sha256 over every .safetensors file of the
folder (hubgen.model_folder.weights_sha256; checkpoints and save leftovers excluded), so a figure is tied to the
exact weights that produced it. A folder that does not exist is reported as such, never given a digest.

    python bench/weights_sha256.py bench/out/vae-mnist bench/out/gan-mnist-ns-30min
    | bench/out/vae-mnist | `3f5a...` (2 files, 1.2 MB) |
    | bench/out/gan-mnist-ns-30min | folder no longer exists |
"""

import argparse
import sys
from pathlib import Path

from hubgen import model_folder as mf
from hubgen.errors import UserInputError


def fingerprint_row(folder: Path) -> str:
    """The BENCHMARKS.md table row of one folder: its digest, file count and size, or why there is none."""
    if not folder.is_dir():
        return f"| {folder} | folder no longer exists |"
    try:
        digest = mf.weights_sha256(folder)
    except UserInputError:
        return f"| {folder} | no .safetensors weights in it |"
    files = mf.weight_files(folder)
    size = sum(p.stat().st_size for p in files) / 1e6
    return f"| {folder} | `{digest}` ({len(files)} file{'s' * (len(files) != 1)}, {size:.1f} MB) |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("| model folder | weights sha256 (hubgen.model_folder.weights_sha256) |\n|---|---|")
    for folder in args.folders:
        print(fingerprint_row(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())

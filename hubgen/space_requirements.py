"""What a Space needs to install hubgen by itself: the wheel of the installed hubgen, and a requirements.txt whose
pins come from hubgen's own metadata.

hubgen is not on PyPI, so a bare `hubgen` line cannot build. A Space made by `hubgen space create` (or refreshed
by `hubgen space update`, as the repository's spaces/* are before they are pushed) carries the wheel of the
installed hubgen version and names it in requirements.txt by its URL in the Space repo itself
(`hubgen @ ENDPOINT/spaces/SPACE_ID/resolve/main/hubgen-VERSION-py3-none-any.whl`): the Spaces builder runs
`RUN --mount=target=/tmp/requirements.txt,source=requirements.txt pip install -r /tmp/requirements.txt` before it
copies the repo, so a relative path to the wheel would not exist yet and a URL is what it can reach (a public
Space; a private one needs `--hubgen_requirement`). `--hubgen_requirement` replaces the line with any
pip requirement, e.g. `hubgen @ git+https://github.com/OWNER/hubgen@TAG`.

The wheel: $HUBGEN_WHEEL when set (a built hubgen wheel), else built from the source tree of the installed hubgen
(`pip wheel --no-deps --no-build-isolation`, offline, a few seconds; once per process). An installed hubgen
without its source tree needs one of the two.

The dependency lines are hubgen's `Requires-Dist` (extras left out) minus gradio, which Spaces preinstall at
the README's `sdk_version` (the installed gradio's version).
"""

import functools
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import UserInputError

__all__ = [
    "hubgen_wheel",
    "space_requirements",
    "wheel_requirement",
    "runtime_requirements",
    "PREINSTALLED",
    "REPO_SPACE_LINE",
]

PREINSTALLED = ("gradio",)  # Spaces install the SDK at sdk_version themselves
# The hubgen line of the repository's own spaces/*/requirements.txt: the wheel is added when a Space is deployed.
REPO_SPACE_LINE = (
    "# Before pushing this folder as a Space: `hubgen space update THIS_FOLDER --space_id YOU/SPACE` adds the "
    "hubgen wheel\n# and the line that installs it here (or pass --hubgen_requirement)."
)


def runtime_requirements() -> list[str]:
    """hubgen's own dependency pins (its metadata's Requires-Dist without the extras), gradio left out."""
    from packaging.requirements import Requirement

    found = []
    for line in md.requires("hubgen") or []:
        requirement = Requirement(line)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        if requirement.name.lower() not in PREINSTALLED:
            found.append(str(requirement))
    return found


def space_requirements(hubgen_line: str) -> str:
    """requirements.txt of a hubgen Space: `hubgen_line` (how hubgen itself installs), then hubgen's pins."""
    version = md.version("hubgen")
    return (
        f"# Written by hubgen {version} (`hubgen space create` / `hubgen space update`): hubgen is not on PyPI, so it\n"
        "# installs from the line below (the wheel in this Space, or --hubgen_requirement); the pins after it are\n"
        "# hubgen's own (its package metadata). gradio is preinstalled at the README's sdk_version; torch is not\n"
        "# pinned further, so the Space hardware gets a matching build. torchvision is deliberately absent.\n"
        f"{hubgen_line}\n" + "".join(f"{line}\n" for line in runtime_requirements())
    )


def wheel_requirement(space_id: str, wheel_name: str, endpoint: str | None = None) -> str:
    """The requirement line naming the wheel by its URL in the Space repo `space_id`."""
    from huggingface_hub import constants

    return f"hubgen @ {endpoint or constants.ENDPOINT}/spaces/{space_id}/resolve/main/{wheel_name}"


def _source_tree() -> Path | None:
    """The source tree of the imported hubgen (an editable or in-place install), if it has one."""
    import hubgen

    root = Path(hubgen.__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "hubgen"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


@functools.cache
def _built_wheel() -> Path:
    source = _source_tree()
    if source is None:
        raise UserInputError(
            "The installed hubgen has no source tree to build its wheel from: set HUBGEN_WHEEL to a hubgen wheel, or "
            "pass `--hubgen_requirement` (e.g. 'hubgen @ git+https://...')."
        )
    out = Path(tempfile.mkdtemp(prefix="hubgen-wheel-"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
               "--wheel-dir", str(out), str(source)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(out.glob("hubgen-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise RuntimeError(f"building the hubgen wheel from {source} failed:\n{done.stderr[-2000:]}")
    return wheels[0]


def hubgen_wheel(out_dir: str | os.PathLike) -> Path:
    """The wheel of the installed hubgen copied into `out_dir` (module docstring); returns the copy. Older hubgen
    wheels in `out_dir` are removed."""
    chosen = os.environ.get("HUBGEN_WHEEL", "").strip()
    wheel = Path(chosen) if chosen else _built_wheel()
    if not (wheel.is_file() and wheel.name.startswith("hubgen-") and wheel.suffix == ".whl"):
        raise UserInputError(f"HUBGEN_WHEEL must name a hubgen wheel file (hubgen-*.whl), got {chosen!r}.")
    out = Path(out_dir)
    for old in out.glob("hubgen-*.whl"):
        if old.name != wheel.name:
            old.unlink()
    target = out / wheel.name
    shutil.copyfile(wheel, target)
    return target

"""The client side of tests/test_publish.py, run in a subprocess whose environment points huggingface_hub at the
loopback Hub (HF_ENDPOINT, a fake HF_TOKEN, a fresh HF_HOME; HF_HUB_OFFLINE=1 for the offline run). One process
serves every family, so torch, diffusers and gradio are imported once.

    python publish_client.py online|offline SPEC.json OUT_DIR

SPEC: {"families": {name: {"inline": repo, "lfs": repo, "sample": {...}, "revision": [repo, branch] | null,
"tampered": folder, "space_out": dir, "space_id": repo}}}. Writes OUT_DIR/results.json and, per load,
OUT_DIR/<family>-<what>.safetensors holding the samples.
"""

import contextlib
import io
import json
import os
import runpy
import sys
import traceback
from pathlib import Path

import torch
from safetensors.torch import save_file

import hubgen
from hubgen.cli import main as cli


def _samples(pipe, sample: dict) -> torch.Tensor:
    kwargs = {k: v for k, v in sample.items() if k != "seed"}
    images = pipe(**kwargs, generator=torch.Generator().manual_seed(sample["seed"]), output_type="pt").images
    return images.detach().float().contiguous()


def _cli(argv: list[str]) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(argv)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def online(spec: dict, out: Path) -> dict:
    from huggingface_hub import HfApi

    results = {}
    for name, fam in spec["families"].items():
        results[name] = _each_family(_online_family, name, fam, out)
    listed = HfApi().list_models(filter="hubgen")
    results["_list_models"] = {m.id: m.tags for m in listed}
    return results


def _each_family(run, name: str, fam: dict, out: Path) -> dict:
    """One family's part; an error is recorded (and fails that family's tests) instead of ending the run."""
    r = {}
    try:
        run(r, name, fam, out)
    except Exception:
        r["error"] = traceback.format_exc()
    return r


def _online_family(r: dict, name: str, fam: dict, out: Path) -> None:
    from huggingface_hub import snapshot_download

    # hubgen.load_pipeline by repo id, then the family's own class, each repo first seen in this HF_HOME
    pipe = hubgen.load_pipeline(fam["inline"])
    save_file({"x": _samples(pipe, fam["sample"])}, out / f"{name}-inline.safetensors")
    pipeline_class = hubgen.get_family(name).load("pipeline_class")
    pipe = pipeline_class.from_pretrained(fam["lfs"])
    r["lfs_class"] = type(pipe).__name__
    save_file({"x": _samples(pipe, fam["sample"])}, out / f"{name}-lfs.safetensors")
    if fam.get("revision"):
        repo, branch = fam["revision"]
        pipe = pipeline_class.from_pretrained(repo, revision=branch)
        save_file({"x": _samples(pipe, fam["sample"])}, out / f"{name}-revision.safetensors")
    r["verify"] = _cli(["verify", fam["lfs"]])
    r["verify_tampered"] = _cli(["verify", fam["tampered"]])
    r["space"] = _cli(
        ["space", "create", fam["inline"], "--out", fam["space_out"], "--push", "--space_id", fam["space_id"]]
    )
    # The Space as pushed: its app, run from a download of the Space repo, builds the demo from the Hub.
    space_dir = snapshot_download(fam["space_id"], repo_type="space", local_dir=out / f"{name}-space")
    cwd = os.getcwd()
    os.chdir(space_dir)
    try:
        namespace = runpy.run_path(str(Path(space_dir) / "app.py"))
    finally:
        os.chdir(cwd)
    r["app_model"] = namespace["model"]
    r["app_demo"] = type(namespace["demo"]).__module__ + "." + type(namespace["demo"]).__name__


def _offline_family(r: dict, name: str, fam: dict, out: Path) -> None:
    pipeline_class = hubgen.get_family(name).load("pipeline_class")
    loads = {"inline": hubgen.load_pipeline(fam["inline"]), "lfs": pipeline_class.from_pretrained(fam["lfs"])}
    if fam.get("revision"):
        repo, branch = fam["revision"]
        loads["revision"] = hubgen.load_pipeline(repo, revision=branch)
    for what, pipe in loads.items():
        save_file({"x": _samples(pipe, fam["sample"])}, out / f"{name}-offline-{what}.safetensors")


def offline(spec: dict, out: Path) -> dict:
    results = {name: _each_family(_offline_family, name, fam, out) for name, fam in spec["families"].items()}
    try:
        hubgen.load_pipeline("alice/never-pushed")
        results["_uncached"] = "loaded"
    except (OSError, ValueError) as e:  # not in the cache and offline: fails at once
        results["_uncached"] = f"{type(e).__name__}: {e}"
    return results


if __name__ == "__main__":
    mode, spec_path, out_dir = sys.argv[1:4]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = json.loads(Path(spec_path).read_text())
    results = (online if mode == "online" else offline)(spec, out)
    (out / "results.json").write_text(json.dumps(results, indent=1))

"""The client side of tests/test_hub_roundtrip.py, run in a subprocess whose environment points huggingface_hub at the
loopback Hub (HF_ENDPOINT, a fake HF_TOKEN, its own HF_HOME), so that one process serves every family.

    python roundtrip_client.py push SPEC.json OUT_DIR    # pipe.push_to_hub / save_pretrained(push_to_hub=True)
    python roundtrip_client.py load SPEC.json OUT_DIR    # DiffusionPipeline.from_pretrained and hubgen, by repo id

SPEC: {"families": {name: {"folder": local model folder, "repo": repo id, "saved_repo": repo id or null,
"saved_folder": folder or null, "sample": {...}}}}. Writes OUT_DIR/results.json and OUT_DIR/<family>-<how>
.safetensors holding the samples.
"""

import importlib
import json
import sys
import traceback
from pathlib import Path

import torch
from safetensors.torch import save_file

import hubgen


def _samples(pipe, sample: dict) -> torch.Tensor:
    kwargs = {k: v for k, v in sample.items() if k != "seed"}
    images = pipe(**kwargs, generator=torch.Generator().manual_seed(sample["seed"]), output_type="pt").images
    return images.detach().float().contiguous()


def push(name: str, fam: dict, out: Path) -> dict:
    """Push the local folder with the pipeline's own `push_to_hub` (it goes through hubgen.push), and, where asked,
    save a copy with `save_pretrained(push_to_hub=True)` into a new folder, pushed to a second repo."""
    pipe = hubgen.load_pipeline(fam["folder"])
    save_file({"x": _samples(pipe, fam["sample"])}, out / f"{name}-local.safetensors")
    result = {"url": pipe.push_to_hub(fam["repo"])}
    if fam.get("saved_repo"):
        result["saved_url"] = pipe.save_pretrained(fam["saved_folder"], push_to_hub=True, repo_id=fam["saved_repo"])
    return result


def load(name: str, fam: dict, out: Path) -> dict:
    """Load by repo id into a fresh Hub cache: diffusers' DiffusionPipeline (once the family's pipeline module is
    imported, which is all the card asks) and hubgen.load_pipeline; the samples of both."""
    from diffusers import DiffusionPipeline

    module = hubgen.get_family(name).pipeline_class.partition(":")[0]
    importlib.import_module(module)
    pipe = DiffusionPipeline.from_pretrained(fam["repo"], use_safetensors=True)
    result = {"diffusers_class": f"{type(pipe).__module__}.{type(pipe).__name__}"}
    ours = hubgen.load_pipeline(fam["repo"])
    save_file({"x": _samples(ours, fam["sample"])}, out / f"{name}-hubgen.safetensors")
    if isinstance(pipe, type(ours)):
        save_file({"x": _samples(pipe, fam["sample"])}, out / f"{name}-diffusers.safetensors")
    else:  # a folder stock diffusers loads as its own class (DDPM): the same weights in every component
        for label, loaded in (("diffusers", pipe), ("hubgen", ours)):
            modules = {c: m for c, m in loaded.components.items() if isinstance(m, torch.nn.Module)}
            tensors = {f"{c}.{k}": v.contiguous() for c, m in modules.items() for k, v in m.state_dict().items()}
            save_file(tensors, out / f"{name}-{label}-weights.safetensors")
    from hubgen.cli import main as cli

    result["verify_code"] = cli(["verify", fam["repo"]])
    if fam.get("saved_repo"):
        pipe = hubgen.load_pipeline(fam["saved_repo"])
        save_file({"x": _samples(pipe, fam["sample"])}, out / f"{name}-saved.safetensors")
    return result


def main(mode: str, spec_path: str, out_dir: str) -> int:
    spec, out = json.loads(Path(spec_path).read_text()), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = {"push": push, "load": load}[mode]
    results = {}
    for name, fam in spec["families"].items():
        try:
            results[name] = run(name, fam, out)
        except Exception:  # one family's failure fails that family's tests only
            results[name] = {"error": traceback.format_exc()}
    (out / f"{mode}-results.json").write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

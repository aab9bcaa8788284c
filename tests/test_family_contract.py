"""The family contract, checked for every registered family: the five built-in ones and `pixels`, a third-party
plugin that tests/conftest.py installs from its own dist-info (tests/plugin_family; hubgen's core names it
nowhere).

Each family is trained a few steps through the CLI with the options its record declares (`smoke_test`), and
then: its figures are the ones it declares, its pipeline reloads to bit-identical samples, its card validates
offline and carries the declared metrics in model-index, `hubgen eval` and `hubgen sample` take its own
options, the gallery shows its tile and builds its demo. Publishing every family to the loopback Hub and
loading it back by repo id is tests/test_publish.py, parametrized over the same registry.

A family whose modules fail to import fails here (it is not skipped).
"""

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import hubgen
from hubgen import model_folder as mf
from hubgen.cli import main
from hubgen.registry import entry_point_names, list_families

with warnings.catch_warnings():
    warnings.simplefilter("error")  # a plugin that does not load warns in the registry: here it is an error
    FAMILIES = [f.name for f in list_families()]


def test_every_declared_family_loads_and_the_plugin_is_among_them():
    assert FAMILIES == entry_point_names()  # every entry point loaded: none was skipped with a warning
    assert {"vae", "gan", "flow", "ddpm", "text2img", "pixels"} <= set(FAMILIES)


def test_the_plugin_appears_in_a_fresh_cli_process():
    listed = subprocess.run([sys.executable, "-m", "hubgen", "families"], capture_output=True, text=True)
    assert listed.returncode == 0 and "pixels" in listed.stdout and "hubgen_pixels.modeling:PixelModel" in listed.stdout
    helped = subprocess.run([sys.executable, "-m", "hubgen", "train", "pixels", "--help"], capture_output=True,
                            text=True)  # fmt: skip
    assert helped.returncode == 0 and "--max_train_steps" in helped.stdout


@pytest.mark.parametrize("name", FAMILIES)
def test_the_record_is_complete_and_every_module_imports(name):
    family = hubgen.get_family(name)
    for attribute in ("pipeline_class", "model_class", "train", "evaluate", "eval_request", "build_demo"):
        assert family.load(attribute) is not None, attribute
    assert family.card_template_path().is_file()
    assert family.smoke_test and family.quickstart, "a family declares its smoke-test and quickstart options"
    assert [m for m in family.metrics if m.headline] or not family.metrics, "a family with figures names a headline"


@pytest.mark.parametrize("name", FAMILIES)
def test_a_smoke_run_writes_a_complete_model_folder(tiny_models, name):
    folder, family = tiny_models[name], hubgen.get_family(name)
    for file in (mf.MODEL_INDEX, mf.CARD, mf.SAMPLES, mf.TRAINING_RECORD, mf.EVAL_RESULTS):
        assert (folder / file).is_file(), file
    record = mf.training_record(folder)
    assert record["family"] == name
    # CPU time beside wall time: a budget in CPU-minutes is checked against it (the process's CPU time cannot be
    # much above its threads times the wall time)
    assert 0 <= record["train_cpu_seconds"] <= record["torch_threads"] * record["train_seconds"] + 2.0
    results = mf.eval_results(folder)
    assert results["family"] == name and results["request"]["seed"] == 0
    assert all(family.metric(key) is not None for key in results["metrics"]), "every figure is declared"
    assert all((folder / picture).is_file() for picture in results["pictures"])
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt")), "safetensors only"


LIKELIHOOD_FAMILIES = [f.name for f in list_families() if any(m.metric_type == "nll" for m in f.metrics)]


@pytest.mark.parametrize("name", LIKELIHOOD_FAMILIES)
def test_eval_num_images_all_scores_the_whole_test_split(tmp_path, name):
    # `all` (None) is not a skip: the contract's "0 skips, all takes the whole split" at the end of training too
    argv = ["train", name, "--dataset", "digits", "--output_dir", str(tmp_path / "m"), "--seed", "0"]
    smoke = hubgen.get_family(name).smoke_test + " --max_train_steps 1 --eval_num_images all --eval_num_samples 0"
    assert main([*argv, *smoke.split()]) == 0
    results = mf.eval_results(tmp_path / "m")
    assert results["request"]["num_images"] is None and results["num_images"] == 360  # the digits' test split
    assert results["request"]["num_samples"] == 0 and not results.get("sample_quality")


@pytest.mark.parametrize("name", FAMILIES)
def test_every_card_picture_can_be_seen(tiny_models, name):
    """Each picture the card shows is at least 256 px wide (an 82 px grid of 8x8 digits could not be seen), and
    the caption of an enlarged grid states the factor."""
    import re

    from PIL import Image

    folder = tiny_models[name]
    card = (folder / mf.CARD).read_text()
    pictures = re.findall(r"!\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(([^)\s]+)\)", card)
    assert "samples.png" in pictures
    pixels = set()
    for picture in pictures:
        with Image.open(folder / picture) as image:
            assert image.width >= 256, (picture, image.size)
            k = image.text.get("hubgen:scale")
            pixels.add(image.tobytes())
        if k not in (None, "1"):
            assert f"Shown enlarged {k}x (nearest neighbour" in card, picture
    assert len(pixels) == len(pictures), "the card shows no picture twice"


@pytest.mark.parametrize("name", FAMILIES)
def test_save_and_reload_give_bit_identical_samples(tiny_models, tmp_path, name):
    family = hubgen.get_family(name)
    pipe = hubgen.load_pipeline(tiny_models[name])
    assert type(pipe).__name__ == family.pipeline_class_name
    call = family.sample_call(2, {})
    a = pipe(**call, generator=torch.Generator().manual_seed(0), output_type="pt").images
    pipe.save_pretrained(tmp_path / "copy")
    assert not [p for p in (tmp_path / "copy").rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    b = hubgen.load_pipeline(tmp_path / "copy")(**call, generator=torch.Generator().manual_seed(0), output_type="pt")
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b.images), rtol=0, atol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_card_validates_offline_and_carries_the_declared_metrics(tiny_models, name):
    from hubgen.publish import check_folder

    folder, family = tiny_models[name], hubgen.get_family(name)
    files, found = check_folder(folder)  # the offline checks of `hubgen push`
    assert found is family and mf.CARD in files
    card = ModelCard.load(folder / mf.CARD)
    assert card.data.library_name == "hubgen" and name in card.data.tags
    assert card.data.pipeline_tag == family.pipeline_tag
    stated = {r.metric_config: r for r in card.data.eval_results or []}
    for key, value in mf.eval_results(folder)["metrics"].items():
        spec = family.metric(key)
        assert key in stated and stated[key].metric_type == spec.metric_type
        assert stated[key].metric_value == pytest.approx(value["mean"], abs=1e-4)
        assert stated[key].metric_args["unit"] == spec.unit
        if spec.bound:
            assert "?" not in stated[key].metric_args["bound"], "the bound names every field it uses"


@pytest.mark.parametrize("name", FAMILIES)
def test_eval_and_sample_take_the_family_options(tiny_models, tmp_path, capsys, name):
    family = hubgen.get_family(name)
    folder = Path(shutil.copytree(tiny_models[name], tmp_path / "m", ignore=shutil.ignore_patterns("checkpoints")))
    assert main(["eval", str(folder), "--num_images", "4", "--num_samples", "20", "--seed", "1"]) == 0
    record = mf.eval_results(folder)
    assert record["request"]["seed"] == 1 and record["request"]["num_samples"] == 20 and record["seed"] == 1
    assert main(["eval", str(folder), "--no_such_option", "1"]) == 2  # the parser is the family's request
    assert "unrecognized arguments: --no_such_option" in capsys.readouterr().err
    extra = [f"--{o.name}={o.default}" for o in family.sample_options if o.default is not None]
    extra += [f"--{o.name}=a handwritten seven" for o in family.sample_options if o.required]
    assert main(["sample", str(folder), "--num_images", "2", "--out", str(tmp_path / "g.png"), *extra]) == 0
    assert (tmp_path / "g.png").is_file()
    assert main(["sample", str(folder), "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # help lines wrap at the terminal's width
    assert "--out OUT" in shown and "(default: 16)" in shown  # help shows the defaults
    for option in family.sample_options:
        assert f"--{option.name}" in shown and (option.default is None or f"(default: {option.default})" in shown)
    assert main(["sample", str(folder), "--num_images", "2"]) == 2  # no default --out: nothing in the cwd


@pytest.mark.parametrize("name", FAMILIES)
def test_the_gallery_shows_the_tile_and_builds_the_demo(tiny_models, tmp_path, name):
    import gradio as gr

    from hubgen.gallery import Catalog, PipelineCache
    from hubgen.gallery.app import tiles

    family = hubgen.get_family(name)
    root = tmp_path / "models"
    shutil.copytree(tiny_models[name], root / f"{name}-digits", ignore=shutil.ignore_patterns("checkpoints"))
    catalog = Catalog(root)
    entry = catalog.get(f"{name}-digits")
    assert entry.error is None and entry.family is family
    items, ids = tiles(catalog)
    assert ids == [f"{name}-digits"] and "not evaluated" not in items[0][1]
    with gr.Blocks() as outer:  # built inside the gallery's Blocks, as gr.render does
        family.load("build_demo")(PipelineCache().get(entry))
    assert outer.fns, "the family's demo registered no event"
    # inside gr.render Gradio cannot infer which controls are inputs, and showed them disabled: every control the
    # demo declares says it is interactive (the browser test checks the page itself)
    controls = (gr.Slider, gr.Number, gr.Textbox, gr.Dropdown, gr.Radio, gr.Checkbox, gr.ImageEditor)
    inputs = {id(c) for fn in outer.fns.values() for c in fn.inputs}
    for block in outer.blocks.values():
        if isinstance(block, controls) and id(block) in inputs and block.visible:
            assert block.interactive is True, f"{name}: {type(block).__name__} {block.label!r} is not interactive"


def test_the_model_space_folder_has_front_matter_and_the_galleries_requirements():
    from huggingface_hub import SpaceCard

    root = Path(__file__).resolve().parents[1] / "spaces"
    data = SpaceCard.load(root / "model" / "README.md").data.to_dict()
    assert data["sdk"] == "gradio" and data["app_file"] == "app.py" and data["license"] == "apache-2.0"
    assert "hubgen" in data["tags"] and data["short_description"] and data["models"]
    colors = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert {data["colorFrom"], data["colorTo"]} <= colors
    requirements = (root / "model" / "requirements.txt").read_text()
    assert requirements == (root / "hub" / "requirements.txt").read_text()
    assert "torchvision" not in [line.split("#")[0].strip() for line in requirements.splitlines()]


@pytest.mark.parametrize("name", FAMILIES)
def test_the_model_space_runs_the_family_demo_from_hubgen_model(tiny_models, monkeypatch, name):
    import runpy

    monkeypatch.setenv("HUBGEN_MODEL", str(tiny_models[name]))
    root = Path(__file__).resolve().parents[1] / "spaces" / "model"
    app = runpy.run_path(str(root / "app.py"))  # __name__ != "__main__": builds the demo, no launch
    assert app["demo"].fns and any(fn.api_name for fn in app["demo"].fns.values())


@pytest.mark.parametrize("model", [None, "", "no-such-user/no-such-model", "./no/such/folder"])
def test_the_model_space_starts_without_a_model_and_says_what_to_set(monkeypatch, tmp_path, model):
    import runpy

    import gradio as gr

    if model is None:
        monkeypatch.delenv("HUBGEN_MODEL", raising=False)
    else:
        monkeypatch.setenv("HUBGEN_MODEL", model)
    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[1] / "spaces" / "model"
    app = runpy.run_path(str(root / "app.py"))  # no crash at start: the page explains
    shown = " ".join(b.value or "" for b in app["demo"].blocks.values() if isinstance(b, gr.Markdown))
    assert "HUBGEN_MODEL" in shown and "Variables and secrets" in shown
    assert ("No model is set" if not model else f"The model `{model}` could not be loaded") in shown


def test_an_empty_gallery_says_where_it_looked_and_what_to_set(tmp_path):
    import gradio as gr

    from hubgen.gallery import build_gallery

    demo = build_gallery(tmp_path)  # an empty folder
    shown = " ".join(b.value or "" for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    assert "No models to show" in shown and str(tmp_path) in shown and "HUBGEN_GALLERY_HUB=1" in shown

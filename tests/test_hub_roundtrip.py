"""The Hub round trip as a new user meets it, against the loopback Hub (tests/fake_hub.py): `pipe.push_to_hub` and
`save_pretrained(push_to_hub=True)` going through hubgen.push, `DiffusionPipeline.from_pretrained(repo_id)` in a
fresh Hub cache, cards that name the repo in every command, fine-tuning from a pushed repo, and a generated Space
that installs hubgen from its own wheel in an environment without hubgen.

Clients that talk to the Hub run in subprocesses (tests/roundtrip_client.py, the CLI) with HF_ENDPOINT set before
huggingface_hub is imported, as in tests/test_publish.py. Every registered family takes part (the plugin too);
each one's model is the session's tiny smoke-test model (conftest.py `tiny_models`).
"""

import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from test_publish import TOKEN, USER, _env, _hubgen, _run, _sample

import hubgen
from hubgen import model_folder as mf
from hubgen.errors import UserInputError
from hubgen.registry import list_families

FAMILIES = [family.name for family in list_families()]
CLIENT = Path(__file__).with_name("roundtrip_client.py")


@pytest.fixture(scope="module")
def hub():
    server = FakeHub({TOKEN: USER}).start()
    yield server
    server.stop()


def _copy(folder: Path, target: Path) -> Path:
    return Path(shutil.copytree(folder, target, ignore=lambda _, names: [n for n in names if n == "checkpoints"]))


@dataclass
class Roundtrip:
    folders: dict
    pushed: dict
    loaded: dict
    out: Path
    tmp: Path


@pytest.fixture(scope="module")
def roundtrip(hub, tiny_models, tmp_path_factory):
    """Every family's tiny model pushed with `pipe.push_to_hub(repo)` (the VAE also saved to a new folder with
    `save_pretrained(push_to_hub=True)`), then loaded by repo id in a process with a fresh Hub cache."""
    tmp = tmp_path_factory.mktemp("roundtrip")
    spec = {"families": {}}
    for name in FAMILIES:
        folder = _copy(tiny_models[name], tmp / "models" / name)
        spec["families"][name] = {"folder": str(folder), "repo": f"{USER}/{name}-rt", "sample": _sample(name),
                                  "saved_repo": f"{USER}/{name}-saved" if name == "vae" else None,
                                  "saved_folder": str(tmp / "saved" / name)}  # fmt: skip
    (tmp / "spec.json").write_text(json.dumps(spec))
    out = _run([sys.executable, str(CLIENT), "push", tmp / "spec.json", tmp / "out"], _env(hub, tmp / "home-push"))
    assert out.returncode == 0, out.stderr[-3000:]
    out = _run([sys.executable, str(CLIENT), "load", tmp / "spec.json", tmp / "out"], _env(hub, tmp / "home-load"))
    assert out.returncode == 0, out.stderr[-3000:]
    pushed = json.loads((tmp / "out" / "push-results.json").read_text())
    loaded = json.loads((tmp / "out" / "load-results.json").read_text())
    folders = {name: Path(fam["folder"]) for name, fam in spec["families"].items()}
    return Roundtrip(folders, pushed, loaded, tmp / "out", tmp)


def _ok(roundtrip, name):
    for results in (roundtrip.pushed, roundtrip.loaded):
        if "error" in results.get(name, {}):
            pytest.fail(f"the {name} client failed:\n{results[name]['error']}")


# -- push_to_hub, then DiffusionPipeline.from_pretrained and hubgen in a fresh cache ---------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_push_to_hub_then_diffusers_and_hubgen_load_the_same_model(roundtrip, hub, name):
    _ok(roundtrip, name)
    repo = f"{USER}/{name}-rt"
    assert roundtrip.pushed[name]["url"] == f"{hub.endpoint}/{repo}"
    files = hub.files(repo)
    # the same upload as `hubgen push`: the folder's model files, records and pictures, and a hubgen card
    assert {mf.MODEL_INDEX, mf.CARD, mf.EVAL_RESULTS, mf.TRAINING_RECORD, mf.SAMPLES} <= set(files)
    assert ModelCard(files[mf.CARD].decode()).data.library_name == "hubgen"
    local = load_file(roundtrip.out / f"{name}-local.safetensors")["x"]
    torch.testing.assert_close(load_file(roundtrip.out / f"{name}-hubgen.safetensors")["x"], local, rtol=0, atol=0)
    family_class = hubgen.get_family(name).pipeline_class.replace(":", ".")
    if roundtrip.loaded[name]["diffusers_class"] == family_class:  # diffusers returned hubgen's pipeline
        got = load_file(roundtrip.out / f"{name}-diffusers.safetensors")["x"]
        torch.testing.assert_close(got, local, rtol=0, atol=0)
    else:  # a plain diffusers pipeline (DDPM): stock diffusers' own class, holding the same weights
        assert roundtrip.loaded[name]["diffusers_class"].startswith("diffusers.")
        theirs = load_file(roundtrip.out / f"{name}-diffusers-weights.safetensors")
        ours = load_file(roundtrip.out / f"{name}-hubgen-weights.safetensors")
        assert theirs.keys() == ours.keys()
        for key in ours:
            torch.testing.assert_close(theirs[key], ours[key], rtol=0, atol=0)


def test_save_pretrained_push_to_hub_keeps_the_records_of_the_same_weights(roundtrip, hub):
    _ok(roundtrip, "vae")
    repo, saved = f"{USER}/vae-saved", roundtrip.tmp / "saved" / "vae"
    assert roundtrip.pushed["vae"]["saved_url"] == f"{hub.endpoint}/{repo}"
    assert mf.weights_sha256(saved) == mf.weights_sha256(roundtrip.folders["vae"])
    files = hub.files(repo)
    for name in (mf.EVAL_RESULTS, mf.TRAINING_RECORD, mf.SAMPLES):  # the records of the weights came along
        assert files[name] == (roundtrip.folders["vae"] / name).read_bytes()
    original = ModelCard(hub.files(f"{USER}/vae-rt")[mf.CARD].decode()).data.eval_results
    assert [(e.metric_type, e.metric_value) for e in ModelCard(files[mf.CARD].decode()).data.eval_results] == [
        (e.metric_type, e.metric_value) for e in original
    ]
    local = load_file(roundtrip.out / "vae-local.safetensors")["x"]
    torch.testing.assert_close(load_file(roundtrip.out / "vae-saved.safetensors")["x"], local, rtol=0, atol=0)


def test_push_to_hub_needs_a_lasting_folder_and_never_saves_over_another_model(vae_pipeline, trained_vae_dir, tmp_path):
    with pytest.raises(UserInputError, match="pass `folder=`"):
        vae_pipeline.push_to_hub(f"{USER}/x")  # built in memory: no folder of its own
    with pytest.raises(UserInputError, match="other weights"):  # nothing is sent: the folder check comes first
        vae_pipeline.push_to_hub(f"{USER}/x", folder=_copy(trained_vae_dir, tmp_path / "other"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(UserInputError, match="holds no hubgen model"):
        vae_pipeline.save_pretrained(tmp_path / "notes", push_to_hub=True, repo_id=f"{USER}/x")
    with pytest.raises(UserInputError, match="push options"):
        vae_pipeline.save_pretrained(tmp_path / "y", private=True)
    with pytest.raises(UserInputError, match="takes"):
        vae_pipeline.push_to_hub(f"{USER}/x", folder=tmp_path / "z", variant="fp16")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine" and not (tmp_path / "z").exists()


# -- the card names the repo ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_the_pushed_card_names_the_repo_in_every_command_and_verify_passes(roundtrip, hub, name):
    _ok(roundtrip, name)
    repo = f"{USER}/{name}-rt"
    text = ModelCard(hub.files(repo)[mf.CARD].decode()).text
    recorded = mf.training_record(roundtrip.folders[name]).get("command", "")
    usage = re.compile(r"\s*(hubgen (sample|verify|eval|demo|space|train|push) |pipe = |.*from_pretrained\()")
    commands = [line.strip() for line in text.splitlines() if usage.match(line) and line.strip() != recorded]
    kinds = {line.split()[1] for line in commands if line.startswith("hubgen ")}
    assert {"sample", "verify", "eval", "demo", "train"} <= kinds, commands
    for line in commands:
        assert repo in line, f"a command of the card does not name {repo}: {line}"
    assert str(roundtrip.tmp) not in text.replace(recorded, "")  # no local folder of the author's
    assert 'pip install "hubgen' in text
    family_module = hubgen.get_family(name).pipeline_class.partition(":")[0]
    stock = roundtrip.loaded[name]["diffusers_class"].startswith("diffusers.")
    assert ("needs hubgen installed" in text) is not stock and (f"import {family_module}" in text) is not stock
    assert roundtrip.loaded[name]["verify_code"] == 0  # `hubgen verify REPO_ID` on the pushed repo


def test_hubgen_eval_of_a_repo_id_evaluates_a_local_copy(roundtrip, hub, tmp_path):
    _ok(roundtrip, "vae")
    repo = f"{USER}/vae-rt"
    card = ModelCard(hub.files(repo)[mf.CARD].decode()).text
    line = next(x for x in card.splitlines() if x.startswith(f"hubgen eval {repo}"))
    env = _env(hub, tmp_path / "home")
    out = subprocess.run([sys.executable, "-m", "hubgen", *shlex.split(line)[1:]], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    copy = tmp_path / "vae-rt"
    assert mf.weights_sha256(copy) == mf.weights_sha256(roundtrip.folders["vae"])
    assert mf.eval_results(copy)["metrics"] == mf.eval_results(roundtrip.folders["vae"])["metrics"]


# -- fine-tuning -----------------------------------------------------------------------------------------------------


# Batch-norm statistics follow the training batches whatever the learning rate: not compared.
RUNNING_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def _close_to(folder: Path, base: Path, atol: float) -> None:
    """Every weight of the base model's components is in `folder`, within `atol` (a few steps at a tiny rate)."""
    for weights in sorted(base.glob("*/*.safetensors")):
        theirs, ours = load_file(weights), load_file(folder / weights.relative_to(base))
        assert theirs.keys() == ours.keys()
        for key in [k for k in theirs if not k.endswith(RUNNING_STATISTICS)]:
            torch.testing.assert_close(ours[key].float(), theirs[key].float(), rtol=0, atol=atol)


def test_fine_tune_from_a_pushed_repo_records_the_base_model_and_pushes(roundtrip, hub, tmp_path):
    _ok(roundtrip, "vae")
    repo, env, out = f"{USER}/vae-rt", _env(hub, tmp_path / "home"), tmp_path / "vae-ft"
    train = _hubgen(env, "train", "vae", "--pretrained_model_name_or_path", repo, "--dataset", "digits",
                    "--output_dir", out, "--max_train_steps", "2", "--learning_rate", "1e-9", "--report_to", "none",
                    "--eval_num_images", "8", "--eval_k", "2", "--eval_num_samples", "0")  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    record = mf.training_record(out)
    assert record["base_model"] == repo
    assert record["base_model_weights_sha256"] == mf.weights_sha256(roundtrip.folders["vae"])
    _close_to(out, roundtrip.folders["vae"], atol=1e-6)  # it started from the pushed weights
    pushed = _hubgen(env, "push", out, f"{USER}/vae-ft")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    card = ModelCard(hub.files(f"{USER}/vae-ft")[mf.CARD].decode())
    assert card.data.base_model == repo and card.data.base_model_relation == "finetune"
    assert f"Fine-tuned from [`{repo}`]({hub.endpoint}/{repo})" in card.text
    # an option that contradicts the pushed architecture is refused before anything is written
    bad = _hubgen(env, "train", "vae", "--pretrained_model_name_or_path", repo, "--latent_dim", "3",
                  "--output_dir", tmp_path / "bad")  # fmt: skip
    assert bad.returncode == 2 and "--latent_dim 3" in bad.stderr and "pretrained model has" in bad.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_fine_tunes_from_a_model_folder(tiny_models, tmp_path, name):
    """The family's smoke run, started from its tiny model: the architecture comes from the model (its options
    agree), every published component starts from the model's weights, the record names the base model."""
    from hubgen.cli import main

    family = hubgen.get_family(name)
    base, out = tiny_models[name], tmp_path / f"{name}-ft"
    argv = [
        "train",
        name,
        "--dataset",
        "digits",
        "--output_dir",
        str(out),
        "--seed",
        "1",
        *shlex.split(family.smoke_test),
        "--pretrained_model_name_or_path",
        str(base),
        "--learning_rate",
        "1e-9",
        # EM has no learning rate (each iteration re-estimates every parameter): the mixture's gradient fit at a
        # tiny rate shows where its fine-tune starts
        *(["--fit", "gradient"] if name == "mixture" else []),
    ]
    assert main(argv) == 0
    assert mf.training_record(out)["base_model"] == str(base.resolve())
    assert mf.read_model_index(out) == mf.read_model_index(base)
    _close_to(out, base, atol=1e-5)
    assert "Fine-tuned from the local model" in (out / mf.CARD).read_text()


def test_fine_tuning_refuses_another_family_and_another_image_shape(tiny_models, tmp_path):
    from hubgen.cli import main

    vae = str(tiny_models["vae"])
    other = next(f.name for f in list_families() if f.pipeline_class_name != "VAEPipeline")
    assert main(["train", other, "--pretrained_model_name_or_path", vae, "--output_dir", str(tmp_path / "a")]) == 2
    assert not (tmp_path / "a").exists()
    argv = ["train", "vae", "--pretrained_model_name_or_path", vae, "--resolution", "16", "--max_train_steps", "1",
            "--output_dir", str(tmp_path / "b"), "--report_to", "none"]  # fmt: skip
    with pytest.raises(UserInputError, match="sample_size: 16 here, 8 in the pretrained model"):
        hubgen.get_family("vae").load("train")(argv[2:])  # the script itself: the CLI would exit 2
    assert not (tmp_path / "b" / mf.MODEL_INDEX).exists() and not (tmp_path / "b" / "checkpoints").exists()


# -- a Space that builds -----------------------------------------------------------------------------------------------


def _environment_without_hubgen(root: Path) -> Path:
    """A fresh venv whose only packages are this environment's dependencies, hubgen left out: a folder of links to
    every entry of this site-packages except hubgen's own (its dist-info, the editable install's finder), put on
    the venv's path by a .pth file. So it proves that the Space's requirements install hubgen (from its wheel) and
    that the app runs on what they install; the other packages are not re-downloaded (no network here)."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    deps = root / "deps"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if entry.name.lower().startswith(("hubgen", "__editable__")) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    found = subprocess.run([str(venv / "bin" / "python"), "-c", where], check=True, capture_output=True, text=True)
    target = Path(found.stdout.strip())
    (target / "deps.pth").write_text(f"{deps}\n")
    return venv


def test_a_generated_space_installs_hubgen_from_its_wheel_and_builds_its_demo(roundtrip, hub, tmp_path):
    _ok(roundtrip, "vae")
    repo, space, out = f"{USER}/vae-rt", f"{USER}/vae-rt-demo", tmp_path / "space"
    env = _env(hub, tmp_path / "home")
    created = _hubgen(env, "space", "create", repo, "--out", out, "--push", "--space_id", space)
    env = _env(hub, tmp_path / "home", PYTHONPATH="")  # from here on: nothing of the source tree
    assert created.returncode == 0, created.stderr[-3000:]
    wheel = f"hubgen-{hubgen.__version__}-py3-none-any.whl"
    assert (out / wheel).is_file() and wheel in hub.files(space, repo_type="space")
    requirements = (out / "requirements.txt").read_text()
    assert f"hubgen @ {hub.endpoint}/spaces/{space}/resolve/main/{wheel}" in requirements.splitlines()
    assert "transformers>=5.0" in requirements.splitlines()  # hubgen's own pins
    assert not [line for line in requirements.splitlines() if line.startswith("gradio")]  # preinstalled
    venv = _environment_without_hubgen(tmp_path)
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import hubgen"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'hubgen'" in probe.stderr  # none before the requirements
    install = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-cache-dir",
                    "--disable-pip-version-check", "-r", str(out / "requirements.txt")], env)  # fmt: skip
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    script = ("import app, hubgen; print(type(app.demo).__module__ + '.' + type(app.demo).__name__); "
              "print(hubgen.__file__); print(app.model); print(repr(app.demo.title))")  # fmt: skip
    built = subprocess.run([python, "-c", script], env=dict(env, HUBGEN_MODEL=repo), cwd=out, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    demo_class, module_file, model, title = built.stdout.splitlines()[-4:]
    assert demo_class == "gradio.blocks.Blocks" and model == repo
    assert title != repr("hubgen model demo")  # the family's demo, not the page saying the model could not load
    assert Path(module_file).resolve().is_relative_to(venv.resolve())  # the wheel's hubgen, not the source tree


def test_the_repository_spaces_take_their_pins_and_sdk_version_from_the_installed_packages():
    import gradio
    from huggingface_hub import SpaceCard

    from hubgen.space_requirements import REPO_SPACE_LINE, space_requirements

    for folder in sorted(Path(__file__).resolve().parents[1].joinpath("spaces").iterdir()):
        assert (folder / "requirements.txt").read_text() == space_requirements(REPO_SPACE_LINE), folder
        assert SpaceCard.load(folder / "README.md").data.sdk_version == gradio.__version__, folder


# -- weights fingerprints ----------------------------------------------------------------------------------------------


def test_weights_sha256_is_one_digest_of_the_weight_files(trained_vae_dir, tmp_path):
    import hashlib

    folder = _copy(trained_vae_dir, tmp_path / "m")
    files = sorted(p for p in folder.rglob("*.safetensors"))
    expected = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        expected.update(f"{path.relative_to(folder).as_posix()}\0{len(data)}\0".encode() + data)
    assert mf.weights_sha256(folder) == expected.hexdigest()
    (folder / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-1" / "model_vae.safetensors").write_bytes(b"not part of the model")
    assert mf.weights_sha256(folder) == expected.hexdigest()
    next(iter(files)).write_bytes(next(iter(files)).read_bytes() + b" ")
    assert mf.weights_sha256(folder) != expected.hexdigest()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no .safetensors"):
        mf.weights_sha256(tmp_path / "empty")


def test_space_update_gives_a_repository_space_the_wheel_and_the_installed_sdk_version(tmp_path, monkeypatch):
    from huggingface_hub import SpaceCard

    from hubgen.publish import update_space

    folder = Path(shutil.copytree(Path(__file__).resolve().parents[1] / "spaces" / "model", tmp_path / "model"))
    card = SpaceCard.load(folder / "README.md")
    card.data.sdk_version = "5.0.0"
    card.save(folder / "README.md")
    wheel = tmp_path / "dist" / f"hubgen-{hubgen.__version__}-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"a built hubgen wheel")
    monkeypatch.setenv("HUBGEN_WHEEL", str(wheel))
    update_space(folder, "me/hubgen-demo")
    lines = (folder / "requirements.txt").read_text().splitlines()
    assert f"hubgen @ https://huggingface.co/spaces/me/hubgen-demo/resolve/main/{wheel.name}" in lines
    assert (folder / wheel.name).read_bytes() == wheel.read_bytes()
    import gradio

    assert SpaceCard.load(folder / "README.md").data.sdk_version == gradio.__version__
    update_space(folder, "me/hubgen-demo", hubgen_requirement="hubgen @ git+https://example.org/hubgen@v0.1.0")
    assert "hubgen @ git+https://example.org/hubgen@v0.1.0" in (folder / "requirements.txt").read_text().splitlines()
    assert not list(folder.glob("*.whl"))  # the wheel goes when the Space installs hubgen from elsewhere
    with pytest.raises(UserInputError, match="hubgen_requirement"):
        update_space(folder, "me/hubgen-demo", hubgen_requirement="torch")
    monkeypatch.setenv("HUBGEN_WHEEL", str(tmp_path / "dist" / "other.zip"))
    with pytest.raises(UserInputError, match="HUBGEN_WHEEL"):
        update_space(folder, "me/hubgen-demo")


@pytest.mark.parametrize("value", ["WS/nowhere", "WS/notes", "WS/notes/todo.txt", "not a repo id", "a/b/c"])
def test_a_bad_pretrained_model_is_refused_before_anything_is_written(tmp_path, capsys, value):
    from hubgen.cli import main

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    value = value.replace("WS", str(tmp_path))
    out = tmp_path / "out"
    assert main(["train", "vae", "--pretrained_model_name_or_path", value, "--output_dir", str(out)]) == 2
    assert "--pretrained_model_name_or_path" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_the_recorded_family_options_are_the_defaults_and_contradictions_are_named(tmp_path):
    """apply_pretrained on a parser of the common options plus two model options and one of its own: the family's
    options come from the recorded command unless given; a model option given with another value is refused, except
    where the recorded value is a path of the author's machine that does not exist here."""
    import argparse

    from hubgen import finetune
    from hubgen import training as tr

    def parser():
        p = argparse.ArgumentParser(prog="hubgen train mine")
        _, model, opt, _ = tr.add_common_arguments(p, batch_size=8, learning_rate=1e-3, num_epochs=1)
        model.add_argument("--width", type=int, default=16)
        model.add_argument("--encoder", default=None)
        opt.add_argument("--beta", type=float, default=1.0)
        return p

    base = tmp_path / "base"
    base.mkdir()
    (base / mf.MODEL_INDEX).write_text(json.dumps({"_class_name": "MinePipeline"}))
    command = "hubgen train mine --output_dir /a/b --width 64 --beta 0.5 --learning_rate 0.1 --encoder /gone/enc"
    mf.write_json(base / mf.TRAINING_RECORD, {"command": command})

    def apply(*argv):
        p = parser()
        argv = ["--output_dir", str(tmp_path / "out"), "--pretrained_model_name_or_path", str(base), *argv]
        args = p.parse_args(argv)
        finetune.apply_pretrained(p, args, argv)
        return args

    args = apply()
    assert (args.width, args.beta, args.encoder) == (64, 0.5, "/gone/enc")  # the family's options: recorded
    assert args.learning_rate == 1e-3 and args.output_dir == str(tmp_path / "out")  # the common ones: this run's
    assert apply("--beta", "2", "--width", "64").beta == 2.0  # an option of its own: the user's
    assert apply("--encoder", str(tmp_path)).encoder == str(tmp_path)  # the author's path is not here: the user's
    with pytest.raises(UserInputError, match=r"--width 32 \(the pretrained model has 64\)"):
        apply("--width", "32")


def test_diffusers_resolves_hubgen_pipelines_by_name_and_keeps_its_own(tiny_models):
    import diffusers
    from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES

    from hubgen.diffusers_loading import needs_hubgen, register_with_diffusers

    for family in list_families():
        pipeline_class = family.load("pipeline_class")
        index = mf.read_model_index(tiny_models[family.name])
        own = getattr(diffusers, pipeline_class.__name__)
        # the family's class, or diffusers' own class of that name (DDPM), which stock diffusers loads by itself
        assert own is pipeline_class or (own.__module__.startswith("diffusers.") and not needs_hubgen(index))
        libraries = [v[0] for v in index.values() if isinstance(v, list) and v and v[0] is not None]
        assert all(lib in ("diffusers", "transformers") or lib in LOADABLE_CLASSES for lib in libraries)
        assert needs_hubgen(index) is (own is pipeline_class or any(lib.startswith("hubgen") for lib in libraries))
    vae = hubgen.get_family("vae").load("pipeline_class")
    copy = type("VAEPipeline", (vae,), {})  # a subclass of the same name never replaces the family's class
    assert register_with_diffusers(copy) is False and diffusers.VAEPipeline is vae

"""Publishing to a loopback Hugging Face Hub (tests/fake_hub.py): push, load by repo id (online, then offline with
HF_HUB_OFFLINE=1), verify, Spaces, list_models, and the failure paths.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, and this test session is
offline (conftest.py), so every client runs in a subprocess with its own environment: light `hubgen push`
processes (no torch), plus one online and one offline process (tests/publish_client.py) that serve every
family. The families are the registry's (`hubgen.registry.list_families()`, the plugin `pixels` included), as
in tests/test_family_contract.py: each one's model is the session's tiny smoke-test model (conftest.py
`tiny_models`) and its sampling call is derived from its declared sample options, so a family registered
through the entry point is pushed, loaded, verified and given a Space here without naming it. Tests of one
special scenario (a branch, a pull request, a rejected card) use the VAE.
"""

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
import yaml
from conftest import free_port
from fake_hub import FakeHub
from huggingface_hub import ModelCard, SpaceCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from safetensors.torch import load_file, save_file

import hubgen
from hubgen import model_folder as mf
from hubgen.hub import render_card
from hubgen.registry import list_families

TOKEN = "hf_LoopbackTestToken_7c1e9a0d5b4f"  # searched for in every output and written file
USER = "alice"
CLIENT = Path(__file__).with_name("publish_client.py")


# -- the families: every registered one -----------------------------------------------------------------------

FAMILIES = [family.name for family in list_families()]  # the built-in families and the plugin `pixels`
PROMPTS = ["a handwritten seven", "the number 3"]


def _build(tiny_models, name: str, tmp: Path) -> Path:
    """The session's tiny model of the family (conftest.py: its `smoke_test` run, with an evaluation), copied
    without checkpoints/: pushing re-renders the copy's card for its repo id."""
    folder = Path(shutil.copytree(tiny_models[name], tmp / name, ignore=_no_checkpoints))
    if not (folder / "logs").is_dir():  # smoke runs log to tensorboard by default; every push must leave logs/
        (folder / "logs").mkdir()
        (folder / "logs" / "events.txt").write_text("a training log that stays local\n")
    return folder


@functools.cache
def _sample(name: str) -> dict:
    """The sampling call of the family, from its declared sample options only: 4 images (a prompt option gets two
    prompts with 2 images each, diffusers' num_images_per_prompt), 5 steps where it declares num_inference_steps,
    every other option at the pipeline's default; `seed` seeds the generator."""
    family = hubgen.get_family(name)
    values = {}
    for option in family.sample_options:
        if option.kind == "prompt":
            values[option.name] = PROMPTS
        elif option.kind == "int" and option.name == "num_inference_steps":
            values[option.name] = 5
    call = family.sample_call(4, values)
    if "num_images_per_prompt" in call:
        call["num_images_per_prompt"] = 4 // len(PROMPTS)
    return {**call, "seed": 3}


# -- helpers ---------------------------------------------------------------------------------------------------


def _no_checkpoints(folder, names):
    return [n for n in names if n == "checkpoints"]


def _env(hub: FakeHub | None, home: Path, endpoint: str | None = None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=endpoint or hub.endpoint,
        HF_TOKEN=TOKEN,
        HF_HOME=str(home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_ANALYTICS_ENABLED="False",
        # the repo, then what conftest.py put there (the plugin family's package and its dist-info)
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
        # idle OpenMP threads sleep instead of spinning: the same results, but no thrashing on a busy machine
        OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def _run(argv: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert TOKEN not in out.stdout + out.stderr, "the token was printed"
    return out


def _hubgen(env: dict, *args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "hubgen", *map(str, args)], env, timeout=120)


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@functools.cache
def _samples_of(folder: str, sample: str) -> torch.Tensor:
    sample = json.loads(sample)
    kwargs = {k: v for k, v in sample.items() if k != "seed"}
    pipe = hubgen.load_pipeline(folder)
    return pipe(**kwargs, generator=torch.Generator().manual_seed(sample["seed"]), output_type="pt").images.float()


def _local_samples(folder: Path, name: str = "vae") -> torch.Tensor:
    """The samples of the local folder, drawn as the client draws them (the family's `_sample` call)."""
    return _samples_of(str(folder), json.dumps(_sample(name)))


def _perturbed_copy(folder: Path, target: Path) -> Path:
    """The same model with every weight nudged: a different model to push to a branch or a pull request."""
    shutil.copytree(folder, target, ignore=_no_checkpoints)
    for weights in target.rglob("*.safetensors"):
        tensors = load_file(weights)
        save_file({k: v + 0.05 if v.is_floating_point() else v for k, v in tensors.items()}, weights)
    return target


# -- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub():
    server = FakeHub({TOKEN: USER}, orgs={USER: ["hubgen-org"]}).start()
    yield server
    server.stop()


@dataclass
class Published:
    folders: dict  # family -> local model folder
    pushes: dict  # (family, "inline" | "lfs" | "repush") -> (CompletedProcess, requests seen, history before)
    online: dict  # publish_client results
    offline: dict
    client_out: Path
    offline_requests: list
    tmp: Path
    extra: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def published(hub, tiny_models, tmp_path_factory):
    """Every registered family pushed twice (inline files, then weights through the LFS batch path) and once
    more unchanged; the VAE also to a branch; then the online and the offline client runs."""
    tmp = tmp_path_factory.mktemp("publish")
    env = _env(hub, tmp / "hf_home_push")
    folders, pushes, spec, broken = {}, {}, {"families": {}}, {}
    for name in FAMILIES:
        try:
            folder = folders[name] = _build(tiny_models, name, tmp / "models")
        except (Exception, SystemExit) as e:  # one family's smoke run failing fails that family's tests only
            broken[name] = f"{type(e).__name__}: {e}"
            continue
        for kind, patterns in (("inline", ()), ("lfs", ("*.safetensors",)), ("repush", ("*.safetensors",))):
            repo = f"{USER}/{name}-{'inline' if kind == 'inline' else 'lfs'}"
            hub.lfs_patterns = patterns
            start, before = len(hub.requests), hub.history(repo) if kind == "repush" else None
            out = _hubgen(env, "push", folder, repo)
            assert out.returncode == 0, out.stderr
            pushes[(name, kind)] = (out, hub.requests[start:], before)
        tampered = Path(shutil.copytree(folder, tmp / "tampered" / name, ignore=_no_checkpoints))
        card = ModelCard.load(tampered / "README.md")
        card.data.eval_results[0].metric_value = round(card.data.eval_results[0].metric_value * 1.02 + 0.5, 4)
        card.save(tampered / "README.md")
        spec["families"][name] = {
            "inline": f"{USER}/{name}-inline",
            "lfs": f"{USER}/{name}-lfs",
            "sample": _sample(name),
            "tampered": str(tampered),
            "space_out": str(tmp / "spaces" / name),
            "space_id": f"{USER}/{name}-demo",
            "revision": None,
        }
    extra = {}
    if "vae" in folders:  # a different model on a branch of the LFS repo
        dev = _perturbed_copy(folders["vae"], tmp / "vae-dev")
        start, before = len(hub.requests), hub.history(f"{USER}/vae-lfs")
        out = _hubgen(env, "push", dev, f"{USER}/vae-lfs", "--revision", "dev", "--commit-message", "a nudged model")
        assert out.returncode == 0, out.stderr
        extra["dev"] = (dev, out, before)
        spec["families"]["vae"]["revision"] = [f"{USER}/vae-lfs", "dev"]
    (tmp / "spec.json").write_text(json.dumps(spec))
    client_env = _env(hub, tmp / "hf_home_client")
    out = _run([sys.executable, str(CLIENT), "online", tmp / "spec.json", tmp / "client"], client_env)
    assert out.returncode == 0, out.stderr[-3000:]
    online = json.loads((tmp / "client" / "results.json").read_text())
    start = len(hub.requests)
    offline_env = dict(client_env, HF_HUB_OFFLINE="1")
    out = _run([sys.executable, str(CLIENT), "offline", tmp / "spec.json", tmp / "client"], offline_env)
    assert out.returncode == 0, out.stderr[-3000:]
    offline = json.loads((tmp / "client" / "results.json").read_text())
    extra["broken"] = broken
    return Published(folders, pushes, online, offline, tmp / "client", hub.requests[start:], tmp, extra)


def _published(published, name) -> Path:
    """The family's pushed folder; fails on an error in its own part (its smoke run or its client run)."""
    if name in published.extra["broken"]:
        pytest.fail(f"building a tiny {name} model failed: {published.extra['broken'][name]}")
    for run in (published.online, published.offline):
        if "error" in run.get(name, {}):
            pytest.fail(f"the {name} client run failed:\n{run[name]['error']}")
    return published.folders[name]


# -- push and load ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_push_then_load_by_repo_id_gives_identical_samples(published, hub, name):
    folder = _published(published, name)
    out, requests, _ = published.pushes[(name, "inline")]
    repo = f"{USER}/{name}-inline"
    assert f"{hub.endpoint}/{repo}" in out.stdout
    assert [r[1:3] for r in requests if "/commit/" in r[2]] == [("POST", f"/api/models/{repo}/commit/main")]
    assert not [r for r in requests if "lfs" in r[2] or r[0] == "storage"]  # every file went inline
    assert len(hub.history(repo)) == 2  # the Hub's initial commit + ONE upload commit
    # the Hub holds the folder's model files byte for byte (not checkpoints/ or logs/), and the card rendered
    # for this repo (the folder was pushed to a second repo since, which re-rendered its card for that one)
    files = hub.files(repo)
    assert files.pop("README.md").decode() == str(render_card(folder, repo_id=repo, save=False))
    on_hub = {p: hashlib.sha256(b).hexdigest() for p, b in files.items() if p != ".gitattributes"}
    local = _snapshot(folder)
    assert on_hub == {
        p: h
        for p, h in local.items()
        if p not in ("README.md", "hubgen_run.json") and not p.startswith(("checkpoints/", "logs/"))
    }
    assert any(p.startswith("logs/") for p in local)  # the training logs stay local
    assert "hubgen_run.json" in local  # and so does the run marker
    expected = _local_samples(folder, name)
    got = load_file(published.client_out / f"{name}-inline.safetensors")["x"]
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_weights_go_through_the_lfs_batch_path(published, hub, name):
    folder = _published(published, name)
    _, requests, _ = published.pushes[(name, "lfs")]
    repo = f"{USER}/{name}-lfs"
    weights = [p for p in hub.files(repo) if p.endswith(".safetensors")]
    assert weights
    tree = hub.repos[("model", repo)].commits[hub.repos[("model", repo)].refs["main"]].tree
    assert all(tree[p].lfs_sha256 and tree[p].content is None for p in weights)
    assert any(r[2] == f"/{repo}.git/info/lfs/objects/batch" for r in requests)
    assert any(r[0] == "storage" and r[1] == "PUT" for r in requests)
    assert any(r[2] == f"/{repo}.git/info/lfs/objects/verify" for r in requests)
    assert published.online[name]["lfs_class"] == hubgen.get_family(name).pipeline_class_name
    got = load_file(published.client_out / f"{name}-lfs.safetensors")["x"]
    torch.testing.assert_close(got, _local_samples(folder, name), rtol=0, atol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_pushing_the_same_folder_again_makes_no_commit(published, hub, name):
    _published(published, name)
    out, requests, before = published.pushes[(name, "repush")]
    assert hub.history(f"{USER}/{name}-lfs", ref="main") == before
    assert not [r for r in requests if "/commit/" in r[2] or r[0] == "storage"]
    assert "up to date" in out.stdout and "no new commit" in out.stdout


@pytest.mark.parametrize("name", FAMILIES)
def test_loads_offline_from_the_hub_cache(published, name):
    folder = _published(published, name)
    expected = _local_samples(folder, name)
    for what in ("inline", "lfs"):
        got = load_file(published.client_out / f"{name}-offline-{what}.safetensors")["x"]
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert published.offline_requests == []  # HF_HUB_OFFLINE=1: not one request
    assert "never-pushed" in published.offline["_uncached"]  # an uncached repo fails at once


def test_a_branch_holds_its_own_model_and_loads_by_revision(published, hub):
    _published(published, "vae")
    dev, out, main_before = published.extra["dev"]
    repo = f"{USER}/vae-lfs"
    assert hub.history(repo, ref="main") == main_before  # main untouched
    history = hub.history(repo, ref="dev")
    assert history[1:] == main_before and hub.repos[("model", repo)].commits[history[0]].title == "a nudged model"
    assert f"{repo}/tree/dev" in out.stdout
    nudged = _local_samples(dev)
    for what in ("revision", "offline-revision"):
        got = load_file(published.client_out / f"vae-{what}.safetensors")["x"]
        torch.testing.assert_close(got, nudged, rtol=0, atol=0)
    assert not torch.equal(nudged, _local_samples(published.folders["vae"]))


def test_create_pr_opens_a_pull_request_and_leaves_main(published, hub, tmp_path):
    _published(published, "vae")
    repo = f"{USER}/vae-inline"
    before = hub.history(repo)
    nudged = _perturbed_copy(published.folders["vae"], tmp_path / "nudged")
    out = _hubgen(_env(hub, tmp_path / "home"), "push", nudged, repo, "--create-pr")
    assert out.returncode == 0, out.stderr
    assert hub.history(repo) == before
    assert hub.history(repo, ref="refs/pr/1")[1:] == before
    assert f"{hub.endpoint}/{repo}/discussions/1" in out.stdout


# -- what the Hub shows ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_the_card_on_the_hub_names_the_repo_and_carries_its_figures(published, hub, name):
    _published(published, name)
    repo = f"{USER}/{name}-lfs"
    files = hub.files(repo)
    card = ModelCard(files["README.md"].decode())
    data = card.data.to_dict()
    assert data["library_name"] == "hubgen" and data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == hubgen.get_family(name).pipeline_tag
    assert {"hubgen", name} <= set(data["tags"])
    assert any(f'{load}("{repo}")' in card.text for load in (".from_pretrained", "load_pipeline")), "usage snippet"
    model_name, evals = model_index_to_eval_results(data["model-index"])
    assert model_name == repo and evals
    # the same figures as .eval_results/*.yaml (huggingface_hub EvalResultEntry), as the Hub parses them back
    from huggingface_hub import parse_eval_result_entries

    entries = parse_eval_result_entries(yaml.safe_load(files[".eval_results/hubgen.yaml"]))
    assert [(e.task_id, e.value) for e in entries] == [(e.metric_type, e.metric_value) for e in evals]
    info = hub.info(hub.repos[("model", repo)], hub.repos[("model", repo)].commits[hub.history(repo)[0]], True)
    assert [e["value"] for e in info["evalResults"]] == [e.metric_value for e in evals]


def test_list_models_finds_the_pushed_models_with_their_family_tags(published):
    listed = published.online["_list_models"]
    for name in published.folders:
        for repo in (f"{USER}/{name}-inline", f"{USER}/{name}-lfs"):
            assert {"hubgen", name} <= set(listed[repo])


@pytest.mark.parametrize("name", FAMILIES)
def test_verify_passes_on_the_published_model_and_fails_on_a_tampered_card(published, hub, name):
    folder, family = _published(published, name), hubgen.get_family(name)
    good, bad = published.online[name]["verify"], published.online[name]["verify_tampered"]
    assert good["code"] == 0, good["stdout"] + good["stderr"]
    lines = good["stdout"].splitlines()
    # the request eval_results.json recorded is re-run field for field: the same dataset, split, N, k, seeds
    recorded = mf.eval_results(folder)["request"]
    assert recorded["seed"] == 0 and {"dataset", "split", "num_images", "num_samples"} <= set(recorded)
    rerun = dataclasses.asdict(family.load("eval_request").from_record({"request": recorded}))
    assert json.loads(json.dumps(rerun)) == recorded
    assert all(f"{k}={v}" in lines[0] for k, v in rerun.items() if v is not None), lines[0]
    assert lines[-1].endswith("passed, 0 failed")
    # one line per card figure: count-based ones (as the family declares them) exact, estimates within rel 1e-4
    figures = ModelCard(hub.files(f"{USER}/{name}-lfs")["README.md"].decode()).data.eval_results
    assert len(lines[2:-1]) == len(figures)
    for line, figure in zip(lines[2:-1], figures, strict=True):
        tolerance = "exact" if family.metric(figure.metric_config).count_based else "rel 1e-04"
        assert tolerance in line and line.endswith("pass"), line
    assert bad["code"] == 1
    fails = [x for x in bad["stdout"].splitlines() if x.endswith("FAIL")]
    assert len(fails) == 1 and bad["stdout"].splitlines()[-1].endswith("1 failed")


@pytest.mark.parametrize("name", FAMILIES)
def test_space_create_push_gives_a_space_whose_app_builds_the_demo(published, hub, name):
    _published(published, name)
    result, model = published.online[name], f"{USER}/{name}-inline"
    assert result["space"]["code"] == 0, result["space"]["stderr"]
    space_id = f"{USER}/{name}-demo"
    assert hub.repos[("space", space_id)].sdk == "gradio"
    files = hub.files(space_id, repo_type="space")
    assert {"app.py", "requirements.txt", "README.md"} <= set(files)
    readme = published.tmp / f"{name}-space-README.md"
    readme.write_bytes(files["README.md"])
    card = SpaceCard.load(readme)
    assert card.data.sdk == "gradio" and card.data.sdk_version == version("gradio")
    assert card.data.app_file == "app.py" and card.data.models == [model]
    assert {"hubgen", name} <= set(card.data.tags)
    assert "HUBGEN_MODEL" in files["app.py"].decode() and "hubgen" in files["requirements.txt"].decode()
    assert result["app_model"] == model and result["app_demo"] == "gradio.blocks.Blocks"


# -- failures --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_an_unreachable_hub_fails_cleanly_and_leaves_the_folder(published, tmp_path, name):
    folder = Path(shutil.copytree(_published(published, name), tmp_path / "model"))
    before = _snapshot(folder)
    endpoint = f"http://127.0.0.1:{free_port()}"
    out = _hubgen(_env(None, tmp_path / "home", endpoint=endpoint), "push", folder, f"{USER}/{name}-x", "--private")
    assert out.returncode == 2
    message = out.stderr
    assert message.count("push failed") == 1 and "cannot reach the Hub" in message
    for needle in (f"{USER}/{name}-x", endpoint, "cause:", "ConnectError", f"{folder.resolve()} (untouched)",
                   f"retry:     hubgen push {folder} {USER}/{name}-x --private"):  # fmt: skip
        assert needle in message, needle
    assert _snapshot(folder) == before


@pytest.mark.parametrize("name", FAMILIES)
def test_pickle_files_are_refused_before_any_request(published, hub, tmp_path, name):
    folder = Path(shutil.copytree(_published(published, name), tmp_path / "model"))
    for bad in ("extra/weights.bin", "model.pt", "state.pkl"):
        (folder / bad).parent.mkdir(exist_ok=True)
        (folder / bad).write_bytes(b"not really a pickle")
    start = len(hub.requests)
    out = _hubgen(_env(hub, tmp_path / "home"), "push", folder, f"{USER}/{name}-pickled")
    assert out.returncode == 2
    assert all(bad in out.stderr for bad in ("extra/weights.bin", "model.pt", "state.pkl"))
    assert hub.requests[start:] == []  # not one request reached the Hub
    assert ("model", f"{USER}/{name}-pickled") not in hub.repos


@pytest.mark.parametrize("bad", ["vae/model.bin", "m.pt", "m.pth", "m.pkl", "m.ckpt", "vae/modeling.py", "x.npz"])
def test_check_folder_refuses_pickle_code_and_unknown_files(trained_vae_dir, tmp_path, bad):
    from hubgen.publish import check_folder

    folder = Path(shutil.copytree(trained_vae_dir, tmp_path / "m", ignore=_no_checkpoints))
    files, family = check_folder(folder)
    assert family.name == "vae" and "vae/diffusion_pytorch_model.safetensors" in files
    assert not [f for f in files if f.startswith("checkpoints/")]
    (folder / bad).write_bytes(b"x")
    with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
        check_folder(folder)


def test_check_folder_needs_model_index_and_component_configs(trained_vae_dir, tmp_path):
    from hubgen.publish import check_folder

    folder = Path(shutil.copytree(trained_vae_dir, tmp_path / "m", ignore=_no_checkpoints))
    (folder / "vae" / "config.json").unlink()
    with pytest.raises(ValueError, match="component 'vae'"):
        check_folder(folder)
    (folder / "model_index.json").unlink()
    with pytest.raises(ValueError, match="no model_index.json"):
        check_folder(folder)


@pytest.mark.parametrize(
    "case, env_change, headline, requests",
    [
        ("no token", {"HF_TOKEN": None}, "no Hub token", []),
        ("wrong token", {"HF_TOKEN": "hf_wrong"}, "the Hub rejected the token (401)", [("GET", "/api/whoami-v2")]),
        ("offline", {"HF_HUB_OFFLINE": "1"}, "offline mode is on", []),
    ],
)
def test_token_and_offline_problems_exit_2_with_the_folder_untouched(
    published, hub, tmp_path, case, env_change, headline, requests
):
    folder = Path(shutil.copytree(_published(published, "vae"), tmp_path / "model"))
    before = _snapshot(folder)
    env = {k: v for k, v in {**_env(hub, tmp_path / "empty_home"), **env_change}.items() if v is not None}
    start = len(hub.requests)
    out = _hubgen(env, "push", folder, f"{USER}/vae-{case.replace(' ', '-')}")
    assert out.returncode == 2 and headline in out.stderr and "retry:" in out.stderr
    assert "hf_wrong" not in out.stderr  # no token of any kind is echoed
    assert [r[1:3] for r in hub.requests[start:]] == requests
    assert _snapshot(folder) == before


def test_a_card_the_hub_rejects_stops_the_push_before_the_repo_exists(published, hub, tmp_path):
    folder = Path(shutil.copytree(_published(published, "vae"), tmp_path / "model"))
    info = json.loads((folder / "hubgen_training.json").read_text())
    (folder / "hubgen_training.json").write_text(json.dumps({**info, "license": "made-up-license"}))
    before = _snapshot(folder)
    start = len(hub.requests)
    out = _hubgen(_env(hub, tmp_path / "home"), "push", folder, f"{USER}/vae-badcard")
    assert out.returncode == 2 and "The Hub rejected the card" in out.stderr and "made-up-license" in out.stderr
    assert [r[2] for r in hub.requests[start:]] == ["/api/whoami-v2", "/api/validate-yaml"]  # ModelCard.validate()
    assert _snapshot(folder) == before


def test_a_client_left_on_xet_is_refused_loudly(published, hub, tmp_path):
    folder = Path(shutil.copytree(_published(published, "vae"), tmp_path / "model"))
    hub.lfs_patterns = ("*.safetensors",)
    out = _hubgen(_env(hub, tmp_path / "home", HF_HUB_DISABLE_XET=None), "push", folder, f"{USER}/vae-xet")
    assert out.returncode == 2 and "501" in out.stderr and "xet" in out.stderr.lower()


def test_private_push_is_hidden_from_anonymous_readers(published, hub, tmp_path):
    folder = Path(shutil.copytree(_published(published, "vae"), tmp_path / "model"))
    out = _hubgen(_env(hub, tmp_path / "home"), "push", folder, f"{USER}/vae-private", "--private")
    assert out.returncode == 0, out.stderr
    assert hub.repos[("model", f"{USER}/vae-private")].private
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{hub.endpoint}/{USER}/vae-private/resolve/main/model_index.json")
    assert e.value.code == 404 and e.value.headers["X-Error-Code"] == "RepoNotFound"


def test_the_token_is_written_nowhere(published, hub):
    written = [p for p in published.tmp.rglob("*") if p.is_file()]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]
    assert not [
        (repo, path) for (t, repo) in hub.repos for path, data in hub.files(repo, t).items() if TOKEN.encode() in data
    ]


def test_public_api():
    from hubgen import pipeline_utils, publish

    assert hubgen.push is publish.push and hubgen.verify is publish.verify
    assert set(publish.PICKLE_SUFFIXES) == set(pipeline_utils.PICKLE_SUFFIXES)
    with pytest.raises(ValueError, match="user/name"):
        publish.push("somewhere", "not-a-repo-id")


def test_the_gallery_lists_pushed_models_from_the_hub(published, hub, tmp_path):
    """The gallery's Hub source: list_models(filter="hubgen") with author/tag filters, cards and samples fetched
    per repo, families from model_index.json, a leaderboard row and a sample for a pushed model."""
    script = """
import json, sys
from hubgen.gallery import Catalog, PipelineCache, leaderboard_rows
from hubgen.gallery.app import sample
user = sys.argv[1]
c = Catalog(None, hub=True)
g = Catalog(None, hub=True, author=user, tags=["gan"])
grid = sample(g, PipelineCache(), user + "/gan-inline", 0, 4) if user + "/gan-inline" in g.entries else None
entries = {k: [e.family_name, e.error, bool(e.samples_path), e.headline()] for k, e in c.entries.items()}
rows = len(leaderboard_rows(list(c.entries.values())))
print(json.dumps({"all": entries, "gan": sorted(g.entries), "rows": rows, "grid": grid.size if grid else None,
                  "warnings": c.warnings}))
"""
    out = _run([sys.executable, "-c", script, USER], _env(hub, tmp_path / "hf_home_gallery"))
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    pushed = {f"{USER}/{name}-{kind}": name for name in published.folders for kind in ("inline", "lfs")}
    assert set(pushed) <= set(seen["all"]) and seen["warnings"] == []
    for repo, family in pushed.items():
        assert seen["all"][repo][:3] == [family, None, True], repo
    assert seen["gan"] == sorted(r for r, f in pushed.items() if f == "gan")
    assert seen["rows"] >= len(pushed)
    if "gan" in published.folders:
        assert seen["grid"][0] >= 64


def test_push_is_light_it_never_imports_torch(published, hub, tmp_path):
    """`hubgen push` checks the folder, renders the card and uploads without torch or diffusers (importing torch
    alone takes longer than the rest of a push)."""
    folder = Path(shutil.copytree(_published(published, "vae"), tmp_path / "model"))
    script = "import sys\nfrom hubgen.cli import main\ncode = main(sys.argv[1:])\n"
    script += "print(code, sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    out = _run([sys.executable, "-c", script, "push", folder, f"{USER}/vae-light"], _env(hub, tmp_path / "home"))
    assert out.stdout.splitlines()[-1] == "0 []", out.stdout + out.stderr

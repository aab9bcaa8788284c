"""The plugin registry, entry-point discovery, the CLI's dispatch, and the public names."""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

import hubgen
import hubgen.registry as registry
from hubgen.cli import main
from hubgen.errors import UserInputError
from hubgen.registry import EvalRequest, Family, Metric, get_family, list_families, register_family

DUMMY_CALLS = []


def dummy_train(argv):
    DUMMY_CALLS.append(argv)
    if argv == ["--crash"]:
        raise ValueError("a bug inside the family")  # not a UserInputError: the CLI must not swallow it
    if argv == ["--bad"]:
        raise UserInputError("`--bad` is not allowed")
    return 0


def _dummy(name="dummy"):
    return Family(
        name=name,
        description="a test family",
        pipeline_class="test_registry_cli:DummyPipeline",
        model_class="torch.nn:Linear",
        train="test_registry_cli:dummy_train",
        evaluate="test_registry_cli:dummy_train",
        eval_request="hubgen.registry:EvalRequest",
        build_demo="test_registry_cli:dummy_train",
        card_template="hubgen.vae:card.md",
    )


@pytest.fixture
def dummy_family():
    family = register_family(_dummy())
    yield family
    registry._FAMILIES.pop("dummy")


def test_builtin_vae_family_is_registered():
    vae = get_family("vae")
    assert vae.load("pipeline_class").__name__ == "VAEPipeline"
    assert vae.load("train").__module__ == "hubgen.vae.train_vae"
    assert vae.load("build_demo").__name__ == "build_demo"
    assert vae.load("model_class").__name__ == "VAEModel"
    assert registry.family_for_pipeline("VAEPipeline") is vae


def test_only_user_errors_become_exit_code_2(dummy_family, capsys):
    assert main(["train", "dummy", "--bad"]) == 2
    assert "`--bad` is not allowed" in capsys.readouterr().err
    with pytest.raises(ValueError, match="a bug inside the family"):  # a bug keeps its traceback
        main(["train", "dummy", "--crash"])


def test_metric_declarations_match_keys_and_format_labels():
    exact, pattern = Metric("a_b", "A (k={k})", "nll", "nats/image"), Metric("acc_*", "{label}", "accuracy", "fraction")
    assert exact.matches("a_b") and not exact.matches("a_bc")
    assert pattern.matches("acc_train_w3") and not pattern.matches("ac")
    assert get_family("vae").metric("iwae_nll_nats").bound == "IWAE-{k}"
    assert get_family("vae").metric("frechet_distance").metric_type == "frechet_distance"  # shared figures
    assert get_family("vae").metric("nope") is None


def test_eval_request_checks_its_fields_and_round_trips_through_the_record():
    with pytest.raises(UserInputError, match="`num_images` must be an integer >= 0 or None"):
        EvalRequest(num_images=-1)
    with pytest.raises(UserInputError, match="`split`"):
        EvalRequest(split="dev")
    from hubgen.vae.evaluation import VAEEvalRequest

    request = VAEEvalRequest(k=7, num_images=None, seed=3)
    import dataclasses

    assert VAEEvalRequest.from_record({"request": dataclasses.asdict(request)}) == request


def test_a_registered_family_appears_in_the_cli(dummy_family, capsys):
    assert main(["families"]) == 0
    assert "dummy" in capsys.readouterr().out
    assert main(["train", "dummy", "--anything", "1"]) == 0
    assert DUMMY_CALLS[-1] == ["--anything", "1"]


def test_registering_a_different_family_under_a_taken_name_fails(dummy_family):
    with pytest.raises(ValueError, match="already registered"):
        register_family(Family(**{**dummy_family.__dict__, "description": "other"}))
    with pytest.raises(ValueError, match="Unknown family 'nope'"):
        get_family("nope")


def test_entry_point_plugin_is_found_by_a_fresh_cli(tmp_path):
    """A third-party package declares `hubgen.families`; `hubgen families` in a new process lists it."""
    (tmp_path / "my_plugin.py").write_text(
        textwrap.dedent("""
        from hubgen.registry import Family
        FAMILY = Family(name="myflow", description="third-party flow", model_class="torch.nn:Linear",
                        pipeline_class="my_plugin:P", train="my_plugin:train", evaluate="my_plugin:train",
                        eval_request="hubgen.registry:EvalRequest", build_demo="my_plugin:train",
                        card_template="hubgen.vae:card.md")
        def train(argv):
            print("plugin trained with", argv)
            return 0
    """)
    )
    dist = tmp_path / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hubgen.families]\nmyflow = my_plugin:FAMILY\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    listed = subprocess.run([sys.executable, "-m", "hubgen", "families"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "myflow" in listed.stdout and "vae" in listed.stdout
    trained = subprocess.run(
        [sys.executable, "-m", "hubgen", "train", "myflow", "--x", "1"], env=env, capture_output=True, text=True
    )
    assert trained.returncode == 0 and "plugin trained with ['--x', '1']" in trained.stdout


def test_a_broken_plugin_warns_instead_of_crashing(tmp_path, monkeypatch):
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hubgen.families]\nbroken = no_such_module:FAMILY\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    importlib.invalidate_caches()
    with pytest.warns(UserWarning, match="skipping family plugin 'broken'"):
        names = [f.name for f in list_families()]
    assert "vae" in names and "broken" not in names


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert main(["fly"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["hubgen", "hubgen.vae", "hubgen.vae.losses", "hubgen.data", "hubgen.registry",
                                    "hubgen.model_folder", "hubgen.training", "hubgen.errors"])  # fmt: skip
def test_all_matches_the_exports(module):
    mod = importlib.import_module(module)
    assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__)
    assert len(set(mod.__all__)) == len(mod.__all__)


def test_load_pipeline_is_public():
    assert hubgen.load_pipeline.__module__ == "hubgen.hub"


def test_metrics_command_dispatches_to_the_classifier_trainer(tmp_path, capsys):
    assert main(["metrics", "train-classifier", "--dataset", "cifar10", "--output_dir", str(tmp_path / "c")]) == 2
    assert "cifar10" in capsys.readouterr().err
    assert main(["metrics", "calibrate"]) == 2


def test_demo_on_a_folder_of_model_folders_opens_the_gallery(trained_vae_dir, tmp_path, monkeypatch, capsys):
    import shutil

    import gradio as gr

    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, *a, **k: launched.append(self.title))
    shutil.copytree(trained_vae_dir, tmp_path / "models" / "vae-digits", ignore=shutil.ignore_patterns("checkpoints"))
    assert main(["demo", str(tmp_path / "models")]) == 0
    assert launched == ["hubgen model gallery"]
    (tmp_path / "empty").mkdir()
    assert main(["demo", str(tmp_path / "empty")]) == 2
    assert "neither a hubgen model folder nor a folder of model folders" in capsys.readouterr().err


def test_an_option_of_another_family_is_refused_by_eval(trained_vae_dir, capsys):
    assert main(["eval", str(trained_vae_dir), "--num_timesteps", "3"]) == 2  # a DDPM option on a VAE
    assert "unrecognized arguments: --num_timesteps" in capsys.readouterr().err
    assert main(["eval", "--help"]) == 0 and "hubgen eval FOLDER --help" in capsys.readouterr().out

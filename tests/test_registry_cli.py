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
from hubgen.registry import Family, get_family, list_families, register_family

DUMMY_CALLS = []


def dummy_train(argv):
    DUMMY_CALLS.append(argv)
    return 0


def _dummy(name="dummy"):
    return Family(
        name=name,
        description="a test family",
        model_class="torch.nn:Linear",
        pipeline_class="test_registry_cli:DummyPipeline",
        train="test_registry_cli:dummy_train",
        evaluate="test_registry_cli:dummy_train",
        build_demo="test_registry_cli:dummy_train",
        card_template="vae.md",
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
    assert registry.family_for_pipeline("VAEPipeline") is vae


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
                        build_demo="my_plugin:train", card_template="vae.md")
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


@pytest.mark.parametrize("module", ["hubgen", "hubgen.vae", "hubgen.vae.losses", "hubgen.data", "hubgen.registry"])
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

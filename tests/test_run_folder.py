"""Nothing lost: the run folder through overwrite, resume, kills and damage (issue 16, items 1-4).

Each test first builds the situation that lost or mixed data before the fix (an overwritten run's checkpoints
outranking the new run's, a save killed between its renames, a run killed before its first checkpoint, an
explicit checkpoint ignored, a damaged latest checkpoint) and then checks what the user gets now."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import tiny_vae
from safetensors.torch import load_file

import hubgen.model_folder as mf
import hubgen.training as tr
from hubgen.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ["--dataset", "digits", "--latent_dim", "2", "--hidden_dims", "16", "--eval_k", "4", "--eval_num_images", "8",
         "--eval_num_samples", "0", "--report_to", "none", "--seed", "0", "--train_batch_size", "256",
         "--sample_steps", "100"]  # fmt: skip


def _train(out, steps, *extra, every=2):
    argv = ["train", "vae", "--output_dir", str(out), "--max_train_steps", str(steps), "--checkpointing_steps",
            str(every), *SMALL, *extra]  # fmt: skip
    return main(argv)


def _weights(folder):
    return load_file(folder / "vae" / "diffusion_pytorch_model.safetensors")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _checkpoints(folder):
    return sorted(p.name for p in (folder / "checkpoints").iterdir()) if (folder / "checkpoints").is_dir() else []


class Killed(BaseException):
    """Stands for kill -9 at a scripted point: not an Exception, so no `except Exception` in hubgen catches it."""


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """6 steps in one go, a checkpoint every 2: what every interrupted, resumed or overwritten run must equal."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert _train(out, 6) == 0
    return out


# -- 1. --overwrite_output_dir starts a clean run ------------------------------------------------------------------


def test_overwrite_never_mixes_the_old_runs_checkpoints_with_the_new_ones(straight, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out, 4, every=4) == 0
    # the old run as the issue found it: a checkpoint numbered far above the new run's (checkpoint-10000 sorts
    # above checkpoint-2 and made the new run prune its own checkpoints and resume the old run)
    old = out / "checkpoints" / "checkpoint-10000"
    os.replace(out / "checkpoints" / "checkpoint-4", old)
    state = json.loads((old / "state.json").read_text())
    (old / "state.json").write_text(json.dumps({**state, "step": 10000}))
    assert _train(out, 4, "--overwrite_output_dir", "--checkpoints_total_limit", "1") == 0
    assert _checkpoints(out) == ["checkpoint-4"]  # the new run's, kept; the old run's gone
    assert not (out / mf.REPLACED_CHECKPOINTS).exists()
    capsys.readouterr()
    assert _train(out, 6, "--resume_from_checkpoint", "latest") == 0
    assert "Resumed from" in capsys.readouterr().out and _checkpoints(out) == ["checkpoint-4", "checkpoint-6"]
    assert _same(_weights(out), _weights(straight))  # the new run, continued exactly


def test_an_overwrite_killed_before_its_first_checkpoint_loses_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert _train(out, 4) == 0
    before = _weights(out)

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(tr, "restore", killed)  # after start_run (marker, checkpoints aside), before any step
    with pytest.raises(Killed):
        _train(out, 4, "--overwrite_output_dir")
    monkeypatch.undo()
    assert sorted(p.name for p in (out / mf.REPLACED_CHECKPOINTS).iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert _same(_weights(out), before)  # the old model still loads as it was
    assert _train(out, 2, "--overwrite_output_dir") == 0  # a second overwrite goes through and cleans up
    assert _checkpoints(out) == ["checkpoint-2"] and not (out / mf.REPLACED_CHECKPOINTS).exists()


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    assert _train(tmp_path / "run", 2, "--overwrite_output_dir", "--resume_from_checkpoint", "latest") == 2
    assert "pass one of them" in capsys.readouterr().err and not (tmp_path / "run").exists()


# -- 3. a run's folder is recognisable from its first second --------------------------------------------------------


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed_or_overwritten(straight, tmp_path, monkeypatch,
                                                                                 capsys):  # fmt: skip
    out = tmp_path / "run"

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(tr, "restore", killed)
    with pytest.raises(Killed):
        _train(out, 6)
    monkeypatch.undo()
    marker = json.loads((out / mf.RUN_MARKER).read_text())
    assert marker["family"] == "vae" and marker["pipeline_class"] == "VAEPipeline"
    assert marker["command"].startswith("hubgen train vae --output_dir")
    assert not (out / "checkpoints").exists() and not (out / "model_index.json").exists()
    # another family's trainer refuses it; the same family's resumes it (from step 0) or overwrites it
    assert main(["train", "flow", "--output_dir", str(out), "--dataset", "digits", "--overwrite_output_dir"]) == 2
    assert "holds a run of another model (VAEPipeline" in capsys.readouterr().err
    assert _train(out, 6, "--resume_from_checkpoint", "latest") == 0
    assert "starting from step 0" in capsys.readouterr().out
    assert _same(_weights(out), _weights(straight))
    assert mf.RUN_MARKER in mf.NOT_PUBLISHED


# -- 4. an explicit checkpoint is used or refused; a damaged latest one falls back ---------------------------------


def test_an_explicit_checkpoint_into_a_new_folder_is_used(straight, tmp_path, capsys):
    checkpoint = straight / "checkpoints" / "checkpoint-4"
    assert _train(tmp_path / "new", 6, "--resume_from_checkpoint", str(checkpoint)) == 0
    assert f"Resumed from {checkpoint} at step 4" in capsys.readouterr().out
    assert _checkpoints(tmp_path / "new") == ["checkpoint-6"]
    assert _same(_weights(tmp_path / "new"), _weights(straight))
    # one that is not a checkpoint is refused before anything is written
    assert _train(tmp_path / "other", 6, "--resume_from_checkpoint", str(tmp_path / "nowhere")) == 2
    assert "is not a hubgen checkpoint folder" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_good_one(straight, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(straight, out)
    weights = out / "checkpoints" / "checkpoint-6" / "model_vae.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated after the fact
    before = {p.name: p.read_bytes() for p in (out / "checkpoints" / "checkpoint-6").iterdir()}
    assert _train(out, 4, "--resume_from_checkpoint", str(out / "checkpoints" / "checkpoint-6")) == 2
    assert "is damaged" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (out / "checkpoints" / "checkpoint-6").iterdir()} == before
    assert _train(out, 6, "--resume_from_checkpoint", "latest") == 0
    captured = capsys.readouterr()
    assert "checkpoint-6 is damaged" in captured.err and "Resumed from" in captured.out
    assert "checkpoint-4 at step 4" in captured.out
    assert _same(_weights(out), _weights(straight))  # steps 5 and 6 again, exactly


@pytest.mark.parametrize("damage", ["state.json", "optimizer_adam.json", "missing model"])
def test_checkpoint_problem_names_the_damage(straight, tmp_path, damage):
    path = tmp_path / "checkpoint-6"
    shutil.copytree(straight / "checkpoints" / "checkpoint-6", path)
    assert tr.checkpoint_problem(path) is None
    if damage == "missing model":
        (path / "model_vae.safetensors").unlink()
        assert tr.checkpoint_problem(path) == "no model_*.safetensors"
    else:
        target = next(path.glob(damage.replace("adam", "*")))
        target.write_text(target.read_text()[:-5])
        assert "JSONDecodeError" in tr.checkpoint_problem(path)


# -- 2. the final save: at every instant the old model or the new one -------------------------------------------------


def _pipelines():
    from hubgen.vae import VAEPipeline

    old = VAEPipeline(tiny_vae(), pixel_levels=17)
    new = VAEPipeline(tiny_vae(latent_dim=3), pixel_levels=17)  # another config and other weights
    return old, new


def _loads_as(folder):
    from hubgen.hub import load_pipeline

    pipe = load_pipeline(folder)
    return {k: v.clone() for k, v in pipe.vae.state_dict().items()}


def test_a_save_killed_at_any_rename_leaves_the_old_or_the_new_model(tmp_path, monkeypatch):
    old, new = _pipelines()
    expected = {"old": dict(old.vae.state_dict()), "new": dict(new.vae.state_dict())}
    real_replace, seen = os.replace, []
    for k in range(1, 50):
        folder = tmp_path / f"kill-{k}"
        mf.save_pipeline(old, folder)
        (folder / "README.md").write_text("the card")  # not the pipeline's: never touched
        calls = {"n": 0}

        def replace(src, dst, k=k, calls=calls):
            calls["n"] += 1
            if calls["n"] == k:
                raise Killed
            return real_replace(src, dst)

        monkeypatch.setattr(mf.os, "replace", replace)
        try:
            mf.save_pipeline(new, folder)
            finished = True
        except Killed:
            finished = False
        monkeypatch.setattr(mf.os, "replace", real_replace)
        got = _loads_as(folder)  # completes a save killed after its commit
        which = [name for name, weights in expected.items() if _same(got, weights)]
        assert len(which) == 1, f"killed at rename {k}: neither the old nor the new model"
        seen.append(which[0])
        assert (folder / "README.md").read_text() == "the card"
        assert sorted(p.name for p in folder.iterdir()) == [".tmp-pipeline", "README.md", "model_index.json", "vae"] \
            if which == ["old"] else sorted(p.name for p in folder.iterdir()) == ["README.md", "model_index.json",
                                                                                "vae"]  # fmt: skip
        if finished:
            break
    # killed before the commit -> old; at or after it -> new; and the last try ran to the end
    assert seen[0] == "old" and seen[-1] == "new" and seen == sorted(seen, key=["old", "new"].index)
    assert "old" in seen and len(seen) >= 4


def test_a_real_kill_between_the_renames_of_the_final_save(tmp_path):
    """kill -9 (os._exit, no clean-up runs) in a separate process, between the renames: the old `vae` folder moved
    aside, the new one not yet in its place, the model index still the old one."""
    old, new = _pipelines()
    mf.save_pipeline(old, tmp_path / "model")
    new.save_pretrained(tmp_path / "new-source")
    script = textwrap.dedent(f"""
        import os, hubgen.model_folder as mf
        from hubgen.vae import VAEPipeline
        new = VAEPipeline.from_pretrained({str(tmp_path / "new-source")!r})
        real = os.replace
        def replace(src, dst):
            if str(src).endswith(os.path.join(".tmp-pipeline", "vae")):  # the new component, about to move in
                os._exit(9)
            return real(src, dst)
        mf.os.replace = replace
        mf.save_pipeline(new, {str(tmp_path / "model")!r})
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 9, done.stderr
    assert (tmp_path / "model" / ".hubgen-swap.json").is_file()  # killed mid-swap, after the commit
    assert not (tmp_path / "model" / "vae").exists() and (tmp_path / "model" / ".old-vae").is_dir()
    assert _same(_loads_as(tmp_path / "model"), dict(new.vae.state_dict()))
    assert not (tmp_path / "model" / ".hubgen-swap.json").exists()


# -- kill -9 during training at scripted points ---------------------------------------------------------------------

KILL_AT = {
    # the checkpoint-8 save, after its first weights file was written into the temporary folder
    "mid-checkpoint": (
        "hubgen.training",
        "save_file",
        "lambda real: lambda *a, **k: (os._exit(9) if 'checkpoint-8' in str(a[1]) else real(*a, **k))",
    ),  # fmt: skip
    # the final save, the new `vae` folder about to replace the old one (the old one already moved aside)
    "between-renames": (
        "os",
        "replace",
        "lambda real: lambda s, d: (os._exit(9) if str(s).endswith("
        "os.path.join('.tmp-pipeline', 'vae')) else real(s, d))",
    ),  # fmt: skip
    # the evaluation at the end, after the new model was saved
    "mid-evaluation": ("hubgen.vae.evaluation", "evaluate", "lambda real: lambda *a, **k: os._exit(9)"),
}


@pytest.mark.parametrize("point", sorted(KILL_AT))
def test_training_killed_at_a_scripted_point_leaves_a_loadable_folder_and_resumes_exactly(point, tmp_path):
    """A run at step 4 (the old model) resumed to step 8 and killed at `point`: the folder loads as the old model or
    the new one, and `--resume_from_checkpoint latest` then ends exactly where a straight 8-step run does."""
    straight, out = tmp_path / "straight", tmp_path / "run"
    assert _train(straight, 8, "--eval_num_images", "8", every=4) == 0
    assert _train(out, 4, "--eval_num_images", "8", every=4) == 0
    old, new = _weights(out), _weights(straight)
    module, name, wrap = KILL_AT[point]
    argv = ["train", "vae", "--output_dir", str(out), "--max_train_steps", "8", "--checkpointing_steps", "4", *SMALL,
            "--eval_num_images", "8", "--resume_from_checkpoint", "latest"]  # fmt: skip
    script = textwrap.dedent(f"""
        import importlib, os, sys
        import hubgen.vae.evaluation
        target = importlib.import_module({module!r})
        setattr(target, {name!r}, ({wrap})(getattr(target, {name!r})))
        from hubgen.cli import main
        sys.exit(main({argv!r}))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 9, done.stderr[-3000:]
    got = _loads_as(out)
    assert _same(got, old) or _same(got, new), f"killed {point}: neither the old nor the new model"
    assert _train(out, 8, "--eval_num_images", "8", "--resume_from_checkpoint", "latest", every=4) == 0
    assert _same(_weights(out), new)
    assert (
        (out / "eval_results.json").is_file() and not any(out.glob(".old-*")) and not (out / ".tmp-pipeline").exists()
    )


def test_a_full_disk_during_the_final_save_is_a_message_and_the_old_model_survives(tmp_path, monkeypatch, capsys):
    import errno

    out = tmp_path / "run"
    assert _train(out, 4) == 0
    old = _weights(out)
    real = mf.write_json

    def full(path, obj):
        if str(path).endswith(".hubgen-swap.json"):  # the final save's commit
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj)

    monkeypatch.setattr(mf, "write_json", full)
    assert _train(out, 6, "--resume_from_checkpoint", "latest") == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    monkeypatch.undo()
    assert _same(_loads_as(out), old)  # the old model, whole
    assert _train(out, 6, "--resume_from_checkpoint", "latest") == 0  # space again: the run finishes
    assert _checkpoints(out) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]

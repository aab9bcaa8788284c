"""The bad-input table (issue 16): every case through the CLI, the Python API or a demo's server function ends in
exit code 2 or a ValueError, with no traceback, a message that names the argument (or file) at fault, and every
file that existed before byte-identical afterwards (nothing new written either).

The cases are what a user mistypes or feeds by accident: every common training option with a value out of range
for every family, family options, data that is missing, truncated, corrupt or of the wrong kind, output folders
that would lose files, model folders that are damaged, and pipeline calls with impossible arguments."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hubgen.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = ("vae", "gan", "flow", "ddpm", "text2img", "pixelcnn", "mixture")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ws(tiny_models, tmp_path_factory):
    """The workspace every case runs in: the tiny model of each family, data files good and bad, a user's folder."""
    root = tmp_path_factory.mktemp("bad-input")
    for name in FAMILIES:
        shutil.copytree(tiny_models[name], root / "models" / name)
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (20, 8, 8), dtype=np.uint8)
    np.savez(data / "good.npz", x_train=good, x_test=good[:5])
    (data / "truncated.npz").write_bytes((data / "good.npz").read_bytes()[:300])
    (data / "not.npz").write_text("this is not a zip file")
    np.savez(data / "nokeys.npz", images=good)
    np.savez(data / "floats.npz", x_train=good.astype(np.float32), x_test=good[:5].astype(np.float32))
    np.savez(data / "fivech.npz", x_train=rng.integers(0, 256, (20, 8, 8, 5), dtype=np.uint8),
             x_test=rng.integers(0, 256, (5, 8, 8, 5), dtype=np.uint8))  # fmt: skip
    folder = data / "images"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    broken = data / "broken-images"
    shutil.copytree(folder, broken)
    (broken / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (data / "empty").mkdir()
    one = data / "one-image"
    one.mkdir()
    Image.fromarray(good[0]).save(one / "0.png")
    user = root / "user-notes"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    (root / "a-file").write_text("not a folder")
    bad_index = shutil.copytree(root / "models" / "vae", root / "models-bad" / "list-index")
    (bad_index / "model_index.json").write_text("[1, 2, 3]")
    return root


def _train_cases():
    cases = []
    common = [
        (["--train_batch_size", "0"], "--train_batch_size"),
        (["--train_batch_size", "-3"], "--train_batch_size"),
        (["--train_batch_size", "two"], "--train_batch_size"),
        (["--learning_rate", "-1"], "--learning_rate"),
        (["--learning_rate", "nan"], "--learning_rate"),
        (["--learning_rate", "inf"], "--learning_rate"),
        (["--num_epochs", "0"], "--num_epochs"),
        (["--max_train_steps", "0"], "--max_train_steps"),
        (["--max_train_time", "nan"], "--max_train_time"),
        (["--max_train_time", "-5"], "--max_train_time"),
        (["--lr_scheduler", "step"], "--lr_scheduler"),
        (["--lr_scheduler", "cosine", "--lr_warmup_steps", "-1"], "--lr_warmup_steps"),
        (["--lr_scheduler", "linear", "--max_train_time", "60"], "--max_train_steps"),
        (["--checkpointing_steps", "0"], "--checkpointing_steps"),
        (["--checkpoints_total_limit", "0"], "--checkpoints_total_limit"),
        (["--sample_steps", "0"], "--sample_steps"),
        (["--logging_steps", "0"], "--logging_steps"),
        (["--seed", "abc"], "--seed"),
        (["--mixed_precision", "fp8"], "--mixed_precision"),
        (["--report_to", "wandb"], "--report_to"),
        (["--eval_num_samples", "-1"], "--eval_num_samples"),
        (["--resolution", "0"], "--resolution"),
        (["--max_train_samples", "0"], "--max_train_samples"),
        (["--dataset", "DATA/nowhere.npz"], "nowhere.npz"),
        (["--dataset", "DATA/truncated.npz"], "truncated.npz"),
        (["--dataset", "DATA/not.npz"], "not.npz"),
        (["--dataset", "DATA/nokeys.npz"], "nokeys.npz"),
        (["--dataset", "DATA/fivech.npz"], "fivech.npz"),
        (["--dataset", "DATA/floats.npz"], "floats.npz"),
        (["--dataset", "DATA/empty"], "empty"),
        (["--dataset", "DATA/one-image"], "one-image"),
        (["--dataset", "DATA/broken-images"], "3.png"),
        (["--dataset", "DATA/images", "--image_column", "photo"], "photo"),
        (["--output_dir", "WS/a-file"], "a-file"),
        (["--output_dir", "WS/user-notes"], "user-notes"),
        (["--resume_from_checkpoint", "WS/nowhere"], "--resume_from_checkpoint"),
        (["--overwrite_output_dir", "--resume_from_checkpoint", "latest"], "--overwrite_output_dir"),
        (["--no_such_option", "1"], "--no_such_option"),
    ]
    for family in FAMILIES:
        for extra, needle in common:
            cases.append(pytest.param(family, extra, needle, id=f"{family}{' '.join(extra)}"))
    own = {
        "vae": [(["--latent_dim", "0"], "--latent_dim"), (["--hidden_dims", "0"], "--hidden_dims"),
                (["--kl_warmup_steps", "-1"], "--kl_warmup_steps")],
        "gan": [(["--d_learning_rate", "0"], "--d_learning_rate"), (["--extra_layers", "-1"], "--extra_layers"),
                (["--ema_decay", "1.5"], "--ema_decay")],
        "flow": [(["--logit_alpha", "0.7"], "--logit_alpha"), (["--ema_decay", "-0.1"], "--ema_decay"),
                 (["--invertibility_tolerance", "0"], "--invertibility_tolerance")],
        "ddpm": [(["--num_train_timesteps", "1"], "--num_train_timesteps"), (["--snr_gamma", "-2"], "--snr_gamma"),
                 (["--beta_start", "0.5", "--beta_end", "0.1"], "--beta_start")],
        "text2img": [(["--caption_dropout", "1.5"], "--caption_dropout"), (["--snr_gamma", "-1"], "--snr_gamma"),
                     (["--prediction_type", "epsilon"], "--prediction_type v_prediction")],
        "pixelcnn": [(["--kernel_size", "4"], "--kernel_size"), (["--hidden_channels", "0"], "--hidden_channels"),
                     (["--max_grad_norm", "0"], "--max_grad_norm")],
        "mixture": [(["--num_components", "0"], "--num_components"), (["--mean_clamp", "0.5"], "--mean_clamp"),
                    (["--num_components", "100000"], "--num_components"),
                    (["--distribution", "poisson"], "--distribution")],
    }  # fmt: skip
    for family, items in own.items():
        for extra, needle in items:
            cases.append(pytest.param(family, extra, needle, id=f"{family}{' '.join(extra)}"))
    return cases


def _fill(argv, ws):
    return [a.replace("DATA", str(ws / "data")).replace("WS", str(ws)) for a in argv]


def _check(ws, before, capsys, code, needle):
    captured = capsys.readouterr()
    assert code == 2, captured.err[-2000:]
    assert "Traceback" not in captured.err + captured.out
    assert needle in captured.err, captured.err[-2000:]
    assert _files(ws) == before


@pytest.fixture
def before(ws):
    return _files(ws)


@pytest.mark.parametrize("family, extra, needle", _train_cases())
def test_train_refuses_bad_input(ws, before, capsys, family, extra, needle):
    argv = ["train", family, "--dataset", "digits", "--output_dir", str(ws / "new-run"), "--report_to", "none"]
    code = main(_fill([*argv, *extra], ws))
    _check(ws, before, capsys, code, needle)
    assert not (ws / "new-run").exists()


def _tool_cases():
    m = "WS/models"
    cases = [
        (["eval", "WS/nowhere"], "nowhere"),
        (["eval", "WS/a-file"], "a-file"),
        (["eval", "WS/user-notes"], "user-notes"),
        (["eval", "WS/models-bad/list-index"], "model_index.json"),
        (["sample", "WS/models-bad/list-index"], "model_index.json"),
        (["card", "WS/models-bad/list-index"], "model_index.json"),
        (["demo", "WS/models-bad/list-index"], "model_index.json"),
        (["push", "WS/user-notes", "user/repo"], "user-notes"),
        (["push", f"{m}/vae", "not a repo id"], "not a repo id"),
        (["verify", "WS/nowhere"], "nowhere"),
        (["space", "create", "user/repo", "--out", f"{m}/vae"], "--out"),
        (["space", "create", "user/repo", "--out", "WS/user-notes"], "--out"),
        (["space", "create", "not-an-id", "--out", "WS/new-space"], "not-an-id"),
        (["quickstart", "--families", "nosuch"], "nosuch"),
        (["metrics", "train-classifier", "--dataset", "DATA/truncated.npz", "--output_dir", "WS/new-clf"],
         "truncated.npz"),
    ]  # fmt: skip
    cases.append((["sample", f"{m}/text2img", "--out", "WS/x.png"], "--prompt"))  # never silently unprompted
    for family in FAMILIES:
        p = ["--prompt", "a seven"] if family == "text2img" else []  # the required option given: the case's fails
        cases += [
            (["sample", f"{m}/{family}", *p, "--num_images", "0", "--out", "WS/x.png"], "--num_images"),
            (["sample", f"{m}/{family}", *p, "--num_images", "-2", "--out", "WS/x.png"], "--num_images"),
            (["sample", f"{m}/{family}", *p, "--out", "WS/no/such/dir/x.png"], "no/such/dir"),
            (["sample", f"{m}/{family}", *p, "--out", "WS/x.gif"], "x.gif"),
            (["eval", f"{m}/{family}", "--num_samples", "-1"], "num_samples"),
            (["eval", f"{m}/{family}", "--split", "dev"], "split"),
            (["eval", f"{m}/{family}", "--dataset", "DATA/truncated.npz"], "truncated.npz"),
            (["eval", f"{m}/{family}", "--dataset", "DATA/fivech.npz"], "fivech.npz"),
            (["eval", f"{m}/{family}", "--seed", "-1"], "seed"),
            (["eval", f"{m}/{family}", "--num_samples", "100000000"], "num_samples"),
            (["eval", f"{m}/{family}", "--feature_network", "WS/user-notes"], "user-notes"),
        ]
    return [pytest.param(argv, needle, id=" ".join(argv)) for argv, needle in cases]


@pytest.mark.parametrize("argv, needle", _tool_cases())
def test_tools_refuse_bad_input(ws, before, capsys, argv, needle):
    code = main(_fill(argv, ws))
    _check(ws, before, capsys, code, needle.replace("WS/", ""))


# -- the Python API ------------------------------------------------------------------------------------------------


def _api_cases():
    def pipe(family):
        from hubgen.hub import load_pipeline

        return lambda ws: load_pipeline(ws / "models" / family)

    g = torch.Generator
    cases = [
        ("vae", lambda p: p(batch_size=0), "batch_size"),
        ("vae", lambda p: p(batch_size=2, generator=[g(), g(), g()]), "generator"),
        ("vae", lambda p: p.log_likelihood(torch.full((2, 1, 8, 8), float("nan"))), "`images` holds NaN"),
        ("vae", lambda p: p.log_likelihood(torch.zeros(0, 1, 8, 8)), "`images` holds no images"),
        ("vae", lambda p: p.reconstruct(torch.full((1, 1, 8, 8), float("inf"))), "`images` holds NaN or infinite"),
        ("flow", lambda p: p.log_likelihood(torch.zeros(0, 1, 8, 8)), "`images` holds no images"),
        ("vae", lambda p: p.log_likelihood(torch.zeros(2, 3, 8, 8)), r"`images` must have shape \(batch, 1, 8, 8\)"),
        ("vae", lambda p: p.log_likelihood(torch.zeros(2, 1, 8, 8), k=0), "k"),
        ("vae", lambda p: p(output_type="gif"), "output_type"),
        ("gan", lambda p: p(batch_size=-1), "batch_size"),
        ("gan", lambda p: p(batch_size=2, output_type="tensor"), "output_type"),
        ("flow", lambda p: p(batch_size=2, temperature=-1.0), "temperature"),
        ("flow", lambda p: p(batch_size=2, temperature=float("nan")), "temperature"),
        ("flow", lambda p: p.log_likelihood(torch.zeros(2, 1, 4, 4)), "images"),
        ("ddpm", lambda p: p(batch_size=1, num_inference_steps=0), "num_inference_steps"),
        ("ddpm", lambda p: p(batch_size=1, num_inference_steps=10**6), "num_inference_steps"),
        ("ddpm", lambda p: p(batch_size=1, sampler="nosuch"), "sampler"),
        ("text2img", lambda p: p("a seven", num_inference_steps=5000), "num_inference_steps"),
        ("text2img", lambda p: p("a seven", num_inference_steps=10**6), "num_inference_steps"),
        ("text2img", lambda p: p("a seven", guidance_scale=float("inf")), "guidance_scale"),
        ("text2img", lambda p: p("a \ud800 seven", num_inference_steps=1), "prompt"),
        ("text2img", lambda p: p("", num_inference_steps=1), "prompt"),
        ("text2img", lambda p: p(["a seven"] * 2, num_images_per_prompt=0), "num_images_per_prompt"),
    ]
    return [pytest.param(family, pipe(family), call, needle, id=f"{family}-{i}")
            for i, (family, call, needle) in enumerate(cases)]  # fmt: skip


@pytest.mark.parametrize("family, load, call, needle", _api_cases())
def test_the_python_api_refuses_bad_input(ws, before, family, load, call, needle):
    p = load(ws)
    with pytest.raises(ValueError, match=needle):
        call(p)
    assert _files(ws) == before


def test_the_table_is_at_least_150_cases():
    assert len(_train_cases()) + len(_tool_cases()) + len(_api_cases()) >= 150
    json.dumps([c.id for c in _train_cases()])  # ids are plain text

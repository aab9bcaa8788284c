"""The hardware path on the CPU, for every registered family (the plugin included): bf16 autocast, fp16 refused,
two processes under `accelerate launch` against one process with the same global batch, resume in two
processes, and the speed options (gradient accumulation, channels_last, gradient checkpointing, torch.compile,
DataLoader workers, TF32).

The runs are batched to keep the suite fast: every bf16 run in one subprocess, every two-process run in one
`accelerate launch` (tests/hubgen_runs.py; a launch costs about 20 s of imports on two cores), the one-process
references in one subprocess. The tests read what the runs wrote.
"""

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import rendezvous_ports
from safetensors.torch import load_file

import hubgen
from hubgen import model_folder as mf
from hubgen.cli import main
from hubgen.registry import list_families

FAMILIES = [f.name for f in list_families()]
RUNS = Path(__file__).with_name("hubgen_runs.py")
B = 8  # images per process and batch in the two-process runs; the one-process reference takes 2 B
# The one family whose loss draws no noise: PixelCNN on the data's own levels (no binarization), so one process
# and two must agree to float rounding (the order of the gradient all-reduce's sums)
EXACT = "pixelcnn"
EXACT_OPTIONS = "--pixel_mode discrete"


def _smoke(name: str) -> str:
    return hubgen.get_family(name).smoke_test


def _offers(name: str, option: str) -> bool:
    """Whether `hubgen train NAME` has `option` (a family that trains no network offers no --mixed_precision)."""
    import contextlib
    import io

    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
        hubgen.get_family(name).load("train")(["--help"])
    return option in help_text.getvalue()


def _run(cmd: list[str], env: dict | None = None) -> dict[str, int]:
    """Run tests/hubgen_runs.py's commands; {command: exit code} (a crashed command is missing)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    codes = {}
    for line in proc.stdout.splitlines():
        if line.startswith("EXIT "):
            _, code, command = line.split(" ", 2)
            codes[command] = int(code)
    codes["_log"] = proc.stdout[-3000:] + proc.stderr[-6000:]
    return codes


def _run_state(folder: Path) -> dict:
    """The run's record in its last checkpoint: images seen, the logged rows (every step with --logging_steps 1)."""
    last = max((folder / mf.CHECKPOINTS).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((last / "state.json").read_text())["state"]["run"]


# -- bf16 for every family; fp16 on the CPU ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bf16_runs(tmp_path_factory):
    """Every family's smoke run (with its evaluation) under --mixed_precision bf16, then fp16 (refused on the CPU),
    in one fresh process (accelerate fixes the precision of a process at its first Accelerator)."""
    root = tmp_path_factory.mktemp("bf16")
    commands = {
        name: f"train {name} --dataset digits --output_dir {root / name} --report_to none --mixed_precision bf16 "
        f"{_smoke(name)}"
        for name in FAMILIES
    }
    for name in FAMILIES:  # straight to step 3, and stopped at 2 then resumed to 3 (compared bit for bit)
        options = f"{_compare_options(name, False)} --mixed_precision bf16"
        commands[f"straight-{name}"] = (
            f"train {name} {options} --max_train_steps 3 --output_dir {root / 'straight' / name}"
        )
        commands[f"stopped-{name}"] = f"train {name} {options} --output_dir {root / 'resumed' / name}"
        commands[f"resumed-{name}"] = (
            f"train {name} {options} --max_train_steps 3 --output_dir {root / 'resumed' / name} "
            "--resume_from_checkpoint latest"
        )
    hierarchical = _smoke("vae").replace("--latent_dim 2", "--latent_dims 4 2 --latent_hidden_dims 8")
    assert "--latent_dims" in hierarchical, "the VAE's smoke options no longer name --latent_dim 2"
    commands["vae-hierarchical"] = (  # an architecture option whose forward returns nested outputs
        f"train vae --dataset digits --output_dir {root / 'vae-hierarchical'} --report_to none "
        f"--mixed_precision bf16 {hierarchical}"
    )
    commands["fp16"] = (  # last: its message must be in the log's tail
        f"train vae --dataset digits --output_dir {root / 'fp16'} --mixed_precision fp16 --max_train_steps 1"
    )
    codes = _run([sys.executable, str(RUNS), *commands.values()])
    return root, {name: codes.get(command) for name, command in commands.items()}, codes["_log"]


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_trains_in_bf16_and_is_saved_and_scored_in_float32(bf16_runs, name):
    root, codes, log = bf16_runs
    if not _offers(name, "--mixed_precision"):  # refused by the parser rather than recorded as bf16 it did not use
        assert codes[name] == 2
        return
    assert codes[name] == 0, log
    folder = root / name
    record = mf.training_record(folder)
    assert record["mixed_precision"] == "bf16"
    pipe = hubgen.load_pipeline(folder)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):  # autocast keeps float32 master weights
            assert {p.dtype for p in component.parameters()} <= {torch.float32}, type(component).__name__
    metrics = mf.eval_results(folder)["metrics"]  # evaluated (some families have no figure at this size)
    assert all(math.isfinite(m["mean"]) for m in metrics.values())
    assert all(all(math.isfinite(v) for k, v in row.items() if k != "step") for row in record.get("history", []))


def test_the_hierarchical_vae_trains_in_bf16(bf16_runs):
    """Its forward nests the upper layers' output in the VAE's; accelerate's float32 cast of the outputs under
    autocast rebuilt that nested output wrongly (the latents came back as a dict and the loss raised)."""
    root, codes, log = bf16_runs
    assert codes["vae-hierarchical"] == 0, log
    folder = root / "vae-hierarchical"
    assert mf.training_record(folder)["mixed_precision"] == "bf16"
    assert hubgen.load_pipeline(folder).vae.config.latent_dims == [4, 2]  # two stochastic layers trained
    metrics = mf.eval_results(folder)["metrics"]
    assert all(math.isfinite(m["mean"]) for m in metrics.values())


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_resumes_exactly_in_bf16_and_samples_in_bf16(bf16_runs, name):
    root, codes, log = bf16_runs
    if not _offers(name, "--mixed_precision"):
        assert codes[f"straight-{name}"] == 2
        return
    assert all(codes[f"{run}-{name}"] == 0 for run in ("straight", "stopped", "resumed")), log
    straight, resumed = root / "straight" / name, root / "resumed" / name
    files = sorted(p.relative_to(straight) for p in straight.glob("*/*.safetensors"))
    assert files and files == sorted(p.relative_to(resumed) for p in resumed.glob("*/*.safetensors"))
    for file in files:  # each autocast step replayed exactly: the RNG, the data position and the optimizers restored
        a, b = load_file(straight / file), load_file(resumed / file)
        assert all(torch.equal(a[key], b[key]) for key in a), file
    family = hubgen.get_family(name)  # and the model samples with its weights in bf16
    pipe = hubgen.load_pipeline(resumed, dtype=torch.bfloat16)
    images = pipe(**family.sample_call(2, {}), generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert torch.isfinite(torch.as_tensor(images).float()).all()


def test_the_flow_in_bf16_passes_its_invertibility_check(bf16_runs):
    # the check (before every checkpoint) runs f and f^-1 in float32; it stopped a bf16 run before hubgen ran the
    # forward pass without accelerate's autocast there
    root, codes, log = bf16_runs
    assert codes["flow"] == 0, log
    assert (root / "flow" / mf.CHECKPOINTS / "checkpoint-2").is_dir()


def test_the_precision_set_by_accelerate_launch_is_used_and_recorded(tmp_path):
    # `accelerate launch --mixed_precision bf16 -m hubgen train ...` sets ACCELERATE_MIXED_PRECISION; hubgen's own
    # option defaults to it (it used to default to "no" and train in float32 without saying so)
    out = tmp_path / "vae"
    command = [sys.executable, "-m", "hubgen", "train", "vae", "--dataset", "digits", "--output_dir", str(out),
               "--report_to", "none", *_smoke("vae").split(), "--max_train_steps", "1", "--eval_num_images", "0",
               "--eval_num_samples", "0"]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ACCELERATE_MIXED_PRECISION": "bf16"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert mf.training_record(out)["mixed_precision"] == "bf16"


def test_fp16_on_the_cpu_is_refused_before_anything_is_written(bf16_runs):
    # accelerate would train fp16 on the CPU in float32 (no autocast, no GradScaler): refused, exit 2
    root, codes, log = bf16_runs
    assert codes["fp16"] == 2, log
    assert "`--mixed_precision fp16` needs a GPU" in log and "bf16" in log
    assert not (root / "fp16").exists()


# -- two processes against one --------------------------------------------------------------------------------------


def _compare_options(name: str, evaluate: bool) -> str:
    """The smoke options, 2 steps, a row logged and a checkpoint per step; the smoke evaluation or none."""
    extra = " --max_train_steps 2 --logging_steps 1 --checkpointing_steps 1"
    if not evaluate:
        extra += " --eval_num_samples 0"
        extra += " --eval_num_images 0" if name not in ("gan", "text2img") else ""  # no test-image figures there
    if name == EXACT:
        extra += f" {EXACT_OPTIONS}"
    return f"--dataset digits --report_to none {_smoke(name)}{extra}"


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    """Every family for 2 steps in two processes (B images each, then its smoke evaluation) and in one (2 B images),
    and, in two processes, every family trained straight to step 3 and stopped at step 2 and resumed to step 3."""
    root = tmp_path_factory.mktemp("ddp")
    two = [
        f"train {n} {_compare_options(n, True)} --train_batch_size {B} --output_dir {root / 'two' / n}"
        for n in FAMILIES
    ]
    for n in FAMILIES:
        options = f"{_compare_options(n, False)} --train_batch_size {B}"
        two += [f"train {n} {options} --max_train_steps 3 --output_dir {root / 'straight' / n}",
                f"train {n} {options} --output_dir {root / 'resumed' / n}",
                f"train {n} {options} --max_train_steps 3 --output_dir {root / 'resumed' / n} "
                "--resume_from_checkpoint latest"]  # fmt: skip
    one = [
        f"train {n} {_compare_options(n, False)} --train_batch_size {2 * B} --output_dir {root / 'one' / n}"
        for n in FAMILIES
    ]
    # On a machine without GPUs, `accelerate launch --cpu --num_processes 2` starts ONE process, and `--multi_gpu`
    # starts two that each see world size 1 unless ACCELERATE_USE_CPU=1 asks for the CPU (gloo) backend; the test
    # asserts the world size each run recorded.
    main_port, *ports = rendezvous_ports(1 + len(two))
    launch = "-m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no"
    launch += f" --dynamo_backend no --main_process_port {main_port}"
    env = {"OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "HUBGEN_TEST_PORTS": ",".join(map(str, ports))}
    two_codes = _run([sys.executable, *launch.split(), str(RUNS), *two], env)
    one_codes = {command: main(shlex.split(command)) for command in one}  # in this process: no imports to pay
    return root, two_codes, {**one_codes, "_log": ""}


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_two_processes_train_like_one_with_the_same_global_batch(distributed, name):
    root, two_codes, one_codes = distributed
    assert sum(code == 0 for key, code in two_codes.items() if key != "_log") == 4 * len(FAMILIES), two_codes["_log"]
    assert all(code == 0 for key, code in one_codes.items() if key != "_log"), one_codes["_log"]
    two, one = root / "two" / name, root / "one" / name
    record = mf.training_record(two)
    assert record["num_processes"] == 2 and record["steps"] == 2 and mf.training_record(one)["num_processes"] == 1
    assert _run_state(two)["images_seen"] == _run_state(one)["images_seen"] > 0  # the same global batches
    assert (two / mf.CHECKPOINTS / "checkpoint-2" / "rng_1.safetensors").is_file()  # each rank's RNG
    assert all(math.isfinite(m["mean"]) for m in mf.eval_results(two)["metrics"].values())  # evaluated
    family = hubgen.get_family(name)  # the folder loads and samples
    images = hubgen.load_pipeline(two)(**family.sample_call(2, {}), generator=torch.Generator().manual_seed(0),
                                       output_type="pt").images  # fmt: skip
    assert torch.isfinite(torch.as_tensor(images)).all()
    h2, h1 = _run_state(two)["history"], _run_state(one)["history"]
    assert [r["step"] for r in h2] == [r["step"] for r in h1] == [1, 2]
    if name == EXACT:
        # No noise in the loss: the same images give the same loss, gradient (the all-reduced mean of the two
        # halves') and Adam step. Tolerance: float32 sums in another order, relative 1e-5 on the losses; weights
        # within 1e-5, 1% of one Adam step (lr 1e-3), which a gradient from one half would miss
        for r2, r1 in zip(h2, h1, strict=True):
            assert r2["nll"] == pytest.approx(r1["nll"], rel=1e-5)
        w2, w1 = (
            load_file(next((f / mf.CHECKPOINTS / "checkpoint-2").glob("model_*.safetensors"))) for f in (two, one)
        )
        for key in w1:
            torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5)
        return
    # The first row is the loss at the initial weights (equal in both runs) over the same 2 B images; the runs differ
    # only in the noise they draw (each process draws its own binarization, eps, t, z or dequantization). Tolerance
    # 15% relative: the largest seen over seeds is 8% (text2img, 16 images and t ~ U{0..49}); a run that saw other
    # images, or half of them twice, or scaled the loss by the number of processes, is outside it.
    first = next(k for k in h1[0] if k != "step")
    assert h2[0][first] == pytest.approx(h1[0][first], rel=0.15), (h2[0], h1[0])
    assert all(math.isfinite(v) for row in h2 for k, v in row.items() if k != "step")


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_two_processes_resume_exactly(distributed, name):
    # stopped at step 2 and resumed to 3 = straight to 3, bit for bit: each rank's RNG, the data position, the
    # optimizers (the GAN's two) and the EMA copies restored
    root, two_codes, _ = distributed
    assert sum(code == 0 for key, code in two_codes.items() if key != "_log") == 4 * len(FAMILIES), two_codes["_log"]
    straight, resumed = root / "straight" / name, root / "resumed" / name
    assert mf.training_record(resumed)["num_processes"] == 2 and mf.training_record(resumed)["steps"] == 3
    files = sorted(p.relative_to(straight) for p in straight.glob("*/*.safetensors"))
    assert files and files == sorted(p.relative_to(resumed) for p in resumed.glob("*/*.safetensors"))
    for file in files:
        a, b = load_file(straight / file), load_file(resumed / file)
        for key in a:
            assert torch.equal(a[key], b[key]), f"{file}: {key}"


# -- the speed options ------------------------------------------------------------------------------------------------


SPEED_RUNS = {
    # every shared option on the smallest family, torch.compile with the eager backend (dynamo's tracing, without
    # inductor's C++ build, which takes about a minute on this CPU)
    "vae": "--channels_last --allow_tf32 --dataloader_num_workers 1 --torch_compile eager",
    "ddpm": "--gradient_checkpointing --channels_last --gradient_accumulation_steps 2",
    "text2img": "--gradient_checkpointing --gradient_accumulation_steps 2",
    "gan": "--gradient_accumulation_steps 2 --channels_last",
    "flow": "--gradient_accumulation_steps 2 --channels_last",
}


@pytest.mark.parametrize("name", list(SPEED_RUNS))
def test_the_speed_options_train_a_step(tmp_path, name):
    out = tmp_path / name
    options = f"{_smoke(name)} --max_train_steps 1 --train_batch_size {B} --eval_num_samples 0 --report_to none"
    options += " --eval_num_images 0" if name not in ("gan", "text2img") else ""
    assert main(["train", name, "--dataset", "digits", "--output_dir", str(out), *shlex.split(options),
                 *SPEED_RUNS[name].split()]) == 0  # fmt: skip
    record = mf.training_record(out)
    accumulation = 2 if "--gradient_accumulation_steps 2" in SPEED_RUNS[name] else 1
    assert record["steps"] == 1 and record["gradient_accumulation_steps"] == accumulation
    # one step saw `accumulation` batches of real images (the GAN's: in its one discriminator step)
    assert _run_state(out)["images_seen"] == B * accumulation
    assert set(record["speed_options"]) == {o.lstrip("-") for o in SPEED_RUNS[name].split() if o.startswith("--")
                                            and o != "--gradient_accumulation_steps"}  # fmt: skip
    hubgen.load_pipeline(out)  # the folder is a plain model (no compiled or autocast wrapper saved)


def test_gradient_checkpointing_is_offered_only_where_the_networks_support_it(tmp_path, capsys):
    for name in ("vae", "gan", "flow", "pixelcnn"):
        assert main(["train", name, "--output_dir", str(tmp_path / name), "--gradient_checkpointing"]) == 2
        assert "unrecognized arguments: --gradient_checkpointing" in capsys.readouterr().err
        assert not (tmp_path / name).exists()
    assert main(["train", "vae", "--output_dir", str(tmp_path / "w"), "--dataloader_num_workers", "-1"]) == 2
    assert "--dataloader_num_workers must be >= 0" in capsys.readouterr().err


def test_gradient_accumulation_of_two_batches_is_one_step_of_their_union(tmp_path):
    # PixelCNN on discrete levels draws no noise: 2 batches of B accumulated make the same step as one batch of 2 B
    base = f"--dataset digits --report_to none {_smoke(EXACT)} {EXACT_OPTIONS} --max_train_steps 2 --eval_num_images 0"
    base += " --eval_num_samples 0"
    assert main(["train", EXACT, *shlex.split(base), "--train_batch_size", str(B), "--gradient_accumulation_steps", "2",
                 "--output_dir", str(tmp_path / "acc")]) == 0  # fmt: skip
    assert main(["train", EXACT, *shlex.split(base), "--train_batch_size", str(2 * B),
                 "--output_dir", str(tmp_path / "big")]) == 0  # fmt: skip
    a, b = (load_file(next((tmp_path / f / mf.CHECKPOINTS / "checkpoint-2").glob("model_*"))) for f in ("acc", "big"))
    for key in a:  # 1% of an Adam step (lr 1e-3): float32 sums in another order; one batch's gradient misses it
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)


# -- the likelihoods under autocast -----------------------------------------------------------------------------------


def test_the_likelihoods_under_bf16_autocast_are_float32_and_near_the_float32_ones():
    """What accelerate's --mixed_precision bf16 does to a forward pass (torch.autocast), on each family's
    likelihood: the log-determinant sums, the ELBO's terms and the log-softmax come out in float32, close to a
    float32 pass (tolerances: bf16 keeps 8 bits of mantissa in the networks' convolutions and matmuls)."""
    from conftest import tiny_vae

    from hubgen.flow.losses import log_prob
    from hubgen.flow.modeling_flow import FlowModel
    from hubgen.pixelcnn.modeling_pixelcnn import value_log_probs
    from hubgen.vae.losses import elbo

    torch.manual_seed(0)
    flow = FlowModel(sample_size=8, in_channels=1, pixel_levels=17, num_levels=2, steps_per_level=1, hidden_channels=8)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    flow.initialize(x, generator=torch.Generator().manual_seed(2))
    for p in flow.parameters():  # off the identity initialization, so that the couplings contribute
        p.data.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    x, _ = flow.dequantize(x, generator=torch.Generator().manual_seed(4))
    full = log_prob(flow, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = log_prob(flow, x)
        z, log_det = flow(x)
    assert mixed.dtype == log_det.dtype == z.dtype == torch.float32
    # nats per image: 0.02 seen; 0.13 when the 1x1 convolutions ran in bf16 (and f^-1 missed f by 7e-3, not 1e-3)
    torch.testing.assert_close(mixed, full, rtol=0, atol=0.05)

    vae, xb = tiny_vae(), (torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = elbo(vae, xb, generator=torch.Generator().manual_seed(6))
    assert all(t.dtype == torch.float32 for t in terms.values())
    torch.testing.assert_close(terms["elbo"], elbo(vae, xb, generator=torch.Generator().manual_seed(6))["elbo"],
                               rtol=0, atol=0.5)  # fmt: skip

    logits = torch.randn(4, 1, 256, 8, 8, generator=torch.Generator().manual_seed(7))
    levels = torch.randint(0, 256, (4, 1, 8, 8), generator=torch.Generator().manual_seed(8))
    low = value_log_probs(logits.bfloat16(), levels)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, value_log_probs(logits.bfloat16().float(), levels))  # the same math, in float32

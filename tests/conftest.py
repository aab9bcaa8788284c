"""Test environment and tiny-model factories.

The environment is set here, before anything imports huggingface_hub, diffusers or gradio: no network,
no telemetry, and a throwaway HF_HOME / GRADIO_TEMP_DIR.
"""

import os
import socket
import subprocess
import sys
import tempfile

_TMP = tempfile.mkdtemp(prefix="hubgen-tests-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HOME"] = os.path.join(_TMP, "hf_home")
os.environ["GRADIO_TEMP_DIR"] = os.path.join(_TMP, "gradio")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning made tiny forward passes
# 100x slower. Results are unchanged (same thread count).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_NPZ = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for the loopback Hub, a launched app, or torch.distributed's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_in_two_cpu_processes(*hubgen_args: str) -> subprocess.CompletedProcess:
    """`python -m hubgen ARGS` in two processes by `accelerate launch`, one thread each.

    On a machine without GPUs, `accelerate launch --cpu --num_processes 2` starts ONE process, and `--multi_gpu`
    starts two processes that each see world size 1 unless ACCELERATE_USE_CPU=1 asks accelerate for the CPU
    (gloo) backend; the tests assert the world size the run recorded.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    launch = "-m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no"
    launch += f" --dynamo_backend no --main_process_port {free_port()}"
    cmd = [sys.executable, *launch.split(), "-m", "hubgen", *hubgen_args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of tiny models on 8x8 images: faster than two (thread barriers cost
    more than the work, badly so on a busy CPU) and steadier timings. Restored after the module. A module opts in
    with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_vae(**overrides):
    from hubgen.vae import VAEModel

    cfg = dict(sample_size=8, in_channels=1, latent_dim=2, architecture="mlp", hidden_dims=(16,))
    cfg.update(overrides)
    torch.manual_seed(0)
    return VAEModel(**cfg)


@pytest.fixture
def vae_pipeline():
    from hubgen.vae import VAEPipeline

    return VAEPipeline(tiny_vae(), pixel_levels=17)


@pytest.fixture(scope="session")
def trained_vae_dir(tmp_path_factory):
    """A VAE trained for a few steps on `digits` through the real CLI (shared by several tests)."""
    from hubgen.cli import main

    out = tmp_path_factory.mktemp("vae-run") / "model"
    code = main(
        [
            "train",
            "vae",
            "--dataset",
            "digits",
            "--output_dir",
            str(out),
            "--max_train_steps",
            "6",
            "--train_batch_size",
            "32",
            "--latent_dim",
            "2",
            "--hidden_dims",
            "32",
            "--seed",
            "0",
            "--checkpointing_steps",
            "3",
            "--sample_steps",
            "3",
            "--eval_k",
            "8",
            "--eval_num_images",
            "16",
            "--eval_num_samples",
            "50",
        ]
    )
    assert code == 0
    return out


@pytest.fixture
def mnist_npz():
    if not MNIST_NPZ.is_file():
        pytest.skip(f"{MNIST_NPZ} not present (the project does not require it)")
    return MNIST_NPZ

"""Test environment and tiny-model factories.

The environment is set here, before anything imports huggingface_hub, diffusers or gradio: no network,
no telemetry, and a throwaway HF_HOME / GRADIO_TEMP_DIR.
"""

import os
import random
import socket
import subprocess
import sys
import tempfile
import time

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

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_NPZ = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"


def _install_plugin_family() -> Path:
    """Install tests/plugin_family (the third-party family `pixels`) the way pip would, for the whole session:
    its package on sys.path (and PYTHONPATH, for the CLI in subprocesses) and a dist-info that declares its
    `hubgen.families` entry point. hubgen's core knows nothing else about it."""
    site = Path(_TMP) / "plugin-site"
    dist = site / "hubgen_pixels-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hubgen-pixels\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hubgen.families]\npixels = hubgen_pixels.family:FAMILY\n")
    source = Path(__file__).with_name("plugin_family")
    sys.path.insert(0, str(source))
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), str(source), os.environ.get("PYTHONPATH", "")])
    return site


PLUGIN_SITE = _install_plugin_family()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server started at once (the loopback Hub, a launched app)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ephemeral_low() -> int:
    """The first port the kernel hands out by itself (ephemeral ports)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def rendezvous_ports(n: int) -> list[int]:
    """n distinct ports, free now, for torch.distributed rendezvous that bind minutes later.

    Not from the kernel's ephemeral range: a port found free there (free_port) is handed out again to outgoing
    connections (gloo's own, between the two ranks), and a later TCPStore bind on it failed in CI with
    "Connection reset by peer". Below the range only an explicit bind takes a port; the draw is random so two test
    runs on one machine rarely meet."""
    low = min(_ephemeral_low(), 32768)
    ports: list[int] = []
    for port in random.Random(os.getpid() ^ time.time_ns()).sample(range(low // 2, low), 4 * n + 64):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"fewer than {n} free ports below {low}")


def handler(blocks, api_name: str):
    """A built demo's event handler by its api_name, as gradio calls it (under hubgen.demo_utils.demo_event)."""
    (fn,) = [f for f in blocks.fns.values() if f.api_name == api_name]
    return fn.fn


def event(blocks, api_name: str):
    """A built demo's event handler by its api_name. It returns what the handler returns, with each image the handler
    served as a file (hubgen.demo_utils.demo_event hands gradio PNG files) opened again as a PIL image, so the demo
    tests compare pixels."""
    from hubgen import demo_utils

    fn = handler(blocks, api_name)

    def opened(value):
        if isinstance(value, str) and Path(value).parent == demo_utils._served_dir():
            from PIL import Image

            image = Image.open(value)
            image.load()
            return image
        if isinstance(value, (tuple, list)):
            return type(value)(opened(v) for v in value)
        return value

    return lambda *args, **kwargs: opened(fn(*args, **kwargs))


def run_in_two_cpu_processes(*hubgen_args: str) -> subprocess.CompletedProcess:
    """`python -m hubgen ARGS` in two processes by `accelerate launch`, one thread each.

    On a machine without GPUs, `accelerate launch --cpu --num_processes 2` starts ONE process, and `--multi_gpu`
    starts two processes that each see world size 1 unless ACCELERATE_USE_CPU=1 asks accelerate for the CPU
    (gloo) backend; the tests assert the world size the run recorded.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    launch = "-m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no"
    launch += f" --dynamo_backend no --main_process_port {rendezvous_ports(1)[0]}"
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


class TinyModels:
    """Every registered family (the plugin included) trained once per session through the real CLI with the
    options its record declares for a smoke test (`Family.smoke_test`), on demand: a test asks for the families
    it needs, and a family is trained the first time one does. Folders are read-only for tests: copy first."""

    def __init__(self, root: Path):
        self.root, self.folders = root, {}

    def __getitem__(self, name: str) -> Path:
        if name not in self.folders:
            import shlex

            from hubgen.cli import main
            from hubgen.registry import get_family

            family = get_family(name)
            out = self.root / f"{name}-digits"
            argv = ["train", name, "--dataset", "digits", "--output_dir", str(out), "--seed", "0"]
            assert main([*argv, *shlex.split(family.smoke_test)]) == 0, f"the {name} smoke run failed"
            self.folders[name] = out
        return self.folders[name]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    return TinyModels(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def trained_vae_dir(tiny_models):
    """A VAE trained for a few steps on `digits` through the real CLI (shared by several tests)."""
    return tiny_models["vae"]


@pytest.fixture
def mnist_npz():
    if not MNIST_NPZ.is_file():
        pytest.skip(f"{MNIST_NPZ} not present (the project does not require it)")
    return MNIST_NPZ


def rgb_npz(path, size: int, n_train: int = 48, n_test: int = 16):
    """uint8 x_train / x_test (N, 3, size, size): a coloured square on a coloured background, the label its
    colour index; y_train / y_test."""
    rng = np.random.default_rng(size)
    palette = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25]], dtype=np.uint8)

    def split(n):
        x = np.empty((n, 3, size, size), np.uint8)
        y = rng.integers(0, len(palette), n)
        for i in range(n):
            x[i] = palette[(y[i] + 1) % len(palette)][:, None, None]
            top, left = rng.integers(0, size // 2, 2)
            x[i, :, top : top + size // 2, left : left + size // 2] = palette[y[i]][:, None, None]
        return x, y.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = split(n_train), split(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path

"""The GPU check (issue 18): every registered family on one CUDA device. Skipped without CUDA, so CI stays green.

Run it as one command on a machine with a GPU: `tests/gpu/run_gpu_check.sh` (under ten minutes on one GPU).
For every family and for fp16 and bf16:

1. `hubgen train FAMILY ... --mixed_precision P` through the real CLI, a few steps, with the family's smoke-test
   options (its end-of-training evaluation runs on the GPU: the evaluation that used to fail there);
2. the same run stopped halfway and resumed with `--resume_from_checkpoint latest` gives the same weights (within
   1e-6, or where a CUDA kernel stays nondeterministic, no further than a second straight run lands: both recorded);
3. the folder samples on the GPU with a CUDA generator (and a list of them, one per image);
4. the folder loaded on the CPU gives the samples the GPU gives for the same CPU generator (the draws happen on the
   CPU and move: hubgen.draws), up to float rounding of the two devices' kernels.

Then the training throughput (images/s) of each family's quickstart configuration (the BENCHMARKS.md quickstart rows,
sklearn digits) in bf16, measured one family at a time. Everything is written to $HUBGEN_GPU_CHECK_DIR/gpu_check.json
(default: a temporary folder). TF32 is off and the CLI runs with deterministic algorithms for the comparisons.
"""

import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import hubgen
from hubgen import model_folder as mf

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU check needs a CUDA device")

FAMILIES = [f.name for f in hubgen.list_families()]
PRECISIONS = ("fp16", "bf16")
STEPS = 4  # a straight run of STEPS steps against STEPS // 2 steps + a resume to STEPS
EXACT = 1e-6  # the largest weight difference between the straight and the resumed run taken as exact
THROUGHPUT_SECONDS = float(os.environ.get("HUBGEN_GPU_CHECK_SECONDS", "15"))
WORKERS = int(os.environ.get("HUBGEN_GPU_CHECK_WORKERS", "4"))  # training runs at once (the correctness runs only)
# the CLI with deterministic kernels, so that "resumes exactly" can be asked of a GPU
DETERMINISTIC_MAIN = (
    "import sys, torch; torch.use_deterministic_algorithms(True, warn_only=True); "
    "torch.backends.cudnn.benchmark = False; torch.backends.cuda.matmul.allow_tf32 = False; "
    "torch.backends.cudnn.allow_tf32 = False; from hubgen.cli import main; sys.exit(main(sys.argv[1:]))"
)
RESULTS: dict = {"device": None, "families": {}}


def _out_dir(tmp_path_factory) -> Path:
    root = os.environ.get("HUBGEN_GPU_CHECK_DIR")
    path = Path(root) if root else tmp_path_factory.mktemp("gpu-check")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _hubgen(*argv: str, log: Path) -> int:
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONUNBUFFERED": "1"}
    with open(log, "a") as f:
        f.write(f"$ hubgen {shlex.join(argv)}\n")
        f.flush()
        return subprocess.run([sys.executable, "-c", DETERMINISTIC_MAIN, *argv], env=env, stdout=f,
                              stderr=subprocess.STDOUT, timeout=400).returncode  # fmt: skip


def _train(name: str, out: Path, steps: int, precision: str, *extra: str) -> int:
    family = hubgen.get_family(name)
    argv = ["train", name, "--dataset", "digits", "--output_dir", str(out), "--seed", "0",
            *shlex.split(family.smoke_test), "--max_train_steps", str(steps), "--checkpointing_steps", "2",
            "--mixed_precision", precision, "--report_to", "none", *extra]  # fmt: skip
    return _hubgen(*argv, log=out.parent / f"{out.name}.log")


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    pipe = hubgen.load_pipeline(folder)
    return {f"{name}.{key}": t for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)
            for key, t in m.state_dict().items()}  # fmt: skip


def _train_and_resume(name: str, precision: str, root: Path) -> dict:
    """Straight STEPS steps, and STEPS // 2 + a resume to STEPS: return codes and the largest weight difference."""
    straight, resumed = root / f"{name}-{precision}", root / f"{name}-{precision}-resumed"
    codes = [_train(name, straight, STEPS, precision)]
    codes.append(_train(name, resumed, STEPS // 2, precision))
    codes.append(_train(name, resumed, STEPS, precision, "--resume_from_checkpoint", "latest"))
    result = {"return_codes": codes, "folder": str(straight)}
    if codes == [0, 0, 0]:
        a = _weights(straight)
        result["same_keys"] = a.keys() == _weights(resumed).keys()
        result["resume_max_abs_diff"] = _max_diff(a, _weights(resumed))
        result["record"] = mf.training_record(straight)
        if result["resume_max_abs_diff"] > EXACT:
            # Not bit-exact: measure the floor, two straight runs of the same command (kernels that stay
            # nondeterministic under torch.use_deterministic_algorithms(warn_only=True) add rounding noise).
            again = root / f"{name}-{precision}-again"
            result["return_codes"].append(_train(name, again, STEPS, precision, "--eval_num_samples", "0"))
            result["straight_twice_max_abs_diff"] = _max_diff(a, _weights(again))
    return result


def _max_diff(a: dict, b: dict) -> float:
    return max(((a[k].double() - b[k].double()).abs().max().item() for k in a if k in b), default=0.0)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    path = _out_dir(tmp_path_factory)
    RESULTS["device"] = torch.cuda.get_device_name(0)
    RESULTS["torch"] = torch.__version__
    yield path
    (path / "gpu_check.json").write_text(json.dumps(RESULTS, indent=2, default=str))


@pytest.fixture(scope="module")
def trained(out_dir):
    """Every (family, precision) trained straight and resumed, WORKERS runs at a time on the one GPU."""
    jobs = [(name, precision) for name in FAMILIES for precision in PRECISIONS]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = dict(zip(jobs, pool.map(lambda job: _train_and_resume(*job, out_dir), jobs), strict=True))
    RESULTS["training_seconds"] = round(time.perf_counter() - start, 1)
    return results


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", FAMILIES)
def test_trains_evaluates_and_resumes_exactly_in_mixed_precision(trained, out_dir, name, precision):
    result = trained[(name, precision)]
    RESULTS["families"].setdefault(name, {})[precision] = {k: v for k, v in result.items() if k != "record"}
    assert set(result["return_codes"]) == {0}, f"see {out_dir}/{name}-{precision}*.log"
    record = result["record"]
    assert record["mixed_precision"] == precision and record["steps"] == STEPS
    assert result["same_keys"]
    # exact, or no further from the straight run than a second straight run is (the GPU's rounding noise)
    floor = result.get("straight_twice_max_abs_diff", 0.0)
    assert result["resume_max_abs_diff"] <= EXACT + 2 * floor, (result["resume_max_abs_diff"], floor)
    metrics = mf.eval_results(Path(result["folder"]))["metrics"]  # the end-of-training evaluation, on the GPU
    RESULTS["families"][name][precision]["metrics"] = sorted(metrics)
    assert metrics, "the evaluation at the end of training wrote no figures"


def _sample(family, pipe, generator, n: int = 4) -> torch.Tensor:
    values = {o.name: "a handwritten seven" for o in family.sample_options if o.required}
    out = pipe(**family.sample_call(n, values), generator=generator, output_type="pt").images
    return torch.as_tensor(out).float().cpu()


@pytest.mark.parametrize("name", FAMILIES)
def test_samples_with_a_cuda_generator_and_the_cpu_copy_gives_the_same_samples(trained, name):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False  # same kernels each call
    done = [trained[(name, p)] for p in ("bf16", "fp16") if set(trained[(name, p)]["return_codes"]) == {0}]
    assert done, f"no {name} run finished: see the training test"
    family, folder = hubgen.get_family(name), Path(done[0]["folder"])  # a bf16 folder, else the fp16 one
    gpu = hubgen.load_pipeline(folder).to("cuda")
    gpu.set_progress_bar_config(disable=True)
    a = _sample(family, gpu, torch.Generator("cuda").manual_seed(0))
    b = _sample(family, gpu, torch.Generator("cuda").manual_seed(0))
    assert torch.isfinite(a).all() and torch.equal(a, b), "a CUDA generator gives reproducible samples"
    per_image = _sample(family, gpu, [torch.Generator("cuda").manual_seed(s) for s in range(4)])
    assert per_image.shape == a.shape

    cpu = hubgen.load_pipeline(folder)  # float32 on the CPU
    cpu.set_progress_bar_config(disable=True)
    on_gpu = _sample(family, gpu, torch.Generator().manual_seed(1))
    on_cpu = _sample(family, cpu, torch.Generator().manual_seed(1))
    close = torch.isclose(on_gpu, on_cpu, rtol=0, atol=2e-3).float().mean().item()
    RESULTS["families"].setdefault(name, {})["cpu_vs_gpu"] = {
        "fraction_within_2e-3": close, "max_abs_diff": (on_gpu - on_cpu).abs().max().item()}  # fmt: skip
    # discrete outputs (PixelCNN values, a flow's grey levels) can flip where float rounding crosses a threshold
    assert close >= 0.99, f"GPU and CPU samples of the same CPU generator differ: {close:.4f} within 2e-3"

    half = hubgen.load_pipeline(folder, dtype=torch.bfloat16).to("cuda")  # diffusers' current `dtype` argument
    half.set_progress_bar_config(disable=True)
    assert torch.isfinite(_sample(family, half, torch.Generator().manual_seed(0))).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_training_throughput_of_the_quickstart_configuration(out_dir, name):
    """bf16 images/s of the family's quickstart options (`hubgen quickstart`, the BENCHMARKS.md quickstart rows)
    for THROUGHPUT_SECONDS of training; one family at a time, after the parallel runs."""
    family = hubgen.get_family(name)
    out = out_dir / f"{name}-throughput"
    options = family.quickstart or family.smoke_test
    argv = ["train", name, "--dataset", "digits", "--output_dir", str(out), "--overwrite_output_dir",
            *shlex.split(options), "--max_train_time", str(THROUGHPUT_SECONDS), "--max_train_steps", "1000000",
            "--mixed_precision", "bf16", "--report_to", "none", "--eval_num_samples", "0"]  # fmt: skip
    if "--eval_num_images" in family.quickstart + family.smoke_test:
        argv += ["--eval_num_images", "0"]
    assert _hubgen(*argv, log=out_dir / f"{name}-throughput.log") == 0, f"see {out_dir}/{name}-throughput.log"
    record = mf.training_record(out)
    RESULTS["families"].setdefault(name, {})["throughput_bf16"] = {
        "images_per_second": record["images_per_second"], "steps": record["steps"],
        "train_seconds": record["train_seconds"], "train_batch_size": record["train_batch_size"],
        "options": options}  # fmt: skip
    assert record["images_per_second"] and record["images_per_second"] > 0

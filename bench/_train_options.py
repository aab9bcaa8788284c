"""The training options that the time-budget benchmarks (bench/vae_mnist.py, bench/pixelcnn_mnist.py,
bench/gan_mnist.py, bench/ddpm_mnist.py, bench/flow_mnist.py) pass on to `hubgen train`: the learning-rate schedule
(--lr_scheduler, --max_train_steps: a decay needs the step it ends at), the compilation (--torch_compile) and the
precision (--mixed_precision: on a CPU with bfloat16 instructions bf16 autocast made a training step 1.35-1.6x faster,
BENCHMARKS "Speed options on the CPU"; the likelihoods stay float32)."""

from hubgen.training import LR_SCHEDULERS


def add_train_arguments(p, default: str = "constant") -> None:
    p.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default=default,
                   help="cosine/linear decay to 0 at --max_train_steps (the expected steps in --minutes)")  # fmt: skip
    p.add_argument("--max_train_steps", type=int, default=None,
                   help="the step the schedule ends at (the budget still stops the run if it ends first)")  # fmt: skip
    p.add_argument("--mixed_precision", choices=("no", "bf16"), default="no",
                   help="bf16 autocast for training (the saved weights and the evaluation are float32)")  # fmt: skip
    p.add_argument("--torch_compile", action="store_true",
                   help="hubgen train --torch_compile (inductor); the compilation counts in the budget")  # fmt: skip


def train_argv(args) -> list[str]:
    steps = ["--max_train_steps", str(args.max_train_steps)] if args.max_train_steps else []
    compile_ = ["--torch_compile", "inductor"] if args.torch_compile else []
    return ["--lr_scheduler", args.lr_scheduler, *steps, "--mixed_precision", args.mixed_precision, *compile_]

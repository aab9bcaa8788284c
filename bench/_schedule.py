"""The learning-rate schedule options of the time-budget benchmarks (bench/vae_mnist.py, bench/pixelcnn_mnist.py,
bench/gan_mnist.py, bench/ddpm_mnist.py, bench/flow_mnist.py), passed on to `hubgen train` (--lr_scheduler,
--max_train_steps: a decay needs the step it ends at)."""

from hubgen.training import LR_SCHEDULERS


def add_schedule_arguments(p, default: str = "constant") -> None:
    p.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default=default,
                   help="cosine/linear decay to 0 at --max_train_steps (the expected steps in --minutes)")  # fmt: skip
    p.add_argument("--max_train_steps", type=int, default=None,
                   help="the step the schedule ends at (the budget still stops the run if it ends first)")  # fmt: skip


def schedule_argv(args) -> list[str]:
    steps = ["--max_train_steps", str(args.max_train_steps)] if args.max_train_steps else []
    return ["--lr_scheduler", args.lr_scheduler, *steps]

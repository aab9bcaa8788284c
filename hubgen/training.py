"""The bookkeeping every training script shares, as functions: each script's main() writes its own loop.

A script's main() reads as its algorithm (data, forward pass, loss, backward, step, EMA); what is not the
algorithm lives here, named for what it does:

    add_common_arguments / check_common_arguments   the options every family takes, checked the same way
    prepare_run      validate the output folder and the dataset before anything is written
    start_run        the seeded Accelerator and the Run record (step, history, clock)
    make_loader      the training DataLoader with its own generator (exact resume)
    prepare          accelerator.prepare after the speed options (channels_last, gradient checkpointing,
                     torch.compile) are applied to the modules
    float32_forward  a prepared model's own forward, without the autocast of mixed precision
    restore          resume from a checkpoint: weights, optimizers, RNG, step, history, the script's state
    training_batches the data stream from where the run stands (epochs, skipped batches on resume)
    nonfinite        the NaN guard, agreed by all processes
    log_due / gather_mean / record    the logging window
    set_learning_rates  the learning rate of the next step (--lr_scheduler, diffusers' schedules)
    end_of_step      time budget, progress grids, checkpoint save and rotation; says when to stop
    stop_diverged    the message and exit code of a diverged run
    finish_run       the model folder: pipeline, samples, curves, training record, evaluation, card

Checkpoints are written here rather than with `accelerator.save_state`, because accelerate pickles the
optimizer, scaler and RNG states (`torch.save`) and resuming would unpickle them. hubgen keeps every file it
writes or reads pickle-free: tensors go to safetensors, everything else to JSON.

    output_dir/checkpoints/checkpoint-<step>/
        model_<name>.safetensors        model weights (unwrapped state_dict)
        optimizer_<name>.safetensors    optimizer tensors (flattened "state.<param>.<key>")
        optimizer_<name>.json           optimizer param_groups and non-tensor state
        rng_<rank>.safetensors / .json  torch (and CUDA) RNG as tensors; numpy and python RNG as JSON
        state.json                      step, the run's record (history, clock, batches seen, configs) and the
                                        script's own state, GradScaler

A checkpoint is written to a temporary folder and renamed into place only when complete, so a crash never
leaves a partial checkpoint where a good one was.
"""

import json
import math
import os
import random
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import finetune
from . import model_folder as mf
from .errors import UserInputError
from .registry import count_or_all

__all__ = [
    "Run",
    "add_common_arguments",
    "check_common_arguments",
    "prepare_run",
    "start_run",
    "make_loader",
    "prepare",
    "float32_forward",
    "restore",
    "training_batches",
    "nonfinite",
    "log_due",
    "gather_mean",
    "record",
    "end_of_step",
    "set_learning_rates",
    "stop_diverged",
    "finish_run",
    "plot_history",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "resolve_checkpoint",
    "check_output_dir",
    "make_accelerator",
    "versions",
    "config_dict",
]

CHECKPOINTS = mf.CHECKPOINTS
SPEED_OPTIONS = ("allow_tf32", "channels_last", "torch_compile", "dataloader_num_workers", "gradient_checkpointing")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")  # diffusers' names (--lr_scheduler)


# -- arguments ---------------------------------------------------------------------------------------------------


def add_common_arguments(
    parser,
    *,
    batch_size: int,
    learning_rate: float,
    num_epochs: int,
    accumulation: bool = True,
    num_images: int | str | None = 1000,
    num_samples: int = 1000,
    sample_steps: int = 500,
    gradient_checkpointing: bool = False,
    speed: bool = True,
    mixed_precision: bool = True,
    lr_scheduler: str = "constant",
    lr_warmup_steps: int = 0,
):
    """The options every training script takes, in four groups (and the speed options); a family adds its own to
    the returned groups (data, model, optimization, output) and passes its defaults here. `num_images=None`: the
    family scores no test images (no likelihood), so there is no --eval_num_images; "all": the whole split by
    default. `gradient_checkpointing`: the family's networks support it (diffusers' UNets), so
    --gradient_checkpointing is offered; `speed=False`: no speed options (a family that trains no network through
    `tr.prepare`, e.g. EM's closed-form updates)."""
    data = parser.add_argument_group("data and output")
    data.add_argument("--dataset", default="digits",
                      help="digits | mnist | a .npz file | an image folder (with an optional metadata.jsonl/.csv) | "
                      "a save_to_disk folder | a .parquet file or folder | a Hub dataset id user/name")  # fmt: skip
    data.add_argument("--dataset_config", default=None, help="the config name of a Hub dataset")
    data.add_argument("--dataset_revision", default=None, help="the revision (branch, tag, commit) of a Hub dataset")
    data.add_argument("--image_column", default=None, help='default: "image", else the first image column')
    data.add_argument("--caption_column", default=None, help='default: "text" when the data has it')
    data.add_argument("--label_column", default=None, help='default: "label" when the data has it')
    data.add_argument("--resolution", type=int, default=None,
                      help="resize the shorter side to this (bilinear) and crop a square; default: the data's "
                      "size")  # fmt: skip
    data.add_argument("--center_crop", action="store_true",
                      help="center crop the training images to --resolution (default: a random crop)")  # fmt: skip
    data.add_argument("--random_flip", action="store_true", help="flip training images horizontally at random")
    data.add_argument("--max_train_samples", type=int, default=None,
                      help="train on this many images (after a shuffle with --seed)")  # fmt: skip
    data.add_argument("--output_dir", required=True, help="the model folder to write (pipeline, card, checkpoints)")
    data.add_argument("--overwrite_output_dir", action="store_true",
                      help="train a new model into a folder holding a run of the same family")  # fmt: skip
    model = parser.add_argument_group("model")
    finetune.add_pretrained_argument(model)
    opt = parser.add_argument_group("optimization")
    opt.add_argument("--train_batch_size", type=int, default=batch_size, help="per process")
    opt.add_argument("--learning_rate", type=float, default=learning_rate)
    opt.add_argument("--num_epochs", type=int, default=num_epochs)
    opt.add_argument("--max_train_steps", type=int, default=None, help="optimizer steps; overrides --num_epochs")
    opt.add_argument("--max_train_time", type=float, default=None, help="stop after this many seconds of training")
    if accumulation:
        opt.add_argument("--gradient_accumulation_steps", type=int, default=1,
                         help="batches per optimizer step: the step's batch is this times --train_batch_size times "
                         "the processes")  # fmt: skip
    if mixed_precision:
        opt.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None,
                         help="autocast through accelerate (weights and the likelihoods stay float32); fp16 needs a "
                         "GPU (accelerate would run it as float32 on the CPU, so hubgen refuses it there): use bf16 on "
                         "the CPU. Default: accelerate's own setting (`accelerate launch --mixed_precision`, "
                         "`accelerate config`), else no")  # fmt: skip
    else:  # a family that trains no network (nothing to autocast): it runs, and says it ran, in full precision
        parser.set_defaults(mixed_precision="no")
    opt.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default=lr_scheduler,
                     help="the learning rate of optimizer step t = 1, 2, ... is --learning_rate x lambda(t), lambda "
                     "from diffusers.optimization.get_scheduler over the run's steps: constant; constant_with_warmup "
                     "(linear warm-up over --lr_warmup_steps, then constant); linear and cosine (warm-up, then down "
                     "to 0 at the last step: they need the last step, so under --max_train_time pass "
                     f"--max_train_steps too). Default: {lr_scheduler}")  # fmt: skip
    opt.add_argument("--lr_warmup_steps", type=int, default=None,
                     help="steps of the linear warm-up (constant has none; default "
                     f"{lr_warmup_steps if lr_scheduler != 'constant' else 0} for the other schedules)")  # fmt: skip
    parser.set_defaults(hubgen_lr_warmup_default=lr_warmup_steps)
    opt.add_argument("--seed", type=int, default=0)
    if speed:
        _add_speed_arguments(parser, gradient_checkpointing)
    out = parser.add_argument_group("checkpoints, logging, evaluation")
    out.add_argument("--checkpointing_steps", type=int, default=500)
    out.add_argument("--checkpoints_total_limit", type=int, default=3)
    out.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    out.add_argument("--sample_steps", type=int, default=sample_steps, help="write a sample grid every N steps")
    out.add_argument("--logging_steps", type=int, default=10)
    out.add_argument("--report_to", choices=("tensorboard", "none"), default="tensorboard")
    if num_images is not None:
        out.add_argument("--eval_num_images", type=count_or_all, default=None if num_images == "all" else num_images,
                         help="test images for the likelihood at the end (0: skip, all: the whole split)")  # fmt: skip
    out.add_argument("--eval_num_samples", type=int, default=num_samples,
                     help="generated samples for the sample-quality figures at the end (0: skip)")  # fmt: skip
    out.add_argument("--license", default="apache-2.0", help="license written in the model card")
    parser.hubgen_common_options, parser.hubgen_model_group = {action.dest for action in parser._actions}, model
    return data, model, opt, out


def _add_speed_arguments(parser, gradient_checkpointing: bool) -> None:
    """The speed options users of diffusers' training scripts expect, all off by default: measured on a 2-core CPU
    (one thread, digits), none made training faster there (the figures in their help); they are for GPUs."""
    speed = parser.add_argument_group("speed (for GPUs: none made CPU training faster)")
    speed.add_argument("--allow_tf32", action="store_true",
                       help="TensorFloat-32 matmuls and convolutions on Ampere or newer GPUs (faster, 10-bit "
                       "mantissa); no effect on the CPU")  # fmt: skip
    speed.add_argument("--channels_last", action="store_true",
                       help="the networks' 4-d weights in channels-last memory format (often faster on GPUs under "
                       "mixed precision; 0-30%% slower on the CPU for hubgen's small convolutions)")  # fmt: skip
    speed.add_argument("--torch_compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                       help="torch.compile the trained networks (backend: inductor, or e.g. eager, aot_eager to "
                       "check that a model traces); the first step pays the compilation, about a minute on a CPU "
                       "even for the smallest model: for long GPU runs")  # fmt: skip
    speed.add_argument("--dataloader_num_workers", type=int, default=0,
                       help="worker processes loading batches (0: in the training process; hubgen's datasets are "
                       "in memory, and workers made CPU training 15-55%% slower)")  # fmt: skip
    if gradient_checkpointing:
        speed.add_argument("--gradient_checkpointing", action="store_true",
                           help="recompute the UNet's activations in the backward pass instead of storing them: "
                           "less memory for larger batches, about 40%% slower per step on the CPU")  # fmt: skip


def check_common_arguments(parser, args, argv: list[str] | None) -> None:
    """Range checks of the common options (argparse's exit 2 with the option named); records `args.argv`."""
    for name in ("train_batch_size", "num_epochs", "gradient_accumulation_steps", "checkpointing_steps",
                 "sample_steps", "logging_steps"):  # fmt: skip
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("max_train_steps", "checkpoints_total_limit", "resolution", "max_train_samples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("eval_num_images", "eval_num_samples"):
        if (getattr(args, name, 0) or 0) < 0:
            parser.error(f"--{name} must be >= 0 (0 skips), got {getattr(args, name)}")
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        parser.error(f"--learning_rate must be a positive number, got {args.learning_rate}")
    if args.max_train_time is not None and not (args.max_train_time > 0 and math.isfinite(args.max_train_time)):
        parser.error(f"--max_train_time must be > 0 seconds, got {args.max_train_time}")
    _check_lr_schedule(parser, args)
    if getattr(args, "dataloader_num_workers", 0) < 0:
        parser.error(f"--dataloader_num_workers must be >= 0, got {args.dataloader_num_workers}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    finetune.apply_pretrained(parser, args, args.argv)


def _check_lr_schedule(parser, args) -> None:
    """--lr_scheduler and --lr_warmup_steps: constant takes no warm-up (diffusers' `constant` ignores one; hubgen
    refuses one that was asked for rather than drop it); the decaying schedules need the run's last step."""
    warmup = args.lr_warmup_steps
    if warmup is not None and warmup < 0:
        parser.error(f"--lr_warmup_steps must be >= 0, got {warmup}")
    if args.lr_scheduler == "constant":
        if warmup:
            parser.error(f"--lr_warmup_steps {warmup} needs a schedule with a warm-up: --lr_scheduler "
                         "constant_with_warmup, linear or cosine (constant has none)")  # fmt: skip
        args.lr_warmup_steps = 0
    elif warmup is None:
        args.lr_warmup_steps = args.hubgen_lr_warmup_default
    if args.lr_scheduler in ("linear", "cosine") and args.max_train_steps is None and args.max_train_time is not None:
        parser.error(f"--lr_scheduler {args.lr_scheduler} decays to 0 at the run's last step, which the time budget "
                     "(--max_train_time) does not fix: pass --max_train_steps too (the expected steps; the budget "
                     "still stops the run if it ends first)")  # fmt: skip


# -- the run -----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """Where a training run stands: a record, not a Trainer (the loop lives in each script's main())."""

    args: object
    family: str
    accelerator: object
    out: Path
    resume: Path | None
    train_set: object
    step: int = 0
    batches_seen: int = 0
    images_seen: int = 0
    history: list = field(default_factory=list)
    trained_seconds: float = 0.0
    trained_cpu_seconds: float = 0.0  # CPU time of this process, all its threads (time.process_time)
    diverged: str | None = None
    last_checkpoint: Path | None = None
    progress: object = None
    configs: dict = field(default_factory=dict)
    lr_lambda: Callable[[int], float] | None = None  # the learning-rate schedule (None: constant)
    base_lrs: dict = field(default_factory=dict)  # {optimizer name: each param group's --learning_rate}
    _clock: float = field(default_factory=time.perf_counter)
    _cpu_clock: float = field(default_factory=time.process_time)

    @property
    def elapsed(self) -> float:
        return self.trained_seconds + time.perf_counter() - self._clock

    @property
    def cpu_elapsed(self) -> float:
        """CPU-seconds of training so far: what a budget in CPU-minutes counts (wall time x busy threads)."""
        return self.trained_cpu_seconds + time.process_time() - self._cpu_clock


def prepare_run(args, pipeline_class: str):
    """Check `--output_dir` and `--resume_from_checkpoint`, and load the training split of the data options'
    DataSpec (`train_set.spec`): all before anything is written. Returns (resume checkpoint or None,
    train_set); UserInputError for bad input."""
    out = Path(args.output_dir)
    if args.resume_from_checkpoint is not None and args.overwrite_output_dir:
        raise UserInputError("`--resume_from_checkpoint` continues a run and `--overwrite_output_dir` starts a new "
                             "one: pass one of them.")  # fmt: skip
    check_output_dir(out, pipeline_class, resume=args.resume_from_checkpoint is not None,
                     overwrite=args.overwrite_output_dir)  # fmt: skip
    # An explicit checkpoint is used (into a new folder too) or refused, never ignored; "latest" in a folder
    # that does not exist yet is a fresh start.
    explicit = args.resume_from_checkpoint not in (None, "latest")
    resume = resolve_checkpoint(out, args.resume_from_checkpoint) if out.is_dir() or explicit else None
    args.pipeline_class = pipeline_class  # for the run marker start_run writes
    finetune.check_pretrained(args, pipeline_class)
    from .data import DataSpec

    return resume, DataSpec.from_args(args).load("train")


def train_command(family: str, args) -> str:
    """The command line that started this run, as the run marker and the training record state it."""
    return f"hubgen train {family} " + shlex.join(getattr(args, "argv", None) or [])


def start_run(args, family: str, resume: Path | None, train_set, **accelerator_kwargs) -> Run:
    """The seeded Accelerator (`accelerator_kwargs` go to it) and the run's record. The main process marks the
    folder as a hubgen run of `family` (hubgen_run.json) at once, and with `--overwrite_output_dir` moves the
    earlier run's checkpoints aside (.replaced-checkpoints, deleted once this run has a checkpoint or a model of
    its own): they never mix with this run's, and `--resume_from_checkpoint latest` never finds them."""
    accelerator = make_accelerator(args, family, **accelerator_kwargs)
    out = Path(args.output_dir)
    if accelerator.is_main_process:
        mf.write_run_marker(out, family, getattr(args, "pipeline_class", ""), train_command(family, args))
        if args.overwrite_output_dir and _checkpoints(out / CHECKPOINTS):
            aside = out / mf.REPLACED_CHECKPOINTS
            if aside.exists():  # an earlier overwrite's, killed in the instant after its first checkpoint
                shutil.rmtree(aside)
            os.replace(out / CHECKPOINTS, aside)
    accelerator.wait_for_everyone()
    return Run(args, family, accelerator, out, resume, train_set, last_checkpoint=resume)


def _drop_replaced_checkpoints(run: Run) -> None:
    """The overwritten run's checkpoints, once this run has a checkpoint or its model (main process)."""
    aside = run.out / mf.REPLACED_CHECKPOINTS
    if run.accelerator.is_main_process and aside.is_dir():
        shutil.rmtree(aside)


def make_loader(run: Run, batch_size: int | None = None):
    """The shuffled training DataLoader (drop_last). It gets its own generator: creating an iterator would
    otherwise draw from the global RNG, which the training step uses, and a resumed run (one more iterator)
    would not repeat the straight one. The shuffle order is accelerate's seedable sampler (seed + epoch)."""
    batch_size = batch_size or run.args.train_batch_size
    loader = torch.utils.data.DataLoader(run.train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(run.args.seed),
                                         num_workers=getattr(run.args, "dataloader_num_workers", 0))  # fmt: skip
    if len(loader) == 0:
        raise UserInputError(
            f"--train_batch_size {batch_size} is larger than the {len(run.train_set)} training images."
        )
    return loader


def prepare(run: Run, *objects):
    """`accelerator.prepare(*objects)` after the speed options are applied to the modules among them:
    --channels_last (4-d weights in channels-last memory format), --gradient_checkpointing (diffusers'
    `enable_gradient_checkpointing`, transformers' `activation_checkpointing_enable`) and --torch_compile
    (`Module.compile()`: the module is compiled in place, so its state_dict, checkpoints and unwrap_model are
    unchanged; finish_run drops the compiled call before the model folder is written and evaluated)."""
    args = run.args
    for module in objects:
        if not isinstance(module, torch.nn.Module):
            continue
        if getattr(args, "channels_last", False):
            module.to(memory_format=torch.channels_last)
        if getattr(args, "gradient_checkpointing", False):
            if hasattr(module, "enable_gradient_checkpointing"):  # diffusers ModelMixin
                module.enable_gradient_checkpointing()
            elif hasattr(module, "activation_checkpointing_enable"):  # transformers PreTrainedModel (v5)
                module.activation_checkpointing_enable()
            elif hasattr(module, "gradient_checkpointing_enable"):  # its earlier name
                module.gradient_checkpointing_enable()
        if getattr(args, "torch_compile", None):
            module.compile(backend=args.torch_compile)
    return run.accelerator.prepare(*objects)


def float32_forward(model):
    """The model's own forward: under --mixed_precision, accelerate's prepare replaces a model's `forward` by one
    wrapped in autocast (keeping the original as `_original_forward`); a computation that must stay in float32
    (the flow's invertibility check) calls this instead."""
    return model.__dict__.get("_original_forward", model.forward)


def _plain_modules(pipeline) -> None:
    """Drop what training wrapped around the pipeline's modules, so that the saved model is sampled and evaluated
    as a user's from_pretrained copy would be: in float32 (accelerate's autocast wrapper of `forward`) and
    uncompiled (Module.compile's compiled call)."""
    for component in getattr(pipeline, "components", {}).values():
        if not isinstance(component, torch.nn.Module):
            continue
        for module in component.modules():
            original = module.__dict__.pop("_original_forward", None)
            if original is not None:
                module.forward = original
            if getattr(module, "_compiled_call_impl", None) is not None:
                module._compiled_call_impl = None


def restore(run: Run, models: dict, optimizers: dict, configs: dict, max_steps: int) -> dict | None:
    """Resume from `run.resume` when set: weights, optimizers, GradScaler, RNG, step, history and clock.

    `configs` (JSON-able dicts, e.g. the model's config) must equal the checkpoint's, else UserInputError: a
    checkpoint of another model is never loaded into this one. Returns the script's own saved state (what its
    `end_of_step(state=...)` returned), or None when starting fresh. Also opens the progress bar.
    """

    run.configs, saved = configs, None
    _open_lr_schedule(run, optimizers, max_steps)
    if run.resume is not None:
        recorded = json.loads((run.resume / "state.json").read_text())["state"].get("run", {}).get("configs")
        if recorded != json.loads(json.dumps(configs)):  # checked before any weight is loaded
            raise UserInputError(f"Checkpoint {run.resume} holds a model with another configuration than these "
                                 "arguments.")  # fmt: skip
        full = load_checkpoint(run.accelerator, run.resume, models, optimizers)
        run_state = full["state"]["run"]
        run.step = full["step"]
        run.batches_seen, run.images_seen = run_state["batches_seen"], run_state["images_seen"]
        run.history, run.trained_seconds = run_state["history"], run_state["trained_seconds"]
        run.trained_cpu_seconds = run_state.get("trained_cpu_seconds", 0.0)
        saved = full["state"].get("script", {})
        run.accelerator.print(f"Resumed from {run.resume} at step {run.step}")
    elif run.args.resume_from_checkpoint is not None:
        run.accelerator.print(f"No checkpoint in {run.out} yet: starting from step 0.")
    if run.resume is None and getattr(run.args, "pretrained_folder", None):
        finetune.load_pretrained(run, models)
    if run.resume is None and run.accelerator.process_index > 0:
        # Every process was seeded alike, so that they build the same initial weights; from here on each draws its
        # own noise (binarization, eps, t, z): seed + rank, as accelerate's set_seed(device_specific=True). The
        # main process keeps its stream, so a one-process run is unchanged. A resumed run restores each rank's RNG.
        from accelerate.utils import set_seed

        set_seed(run.args.seed, device_specific=True)
    if run.step >= max_steps:
        run.accelerator.print(f"Already trained to step {run.step} (>= {max_steps}): writing the outputs only.")
    set_learning_rates(run, optimizers)
    run.progress = _open_progress(run, max_steps)
    run._clock, run._cpu_clock = time.perf_counter(), time.process_time()
    return saved


def _open_lr_schedule(run: Run, optimizers: dict, max_steps: int) -> None:
    """lambda(t) of diffusers' schedule --lr_scheduler over max_steps, and each optimizer's base learning rates
    (read before a checkpoint's param groups are loaded). The schedule is a function of the step only, so a resumed
    run continues it exactly with nothing more in the checkpoint. A throwaway optimizer receives diffusers' LambdaLR:
    hubgen's optimizers are set by `set_learning_rates`, not stepped by a scheduler object."""
    args = run.args
    if getattr(args, "lr_scheduler", "constant") == "constant" or not optimizers:
        return
    from diffusers.optimization import get_scheduler

    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    run.lr_lambda = get_scheduler(args.lr_scheduler, probe, num_warmup_steps=args.lr_warmup_steps,
                                  num_training_steps=max_steps).lr_lambdas[0]  # fmt: skip
    run.base_lrs = {name: [group["lr"] for group in opt.param_groups] for name, opt in optimizers.items()}


def set_learning_rates(run: Run, optimizers: dict) -> None:
    """The learning rate of the next optimizer step t = run.step + 1: base x lambda(t) in every param group (for a
    warm-up of W steps, lambda(t) = t / W: the first step already moves). Called by `restore` and `end_of_step`."""
    if run.lr_lambda is None:
        return
    factor = run.lr_lambda(run.step + 1)
    for name, opt in optimizers.items():
        for group, base in zip(opt.param_groups, run.base_lrs[name], strict=True):
            group["lr"] = base * factor


_UNBOUNDED_STEPS = 10**6  # a step limit this large comes from --num_epochs 100000 under a time budget: not shown


def _open_progress(run: Run, max_steps: int):
    """The progress bar: steps of max_steps, or, under --max_train_time, seconds of the budget with the step in
    its description (a bar over num_epochs x batches steps sat at 0% with an ETA of a hundred hours)."""
    from tqdm.auto import tqdm

    disable = not run.accelerator.is_local_main_process
    budget = run.args.max_train_time
    if budget is None:
        return tqdm(total=max_steps, initial=run.step, desc=run.family, mininterval=1, disable=disable)
    shown = "{desc}{percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of the time budget{postfix}"  # desc ends in ": "
    bar = tqdm(total=float(budget), initial=min(run.trained_seconds, budget), unit="s", mininterval=1,
               disable=disable, bar_format=shown)  # fmt: skip
    _describe_step(run, bar, max_steps)
    return bar


def _describe_step(run: Run, bar, max_steps: int) -> None:
    shown = f"{run.step}/{max_steps}" if max_steps < _UNBOUNDED_STEPS else f"{run.step}"
    bar.set_description(f"{run.family} step {shown}", refresh=False)


def training_batches(run: Run, loader, max_steps: int):
    """Batches from where the run stands, epoch after epoch: epoch = batches_seen // len(loader), skipping the
    batches that epoch already gave (accelerate's `skip_first_batches`). Counts `run.batches_seen`; yields
    nothing once `run.step` reached `max_steps`."""
    epoch, skip = divmod(run.batches_seen, len(loader))
    while run.step < max_steps:
        loader.set_epoch(epoch)
        if hasattr(run.train_set, "set_epoch"):  # the epoch of the random crops and flips (seeded per epoch, image)
            run.train_set.set_epoch(epoch)
        for batch in run.accelerator.skip_first_batches(loader, skip) if skip else loader:
            run.batches_seen += 1
            yield batch
        epoch, skip = epoch + 1, 0


def nonfinite(run: Run, *losses: torch.Tensor) -> bool:
    """The NaN guard, agreed by all processes so that they stop together; sets `run.diverged`."""
    bad = torch.stack([~torch.isfinite(loss.detach()).all() for loss in losses]).any().float().reshape(1)
    if run.accelerator.gather(bad).any():
        run.diverged = f"non-finite loss at step {run.step + 1}"
        return True
    return False


def clip_grad_norm(run: Run, parameters, max_norm: float) -> torch.Tensor:
    """accelerate's `clip_grad_norm_`: the gradients' total 2-norm, and every gradient times
    min(1, max_norm / (norm + 1e-6)), torch's rule. On the CPU, in one process or under plain DDP and without a
    loss scaler, the gradients are multiplied only when that factor is below 1 (or not a number): the same
    gradients bit for bit, since x * 1.0 = x, without a pass over them at every step (clipping at --max_grad_norm
    rarely binds), and without accelerate's per-parameter DTensor test; together about 0.2-0.3 ms of a flow's
    30 ms step on MNIST when it had 136 parameter tensors (26 since FlowLevel). Reading the factor is a host
    sync, free on the CPU; elsewhere (GPUs, sharded or scaled gradients) this is accelerate's own call."""
    from accelerate.utils import DistributedType

    accelerator, parameters = run.accelerator, list(parameters)
    plain = accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU)
    if accelerator.device.type != "cpu" or not plain or accelerator.scaler is not None:
        return accelerator.clip_grad_norm_(parameters, max_norm)
    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
    if not bool(max_norm / (norm + 1e-6) >= 1.0):  # torch's clip_coef; NaN too (torch then makes every grad NaN)
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


def log_due(run: Run, max_steps: int) -> bool:
    return run.step % run.args.logging_steps == 0 or run.step == max_steps


def gather_mean(run: Run, window: list[torch.Tensor]) -> list[float]:
    """The mean over the window's entries (each a tensor of K figures) and over processes; empties the window."""
    mean = run.accelerator.gather(torch.stack(window).float().mean(0, keepdim=True)).mean(0)
    window.clear()
    return mean.tolist()


def record(run: Run, row: dict) -> dict:
    """One logged row: into the history (saved with checkpoints, plotted at the end), the trackers and the
    progress bar."""
    row = {"step": run.step, **row}
    if run.lr_lambda is not None:  # the learning rate step run.step took (the first param group of the first optimizer)
        row["lr"] = next(iter(run.base_lrs.values()))[0] * run.lr_lambda(run.step)
    run.history.append(row)
    run.accelerator.log({k: v for k, v in row.items() if k != "step"}, step=run.step)
    first = next(k for k in row if k != "step")
    run.progress.set_postfix({first: f"{row[first]:.4g}"}, refresh=False)
    return row


def end_of_step(
    run: Run,
    max_steps: int,
    models: dict,
    optimizers: dict,
    state: Callable[[], dict] | None = None,
    sample_grid: Callable[[], object] | None = None,
    before_save: Callable[[], None] | None = None,
    check: Callable[[], str | None] | None = None,
) -> bool:
    """After optimizer step `run.step`: the time budget (all processes take the main process's clock), a
    progress grid every --sample_steps (`sample_grid()` returns a PIL image), a checkpoint every
    --checkpointing_steps and at the last step. `before_save()` runs before either (e.g. copy EMA weights into
    the model that is saved); `state()` is the script's own state to checkpoint. `check()` runs on every
    process before a checkpoint is written: a message it returns (on any process) stops the run as diverged
    and no checkpoint is written (e.g. a flow whose inverse no longer matches). Returns True to stop."""
    args, accelerator = run.args, run.accelerator
    set_learning_rates(run, optimizers)
    elapsed = run.elapsed
    if args.max_train_time is None:
        run.progress.update(1)
    else:
        _describe_step(run, run.progress, max_steps)
        run.progress.update(min(elapsed, args.max_train_time) - run.progress.n)
    out_of_time = args.max_train_time is not None and elapsed >= args.max_train_time
    flag = torch.tensor([float(out_of_time)], device=accelerator.device)
    stop = run.step >= max_steps or bool(accelerator.gather(flag)[0].item())
    if stop and run.step < max_steps:
        run.progress.refresh()
        accelerator.print(f"\nThe time budget (--max_train_time {args.max_train_time:g} s) ended training at step "
                          f"{run.step}.")  # fmt: skip
    grid_due = sample_grid is not None and run.step % args.sample_steps == 0
    checkpoint_due = run.step % args.checkpointing_steps == 0 or stop
    if before_save is not None and (grid_due or checkpoint_due) and accelerator.is_main_process:
        before_save()
    if grid_due and accelerator.is_main_process:
        mf.write_image(run.out / mf.PROGRESS_SAMPLES / f"step-{run.step:06d}.png", sample_grid())
    if checkpoint_due and check is not None:
        problem = check()
        failed = accelerator.gather(torch.tensor([float(problem is not None)], device=accelerator.device))
        if failed.any():
            run.diverged = problem or "a check failed on another process"
            return True
    if checkpoint_due:
        run.trained_seconds, run._clock = elapsed, time.perf_counter()
        run.trained_cpu_seconds, run._cpu_clock = run.cpu_elapsed, time.process_time()
        full = {"run": {"configs": run.configs, "history": run.history, "trained_seconds": run.trained_seconds,
                        "trained_cpu_seconds": run.trained_cpu_seconds,
                        "batches_seen": run.batches_seen, "images_seen": run.images_seen, "args": args.argv},
                "script": state() if state is not None else {}}  # fmt: skip
        run.last_checkpoint = save_checkpoint(accelerator, run.out, run.step, models, optimizers, full,
                                              args.checkpoints_total_limit)  # fmt: skip
        _drop_replaced_checkpoints(run)
    return stop


def stop_diverged(run: Run, advice: str) -> int:
    """Tell the user the run diverged, which checkpoint is the last good one and what to change; exit code 1."""
    run.progress.close()
    kept = f"The last good checkpoint is {run.last_checkpoint}." if run.last_checkpoint else ""
    kept = kept or "No checkpoint was written."
    run.accelerator.print(f"hubgen: training stopped: {run.diverged}. {kept} {advice} Then resume with "
                          "--resume_from_checkpoint latest.")  # fmt: skip
    run.accelerator.end_training()
    return 1


def plot_history(history: list[dict], panels: list[tuple[str, dict, str]]):
    """A matplotlib figure of the logged rows: one panel per (y label, {history key: legend}, y scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for ax, (ylabel, series, yscale) in zip(axes[0], panels, strict=True):
        for key, label in series.items():
            ax.plot(steps, [h[key] for h in history], label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_yscale(yscale)
        ax.legend()
    fig.tight_layout()
    return fig


def finish_run(run: Run, pipeline, samples, panels: list, record_fields: dict, evaluate: Callable | None = None,
               pictures: dict | None = None) -> int:  # fmt: skip
    """Write the model folder (main process): the pipeline, `samples` (a PIL grid) as samples.png, the loss
    curves, other `pictures` ({file name: PIL image}), the training record (the common fields and the script's
    `record_fields`), the evaluation (`evaluate()` -> hubgen.registry.EvalResult, or None to skip) and the card.
    Closes the trackers and, when distributed, the process group. Returns exit code 0."""
    import matplotlib.pyplot as plt

    from .data import DataSpec
    from .hub import render_card

    run.progress.close()
    accelerator, args, out = run.accelerator, run.args, run.out
    _plain_modules(pipeline)  # float32 and uncompiled: the evaluation scores the model a user loads
    if accelerator.is_main_process:
        mf.save_pipeline(pipeline, out)
        _drop_replaced_checkpoints(run)
        mf.write_image(out / mf.SAMPLES, samples)
        for name, picture in (pictures or {}).items():
            mf.write_image(out / name, picture)
        if run.history:
            figure = plot_history(run.history, panels)
            mf.write_image(out / mf.LOSS_CURVE, figure)
            plt.close(figure)
        seconds = run.trained_seconds
        info = {
            "family": run.family,
            "command": train_command(run.family, args),
            "dataset": str(args.dataset),
            "data": (getattr(run.train_set, "spec", None) or DataSpec.from_args(args)).to_json(),
            "image_shape": list(run.train_set.image_shape),
            "channels": run.train_set.image_shape[0],
            "data_conversions": getattr(run.train_set, "extra", {}).get("conversions", []),
            "num_train_images": len(run.train_set),
            "pixel_levels": run.train_set.levels,
            "seed": args.seed,
            "steps": run.step,
            "epochs": round(run.images_seen / len(run.train_set), 2),
            "train_batch_size": args.train_batch_size,
            "gradient_accumulation_steps": getattr(args, "gradient_accumulation_steps", 1),
            "learning_rate": args.learning_rate,
            "lr_scheduler": getattr(args, "lr_scheduler", "constant"),
            "lr_warmup_steps": getattr(args, "lr_warmup_steps", 0),
            "mixed_precision": args.mixed_precision,
            "speed_options": {name: getattr(args, name) for name in SPEED_OPTIONS if getattr(args, name, None)},
            "num_processes": accelerator.num_processes,
            "train_seconds": round(seconds, 1),
            # the main process's CPU time (all its threads): the figure a budget in CPU-minutes is checked against
            "train_cpu_seconds": round(run.trained_cpu_seconds, 2),
            "torch_threads": torch.get_num_threads(),
            "images_per_second": round(run.images_seen / seconds, 1) if seconds > 0 else None,
            "license": args.license,
            "versions": versions(),
            **finetune.pretrained_record(args),
            **record_fields,
        }
        mf.write_json(out / mf.TRAINING_RECORD, info)
        written = [mf.CARD, mf.SAMPLES, mf.TRAINING_RECORD]
        if evaluate is not None:
            accelerator.print(f"Evaluating the {run.family} model (its options: hubgen eval {out} --help)")
            mf.write_evaluation(out, _with_clock("evaluation", evaluate, not accelerator.is_local_main_process))
            written.append(mf.EVAL_RESULTS)
        render_card(out)
        accelerator.print(f"wrote {out} ({', '.join(written)})")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def _with_clock(what: str, fn: Callable, disable: bool):
    """fn() under a line that counts the seconds while it runs (an evaluation of minutes showed nothing)."""
    import threading

    from tqdm.auto import tqdm

    bar = tqdm(total=None, desc=what, bar_format="{desc}: {elapsed} elapsed", disable=disable)
    done = threading.Event()

    def tick():
        while not done.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        return fn()
    finally:
        done.set()
        ticker.join()
        bar.close()


# -- accelerator, records, output folder -------------------------------------------------------------------------


def make_accelerator(args, family: str, **kwargs):
    """The Accelerator every training script starts with, seeded, with its output folder and trackers.

    `args` needs output_dir, mixed_precision, report_to and seed; `kwargs` go to `Accelerator` (e.g.
    gradient_accumulation_steps). The data order is accelerate's seedable sampler (seed + epoch). Raises
    UserInputError when a launcher started several processes that accelerate does not see as one group: they
    would all write the same files.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

    out = Path(args.output_dir)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / mf.LOGS)),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        **kwargs,
    )
    # None: what `accelerate launch --mixed_precision` or `accelerate config` set; the record says what ran
    args.mixed_precision = accelerator.mixed_precision
    if args.mixed_precision == "fp16" and not accelerator.native_amp:
        # accelerate turns fp16 into float32 on the CPU (no autocast, no GradScaler): refused rather than recorded
        # as fp16 training that did not happen
        raise UserInputError(f"`--mixed_precision fp16` needs a GPU: on the {accelerator.device.type} accelerate "
                             "trains in float32 instead. Use `--mixed_precision bf16` (CPU autocast) or "
                             "no.")  # fmt: skip
    if getattr(args, "allow_tf32", False):  # TensorFloat-32 in CUDA matmuls and cuDNN convolutions
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise UserInputError(
            f"The launcher started {launched} processes but accelerate sees {accelerator.num_processes}: without "
            f"GPUs, set ACCELERATE_USE_CPU=1 (e.g. `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu "
            f"--num_processes 2 -m hubgen train {family} ...`) so the processes join one CPU (gloo) group."
        )
    set_seed(args.seed)
    if accelerator.is_main_process:
        (out / mf.PROGRESS_SAMPLES).mkdir(parents=True, exist_ok=True)
        if args.report_to != "none":
            config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers(family, config=config)
    return accelerator


def versions() -> dict:
    """Versions of the packages a training record names."""
    import importlib.metadata as md

    found = {}
    for name in ["hubgen", "torch", "diffusers", "accelerate", "huggingface_hub"]:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def config_dict(model) -> dict:
    """A model's config as it reads back from config.json: JSON types, without diffusers' private keys."""
    return {k: v for k, v in json.loads(json.dumps(dict(model.config), default=str)).items() if not k.startswith("_")}


def check_output_dir(output_dir: str | os.PathLike, pipeline_class: str, resume: bool, overwrite: bool) -> None:
    """Refuse an output folder that would lose the user's files. Raises UserInputError.

    Allowed: a missing or empty folder; a folder from an earlier run of the same family when resuming or
    when `overwrite` is set (then only hubgen's own files are replaced, nothing is deleted).
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"`--output_dir` {out} exists and is not a folder.")
    if not out.exists() or not any(out.iterdir()):
        return
    mf.complete_interrupted_save(out)
    index = out / mf.MODEL_INDEX
    marker = mf.read_run_marker(out)
    ours = index.is_file() or (out / CHECKPOINTS).is_dir() or (out / mf.TRAINING_RECORD).is_file() or bool(marker)
    if marker and marker.get("pipeline_class") not in (None, "", pipeline_class):
        raise UserInputError(f"`--output_dir` {out} holds a run of another model ({marker.get('pipeline_class')}, "
                             f"not {pipeline_class}); choose another folder.")  # fmt: skip
    if not ours:
        raise UserInputError(
            f"`--output_dir` {out} is not empty and does not hold a hubgen run; choose a new or empty folder."
        )
    if index.is_file():
        try:
            found = json.loads(index.read_text()).get("_class_name")
        except (json.JSONDecodeError, OSError) as e:
            raise UserInputError(f"`--output_dir` {out} holds an unreadable {mf.MODEL_INDEX} ({e}).") from e
        if found != pipeline_class:
            raise UserInputError(
                f"`--output_dir` {out} holds a different model ({found}, not {pipeline_class}); choose another folder."
            )
    if not (resume or overwrite):
        raise UserInputError(
            f"`--output_dir` {out} already holds a {pipeline_class} run. Pass `--resume_from_checkpoint latest` "
            "to continue it, `--overwrite_output_dir` to train a new model there, or choose another folder."
        )


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for pid, pstate in state_dict["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                meta["state"].setdefault(str(pid), {})[key] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {int(pid): dict(values) for pid, values in meta["state"].items()}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _save_rng(folder: Path, rank: int) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    py_version, py_state, py_gauss = random.getstate()
    save_file(tensors, folder / f"rng_{rank}.safetensors")
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [py_version, list(py_state), py_gauss]}
    (folder / f"rng_{rank}.json").write_text(json.dumps(meta))


def _load_rng(folder: Path, rank: int) -> None:
    path = folder / f"rng_{rank}.safetensors"
    if not path.is_file():  # resumed with more processes than saved: keep the seeded state
        return
    tensors = load_file(path)
    meta = json.loads((folder / f"rng_{rank}.json").read_text())
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py_version, py_state, py_gauss = meta["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


def save_checkpoint(
    accelerator,
    output_dir: str | os.PathLike,
    step: int,
    models: dict[str, torch.nn.Module],
    optimizers: dict,
    state: dict,
    total_limit: int | None = None,
) -> Path:
    """Write checkpoint-<step> (see the module docstring); every process calls this. Returns its path."""
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # our own leftover from a crashed save
        tmp.mkdir()
    accelerator.wait_for_everyone()
    _save_rng(tmp, accelerator.process_index)
    if accelerator.is_main_process:
        for name, model in models.items():
            weights = {
                k: v.detach().cpu().contiguous() for k, v in accelerator.unwrap_model(model).state_dict().items()
            }
            save_file(weights, tmp / f"model_{name}.safetensors")
        for name, opt in optimizers.items():
            tensors, meta = _flatten_optimizer(opt.state_dict())
            save_file(tensors, tmp / f"optimizer_{name}.safetensors")
            (tmp / f"optimizer_{name}.json").write_text(json.dumps(meta))
        scaler = getattr(accelerator, "scaler", None)
        full = {"step": step, "state": state, "scaler": scaler.state_dict() if scaler is not None else None}
        (tmp / "state.json").write_text(json.dumps(full))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():  # the same step saved again: swap, then drop the old copy
            old = root / f".old-checkpoint-{step}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        if total_limit is not None:
            for stale in _checkpoints(root)[:-total_limit]:
                shutil.rmtree(stale)  # only checkpoint-<n> folders this function wrote
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str | os.PathLike, models: dict, optimizers: dict) -> dict:
    """Restore models, optimizers, GradScaler and this process's RNG from `path`; return the saved state."""
    path = Path(path)
    for name, model in models.items():
        accelerator.unwrap_model(model).load_state_dict(load_file(path / f"model_{name}.safetensors"), strict=True)
    for name, opt in optimizers.items():
        tensors = load_file(path / f"optimizer_{name}.safetensors")
        meta = json.loads((path / f"optimizer_{name}.json").read_text())
        opt.load_state_dict(_unflatten_optimizer(tensors, meta))
    full = json.loads((path / "state.json").read_text())
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and full.get("scaler"):
        scaler.load_state_dict(full["scaler"])
    _load_rng(path, accelerator.process_index)
    return full


def _checkpoints(root: Path) -> list[Path]:
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with the checkpoint folder `path` (None when it is complete and readable): its state.json
    parses and names a step, every safetensors file's header matches its size, the JSON files parse. A
    checkpoint is renamed into place only when complete, so this catches damage done afterwards (a truncated
    copy, a full disk on another tool's write, an edited file)."""
    from safetensors import safe_open

    try:
        full = json.loads((path / "state.json").read_text())
        if not isinstance(full, dict) or not isinstance(full.get("step"), int):
            return "state.json names no step"
        weights = sorted(path.glob("*.safetensors"))
        if not any(p.name.startswith("model_") for p in weights):
            return "no model_*.safetensors"
        for file in weights:
            with safe_open(file, framework="pt") as f:
                f.keys()
        for file in path.glob("*.json"):
            json.loads(file.read_text())
    except Exception as e:  # noqa: BLE001 -- any read or parse failure means the checkpoint is damaged
        return f"{type(e).__name__}: {e}"
    return None


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint; a damaged newer one is skipped with a warning (the previous good one is
    resumed instead)."""
    for path in reversed(_checkpoints(Path(output_dir) / CHECKPOINTS)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print(f"Warning: checkpoint {path} is damaged ({problem}); trying the one before it.", file=sys.stderr)
    return None


def resolve_checkpoint(output_dir: str | os.PathLike, value: str | None) -> Path | None:
    """`--resume_from_checkpoint`: "latest" (None if there is none yet), or a checkpoint folder path."""
    if value is None:
        return None
    if value == "latest":
        return latest_checkpoint(output_dir)
    path = Path(value)
    if not path.is_absolute() and not path.exists():
        path = Path(output_dir) / CHECKPOINTS / value
    if not (path / "state.json").is_file():
        raise UserInputError(f"`--resume_from_checkpoint` {value!r} is not a hubgen checkpoint folder (no state.json).")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise UserInputError(f"`--resume_from_checkpoint` {value!r} is damaged: {problem}")
    return path

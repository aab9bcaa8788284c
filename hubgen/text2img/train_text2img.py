"""Train a text-to-image diffusion model with accelerate: `hubgen train text2img --dataset digits --output_dir out/t2i`.

Each training image gets a caption from its label (a random training template, hubgen.text2img.captions),
dropped to the empty prompt with probability `--caption_dropout` so that the same network also learns the
unconditional model that classifier-free guidance needs (Ho & Salimans 2022, arXiv:2207.12598, Algorithm 1).
Each step minimizes the epsilon-prediction loss of Ho et al. 2020 (arXiv:2006.11239, eq. 14):

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I),  t ~ U{0, ..., T-1}     (q_sample, eq. 4)
    loss = || eps - eps_theta(x_t, t, tau(y)) ||^2

where tau(y) are the text encoder's hidden states, attended to by the UNet's cross-attention layers and, by
default, also attention-pooled into one vector added to the timestep embedding (as in Imagen, Saharia et al.
2022, arXiv:2205.11487; diffusers' `addition_embed_type="text"`). The text encoder is by default a small
CLIPTextModel trained from scratch jointly with the UNet, over the caption vocabulary's word-level tokenizer;
`--pretrained_text_encoder` takes any transformers text encoder (path or repo id, with its tokenizer) and keeps
it frozen. `--unk_word_prob` replaces non-digit words of the training captions by [UNK] at random, so prompts
with unseen words (the held-out templates) look familiar.

The loop follows the other families: seed, EMA of the trained weights (what is sampled, saved and
evaluated), pickle-free checkpoints with exact resume, validation grids for fixed prompts, a NaN guard, and
at the end the pipeline folder, card and evaluation: prompt accuracy per digit and guidance scale on training
and held-out templates, classifier Frechet distance and coverage per guidance scale.
"""

import argparse
import copy
import hashlib
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as hdata
from ..diffusion.scheduling import drop_condition, q_sample
from ..errors import UserInputError
from ..training import (
    check_output_dir,
    config_dict,
    load_checkpoint,
    make_accelerator,
    recorded_dataset,
    resolve_checkpoint,
    save_checkpoint,
    versions,
    write_json_atomic,
)
from . import captions as cap

__all__ = [
    "parse_args",
    "main",
    "evaluate",
    "build_unet",
    "build_text_encoder",
    "default_block_out_channels",
    "draw_captions",
    "digit_grid",
    "guidance_sweep",
]

PIPELINE_CLASS = "Text2ImagePipeline"
EVAL_GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0)
REFERENCE_GUIDANCE = 3.0  # the card's headline figures and the sample grid
SWEEP_GUIDANCE_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
# No cosine schedule: its abar_T ~ 2e-9 makes x0 = (x_T - sqrt(1 - abar_T) eps) / sqrt(abar_T) explode at the first
# step of DPM-Solver++ (sqrt(abar_T) = 5e-5, against 6e-3 for the linear schedule).
BETA_SCHEDULES = ("linear", "scaled_linear")


# -- models --------------------------------------------------------------------------------------------------


def default_block_out_channels(sample_size: int) -> tuple[int, ...]:
    """UNet widths by image size: 28x28 -> levels 28, 14, 7 with (16, 32, 64); 8x8 -> levels 8, 4 with (32, 64).

    Chosen by cost on a 2-core CPU (1 thread, batch 64, 28x28, cross-attention at the lowest level): (16, 32, 64)
    trains at about 80 images per CPU-second, (32, 64, 64) at 45, and cross-attention also at 14x14 halves either.
    """
    return (16, 32, 64) if sample_size >= 16 else (32, 64)


def build_unet(
    sample_size: int,
    in_channels: int,
    cross_attention_dim: int,
    block_out_channels=None,
    cross_attention_levels=None,
    layers_per_block: int = 1,
    attention_heads: int = 4,
    norm_num_groups: int = 8,
    pooled_text_embedding: bool = True,
):
    """A diffusers UNet2DConditionModel for small grey images.

    Level i of `block_out_channels` (one downsampling between levels) is a CrossAttnDownBlock2D /
    CrossAttnUpBlock2D when i is in `cross_attention_levels` (default: the lowest resolution only, where
    attention is cheap and the digit's shape is decided), else a plain ResNet block; the middle block always
    has cross-attention. In each cross-attention layer
    Q = W_Q phi(x_t) (image features, `block_out_channels[i]` wide) and K, V = W_K tau(y), W_V tau(y)
    (`cross_attention_dim` = the text encoder's hidden size).

    With `pooled_text_embedding` (diffusers' `addition_embed_type="text"`; Imagen's pooled text embedding), the text
    encoder's hidden states are also attention-pooled into one vector that is added to the timestep embedding,
    so every ResNet block sees the prompt, not only the cross-attention layers; with a from-scratch text encoder
    this is what makes the digit's identity learnable within a CPU budget (bench/text2img_mnist.py).
    """
    from diffusers import UNet2DConditionModel

    widths = tuple(int(c) for c in (block_out_channels or default_block_out_channels(sample_size)))
    levels = {len(widths) - 1} if cross_attention_levels is None else set(cross_attention_levels)
    if not widths or min(widths) < 1 or any(c % norm_num_groups or c % attention_heads for c in widths):
        raise UserInputError(
            f"`block_out_channels` {list(widths)} must be positive multiples of the {norm_num_groups} normalization "
            f"groups and the {attention_heads} attention heads."
        )
    if not levels <= set(range(len(widths))):
        raise UserInputError(f"`cross_attention_levels` {sorted(levels)} must lie in 0..{len(widths) - 1}.")
    if sample_size % 2 ** (len(widths) - 1):
        raise UserInputError(
            f"{len(widths)} levels halve the image {len(widths) - 1} times; {sample_size} is not divisible."
        )
    down = tuple("CrossAttnDownBlock2D" if i in levels else "DownBlock2D" for i in range(len(widths)))
    up = tuple("CrossAttnUpBlock2D" if i in levels else "UpBlock2D" for i in reversed(range(len(widths))))
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=down,
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=up,
        block_out_channels=widths,
        layers_per_block=layers_per_block,
        norm_num_groups=norm_num_groups,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_heads,  # diffusers reads this as the number of heads (its naming issue 2011)
        addition_embed_type="text" if pooled_text_embedding else None,
        addition_embed_type_num_heads=attention_heads,
    )


def build_text_encoder(vocab_size: int, hidden_size: int = 64, layers: int = 2, heads: int = 4, max_length: int = 16):
    """A small CLIPTextModel (causal transformer, Radford et al. 2021) over the caption tokenizer's ids."""
    from transformers import CLIPTextConfig, CLIPTextModel

    ids = {token: i for i, token in enumerate(cap.SPECIAL_TOKENS)}
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        projection_dim=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=max_length,
        pad_token_id=ids[cap.PAD],
        bos_token_id=ids[cap.BOS],
        eos_token_id=ids[cap.EOS],
    )
    return CLIPTextModel(config)


def _load_pretrained_text_encoder(name: str, max_length: int):
    """A frozen transformers text encoder and its tokenizer, from a folder or a Hub repo id."""
    from transformers import AutoModel, AutoModelForTextEncoding, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        try:
            encoder = AutoModelForTextEncoding.from_pretrained(name, use_safetensors=True)
        except ValueError:  # a config that has no text-encoding class: the base model
            encoder = AutoModel.from_pretrained(name, use_safetensors=True)
    except OSError as e:
        raise UserInputError(
            f"`--pretrained_text_encoder` {name!r} cannot be loaded (offline, missing or not safetensors): {e}"
        ) from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    positions = getattr(encoder.config, "max_position_embeddings", None) or max_length
    tokenizer.model_max_length = min(int(tokenizer.model_max_length), positions, max_length)
    encoder.requires_grad_(False).eval()
    return encoder, tokenizer


def _hidden_size(encoder) -> int:
    cfg = encoder.config
    size = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None)
    if not size:
        raise UserInputError(f"Cannot tell the hidden size of the text encoder {type(encoder).__name__}.")
    return int(size)


# -- arguments -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train text2img", description="Train a text-to-image diffusion model.")
    g = p.add_argument_group("data and output")
    g.add_argument("--dataset", default="digits", help="digits | mnist | a .npz file with labels (digits 0-9)")
    g.add_argument("--output_dir", required=True)
    g.add_argument("--overwrite_output_dir", action="store_true")
    g = p.add_argument_group("model")
    g.add_argument("--block_out_channels", type=int, nargs="+", default=None,
                   help="UNet widths per level (default: 16 32 64 for 28x28, 32 64 for 8x8)")  # fmt: skip
    g.add_argument("--cross_attention_levels", type=int, nargs="*", default=None,
                   help="UNet levels with cross-attention (default: the lowest; the middle block always)")  # fmt: skip
    g.add_argument("--layers_per_block", type=int, default=1)
    g.add_argument("--attention_heads", type=int, default=4)
    g.add_argument("--no_pooled_text_embedding", action="store_true",
                   help="prompt through cross-attention only (no pooled vector in the time embedding)")  # fmt: skip
    g.add_argument("--text_hidden_size", type=int, default=64)
    g.add_argument("--text_layers", type=int, default=2)
    g.add_argument("--text_heads", type=int, default=4)
    g.add_argument("--max_prompt_tokens", type=int, default=16, help="prompt length limit, special tokens included")
    g.add_argument("--pretrained_text_encoder", default=None,
                   help="a transformers text encoder (folder or repo id, with its tokenizer), kept frozen")  # fmt: skip
    g = p.add_argument_group("diffusion and guidance")
    g.add_argument("--num_train_timesteps", type=int, default=1000)
    g.add_argument("--beta_schedule", choices=BETA_SCHEDULES, default="linear", help="beta_t from 1e-4 to 0.02 (DDPM)")
    g.add_argument("--caption_dropout", type=float, default=0.1, help="probability of training on the empty prompt")
    g.add_argument("--unk_word_prob", type=float, default=0.1,
                   help="probability of replacing a non-digit caption word by [UNK] (own tokenizer only)")  # fmt: skip
    g = p.add_argument_group("optimization")
    g.add_argument("--train_batch_size", type=int, default=64, help="per process")
    g.add_argument("--learning_rate", type=float, default=1e-3)
    g.add_argument("--lr_warmup_steps", type=int, default=200)
    g.add_argument("--adam_weight_decay", type=float, default=0.0)
    g.add_argument("--max_grad_norm", type=float, default=1.0)
    g.add_argument("--ema_decay", type=float, default=0.999)
    g.add_argument("--num_epochs", type=int, default=20)
    g.add_argument("--max_train_steps", type=int, default=None, help="optimizer steps; overrides --num_epochs")
    g.add_argument("--max_train_time", type=float, default=None, help="stop after this many seconds")
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("checkpoints, logging, evaluation")
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=3)
    g.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    g.add_argument("--sample_steps", type=int, default=1000, help="write a validation grid every N steps")
    g.add_argument("--logging_steps", type=int, default=10)
    g.add_argument("--report_to", choices=("tensorboard", "none"), default="tensorboard")
    g.add_argument("--num_inference_steps", type=int, default=20, help="DPM-Solver++ steps for grids and evaluation")
    g.add_argument("--eval_num_samples", type=int, default=200,
                   help="samples per guidance scale and template set for the final evaluation (0: skip)")  # fmt: skip
    g.add_argument("--license", default="apache-2.0")
    args = p.parse_args(argv)
    for name in ["layers_per_block", "attention_heads", "text_hidden_size", "text_layers", "text_heads",
                 "num_train_timesteps", "train_batch_size", "num_epochs", "checkpointing_steps", "sample_steps",
                 "logging_steps", "num_inference_steps"]:  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_prompt_tokens < 3:
        p.error(f"--max_prompt_tokens must be >= 3 (two special tokens and a word), got {args.max_prompt_tokens}")
    for name in ("max_train_steps", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.block_out_channels is not None and min(args.block_out_channels) < 1:
        p.error(f"--block_out_channels must be positive, got {args.block_out_channels}")
    if min(args.eval_num_samples, args.lr_warmup_steps) < 0:
        p.error("--eval_num_samples and --lr_warmup_steps must be >= 0")
    for name in ("caption_dropout", "unk_word_prob"):
        if not 0 <= getattr(args, name) < 1:
            p.error(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        p.error(f"--learning_rate must be a positive number, got {args.learning_rate}")
    if not 0 <= args.ema_decay < 1:
        p.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if not args.max_grad_norm > 0:
        p.error(f"--max_grad_norm must be > 0, got {args.max_grad_norm}")
    if args.max_train_time is not None and args.max_train_time <= 0:
        p.error(f"--max_train_time must be > 0 seconds, got {args.max_train_time}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


# -- pictures ------------------------------------------------------------------------------------------------


def digit_grid(pipe, per_digit: int = 8, guidance_scale: float = REFERENCE_GUIDANCE, seed: int = 0,
               num_inference_steps: int = 20):  # fmt: skip
    """A 10 x `per_digit` grid: row d holds `per_digit` samples for the prompt "a handwritten digit <d>"."""
    from ..pipeline_utils import make_grid

    prompts = [cap.digit_prompt(d) for d in range(10)]
    images = pipe(prompts, num_images_per_prompt=per_digit, guidance_scale=guidance_scale,
                  num_inference_steps=num_inference_steps, generator=torch.Generator().manual_seed(seed),
                  output_type="pt").images  # fmt: skip
    return make_grid(images, nrow=per_digit)


def guidance_sweep(pipe, scales=SWEEP_GUIDANCE_SCALES, seed: int = 0, num_inference_steps: int = 20):
    """Rows: the ten digit prompts; columns: guidance scales, every column from the same initial noise."""
    from ..pipeline_utils import make_grid

    c, s = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    noise = torch.randn((10, c, s, s), generator=torch.Generator().manual_seed(seed))
    prompts = [cap.digit_prompt(d) for d in range(10)]
    columns = [pipe(prompts, guidance_scale=w, num_inference_steps=num_inference_steps, latents=noise,
                    output_type="pt").images for w in scales]  # fmt: skip
    return make_grid(torch.stack(columns, dim=1).flatten(0, 1), nrow=len(scales))  # (10 * S, C, H, W), row-major


def _plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="||eps - eps_theta||^2 (train batch)")
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- training ------------------------------------------------------------------------------------------------


def draw_captions(labels, caption_ids, caption_mask, replaceable, empty, unk_id: int, unk_word_prob: float,
                  caption_dropout: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Training captions for digit labels (B,) -> token ids and attention masks, (B, L) each.

    Per image: a training template drawn uniformly (rows of the (T, 10, L) tables `caption_ids`,
    `caption_mask`); each word that `replaceable` marks (not a digit word) hidden as `unk_id` with probability
    `unk_word_prob`; then the whole caption replaced by the empty prompt `empty` ((2, L): ids and mask) with
    probability `caption_dropout`, so the network also learns eps(x_t, "") (Ho & Salimans 2022, Algorithm 1).
    """
    template = torch.randint(0, caption_ids.shape[0], labels.shape, device=labels.device)  # (B,)
    ids, mask = caption_ids[template, labels], caption_mask[template, labels]  # (B, L)
    hide = replaceable[template, labels] & (torch.rand(ids.shape, device=ids.device) < unk_word_prob)
    ids = torch.where(hide, unk_id, ids)
    return drop_condition(torch.stack([ids, mask], 1), empty, caption_dropout).unbind(1)  # (B, 2, L) -> 2 x (B, L)


def _make_pipeline(unet, text_encoder, tokenizer, train_scheduler):
    from diffusers import DPMSolverMultistepScheduler

    from .pipeline_text2img import Text2ImagePipeline

    # Thresholding of the predicted x_0 (Imagen, Saharia et al. 2022, arXiv:2205.11487, section 2.3): with
    # sample_max_value 1, diffusers' rule s = clamp(quantile_0.995(|x_0|), 1, 1) = 1 clips every x_0 to the data
    # range [-1, 1] (Imagen's static thresholding, what DDPMScheduler's clip_sample does). Guidance pushes x_0
    # out of range and a deterministic solver then leaves salt-and-pepper noise in the images. On the 45-minute
    # MNIST model it takes prompt accuracy at w = 3 with 20 DPM-Solver++ steps from 88% to 98.5% (200 samples;
    # ancestral DDPM, which clips by default, reaches 99.5%). Every sampler built from this config inherits it.
    scheduler = DPMSolverMultistepScheduler.from_config(train_scheduler.config, algorithm_type="dpmsolver++",
                                                        solver_order=2, thresholding=True,
                                                        sample_max_value=1.0)  # fmt: skip
    pipe = Text2ImagePipeline(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    out = Path(args.output_dir)
    resume = resolve_checkpoint(out, args.resume_from_checkpoint) if out.is_dir() else None
    check_output_dir(out, PIPELINE_CLASS, resume=args.resume_from_checkpoint is not None,
                     overwrite=args.overwrite_output_dir)  # fmt: skip
    train_set = hdata.load_dataset(args.dataset, "train")
    c, h, w = train_set.image_shape
    if h != w:
        raise UserInputError(f"Dataset {args.dataset!r} has {h}x{w} images; the UNet needs square images.")
    if train_set.labels is None or int(train_set.labels.min()) < 0 or int(train_set.labels.max()) > 9:
        raise UserInputError(f"Dataset {args.dataset!r} needs digit labels 0..9: captions are made from the labels.")

    # 1. Text encoder and tokenizer: our own (trained) or a frozen pretrained one; the caption tables. Models are
    # built (and every argument checked) before the accelerator creates the output folder: seed them here.
    set_seed(args.seed)
    if args.pretrained_text_encoder:
        text_encoder, tokenizer = _load_pretrained_text_encoder(args.pretrained_text_encoder, args.max_prompt_tokens)
        train_text = False
    else:
        tokenizer = cap.build_tokenizer(args.max_prompt_tokens)
        text_encoder = build_text_encoder(len(tokenizer), args.text_hidden_size, args.text_layers, args.text_heads,
                                          args.max_prompt_tokens)  # fmt: skip
        train_text = True
    length = int(tokenizer.model_max_length)
    caption_ids, caption_mask = cap.caption_table(tokenizer, cap.TRAIN_TEMPLATES, length)  # (T, 10, L)
    empty = tokenizer([""], padding="max_length", max_length=length, return_tensors="pt")
    empty = torch.stack([empty.input_ids[0], empty.attention_mask[0]])  # the empty prompt's ids and mask, (2, L)
    # Words that --unk_word_prob may hide: everything but special tokens, digit names and numerals.
    keep = set(tokenizer.all_special_ids) | set(
        tokenizer.convert_tokens_to_ids([*cap.DIGIT_NAMES, *map(str, range(10))])
    )
    replaceable = (
        ~torch.isin(caption_ids, torch.tensor(sorted(keep)))
        if train_text
        else torch.zeros_like(caption_ids, dtype=torch.bool)
    )

    unet = build_unet(h, c, _hidden_size(text_encoder), args.block_out_channels, args.cross_attention_levels,
                      args.layers_per_block, args.attention_heads,
                      pooled_text_embedding=not args.no_pooled_text_embedding)  # fmt: skip

    # Own generator for the loader: iterator creation must not draw from the global RNG (exact resume).
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    if len(loader) == 0:
        raise UserInputError(f"--train_batch_size {args.train_batch_size} exceeds the {len(train_set)} training images.")

    accelerator = make_accelerator(args, "text2img")

    # 2. EMA copies, optimizer, data
    train_scheduler = DDPMScheduler(num_train_timesteps=args.num_train_timesteps, beta_schedule=args.beta_schedule,
                                    prediction_type="epsilon")  # fmt: skip
    alphas_cumprod = train_scheduler.alphas_cumprod.to(accelerator.device)  # abar_t, (T,)
    trained = [unet, text_encoder] if train_text else [unet]
    ema_models = [copy.deepcopy(m).requires_grad_(False) for m in trained]  # what is sampled, saved, evaluated
    params = [p for m in trained for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    if train_text:
        unet, text_encoder, optimizer, loader = accelerator.prepare(unet, text_encoder, optimizer, loader)
    else:
        unet, optimizer, loader = accelerator.prepare(unet, optimizer, loader)
        text_encoder.to(accelerator.device)
    trained = [unet, text_encoder] if train_text else [unet]
    for m in ema_models:
        m.to(accelerator.device)
    ema_params = [p for m in ema_models for p in m.parameters()]
    ema = EMAModel(ema_params, decay=args.ema_decay)
    caption_ids, caption_mask, replaceable = (
        t.to(accelerator.device) for t in (caption_ids, caption_mask, replaceable)
    )
    empty = empty.to(accelerator.device)
    unk_id = tokenizer.unk_token_id

    max_steps = args.max_train_steps or args.num_epochs * len(loader)
    step, batches_seen, history, trained_seconds = 0, 0, [], 0.0

    # 3. Resume
    names = ["unet", "text_encoder"][: len(trained)]
    models = {
        **dict(zip(names, trained, strict=True)),
        **{f"{n}_ema": m for n, m in zip(names, ema_models, strict=True)},
    }
    optimizers = {"adamw": optimizer}

    def configs():
        """What a checkpoint must match to be resumed with these arguments (JSON types)."""
        vocabulary = hashlib.sha256(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode()).hexdigest()
        found = {"unet": config_dict(accelerator.unwrap_model(unet)), "vocabulary_sha256": vocabulary,
                 "text_encoder": accelerator.unwrap_model(text_encoder).config.to_dict(),
                 "pretrained_text_encoder": args.pretrained_text_encoder, "beta_schedule": args.beta_schedule,
                 "num_train_timesteps": args.num_train_timesteps}  # fmt: skip
        found["text_encoder"].pop("transformers_version", None)
        return json.loads(json.dumps(found, default=str))

    if resume is not None:
        if json.loads((resume / "state.json").read_text())["state"]["configs"] != configs():
            raise UserInputError(f"Checkpoint {resume} holds models of another configuration than these arguments.")
        saved = load_checkpoint(accelerator, resume, models, optimizers)
        step, batches_seen = saved["step"], saved["state"]["batches_seen"]
        history, trained_seconds = saved["state"]["history"], saved["state"]["trained_seconds"]
        ema = EMAModel(ema_params, decay=args.ema_decay)
        ema.optimization_step = saved["state"]["ema_optimization_step"]
        accelerator.print(f"Resumed from {resume} at step {step}")

    def state():
        return {"configs": configs(), "batches_seen": batches_seen, "history": history,
                "trained_seconds": trained_seconds, "ema_optimization_step": ema.optimization_step,
                "args": args.argv}  # fmt: skip

    def batches():
        """Batches from `batches_seen` on: epoch = seen // len(loader), skipping what that epoch gave."""
        epoch, skip = divmod(batches_seen, len(loader))
        while True:
            loader.set_epoch(epoch)
            for x, y in accelerator.skip_first_batches(loader, skip) if skip else loader:
                yield x * 2 - 1, y  # intensities [0, 1] -> [-1, 1]
            epoch, skip = epoch + 1, 0

    def validation_pipe():
        ema.copy_to(ema_params)
        return _make_pipeline(ema_models[0], ema_models[1] if train_text else text_encoder, tokenizer, train_scheduler)

    # 4. The loop
    from tqdm.auto import tqdm

    progress = tqdm(total=max_steps, initial=step, disable=not accelerator.is_local_main_process, desc="text2img",
                    mininterval=1)  # fmt: skip
    diverged, last_checkpoint, start, window = None, resume, time.perf_counter(), []
    data = batches()
    for m in trained:
        m.train()
    while step < max_steps:
        x0, y = next(data)
        batches_seen += 1
        b = x0.shape[0]
        # captions: a random training template per image, [UNK] for some words, the empty prompt for some images
        ids, mask = draw_captions(y, caption_ids, caption_mask, replaceable, empty, unk_id, args.unk_word_prob,
                                  args.caption_dropout)  # fmt: skip
        # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t ~ U{0..T-1}
        t = torch.randint(0, args.num_train_timesteps, (b,), device=x0.device)
        eps = torch.randn_like(x0)
        xt = q_sample(x0, t, eps, alphas_cumprod)
        with torch.set_grad_enabled(train_text):
            hidden = text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # tau(y), (B, L, D)
        eps_hat = unet(xt, t, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample
        loss = F.mse_loss(eps_hat.float(), eps.float())

        if bool(accelerator.gather((~torch.isfinite(loss.detach())).float().reshape(1)).amax()):
            diverged = f"non-finite loss at step {step + 1}"
            break
        for group in optimizer.param_groups:  # linear warm-up, then constant
            group["lr"] = args.learning_rate * min(1.0, (step + 1) / max(1, args.lr_warmup_steps))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        ema.step([p for m in trained for p in accelerator.unwrap_model(m).parameters()])
        step += 1
        progress.update(1)

        window.append(loss.detach().float())
        if step % args.logging_steps == 0 or step == max_steps:
            mean = accelerator.gather(torch.stack(window).mean().reshape(1)).mean().item()
            window = []
            history.append({"step": step, "loss": mean})
            accelerator.log({"loss": mean}, step=step)
            progress.set_postfix(loss=f"{mean:.4f}", refresh=False)
        elapsed = trained_seconds + time.perf_counter() - start
        out_of_time = args.max_train_time is not None and elapsed >= args.max_train_time
        stop = step >= max_steps or bool(accelerator.gather(torch.tensor([float(out_of_time)], device=x0.device))[0])
        if accelerator.is_main_process and step % args.sample_steps == 0:
            digit_grid(validation_pipe(), num_inference_steps=args.num_inference_steps).save(
                out / "samples" / f"step-{step:06d}.png"
            )
        if step % args.checkpointing_steps == 0 or stop:
            ema.copy_to(ema_params)
            trained_seconds, start = elapsed, time.perf_counter()
            last_checkpoint = save_checkpoint(accelerator, out, step, models, optimizers, state(),
                                              args.checkpoints_total_limit)  # fmt: skip
        if stop:
            break
    progress.close()

    if diverged:
        kept = f"The last good checkpoint is {last_checkpoint}." if last_checkpoint else "No checkpoint was written."
        accelerator.print(
            f"hubgen: training stopped: {diverged}. {kept} Try a lower --learning_rate, a longer --lr_warmup_steps "
            "or --mixed_precision no, then resume with --resume_from_checkpoint latest."
        )
        accelerator.end_training()
        return 1

    if accelerator.is_main_process:
        pipe = validation_pipe()
        _finish(pipe, args, train_set, out, history, step, batches_seen, trained_seconds, accelerator.num_processes)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def _finish(pipe, args, train_set, out: Path, history, step, batches_seen, seconds, num_processes) -> None:
    from ..hub import render_card, save_pipeline_atomic

    pipe.unet.eval()
    pipe.text_encoder.eval()
    save_pipeline_atomic(pipe, out)
    digit_grid(pipe, num_inference_steps=args.num_inference_steps).save(out / "samples.png")
    guidance_sweep(pipe, num_inference_steps=args.num_inference_steps).save(out / "guidance_sweep.png")
    if history:
        _plot_history(history, out / "loss_curve.png")
    images_seen = batches_seen * args.train_batch_size * num_processes
    encoder = pipe.text_encoder
    info = {
        "family": "text2img",
        "command": "hubgen train text2img " + shlex.join(args.argv),
        "dataset": str(args.dataset),
        "image_shape": list(train_set.image_shape),
        "num_train_images": len(train_set),
        "pixel_mode": "continuous intensities scaled to [-1, 1]",
        "seed": args.seed,
        "steps": step,
        "epochs": round(images_seen / len(train_set), 2),
        "text_encoder": {
            "class": type(encoder).__name__,
            "source": args.pretrained_text_encoder or "trained from scratch with the UNet",
            "frozen": bool(args.pretrained_text_encoder),
            "hidden_size": _hidden_size(encoder),
            "parameters": sum(p.numel() for p in encoder.parameters()),
            "vocabulary_size": len(pipe.tokenizer),
            "max_prompt_tokens": int(pipe.tokenizer.model_max_length),
        },
        "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
        "num_train_templates": len(cap.TRAIN_TEMPLATES),
        "num_heldout_templates": len(cap.HELDOUT_TEMPLATES),
        "train_templates": list(cap.TRAIN_TEMPLATES),
        "heldout_templates": list(cap.HELDOUT_TEMPLATES),
        "caption_dropout": args.caption_dropout,
        "unk_word_prob": 0.0 if args.pretrained_text_encoder else args.unk_word_prob,
        "num_train_timesteps": args.num_train_timesteps,
        "beta_schedule": args.beta_schedule,
        "train_batch_size": args.train_batch_size,
        "learning_rate": args.learning_rate,
        "lr_warmup_steps": args.lr_warmup_steps,
        "ema_decay": args.ema_decay,
        "mixed_precision": args.mixed_precision,
        "num_processes": num_processes,
        "train_seconds": round(seconds, 1),
        "images_per_second": round(images_seen / seconds, 1) if seconds > 0 else None,
        "final_loss": history[-1]["loss"] if history else None,
        "num_inference_steps": args.num_inference_steps,
        "reference_guidance_scale": REFERENCE_GUIDANCE,
        "sweep_guidance_scales": list(SWEEP_GUIDANCE_SCALES),
        "license": args.license,
        "versions": {**versions(), **_more_versions()},
    }
    write_json_atomic(out / "hubgen_training.json", info)
    if args.eval_num_samples > 0:
        results = evaluate(out, num_samples=args.eval_num_samples, num_inference_steps=args.num_inference_steps,
                           pipeline=pipe)  # fmt: skip
        write_json_atomic(out / "eval_results.json", results)
    render_card(out)


def _more_versions() -> dict:
    import importlib.metadata as md

    return {name: md.version(name) for name in ("transformers", "tokenizers")}


# -- evaluation ----------------------------------------------------------------------------------------------


def _prompt_accuracy(pipe, classifier, templates, n: int, w: float, seed: int, steps: int, sampler: str, batch: int):
    """Sample n images (n // 10 per digit, templates cycling) at guidance w; classify them.
    Returns (images (n', C, H, W), requested labels (n',), predicted labels (n',))."""
    from ..metrics import extract

    per_digit = n // 10
    requested = np.repeat(np.arange(10), per_digit)  # (n',)
    prompts = [cap.caption(templates[i % len(templates)], d) for d in range(10) for i in range(per_digit)]
    generator = torch.Generator().manual_seed(seed)
    images = []
    for i in range(0, len(prompts), batch):
        images.append(pipe(prompts[i : i + batch], guidance_scale=w, num_inference_steps=steps, sampler=sampler,
                           generator=generator, output_type="pt").images.cpu())  # fmt: skip
    images = torch.cat(images)
    _, probs = extract(classifier, images)
    return images, requested, probs.argmax(axis=1)


@torch.no_grad()
def evaluate(
    folder,
    dataset: str | None = None,
    split: str = "test",
    num_samples: int = 200,
    seed: int = 0,
    guidance_scales=EVAL_GUIDANCE_SCALES,
    num_inference_steps: int | None = None,
    sampler: str = "dpmsolver++",
    batch_size: int = 250,
    pipeline=None,
    **unused,
) -> dict:
    """Prompt accuracy and sample quality per guidance scale.

    For each guidance scale w and each template set (training, held-out), `num_samples` images are drawn
    (num_samples // 10 per digit, the set's templates cycling; `sampler` with `num_inference_steps` steps, by
    default those of the training record, else 20; seed `seed`, `seed` + 1 for the held-out templates) and
    labelled by the frozen digit classifier (hubgen.metrics.load_classifier for the image size). Prompt
    accuracy is the share labelled with the prompt's digit, overall and per digit. The training-template
    samples of each w are also compared with the `split` of the dataset (hubgen.metrics.evaluate_samples):
    classifier Frechet distance, precision/recall/density/coverage, classes covered. `k` and `num_images` of
    `hubgen eval` do not apply (no likelihood is computed here).
    """
    from ..metrics import evaluate_samples, label_accuracy, load_classifier
    from .pipeline_text2img import Text2ImagePipeline

    folder = Path(folder)
    dataset, info = recorded_dataset(folder, dataset)
    steps = num_inference_steps or int(info.get("num_inference_steps", 20))
    if not isinstance(num_samples, int) or num_samples < 10:
        raise UserInputError(f"`num_samples` must be >= 10 (one per digit at least), got {num_samples!r}.")
    scales = [float(w) for w in guidance_scales]
    if not scales or any(not (math.isfinite(w) and w >= 0) for w in scales):
        raise UserInputError(f"`guidance_scales` must be non-negative numbers, got {list(guidance_scales)}.")
    pipe = pipeline or Text2ImagePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    classifier = load_classifier(pipe.unet.config.sample_size)
    n_per_set = 10 * (num_samples // 10)
    reference = REFERENCE_GUIDANCE if REFERENCE_GUIDANCE in scales else scales[0]
    template_sets = {"train": (cap.TRAIN_TEMPLATES, seed, "training"),
                     "heldout": (cap.HELDOUT_TEMPLATES, seed + 1, "held-out")}  # fmt: skip

    metrics, labels, accuracy, sweep, reference_quality = {}, {}, {"train": {}, "heldout": {}}, [], None
    for w in scales:
        row = {"guidance_scale": w}
        for set_name, (templates, set_seed, which) in template_sets.items():
            images, requested, predicted = _prompt_accuracy(pipe, classifier, templates, n_per_set, w, set_seed, steps,
                                                            sampler, batch_size)  # fmt: skip
            acc = label_accuracy(predicted, requested)
            key = f"prompt_accuracy_{set_name}_w{w:g}"
            metrics[key] = {"mean": acc, "stderr": math.sqrt(acc * (1 - acc) / n_per_set)}  # binomial standard error
            labels[key] = (f"prompt accuracy, {which} templates, guidance {w:g}, {sampler} {steps} steps, "
                           f"{n_per_set} samples, seed {set_seed}")  # fmt: skip
            per_digit = [float(np.mean(predicted[requested == d] == d)) for d in range(10)]
            accuracy[set_name][f"{w:g}"] = {"overall": acc, "per_digit": per_digit}
            row[f"prompt_accuracy_{set_name}"] = acc
            if set_name != "train":
                continue
            # fidelity and diversity of the training-template samples at this w
            grid = folder / "nearest_neighbours.png" if folder.is_dir() and w == reference else None
            quality = evaluate_samples(images, dataset, seed=seed, reference_split=split, grid_path=grid)
            quality["samples"] = f"prompted with the training templates, guidance {w:g}, {sampler} {steps} steps"
            reference_quality = quality if w == reference else reference_quality
            fd, prdc = quality["frechet_distance"], quality["prdc"]
            row.update({"frechet_distance": fd["value"], "floor": fd["floor_train_vs_test"]})
            row.update({name: prdc[name] for name in ("precision", "recall", "density", "coverage")})
            row["classes_covered"] = (quality.get("modes") or {}).get("classes_covered")
        sweep.append(row)
    return {
        "family": "text2img",
        "dataset": str(dataset),
        "split": split,
        "num_images": n_per_set,
        "k": reference_quality["prdc"]["k"],
        "seed": seed,
        "pixel_mode": info.get("pixel_mode", "continuous intensities scaled to [-1, 1]"),
        "sampler": sampler,
        "num_inference_steps": steps,
        "guidance_scales": scales,
        "reference_guidance_scale": reference,
        "num_samples_per_set": n_per_set,
        "classifier": reference_quality["feature_network"],
        "metrics": metrics,
        "metric_labels": labels,
        "prompt_accuracy": accuracy,
        "guidance_sweep": sweep,
        "sample_quality": reference_quality,
    }

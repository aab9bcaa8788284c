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

The loop is written out; the bookkeeping around it (seeded accelerator, pickle-free checkpoints that resume
exactly, NaN guard, time budget, validation grids for fixed prompts, the model folder, evaluation and card) is
hubgen.training's. An EMA of the trained weights is what is sampled, saved and evaluated. At the end: prompt
accuracy per digit and guidance scale on training and held-out templates, classifier Frechet distance and
coverage per guidance scale (hubgen.text2img.evaluation).
"""

import argparse
import copy
import hashlib
import json

import torch
import torch.nn.functional as F

from .. import data as hdata
from .. import training as tr
from ..diffusion.scheduling import drop_condition, q_sample
from ..errors import UserInputError
from . import captions as cap
from .modeling_text2img import (
    build_text_encoder,
    build_unet,
    load_pretrained_text_encoder,
    make_pipeline,
    text_hidden_size,
)

__all__ = ["parse_args", "main", "caption_tables", "draw_captions"]

PIPELINE_CLASS = "Text2ImagePipeline"
# No cosine schedule: its abar_T ~ 2e-9 makes x0 = (x_T - sqrt(1 - abar_T) eps) / sqrt(abar_T) explode at the first
# step of DPM-Solver++ (sqrt(abar_T) = 5e-5, against 6e-3 for the linear schedule).
BETA_SCHEDULES = ("linear", "scaled_linear")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train text2img", description="Train a text-to-image diffusion model.")
    data, model, opt, out = tr.add_common_arguments(p, batch_size=64, learning_rate=1e-3, num_epochs=20,
                                                    accumulation=False, num_images=None, num_samples=200,
                                                    sample_steps=1000)  # fmt: skip
    model.add_argument("--block_out_channels", type=int, nargs="+", default=None,
                       help="UNet widths per level (default: 16 32 64 for 28x28, 32 64 for 8x8)")  # fmt: skip
    model.add_argument("--cross_attention_levels", type=int, nargs="*", default=None,
                       help="UNet levels with cross-attention (default: the lowest; the middle block always)",
                       )  # fmt: skip
    model.add_argument("--layers_per_block", type=int, default=1)
    model.add_argument("--attention_heads", type=int, default=4)
    model.add_argument("--no_pooled_text_embedding", action="store_true",
                       help="prompt through cross-attention only (no pooled vector in the time embedding)")  # fmt: skip
    model.add_argument("--text_hidden_size", type=int, default=64)
    model.add_argument("--text_layers", type=int, default=2)
    model.add_argument("--text_heads", type=int, default=4)
    model.add_argument("--max_prompt_tokens", type=int, default=16, help="prompt length limit, special tokens included")
    model.add_argument("--pretrained_text_encoder", default=None,
                       help="a transformers text encoder (folder or repo id, with its tokenizer), kept frozen",
                       )  # fmt: skip
    g = p.add_argument_group("diffusion and guidance")
    g.add_argument("--num_train_timesteps", type=int, default=1000)
    g.add_argument("--beta_schedule", choices=BETA_SCHEDULES, default="linear", help="beta_t from 1e-4 to 0.02 (DDPM)")
    g.add_argument("--caption_dropout", type=float, default=0.1, help="probability of training on the empty prompt")
    g.add_argument("--unk_word_prob", type=float, default=0.1,
                   help="probability of replacing a non-digit caption word by [UNK] (own tokenizer only)")  # fmt: skip
    opt.add_argument("--lr_warmup_steps", type=int, default=200)
    opt.add_argument("--adam_weight_decay", type=float, default=0.0)
    opt.add_argument("--max_grad_norm", type=float, default=1.0)
    opt.add_argument("--ema_decay", type=float, default=0.999)
    out.add_argument("--num_inference_steps", type=int, default=20, help="DPM-Solver++ steps for grids and evaluation")
    args = p.parse_args(argv)
    tr.check_common_arguments(p, args, argv)
    for name in ["layers_per_block", "attention_heads", "text_hidden_size", "text_layers", "text_heads",
                 "num_train_timesteps", "num_inference_steps"]:  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_prompt_tokens < 3:
        p.error(f"--max_prompt_tokens must be >= 3 (two special tokens and a word), got {args.max_prompt_tokens}")
    if args.block_out_channels is not None and min(args.block_out_channels) < 1:
        p.error(f"--block_out_channels must be positive, got {args.block_out_channels}")
    if 0 < args.eval_num_samples < 10:
        p.error(f"--eval_num_samples must be 0 (skip) or >= 10 (one per digit), got {args.eval_num_samples}")
    if args.lr_warmup_steps < 0:
        p.error(f"--lr_warmup_steps must be >= 0, got {args.lr_warmup_steps}")
    for name in ("caption_dropout", "unk_word_prob"):
        if not 0 <= getattr(args, name) < 1:
            p.error(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    if not 0 <= args.ema_decay < 1:
        p.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if not args.max_grad_norm > 0:
        p.error(f"--max_grad_norm must be > 0, got {args.max_grad_norm}")
    return args


# -- captions ------------------------------------------------------------------------------------------------------


def caption_tables(tokenizer, train_text: bool):
    """What `draw_captions` looks captions up in: token ids and masks of every training caption, (T, 10, L) each;
    which of their tokens `--unk_word_prob` may hide, (T, 10, L) (none for a frozen encoder's own vocabulary);
    the empty prompt's ids and mask, (2, L); the [UNK] id."""
    length = int(tokenizer.model_max_length)
    caption_ids, caption_mask = cap.caption_table(tokenizer, cap.TRAIN_TEMPLATES, length)  # (T, 10, L)
    empty = tokenizer([""], padding="max_length", max_length=length, return_tensors="pt")
    empty = torch.stack([empty.input_ids[0], empty.attention_mask[0]])  # (2, L)
    # Words that may be hidden: everything but special tokens, digit names and numerals.
    digits = tokenizer.convert_tokens_to_ids([*cap.DIGIT_NAMES, *map(str, range(10))])
    keep = torch.tensor(sorted({*tokenizer.all_special_ids, *digits}))
    replaceable = torch.isin(caption_ids, keep, invert=True) & train_text  # (T, 10, L); none for a frozen encoder
    return caption_ids, caption_mask, replaceable, empty, tokenizer.unk_token_id


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


# -- models and records ---------------------------------------------------------------------------------------------


def text_encoder_and_tokenizer(args):
    """tau and its tokenizer: a frozen pretrained encoder, or a new CLIPTextModel over the captions' vocabulary.
    Returns (encoder, tokenizer, whether the encoder is trained)."""
    if args.pretrained_text_encoder:
        return (*load_pretrained_text_encoder(args.pretrained_text_encoder, args.max_prompt_tokens), False)
    tokenizer = cap.build_tokenizer(args.max_prompt_tokens)
    encoder = build_text_encoder(len(tokenizer), args.text_hidden_size, args.text_layers, args.text_heads,
                                 args.max_prompt_tokens)  # fmt: skip
    return encoder, tokenizer, True


def check_training_set(args, train_set) -> None:
    """Refuse, before anything is written, data the UNet and the captions cannot take."""
    c, h, w = train_set.image_shape
    if h != w:
        raise UserInputError(f"Dataset {args.dataset!r} has {h}x{w} images; the UNet needs square images.")
    if train_set.labels is None or int(train_set.labels.min()) < 0 or int(train_set.labels.max()) > 9:
        raise UserInputError(f"Dataset {args.dataset!r} needs digit labels 0..9: captions are made from the labels.")
    if args.train_batch_size > len(train_set):
        raise UserInputError(f"--train_batch_size {args.train_batch_size} exceeds the {len(train_set)} training "
                             "images.")  # fmt: skip


def model_configs(args, unet, text_encoder, tokenizer) -> dict:
    """What a checkpoint must match to be resumed with these arguments (JSON types)."""
    vocabulary = hashlib.sha256(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode()).hexdigest()
    found = {"unet": tr.config_dict(unet), "vocabulary_sha256": vocabulary,
             "text_encoder": text_encoder.config.to_dict(), "pretrained_text_encoder": args.pretrained_text_encoder,
             "beta_schedule": args.beta_schedule, "num_train_timesteps": args.num_train_timesteps}  # fmt: skip
    found["text_encoder"].pop("transformers_version", None)
    return json.loads(json.dumps(found, default=str))


def training_record(args, run, pipe) -> dict:
    """The family's fields of hubgen_training.json (besides hubgen.training's common ones)."""
    import importlib.metadata as md

    from .evaluation import REFERENCE_GUIDANCE

    encoder = pipe.text_encoder
    return {
        "pixel_mode": "continuous intensities scaled to [-1, 1]",
        "text_encoder": {
            "class": type(encoder).__name__,
            "source": args.pretrained_text_encoder or "trained from scratch with the UNet",
            "frozen": bool(args.pretrained_text_encoder),
            "hidden_size": text_hidden_size(encoder),
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
        "lr_warmup_steps": args.lr_warmup_steps,
        "ema_decay": args.ema_decay,
        "final_loss": run.history[-1]["loss"] if run.history else None,
        "num_inference_steps": args.num_inference_steps,
        "reference_guidance_scale": REFERENCE_GUIDANCE,
        "versions": {**tr.versions(), **{name: md.version(name) for name in ("transformers", "tokenizers")}},
    }


# -- the loop ------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from .evaluation import Text2ImageEvalRequest, digit_grid, evaluate

    resume, train_set = tr.prepare_run(args, PIPELINE_CLASS)
    check_training_set(args, train_set)
    c, h, _ = train_set.image_shape

    # 1. Text encoder tau, tokenizer, caption tables and UNet: built (and every argument checked) before the
    # accelerator creates the output folder, so seeded here.
    set_seed(args.seed)
    text_encoder, tokenizer, train_text = text_encoder_and_tokenizer(args)
    tables = caption_tables(tokenizer, train_text)  # caption ids, masks, hideable words (T, 10, L); "", [UNK]
    unet = build_unet(h, c, text_hidden_size(text_encoder), args.block_out_channels, args.cross_attention_levels,
                      args.layers_per_block, args.attention_heads,
                      pooled_text_embedding=not args.no_pooled_text_embedding)  # fmt: skip
    run = tr.start_run(args, "text2img", resume, train_set)
    accelerator = run.accelerator

    # 2. Noise schedule, EMA copies (what is sampled, saved and evaluated), optimizer, data
    train_scheduler = DDPMScheduler(num_train_timesteps=args.num_train_timesteps, beta_schedule=args.beta_schedule,
                                    prediction_type="epsilon")  # fmt: skip
    alphas_cumprod = train_scheduler.alphas_cumprod.to(accelerator.device)  # abar_t, (T,)
    trained = [unet, text_encoder] if train_text else [unet]
    ema_models = [copy.deepcopy(m).requires_grad_(False).eval().to(accelerator.device) for m in trained]
    ema_params = [p for m in ema_models for p in m.parameters()]
    params = [p for m in trained for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    *trained, optimizer, loader = accelerator.prepare(*trained, optimizer, tr.make_loader(run))
    unet, text_encoder = trained if train_text else (trained[0], text_encoder.to(accelerator.device))
    tables = [t.to(accelerator.device) if torch.is_tensor(t) else t for t in tables]
    max_steps = args.max_train_steps or args.num_epochs * len(loader)

    # 3. Resume: weights and EMA copies, optimizer, RNG, step, history, the EMA's step count
    names = ["unet", "text_encoder"][: len(trained)]
    models = {**dict(zip(names, trained, strict=True)),
              **{f"{name}_ema": m for name, m in zip(names, ema_models, strict=True)}}  # fmt: skip
    optimizers = {"adamw": optimizer}
    configs = model_configs(args, accelerator.unwrap_model(unet), accelerator.unwrap_model(text_encoder), tokenizer)
    saved = tr.restore(run, models, optimizers, configs, max_steps) or {}
    ema = EMAModel(ema_params, decay=args.ema_decay)  # shadow weights = the (loaded) EMA copies
    ema.optimization_step = saved.get("ema_optimization_step", 0)

    def ema_pipeline():
        ema.copy_to(ema_params)
        return make_pipeline(ema_models[0], ema_models[1] if train_text else text_encoder, tokenizer, train_scheduler)

    # 4. The loop: one denoising step per batch
    window = []
    grid = lambda: digit_grid(ema_pipeline(), num_inference_steps=args.num_inference_steps)  # noqa: E731
    ema_state = lambda: {"ema_optimization_step": ema.optimization_step}  # noqa: E731
    for m in trained:
        m.train()
    for intensities, labels in tr.training_batches(run, loader, max_steps):
        x0 = hdata.to_signed_range(intensities)  # (B, C, H, W) in [-1, 1]
        # y: a random training template per image, [UNK] for some words, and the empty prompt with probability
        # --caption_dropout (condition dropout: classifier-free guidance, Ho & Salimans 2022)
        ids, mask = draw_captions(labels, *tables, args.unk_word_prob, args.caption_dropout)  # (B, L) each
        # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t ~ U{0..T-1}, eps ~ N(0, I)  (Ho et al. 2020, eq. 4)
        t = torch.randint(0, args.num_train_timesteps, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        xt = q_sample(x0, t, eps, alphas_cumprod)
        with torch.set_grad_enabled(train_text):
            hidden = text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # tau(y), (B, L, D)
        eps_hat = unet(xt, t, encoder_hidden_states=hidden, encoder_attention_mask=mask).sample
        # loss = || eps - eps_theta(x_t, t, tau(y)) ||^2  (Ho et al. 2020, eq. 14)
        loss = F.mse_loss(eps_hat.float(), eps.float())
        if tr.nonfinite(run, loss):
            break
        for group in optimizer.param_groups:  # linear warm-up, then constant
            group["lr"] = args.learning_rate * min(1.0, (run.step + 1) / max(1, args.lr_warmup_steps))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        ema.step([p for m in trained for p in accelerator.unwrap_model(m).parameters()])
        run.step += 1
        run.images_seen += x0.shape[0] * accelerator.num_processes
        window.append(loss.detach().float().reshape(1))
        if tr.log_due(run, max_steps):
            tr.record(run, {"loss": tr.gather_mean(run, window)[0]})
        if tr.end_of_step(run, max_steps, models, optimizers, state=ema_state, sample_grid=grid,
                          before_save=lambda: ema.copy_to(ema_params)):  # fmt: skip
            break
    if run.diverged:
        return tr.stop_diverged(run, "Try a lower --learning_rate, a longer --lr_warmup_steps or --mixed_precision no.")

    # 5. The model folder: the EMA pipeline, samples, curve, training record, evaluation (guidance sweep) and card
    pipe = ema_pipeline()
    samples = digit_grid(pipe, num_inference_steps=args.num_inference_steps) if accelerator.is_main_process else None
    request = Text2ImageEvalRequest(num_samples=args.eval_num_samples, num_inference_steps=args.num_inference_steps)
    panels = [("mean squared error", {"loss": "||eps - eps_theta||^2 (train batch)"}, "log")]
    evaluation = lambda: evaluate(run.out, request, pipeline=pipe)  # noqa: E731
    return tr.finish_run(run, pipe, samples, panels, training_record(args, run, pipe),
                         evaluation if args.eval_num_samples else None)  # fmt: skip

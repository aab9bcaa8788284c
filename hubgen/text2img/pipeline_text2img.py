"""Text2ImagePipeline: text-conditioned diffusion with classifier-free guidance.

    from hubgen.text2img import Text2ImagePipeline
    pipe = Text2ImagePipeline.from_pretrained("path/or/user-repo")
    images = pipe("a handwritten seven", guidance_scale=3.0, num_images_per_prompt=4,
                  generator=torch.Generator().manual_seed(0)).images

The denoiser is diffusers' `UNet2DConditionModel`. Its cross-attention layers take the queries from the
image features and the keys and values from the text encoder's hidden states tau(y) (Rombach et al.
2021, arXiv:2112.10752, section 3.3):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,   Q = W_Q phi(x_t),  K = W_K tau(y),  V = W_V tau(y)

Classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598, section 3.2, with w = 1 + their w): one
network, trained with the caption dropped to the empty prompt some of the time, predicts both eps(x_t, y)
and eps(x_t, "") and sampling follows

    eps_w = eps(x_t, "") + w (eps(x_t, y) - eps(x_t, ""))

so w = 1 is the conditional model alone (computed without the unconditional branch) and w > 1 trades
diversity for prompt fidelity. A negative prompt takes the place of "" in the unconditional branch.

Any diffusers scheduler samples (hubgen.diffusion.samplers, the table both diffusion families share):
`sampler=None` uses `pipe.scheduler` as it is (the saved DPM-Solver++, or one swapped in with
`pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)`), `sampler=` a name in SAMPLERS or a scheduler
class builds one per call with `from_config` of the saved configuration, a scheduler instance is copied.
"""

import math
from collections.abc import Callable

import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from ..diffusion import samplers
from ..diffusion.samplers import SAMPLERS, make_scheduler
from ..diffusion.scheduling import guided_eps
from ..draws import check_generators
from ..errors import UserInputError
from ..pipeline_utils import SafetensorsLoadingMixin, check_output_type, convert_images
from .modeling_text2img import denoise

__all__ = ["Text2ImagePipeline", "SAMPLERS", "make_scheduler", "guided_eps"]


def _as_prompt_list(value, name: str, allow_empty: bool) -> list[str]:
    prompts = [value] if isinstance(value, str) else value
    if not isinstance(prompts, (list, tuple)) or not prompts:
        got = "an empty list" if isinstance(prompts, (list, tuple)) else type(value).__name__
        raise UserInputError(f"`{name}` must be a string or a non-empty list of strings, got {got}.")
    for p in prompts:
        if not isinstance(p, str):
            raise UserInputError(
                f"`{name}` must be a string or a list of strings, got a list holding {type(p).__name__}."
            )
        try:
            p.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: no tokenizer takes it
            raise UserInputError(f"`{name}` {p!r} is not valid Unicode text ({e.reason} at {e.start}).") from None
    if not allow_empty:
        for p in prompts:
            if not p.strip():
                raise UserInputError(
                    f"`{name}` must not be empty, got {p!r}: the empty prompt is the unconditional model, which "
                    "`negative_prompt` (default '') and `guidance_scale` already use."
                )
    return list(prompts)


class Text2ImagePipeline(SafetensorsLoadingMixin, DiffusionPipeline):
    r"""Text-to-image diffusion with a cross-attention UNet, a transformers text encoder and classifier-free guidance.

    Components:
        unet ([`UNet2DConditionModel`]): eps_theta(x_t, t, tau(y)); its cross-attention dimension is the text
            encoder's hidden size.
        text_encoder (transformers model): tau(y), the last hidden states (B, L, D) of the prompt's tokens (a
            CLIPTextModel trained with the UNet, or a frozen pretrained encoder such as all-MiniLM-L6-v2's BertModel;
            its mean over the prompt's tokens is also the UNet's class embedding input when the UNet has one).
        tokenizer (transformers tokenizer): prompts -> token ids, padded to `tokenizer.model_max_length`: the text
            encoder's own, or the word-level tokenizer of the training captions.
        scheduler ([`SchedulerMixin`]): the default sampler (DPM-Solver++ when trained by hubgen).
    """

    model_cpu_offload_seq = "text_encoder->unet"
    # what `callback_on_step_end` may ask for: the sample after the step (a returned "latents" replaces it) and
    # the guided eps_w(x_t) of the step
    _callback_tensor_inputs = ["latents", "noise_pred"]

    def __init__(self, unet: UNet2DConditionModel, text_encoder, tokenizer, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)

    @property
    def max_prompt_length(self) -> int:
        """Tokens per prompt, [BOS]/[EOS] (or [CLS]/[SEP]) included: the tokenizer's and encoder's limit."""
        limit = int(self.tokenizer.model_max_length)
        positions = getattr(self.text_encoder.config, "max_position_embeddings", None)
        return min(limit, positions) if positions else limit

    def check_prompts(self, prompts: list[str], name: str) -> None:
        """Raise ValueError for a prompt with more tokens than the text encoder takes."""
        limit = self.max_prompt_length
        for p, ids in zip(prompts, self.tokenizer(prompts).input_ids, strict=True):
            if len(ids) > limit:
                raise UserInputError(
                    f"`{name}` {p!r} has {len(ids)} tokens, more than the {limit} the text encoder takes "
                    f"(special tokens included); shorten it."
                )

    def unknown_words(self, prompt: str) -> list[str]:
        """The words of `prompt` the tokenizer maps to its unknown token (the model has never seen them)."""
        unk = self.tokenizer.unk_token_id
        if unk is None or not getattr(self.tokenizer, "is_fast", False):  # offsets need a fast tokenizer
            return []
        enc = self.tokenizer(prompt, return_offsets_mapping=True)
        return [prompt[a:b] for i, (a, b) in zip(enc.input_ids, enc.offset_mapping, strict=True) if i == unk]

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, both (B, max_prompt_length) int64."""
        enc = self.tokenizer(
            prompts, padding="max_length", max_length=self.max_prompt_length, truncation=False, return_tensors="pt"
        )
        return enc.input_ids, enc.attention_mask

    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """tau(y): the text encoder's last hidden states (B, L, D), and the attention mask (B, L) that hides padding
        from the UNet's cross-attention."""
        ids, mask = self.tokenize(prompts)
        device = self.text_encoder.device
        hidden = self.text_encoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        return hidden.to(self.unet.device, self.unet.dtype), mask.to(self.unet.device)

    def predict_noise(self, latents, t, cond, cond_mask, uncond, uncond_mask, guidance_scale: float) -> torch.Tensor:
        """eps_w(x_t) with classifier-free guidance; w = 1 evaluates the conditional branch only. The UNet gets the
        mean-pooled prompt too when it takes one (hubgen.text2img.modeling_text2img.denoise)."""
        if guidance_scale == 1.0:
            return denoise(self.unet, latents, t, cond, cond_mask)
        both = torch.cat([latents, latents])  # (2B, C, H, W): unconditional first, one UNet call for both
        hidden, mask = torch.cat([uncond, cond]), torch.cat([uncond_mask, cond_mask])
        eps_uncond, eps_cond = denoise(self.unet, both, t, hidden, mask).chunk(2)
        return guided_eps(eps_uncond, eps_cond, guidance_scale)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        sampler: str | type | SchedulerMixin | None = None,
        latents: torch.Tensor | None = None,
        batch_size: int | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | tuple[str, ...] = ("latents",),
    ):
        r"""Generate images for `prompt`.

        Args:
            prompt: a prompt or a list of prompts (batched). None with `batch_size` draws `batch_size` samples of
                the unconditional model (the empty prompt, no guidance), which is what `hubgen sample` shows.
            negative_prompt: replaces the empty prompt in the unconditional branch of the guidance: one string for
                all prompts or one per prompt. None or "" is the unconditional model.
            num_inference_steps: sampler steps (20 suits DPM-Solver++; the "ddpm" sampler wants hundreds).
            guidance_scale: w >= 0 in eps_uncond + w (eps_cond - eps_uncond); 1 = no guidance.
            num_images_per_prompt: images per prompt; the output lists them prompt by prompt.
            generator: a torch.Generator, or one per image, making the draw deterministic.
            output_type: "pil", "np" (B, H, W, C) in [0, 1], or "pt" (B, C, H, W) in [0, 1].
            return_dict: return an `ImagePipelineOutput` rather than a tuple.
            sampler: None (`self.scheduler` as it is: the saved one, or one swapped in), a name in SAMPLERS, or a
                diffusers scheduler class or instance.
            latents: initial noise (B, C, H, W) for B = len(prompts) * num_images_per_prompt, instead of drawing it.
            batch_size: with `prompt=None` only, the number of unconditional samples.
            callback_on_step_end: diffusers' convention: called after each step as
                fn(pipeline, step_index, timestep, callback_kwargs), with callback_kwargs holding the tensors named in
                `callback_on_step_end_tensor_inputs` ("latents": the sample after the step, "noise_pred": the guided
                eps_w of the step). A "latents" in the dict it returns replaces the sample.
            callback_on_step_end_tensor_inputs: the tensors the callback gets (default: "latents").
        """
        # 1. Check inputs
        if prompt is None:
            if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
                raise UserInputError(
                    f"Pass `prompt`, or `batch_size` >= 1 for unconditional samples; got {batch_size!r}."
                )
            prompts, guidance_scale, negative_prompt = [""] * batch_size, 1.0, None
        else:
            if batch_size is not None:
                raise UserInputError(
                    "`batch_size` is for unconditional samples (prompt=None): use `num_images_per_prompt`."
                )
            prompts = _as_prompt_list(prompt, "prompt", allow_empty=False)
            self.check_prompts(prompts, "prompt")
        if negative_prompt is None:
            negatives = [""] * len(prompts)
        else:
            negatives = _as_prompt_list(negative_prompt, "negative_prompt", allow_empty=True)
            if len(negatives) == 1:
                negatives = negatives * len(prompts)
            if len(negatives) != len(prompts):
                raise UserInputError(
                    f"Got {len(negatives)} `negative_prompt`s for {len(prompts)} prompts; pass one or one each."
                )
            self.check_prompts(negatives, "negative_prompt")
        T = int(self.scheduler.config.num_train_timesteps)  # a sampler cannot take more steps than timesteps
        for name, value, low, high in [
            ("num_inference_steps", num_inference_steps, 1, T),
            ("num_images_per_prompt", num_images_per_prompt, 1, None),
        ]:
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
                allowed = f"in [{low}, T = {high}]" if high else f">= {low}"
                raise UserInputError(f"`{name}` must be an integer {allowed}, got {value!r}.")
        if (
            isinstance(guidance_scale, bool)
            or not isinstance(guidance_scale, (int, float))
            or not (math.isfinite(guidance_scale) and guidance_scale >= 0)
        ):
            raise UserInputError(
                f"`guidance_scale` must be a finite number >= 0 (1 = no guidance), got {guidance_scale!r}."
            )
        check_output_type(output_type)
        tensor_inputs = samplers.check_step_callback(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        scheduler = make_scheduler(self.scheduler.config, self.scheduler if sampler is None else sampler)
        total = len(prompts) * num_images_per_prompt
        check_generators(generator, total, self.unet.device)
        shape = (total, self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        if latents is not None and tuple(latents.shape) != shape:
            raise UserInputError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
        guidance_scale = float(guidance_scale)

        # 2. Encode the prompts (and the negative / empty prompts), repeated per image: (B, L, D)
        cond, cond_mask = self.encode_prompt(prompts)
        cond, cond_mask = (
            cond.repeat_interleave(num_images_per_prompt, 0),
            cond_mask.repeat_interleave(num_images_per_prompt, 0),
        )
        uncond = uncond_mask = None
        if guidance_scale != 1.0:
            uncond, uncond_mask = self.encode_prompt(negatives)
            uncond = uncond.repeat_interleave(num_images_per_prompt, 0)
            uncond_mask = uncond_mask.repeat_interleave(num_images_per_prompt, 0)

        # 3. x_T ~ N(0, sigma_T^2 I), scaled as the sampler expects
        scheduler.set_timesteps(num_inference_steps, device=self.unet.device)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.unet.device, dtype=self.unet.dtype)
        latents = latents.to(self.unet.device, self.unet.dtype) * scheduler.init_noise_sigma
        step_kwargs = samplers.step_kwargs(scheduler, generator=generator)

        # 4. Denoise
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            model_input = scheduler.scale_model_input(latents, t)
            noise_pred = self.predict_noise(model_input, t, cond, cond_mask, uncond, uncond_mask, guidance_scale)
            latents = scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                tensors = {"latents": latents, "noise_pred": noise_pred}
                returned = callback_on_step_end(self, i, t, {k: tensors[k] for k in tensor_inputs})
                latents = (returned or {}).get("latents", latents)

        # 5. [-1, 1] -> [0, 1], convert
        images = convert_images(((latents.float() + 1) / 2).clamp(0, 1), output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

"""DDPMPipeline: diffusers' DDPMPipeline with a choice of sampler, a denoising trajectory and input checks.

    from hubgen.ddpm import DDPMPipeline
    pipe = DDPMPipeline.from_pretrained("path/or/user-repo")
    images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0), sampler="dpmsolver++").images

The class is named like diffusers' own and subclasses it, so a saved folder's model_index.json says
`"_class_name": "DDPMPipeline"` with a diffusers UNet2DModel and DDPMScheduler: plain
`diffusers.DDPMPipeline.from_pretrained(folder)` loads it where hubgen is not installed, and draws the same images
as this pipeline's default call (the saved DDPMScheduler, every timestep) for the same generator.

The samplers are diffusers schedulers from hubgen.diffusion.samplers, the table both diffusion families share;
hubgen writes none of its own. This family names three of them (SAMPLERS here):

    "ddpm"         ancestral sampling, Ho et al. 2020 Algorithm 2 (DDPMScheduler), default T steps
    "ddim"         Song, Meng & Ermon 2021, arXiv:2010.02502 (DDIMScheduler), eta = 0 deterministic, default 50 steps
    "dpmsolver++"  Lu et al. 2022, arXiv:2211.01095, second-order multistep (DPMSolverMultistepScheduler), default 20

`sampler=None` (the default) samples with `pipe.scheduler` as it is, so swapping it takes effect as in diffusers:
`pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)` makes the default call DDIM's. A name builds
that sampler from the saved config for one call; a scheduler class or instance is taken as in text2img.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler
from diffusers import DDPMPipeline as DiffusersDDPMPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from ..diffusion import samplers
from ..diffusion.scheduling import eps_to_x0
from ..errors import UserInputError
from ..pipeline_utils import SafetensorsLoadingMixin, check_sampling_inputs, convert_images, make_grid

__all__ = [
    "DDPMPipeline",
    "DDPMPipelineOutput",
    "Trajectory",
    "SAMPLERS",
    "DEFAULT_STEPS",
    "SAMPLER_NAMES",
    "make_scheduler",
    "frame_indices",
    "trajectory_strip",
]

# The samplers this family offers by name: its rows of the shared table (hubgen.diffusion.samplers.SAMPLERS).
SAMPLERS = {name: samplers.SAMPLERS[name] for name in ("ddpm", "ddim", "dpmsolver++")}
DEFAULT_STEPS = {name: s.default_steps for name, s in SAMPLERS.items()}  # None: every training timestep
SAMPLER_NAMES = {name: s.display_name for name, s in SAMPLERS.items()}


def make_scheduler(config, sampler):
    """A fresh diffusers scheduler for `sampler` (a name in SAMPLERS, a scheduler class or instance), built from a
    saved scheduler config (same betas, same T): hubgen.diffusion.samplers.make_scheduler with this family's names."""
    return samplers.make_scheduler(config, sampler, SAMPLERS)


@dataclass
class Trajectory:
    """The denoising trajectory of one call, in the model's range [-1, 1], on the CPU.

    timesteps (S,): the 0-based training timestep t of each step; xt (S, B, C, H, W): the sample entering the step;
    x0_pred (S, B, C, H, W): the x_0 it implies, eps_to_x0(x_t, t, eps_theta) (Ho et al. eq. 15), unclipped.
    """

    timesteps: torch.Tensor
    xt: torch.Tensor
    x0_pred: torch.Tensor


@dataclass
class DDPMPipelineOutput(ImagePipelineOutput):
    """`images` as the output_type asks; `trajectory` when `return_trajectory=True`."""

    trajectory: Trajectory | None = None


def frame_indices(num_steps: int, num_frames: int) -> list[int]:
    """`num_frames` step indices spread evenly over 0..num_steps-1, first and last included (fewer if S is small)."""
    if num_frames < 1:
        raise UserInputError(f"`num_frames` must be >= 1, got {num_frames!r}.")
    return sorted({int(i) for i in np.linspace(0, num_steps - 1, min(num_frames, num_steps)).round()})


def trajectory_strip(trajectory: Trajectory, num_frames: int = 8, images=None, padding: int = 2) -> Image.Image:
    """The denoising strip: for each image two rows, x_t (top) and the predicted x_0 (bottom), at `num_frames`
    steps from pure noise to the last step, left to right. `images` picks which of the batch (default: all)."""
    picks = frame_indices(len(trajectory.timesteps), num_frames)
    rows = []
    for b in range(trajectory.xt.shape[1]) if images is None else images:
        rows.append(trajectory.xt[picks, b])  # (F, C, H, W)
        rows.append(trajectory.x0_pred[picks, b])
    tiles = ((torch.cat(rows) + 1) / 2).clamp(0, 1)  # [-1, 1] -> [0, 1]
    return make_grid(tiles, nrow=len(picks), padding=padding)


class DDPMPipeline(SafetensorsLoadingMixin, DiffusersDDPMPipeline):
    r"""Unconditional DDPM (Ho et al. 2020, arXiv:2006.11239) with DDPM, DDIM or DPM-Solver++ sampling.

    Components:
        unet ([`UNet2DModel`]): the noise predictor eps_theta(x_t, t) (saved with its EMA weights by hubgen).
        scheduler ([`DDPMScheduler`]): the training noise schedule and the default sampler; every named sampler is
            built from its config.
    """

    # what `callback_on_step_end` may ask for: the sample after the step (which a returned "latents" replaces),
    # the sample x_t that entered it, eps_theta(x_t, t) and the x_0 it implies (eq. 15, unclipped)
    _callback_tensor_inputs = ["latents", "xt", "noise_pred", "x0_pred"]

    def _check_inputs(self, batch_size, generator, latents, scheduler, steps, eta, output_type):
        check_sampling_inputs(batch_size, generator, None, 0, output_type, self.device)
        T = scheduler.config.num_train_timesteps
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= T:
            raise UserInputError(f"`num_inference_steps` must be an integer in [1, T = {T}], got {steps!r}.")
        if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not 0 <= eta <= 1:
            raise UserInputError(f"`eta` must be a number in [0, 1], got {eta!r}.")
        if eta and not isinstance(scheduler, DDIMScheduler):
            raise UserInputError(
                f"`eta` applies to the 'ddim' sampler only, got eta={eta!r} with a {type(scheduler).__name__}."
            )
        shape = (batch_size, self.unet.config.in_channels, *self._sample_size())
        if latents is not None and tuple(latents.shape) != shape:
            raise UserInputError(
                f"`latents` must have shape {shape} (the initial noise x_T), got {tuple(latents.shape)}."
            )

    def _sample_size(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @staticmethod
    def _legacy_callback(callback, callback_on_step_end):
        """The deprecated `callback(step, t, x_t, x0_pred)` as a callback_on_step_end (one release more)."""
        # diffusers' `deprecate` helper words it the same way but checks the removal version against diffusers' own
        # version (0.42 >= hubgen's 0.2.0 raises ValueError), so the FutureWarning is issued here directly
        warnings.warn(
            "`callback` is deprecated and will be removed in hubgen 0.2.0: pass `callback_on_step_end=fn`, called "
            "as fn(pipeline, step_index, timestep, callback_kwargs), with callback_on_step_end_tensor_inputs="
            "['xt', 'x0_pred'] for the tensors `callback` got.",
            FutureWarning,
            stacklevel=4,
        )
        if not callable(callback):
            raise UserInputError(f"`callback` must be callable as callback(step, t, x_t, x0_pred), got {callback!r}.")
        if callback_on_step_end is not None:
            raise UserInputError("Pass `callback_on_step_end` only: `callback` is its deprecated older form.")

        def on_step_end(pipe, i, t, tensors):
            callback(i, int(t), tensors["xt"], tensors["x0_pred"])
            return {}

        return on_step_end

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        sampler: str | type | SchedulerMixin | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        callback: Callable | None = None,
        return_trajectory: bool = False,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | tuple[str, ...] = ("latents",),
    ):
        r"""Draw x_T ~ N(0, I) and denoise it with the sampler in `num_inference_steps` steps.

        Args:
            batch_size: number of images.
            generator: a torch.Generator (or one per image) for x_T and, for "ddpm" (and "ddim" with eta > 0),
                the noise of every step.
            num_inference_steps: default: the sampler's (every training timestep for "ddpm", 50 for "ddim", 20
                for "dpmsolver++"; at most T).
            output_type: "pil", "np" (B, H, W, C) in [0, 1], or "pt" (B, C, H, W) in [0, 1].
            return_dict: return a `DDPMPipelineOutput` rather than a tuple.
            sampler: None: `self.scheduler` as it is (the saved DDPMScheduler: ancestral sampling, or whatever
                scheduler was swapped in); "ddpm", "ddim" or "dpmsolver++" (see the module docstring), built from
                the saved config for this call; or a diffusers scheduler class or instance.
            eta: DDIM's noise scale (0: deterministic); DDIM only.
            latents: (batch_size, C, H, W) initial noise x_T to use instead of drawing it.
            callback: deprecated (FutureWarning), use `callback_on_step_end`: called after each step as
                callback(step, t, x_t, x0_pred).
            return_trajectory: also return every step's x_t and predicted x_0 (`Trajectory`).
            callback_on_step_end: diffusers' convention: called after each step as
                fn(pipeline, step_index, timestep, callback_kwargs), with callback_kwargs holding the tensors named
                in `callback_on_step_end_tensor_inputs` (see `_callback_tensor_inputs`: "latents" is the sample
                after the step, "xt" the sample x_t that entered it, "noise_pred" eps_theta(x_t, t), "x0_pred" the
                x_0 it implies, model range [-1, 1]). A "latents" in the dict it returns replaces the sample.
            callback_on_step_end_tensor_inputs: the tensors the callback gets (default: "latents").
        """
        # 1. Check inputs; the sampler: the pipeline's own scheduler, or the named one from the saved schedule
        if callback is not None:
            callback_on_step_end = self._legacy_callback(callback, callback_on_step_end)
            callback_on_step_end_tensor_inputs = ["xt", "x0_pred"]
        tensor_inputs = samplers.check_step_callback(self, callback_on_step_end, callback_on_step_end_tensor_inputs)
        scheduler = make_scheduler(self.scheduler.config, self.scheduler if sampler is None else sampler)
        steps = samplers.default_steps(scheduler) if num_inference_steps is None else num_inference_steps
        self._check_inputs(batch_size, generator, latents, scheduler, steps, eta, output_type)
        device = self._execution_device
        scheduler.set_timesteps(steps, device=device)
        alphas_cumprod = scheduler.alphas_cumprod

        # 2. x_T ~ N(0, I) (drawn as diffusers' DDPMPipeline draws it)
        shape = (batch_size, self.unet.config.in_channels, *self._sample_size())
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        latents = latents.to(device=device, dtype=self.unet.dtype) * scheduler.init_noise_sigma

        # 3. Denoise: eps_theta(x_t, t), then the sampler's step x_t -> x_{t-1}
        step_kwargs = samplers.step_kwargs(scheduler, generator=generator, eta=eta)
        want_x0 = return_trajectory or "x0_pred" in tensor_inputs
        timesteps, xts, x0s = [], [], []
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            xt = scheduler.scale_model_input(latents, t)  # x_t itself for DDPM, DDIM and DPM-Solver++
            noise_pred = self.unet(xt, t).sample
            latents = scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
            x0_pred = eps_to_x0(xt, int(t), noise_pred, alphas_cumprod) if want_x0 else None
            if return_trajectory:
                timesteps.append(int(t))
                xts.append(xt.float().cpu())
                x0s.append(x0_pred.float().cpu())
            if callback_on_step_end is not None:
                tensors = {"latents": latents, "xt": xt, "noise_pred": noise_pred, "x0_pred": x0_pred}
                returned = callback_on_step_end(self, i, t, {k: tensors[k] for k in tensor_inputs})
                latents = (returned or {}).get("latents", latents)

        # 4. [-1, 1] -> [0, 1], convert
        images = convert_images((latents / 2 + 0.5).clamp(0, 1), output_type)
        self.maybe_free_model_hooks()
        trajectory = None
        if return_trajectory:
            trajectory = Trajectory(torch.tensor(timesteps), torch.stack(xts), torch.stack(x0s))
        if not return_dict:
            return (images, trajectory) if return_trajectory else (images,)
        return DDPMPipelineOutput(images=images, trajectory=trajectory)

"""DDPMPipeline: diffusers' DDPMPipeline with a choice of sampler, a denoising trajectory and input checks.

from hubgen.ddpm import DDPMPipeline
pipe = DDPMPipeline.from_pretrained("path/or/user-repo")
images = pipe(batch_size=16, generator=torch.Generator().manual_seed(0), sampler="dpmsolver++").images

The class is named like diffusers' own and subclasses it, so a saved folder's model_index.json says
`"_class_name": "DDPMPipeline"` with a diffusers UNet2DModel and DDPMScheduler: plain
`diffusers.DDPMPipeline.from_pretrained(folder)` loads it where hubgen is not installed, and draws the same images
as `sampler="ddpm"` here for the same generator. The samplers are diffusers schedulers built from the saved
scheduler config (`from_config`); hubgen writes none of its own:

    "ddpm"         ancestral sampling, Ho et al. 2020 Algorithm 2 (DDPMScheduler), default T steps
    "ddim"         Song, Meng & Ermon 2021, arXiv:2010.02502 (DDIMScheduler), eta = 0 deterministic, default 50 steps
    "dpmsolver++"  Lu et al. 2022, arXiv:2211.01095, second-order multistep (DPMSolverMultistepScheduler), default 20
"""

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers import DDPMPipeline as DiffusersDDPMPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

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

SAMPLERS = ("ddpm", "ddim", "dpmsolver++")
DEFAULT_STEPS = {"ddpm": None, "ddim": 50, "dpmsolver++": 20}  # None: every training timestep
SAMPLER_NAMES = {"ddpm": "DDPM (ancestral)", "ddim": "DDIM (eta = 0)", "dpmsolver++": "DPM-Solver++ (2M)"}


def make_scheduler(config, sampler: str):
    """A fresh diffusers scheduler for `sampler`, built from a saved scheduler config (same betas, same T)."""
    if sampler == "ddpm":
        return DDPMScheduler.from_config(config)
    if sampler == "ddim":
        return DDIMScheduler.from_config(config)
    if sampler == "dpmsolver++":
        # variance_type is the DDPM config's fixed variance, which DPM-Solver does not use (it reads only "learned")
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, variance_type=None
        )
    raise UserInputError(f"`sampler` must be one of {', '.join(repr(s) for s in SAMPLERS)}, got {sampler!r}.")


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
        scheduler ([`DDPMScheduler`]): the training noise schedule; every sampler is built from its config.
    """

    def _check_inputs(self, batch_size, generator, latents, sampler, steps, eta, output_type, callback):
        check_sampling_inputs(batch_size, generator, None, 0, output_type)
        if sampler not in SAMPLERS:
            raise UserInputError(f"`sampler` must be one of {', '.join(repr(s) for s in SAMPLERS)}, got {sampler!r}.")
        T = self.scheduler.config.num_train_timesteps
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= T:
            raise UserInputError(f"`num_inference_steps` must be an integer in [1, T = {T}], got {steps!r}.")
        if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not 0 <= eta <= 1:
            raise UserInputError(f"`eta` must be a number in [0, 1], got {eta!r}.")
        if eta and sampler != "ddim":
            raise UserInputError(f"`eta` applies to the 'ddim' sampler only, got eta={eta!r} with sampler={sampler!r}.")
        shape = (batch_size, self.unet.config.in_channels, *self._sample_size())
        if latents is not None and tuple(latents.shape) != shape:
            raise UserInputError(f"`latents` must have shape {shape} (the initial noise x_T), got {tuple(latents.shape)}.")
        if callback is not None and not callable(callback):
            raise UserInputError(f"`callback` must be callable as callback(step, t, x_t, x0_pred), got {callback!r}.")

    def _sample_size(self) -> tuple[int, int]:
        size = self.unet.config.sample_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        sampler: str = "ddpm",
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        callback=None,
        return_trajectory: bool = False,
    ):
        r"""Draw x_T ~ N(0, I) and denoise it with `sampler` in `num_inference_steps` steps.

        Args:
            batch_size: number of images.
            generator: a torch.Generator (or one per image) for x_T and, for "ddpm" (and "ddim" with eta > 0),
                the noise of every step.
            num_inference_steps: default: every training timestep for "ddpm", 50 for "ddim", 20 for "dpmsolver++".
            output_type: "pil", "np" (B, H, W, C) in [0, 1], or "pt" (B, C, H, W) in [0, 1].
            return_dict: return a `DDPMPipelineOutput` rather than a tuple.
            sampler: "ddpm", "ddim" or "dpmsolver++" (see the module docstring).
            eta: DDIM's noise scale (0: deterministic); "ddim" only.
            latents: (batch_size, C, H, W) initial noise x_T to use instead of drawing it.
            callback: called after each step as callback(step, t, x_t, x0_pred) with the step index, the training
                timestep t, the sample entering the step and the x_0 it implies (model range [-1, 1]).
            return_trajectory: also return every step's x_t and predicted x_0 (`Trajectory`).
        """
        # 1. Check inputs
        steps = num_inference_steps
        if steps is None and sampler in DEFAULT_STEPS:
            steps = DEFAULT_STEPS[sampler] or self.scheduler.config.num_train_timesteps
        self._check_inputs(batch_size, generator, latents, sampler, steps, eta, output_type, callback)

        # 2. The sampler, from the saved schedule
        scheduler = make_scheduler(self.scheduler.config, sampler)
        device = self._execution_device
        scheduler.set_timesteps(steps, device=device)
        alphas_cumprod = scheduler.alphas_cumprod

        # 3. x_T ~ N(0, I) (drawn as diffusers' DDPMPipeline draws it)
        shape = (batch_size, self.unet.config.in_channels, *self._sample_size())
        if latents is None:
            x = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        else:
            x = latents.to(device=device, dtype=self.unet.dtype)
        x = x * scheduler.init_noise_sigma

        # 4. Denoise: eps_theta(x_t, t), then the sampler's step x_t -> x_{t-1}
        step_kwargs = {"eta": eta} if sampler == "ddim" else {}
        record = callback is not None or return_trajectory
        timesteps, xts, x0s = [], [], []
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            eps = self.unet(scheduler.scale_model_input(x, t), t).sample
            x_next = scheduler.step(eps, t, x, generator=generator, **step_kwargs).prev_sample
            if record:
                x0_pred = eps_to_x0(x, int(t), eps, alphas_cumprod)
                if return_trajectory:
                    timesteps.append(int(t))
                    xts.append(x.float().cpu())
                    x0s.append(x0_pred.float().cpu())
                if callback is not None:
                    callback(i, int(t), x, x0_pred)
            x = x_next

        # 5. [-1, 1] -> [0, 1], convert
        images = convert_images((x / 2 + 0.5).clamp(0, 1), output_type)
        self.maybe_free_model_hooks()
        trajectory = None
        if return_trajectory:
            trajectory = Trajectory(torch.tensor(timesteps), torch.stack(xts), torch.stack(x0s))
        if not return_dict:
            return (images, trajectory) if return_trajectory else (images,)
        return DDPMPipelineOutput(images=images, trajectory=trajectory)

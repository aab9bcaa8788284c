"""The DDPM family: diffusers' UNet2DModel and schedulers, DDPMPipeline, training script, evaluation, demo and
card. The closed forms it rests on are shared with text2img in `hubgen.diffusion`. Names load on first use."""

from .._lazy import lazy_names

__all__ = ["DDPMPipeline", "DDPMPipelineOutput", "Trajectory"]

__getattr__, __dir__ = lazy_names(
    __name__, {"DDPMPipeline": "pipeline_ddpm", "DDPMPipelineOutput": "pipeline_ddpm", "Trajectory": "pipeline_ddpm"}
)

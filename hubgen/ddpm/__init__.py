"""The DDPM family: diffusers' UNet2DModel and schedulers, DDPMPipeline, training script, evaluation, demo and
card. The closed forms it rests on are shared with text2img in `hubgen.diffusion`. Names load on first use."""

import importlib

__all__ = ["DDPMPipeline", "DDPMPipelineOutput", "Trajectory"]

_LAZY = {"DDPMPipeline": "pipeline_ddpm", "DDPMPipelineOutput": "pipeline_ddpm", "Trajectory": "pipeline_ddpm"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

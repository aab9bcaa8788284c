"""The GAN family: DCGAN generator and discriminator, losses, pipeline, training script, evaluation, demo and
card. Names load on first use, so the family's record (`hubgen.gan.family`) imports without torch."""

import importlib

__all__ = ["Generator", "Discriminator", "GANPipeline"]

_LAZY = {"Generator": "modeling_gan", "Discriminator": "modeling_gan", "GANPipeline": "pipeline_gan"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

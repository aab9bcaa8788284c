"""The variational autoencoder family: model, losses, pipeline, training script, evaluation, demo and card.

Names load on first use, so the family's record (`hubgen.vae.family`) imports without torch."""

import importlib

__all__ = ["VAEModel", "VAEPipeline", "LikelihoodOutput"]

_LAZY = {"VAEModel": "modeling_vae", "VAEPipeline": "pipeline_vae", "LikelihoodOutput": "pipeline_vae"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

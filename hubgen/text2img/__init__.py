"""The text-to-image family: captions and tokenizer, a cross-attention UNet with a transformers text encoder,
classifier-free guidance; pipeline, training script, evaluation, demo and card. Names load on first use."""

import importlib

__all__ = ["Text2ImagePipeline", "SAMPLERS"]

_LAZY = {"Text2ImagePipeline": "pipeline_text2img", "SAMPLERS": "pipeline_text2img"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

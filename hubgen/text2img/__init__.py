"""The text-to-image family: captions and tokenizer, a cross-attention UNet with a transformers text encoder,
classifier-free guidance; pipeline, training script, evaluation, demo and card. Names load on first use."""

from .._lazy import lazy_names

__all__ = ["Text2ImagePipeline", "SAMPLERS"]

__getattr__, __dir__ = lazy_names(
    __name__, {"Text2ImagePipeline": "pipeline_text2img", "SAMPLERS": "pipeline_text2img"}
)

"""The text-to-image family: captions and tokenizer, a cross-attention UNet with a transformers text encoder,
classifier-free guidance; pipeline, training script and demo."""

from .pipeline_text2img import SAMPLERS, Text2ImagePipeline

__all__ = ["Text2ImagePipeline", "SAMPLERS"]

"""The GAN family: DCGAN generator and discriminator, losses, pipeline, training script and demo."""

from .modeling_gan import Discriminator, Generator
from .pipeline_gan import GANPipeline

__all__ = ["Generator", "Discriminator", "GANPipeline"]

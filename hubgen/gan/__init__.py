"""The GAN family: DCGAN generator and discriminator, losses, pipeline, training script, evaluation, demo and
card. Names load on first use, so the family's record (`hubgen.gan.family`) imports without torch."""

from .._lazy import lazy_names

__all__ = ["Generator", "Discriminator", "GANPipeline"]

__getattr__, __dir__ = lazy_names(
    __name__, {"Generator": "modeling_gan", "Discriminator": "modeling_gan", "GANPipeline": "pipeline_gan"}
)

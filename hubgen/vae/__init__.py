"""The variational autoencoder family: model, losses, pipeline, training script, evaluation, demo and card.

Names load on first use, so the family's record (`hubgen.vae.family`) imports without torch."""

from .._lazy import lazy_names

__all__ = ["VAEModel", "VAEPipeline", "LikelihoodOutput"]

__getattr__, __dir__ = lazy_names(
    __name__, {"VAEModel": "modeling_vae", "VAEPipeline": "pipeline_vae", "LikelihoodOutput": "pipeline_vae"}
)

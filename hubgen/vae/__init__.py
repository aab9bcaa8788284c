"""The variational autoencoder family: model, losses, pipeline, training script and demo."""

from .modeling_vae import VAEModel
from .pipeline_vae import LikelihoodOutput, VAEPipeline

__all__ = ["VAEModel", "VAEPipeline", "LikelihoodOutput"]

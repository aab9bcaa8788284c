"""The flow family: a multi-scale Glow/RealNVP flow with exact likelihood, its layers, pipeline, training and demo."""

from .modeling_flow import FlowModel
from .pipeline_flow import FlowLikelihoodOutput, FlowPipeline

__all__ = ["FlowModel", "FlowPipeline", "FlowLikelihoodOutput"]

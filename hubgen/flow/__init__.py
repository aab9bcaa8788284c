"""The flow family: a multi-scale Glow/RealNVP flow with exact likelihood, its layers, losses, pipeline, training,
evaluation, demo and card. Names load on first use, so `hubgen.flow.family` imports without torch."""

from .._lazy import lazy_names

__all__ = ["FlowModel", "FlowPipeline", "FlowLikelihoodOutput"]

__getattr__, __dir__ = lazy_names(
    __name__, {"FlowModel": "modeling_flow", "FlowPipeline": "pipeline_flow", "FlowLikelihoodOutput": "pipeline_flow"}
)

"""The flow family: a multi-scale Glow/RealNVP flow with exact likelihood, its layers, losses, pipeline, training,
evaluation, demo and card. Names load on first use, so `hubgen.flow.family` imports without torch."""

import importlib

__all__ = ["FlowModel", "FlowPipeline", "FlowLikelihoodOutput"]

_LAZY = {"FlowModel": "modeling_flow", "FlowPipeline": "pipeline_flow", "FlowLikelihoodOutput": "pipeline_flow"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

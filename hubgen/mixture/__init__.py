"""The mixture family (mixtures of Bernoullis or diagonal Gaussians fitted by EM): model, EM, pipeline, training
script, evaluation, demo and card.

Names load on first use, so the family's record (`hubgen.mixture.family`) imports without torch."""

from .._lazy import lazy_names

__all__ = ["MixtureModel", "MixturePipeline"]

__getattr__, __dir__ = lazy_names(__name__, {"MixtureModel": "modeling_mixture", "MixturePipeline": "pipeline_mixture"})

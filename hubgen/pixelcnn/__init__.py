"""The autoregressive family (PixelCNN, Gated PixelCNN, PixelCNN++'s multiscale network): model, pipeline,
training script, evaluation, demo and card.

Names load on first use, so the family's record (`hubgen.pixelcnn.family`) imports without torch."""

from .._lazy import lazy_names

__all__ = ["PixelCNNModel", "PixelCNNPipeline"]

__getattr__, __dir__ = lazy_names(
    __name__, {"PixelCNNModel": "modeling_pixelcnn", "PixelCNNPipeline": "pipeline_pixelcnn"}
)

"""One logit per pixel: p(x) = prod_i Bernoulli(x_i; sigmoid(l_i))."""

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config


class PixelModel(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, sample_size: int = 8, in_channels: int = 1):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(in_channels, sample_size, sample_size))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats per image for binary x (B, C, H, W): sum_i x_i log s(l_i) + (1 - x_i) log s(-l_i)."""
        logits = self.logits.expand_as(x)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x): training calls the model (a DistributedDataParallel wrapper sees the pass)."""
        return self.log_prob(x)

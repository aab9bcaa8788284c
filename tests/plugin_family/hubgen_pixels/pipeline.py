"""PixelPipeline: Bernoulli draws of every pixel."""

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from hubgen.draws import bernoulli, check_generators
from hubgen.pipeline_utils import SafetensorsLoadingMixin, convert_images

from .modeling import PixelModel


class PixelPipeline(SafetensorsLoadingMixin, DiffusionPipeline):
    def __init__(self, model: PixelModel):
        super().__init__()
        self.register_modules(model=model)

    @torch.no_grad()
    def __call__(self, batch_size: int = 1, generator=None, temperature: float = 1.0, output_type: str = "pil",
                 return_dict: bool = True):  # fmt: skip
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
        check_generators(generator, batch_size, self.device)  # None, one, or one per image
        p = torch.sigmoid(self.model.logits.float() / temperature).expand(batch_size, -1, -1, -1)
        images = bernoulli(p, generator)  # on the generator's device: the same images on any device
        images = convert_images(images, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

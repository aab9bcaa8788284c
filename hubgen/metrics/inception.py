"""Inception FID: the Frechet distance in the 2048-d pool features of the standard Inception-v3 network.

Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"
(arXiv:1706.08500); Szegedy et al., "Rethinking the Inception Architecture" (arXiv:1512.00567).

    Inception FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2}),   (mu, S) of Inception-v3 pool3 features

This is the number papers call "FID". It is a different number from hubgen's classifier Frechet distance
(a small classifier trained on the data set; `hubgen.metrics.frechet` on its features), and the two must
never be reported under the same name.

hubgen never downloads the Inception weights: every FID library fetches them at run time, which fails
offline and hides which file was used. `inception_fid` runs only when the caller passes a local weights
file (the TF-ported FID Inception weights, `pt_inception-2015-12-05-6726825d.pth` as used by pytorch-fid,
torch-fidelity and torchmetrics) and one of these libraries is installed; both are imported lazily:

1. torchmetrics (`torchmetrics.image.fid.FrechetInceptionDistance(feature_extractor_weights_path=...)`,
   which itself needs torch-fidelity), or
2. torch-fidelity (`FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=...)`),
   whose features are then compared with `hubgen.metrics.frechet`.

Neither is a hubgen dependency: they can pull in torchvision, which breaks `import diffusers` next to a CPU
torch 2.13 (see the README). Inception runs at a few images per second on a CPU; use a GPU for 10k images.
"""

import os
from pathlib import Path

import numpy as np
import torch

from hubgen.metrics.frechet import feature_statistics, frechet_distance

from ..errors import UserInputError

__all__ = ["inception_fid"]

_NEEDS = (
    "Inception FID needs (1) a local file with the FID Inception-v3 weights "
    "(pt_inception-2015-12-05-6726825d.pth, as used by pytorch-fid / torch-fidelity / torchmetrics), passed as "
    "`weights_path`, and (2) torchmetrics[image] or torch-fidelity installed. hubgen downloads nothing. "
    "Without them, report the classifier Frechet distance (hubgen.metrics.frechet) under that name instead."
)


def _as_uint8_rgb(images, name: str) -> torch.Tensor:
    """(B, C, H, W) floats in [0, 1] (C = 1 or 3) -> (B, 3, H, W) uint8 0..255, the input the extractors take."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserInputError(f"`{name}` must be images (B, C, H, W) with C = 1 or 3, got shape {tuple(x.shape)}.")
    if x.shape[0] < 2:
        raise UserInputError(f"`{name}` needs at least 2 images to estimate a covariance, got {x.shape[0]}.")
    if x.dtype != torch.uint8:
        x = x.double()
        if x.min() < 0 or x.max() > 1:
            raise UserInputError(
                f"`{name}` must hold pixels in [0, 1], got {float(x.min()):.3g}..{float(x.max()):.3g}."
            )
        x = (x * 255).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # grey -> RGB


def _with_torchmetrics(real: torch.Tensor, fake: torch.Tensor, weights_path: str, batch_size: int) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=2048, normalize=False, feature_extractor_weights_path=weights_path)
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, images.shape[0], batch_size):
            fid.update(images[start : start + batch_size], real=is_real)
    return float(fid.compute())


def _with_torch_fidelity(real: torch.Tensor, fake: torch.Tensor, weights_path: str, batch_size: int) -> float:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    extractor = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights_path
    ).eval()

    @torch.no_grad()
    def features(images: torch.Tensor) -> np.ndarray:
        chunks = [extractor(images[s : s + batch_size])[0] for s in range(0, images.shape[0], batch_size)]
        return torch.cat(chunks).double().numpy()  # (N, 2048)

    return frechet_distance(*feature_statistics(features(real)), *feature_statistics(features(fake)))


def inception_fid(real_images, fake_images, weights_path: str | os.PathLike | None, batch_size: int = 50) -> float:
    """Inception FID between `real_images` and `fake_images` ((N, C, H, W) in [0, 1], C = 1 or 3, or uint8).

    Needs a local `weights_path` to the FID Inception-v3 weights and torchmetrics or torch-fidelity (see the
    module docstring); raises ValueError saying what is missing otherwise. Nothing is downloaded. Images are
    resized to 299 x 299 inside the feature extractor. The value depends strongly on N (2048-d covariances):
    the usual protocol is 10k or 50k images; compare only at equal N, and label it "Inception FID".
    """
    if weights_path is None or not Path(weights_path).expanduser().is_file():
        raise UserInputError(f"`weights_path` {weights_path!r} is not an existing file. {_NEEDS}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
    weights_path = str(Path(weights_path).expanduser())
    real = _as_uint8_rgb(real_images, "real_images")
    fake = _as_uint8_rgb(fake_images, "fake_images")
    errors = []
    for backend in (_with_torchmetrics, _with_torch_fidelity):
        try:
            return backend(real, fake, weights_path, batch_size)
        except ImportError as e:  # library not installed: try the next one
            errors.append(f"{e}")
    raise UserInputError(f"No Inception feature library is installed ({'; '.join(errors)}). {_NEEDS}")

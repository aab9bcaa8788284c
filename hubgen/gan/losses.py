"""GAN objectives as pure functions of the discriminator's logits, in the stable softplus form.

Goodfellow et al., "Generative Adversarial Nets" (arXiv:1406.2661), eq. 1:

    min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))],     D(x) = sigmoid(l(x))

With a logit l, log sigmoid(l) = -softplus(-l) and log(1 - sigmoid(l)) = -softplus(l), so every loss below is a
softplus of logits, finite for any logit (a naive log(sigmoid(l)) underflows to -inf for l << 0).

- discriminator: -[log D(x) + log(1 - D(G(z)))] = softplus(-l_real) + softplus(l_fake)
- generator, non-saturating (Goodfellow et al. section 3): -log D(G(z)) = softplus(-l_fake)
- generator, saturating (the minimax form): log(1 - D(G(z))) = -softplus(l_fake). Its gradient in l_fake is
  -sigmoid(l_fake), which vanishes when D confidently rejects a fake (l_fake << 0), i.e. early in training:
  the reason the non-saturating form is the default.
- hinge (Lim & Ye 2017, arXiv:1705.02894; Miyato et al. 2018, arXiv:1802.05957):
  L_D = E[relu(1 - l_real)] + E[relu(1 + l_fake)],  L_G = -E[l_fake].

- R1 gradient penalty (Mescheder, Geiger & Nowozin 2018, arXiv:1801.04406, eq. 9): D's loss gains
  (gamma / 2) E_x[||grad_x l(x)||^2] on real data: D is pushed to be flat on the data manifold, which makes the
  alternating game converge locally where the unregularized one can circle. `r1_penalty` is that expectation
  without gamma / 2; the training loop applies it every `--r1_interval` D steps, scaled by the interval ("lazy
  regularization", Karras et al. 2020, StyleGAN2 section 3.1), so that its average weight stays gamma / 2.

At the optimum of D for fixed G, D*(x) = p_data(x) / (p_data(x) + p_g(x)) (prop. 1); with p_g = p_data it is
1/2 and V(D*, G) = -log 4 (theorem 1).

Every function returns the mean over the batch.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import UserInputError

__all__ = [
    "discriminator_loss",
    "generator_loss_non_saturating",
    "generator_loss_saturating",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "gan_value",
    "r1_penalty",
    "losses_for",
    "LOG_4",
]

LOG_4 = math.log(4.0)
GeneratorLoss = Literal["non_saturating", "saturating", "hinge"]


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))] = softplus(-l(x)) + softplus(l(G(z))), averaged (Goodfellow et al. eq. 1)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_non_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)) = softplus(-l(G(z))): strong gradients while D rejects the fakes (section 3)."""
    return F.softplus(-fake_logits).mean()


def generator_loss_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """log(1 - D(G(z))) = -softplus(l(G(z))): the minimax generator loss, whose gradient vanishes early on."""
    return -F.softplus(fake_logits).mean()


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """relu(1 - l(x)) + relu(1 + l(G(z))), averaged (the hinge version of the adversarial loss)."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-l(G(z)), averaged."""
    return -fake_logits.mean()


def gan_value(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """V(D, G) = E[log D(x)] + E[log(1 - D(G(z)))] = -discriminator_loss; -log 4 at the equilibrium."""
    return -discriminator_loss(real_logits, fake_logits)


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E_x[||grad_x l(x)||^2]: the squared gradient norm of D's logits at the real images, averaged over the batch
    (Mescheder et al. 2018 eq. 9 without gamma / 2). `real` must require grad and `real_logits` come from it; the
    gradient is built with create_graph so that the penalty itself trains D (a double backward). The sum over the
    batch is differentiated: in training mode with batch norm, the logits of one image depend on the others, and
    this is the gradient of the function D computes on this batch."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def losses_for(generator_loss: GeneratorLoss):
    """(discriminator loss, generator loss) for a `--loss` choice; hinge pairs with its own D loss."""
    if generator_loss == "non_saturating":
        return discriminator_loss, generator_loss_non_saturating
    if generator_loss == "saturating":
        return discriminator_loss, generator_loss_saturating
    if generator_loss == "hinge":
        return hinge_discriminator_loss, hinge_generator_loss
    raise UserInputError(f"`loss` must be 'non_saturating', 'saturating' or 'hinge', got {generator_loss!r}.")

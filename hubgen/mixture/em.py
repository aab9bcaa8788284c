"""Fitting a mixture: expectation-maximization written out, a seeded initialization, and gradient ascent on the same
objective for comparison.

EM (Dempster, Laird & Rubin 1977; Bishop, PRML sections 9.2.2 and 9.3.3) alternates, over the full training set:

    E-step  r_nk = p(z = k | x_n) = exp(log pi_k + log p(x_n | k) - logsumexp_j [log pi_j + log p(x_n | j)])
            N_k = sum_n r_nk,   S_k = sum_n r_nk x_n,   Q_k = sum_n r_nk x_n^2          (sufficient statistics)
    M-step  pi_k = N_k / N
            Bernoulli:  mu_k = (S_k + alpha) / (N_k + 2 alpha), clamped to [eps, 1 - eps]
            Gaussian:   mu_k = S_k / N_k,  sigma_k^2 = Q_k / N_k - mu_k^2, floored at min_variance

The objective EM climbs is J(theta) = log p(X | theta) + log p(theta), reported per image (J / N):

- Bernoulli means get a Beta(1 + alpha, 1 + alpha) prior, log p(mu) = alpha sum_kd [log mu_kd + log(1 - mu_kd)]
  + const: alpha pseudo-counts of a 0 and of a 1 per pixel and component (alpha = 1 is Laplace's add-one rule;
  alpha = 0 is maximum likelihood). The M-step above is then the MAP update. Without it a pixel that is 0 in every
  image of a component gets mu = 0, and one test image with ink there has probability 0 (infinite NLL).
- eps (`mean_clamp`) keeps mu in [eps, 1 - eps] and `min_variance` floors sigma^2 (a Gaussian collapsing on one image
  or on a constant pixel, sigma -> 0, sends the likelihood to infinity). Both are constraints, and the clamped
  updates are still the exact maximizers of the M-step's objective on the constrained set: per (k, d) it is concave
  in mu ((S + alpha) log mu + (N_k - S + alpha) log(1 - mu)), and in sigma^2 it rises up to the unconstrained
  maximizer and falls after it. So J never decreases from one iteration to the next (the EM inequality: the
  E-step makes the bound tight, the M-step raises it); tests/test_mixture_em.py checks it at every iteration.
- A component no image is responsible for (N_k = 0 in floating point) keeps its means and variances, and gets
  pi_k = 0 (log pi_k = -inf): any value maximizes its (empty) terms, and keeping them keeps J.
- The mixture weights have no prior (maximum likelihood); the log-likelihood itself is what evaluation reports.

One EM iteration is one training step over the whole training set (batch EM, not mini-batch or online EM): the
monotone objective holds only for the exact E-step over a fixed data set, and with the statistics accumulated in
chunks (`chunk_size` images at a time) the memory stays O(chunk K + K D). With several processes each takes a shard
of the images and the statistics are summed across processes (`reduce`) before the M-step: the same update.

Initialization (seeded by a torch.Generator): "kmeans++" picks K images as seeds (Arthur & Vassilvitskii 2007: the
first uniformly, each next with probability proportional to its squared distance to the nearest seed so far),
assigns every image to its nearest seed (hard responsibilities) and runs one M-step; "random" draws each image's
responsibilities from a flat Dirichlet (normalized exponentials) and runs one M-step.

Gradient ascent maximizes the same J / N by a torch optimizer on the unconstrained parameters (log-softmax weights,
logit means, log variances); it knows no clamp or floor, so on problems where those bind the two can differ.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..draws import categorical, rand_tensor, randint_tensor
from ..errors import UserInputError
from .modeling_mixture import MixtureModel

__all__ = [
    "Statistics",
    "EMStep",
    "sufficient_statistics",
    "e_step",
    "m_step",
    "em_step",
    "log_prior",
    "objective",
    "gradient_ascent_step",
    "kmeans_plus_plus",
    "initialize",
    "INIT_METHODS",
]

INIT_METHODS = ("kmeans++", "random")


@dataclass
class Statistics:
    """The E-step's sufficient statistics over N images: N_k (K,), S_k = sum_n r_nk x_n (K, D), Q_k = sum_n r_nk
    x_n^2 (K, D; Gaussian only), and sum_n log p(x_n) (float64; NaN when the responsibilities were given)."""

    count: torch.Tensor  # () number of images N
    resp_sum: torch.Tensor  # (K,) N_k
    weighted_sum: torch.Tensor  # (K, D) S_k
    weighted_square: torch.Tensor | None  # (K, D) Q_k
    log_likelihood: torch.Tensor  # () sum_n log p(x_n)

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.count, self.resp_sum, self.weighted_sum, self.weighted_square, self.log_likelihood)
                if t is not None]  # fmt: skip

    def add(self, other: "Statistics") -> "Statistics":
        square = None if self.weighted_square is None else self.weighted_square + other.weighted_square
        return Statistics(self.count + other.count, self.resp_sum + other.resp_sum,
                          self.weighted_sum + other.weighted_sum, square,
                          self.log_likelihood + other.log_likelihood)  # fmt: skip


@dataclass
class EMStep:
    """One iteration: the log-likelihood and the objective J per image at the parameters the E-step saw (before
    the M-step's update), and the number of components with pi_k > 0 after it."""

    log_likelihood: float
    objective: float
    alive: int


def sufficient_statistics(x: torch.Tensor, resp: torch.Tensor, squares: bool, log_px: torch.Tensor | None = None):
    """N_k, S_k and Q_k of images x (N, D) under responsibilities r (N, K), accumulated in float64."""
    r = resp.to(x.dtype)
    total = log_px.double().sum() if log_px is not None else torch.tensor(float("nan"), dtype=torch.float64)
    return Statistics(
        count=torch.tensor(float(x.shape[0]), dtype=torch.float64, device=x.device),
        resp_sum=r.double().sum(0),  # (K,)
        weighted_sum=(r.T @ x).double(),  # (K, D)
        weighted_square=(r.T @ (x * x)).double() if squares else None,  # (K, D)
        log_likelihood=total.to(x.device),
    )


@torch.no_grad()
def e_step(model: MixtureModel, x: torch.Tensor, chunk_size: int = 4096) -> Statistics:
    """Responsibilities r_nk = p(z = k | x_n) by log-sum-exp, and their sufficient statistics, `chunk_size` images
    at a time; also sum_n log p(x_n) at the current parameters."""
    x = model.flatten(x)
    squares = model.config.distribution == "gaussian"
    stats = None
    for start in range(0, x.shape[0], chunk_size):
        chunk = x[start : start + chunk_size]  # (n, D)
        joint = model.log_joint(chunk)  # (n, K) log pi_k + log p(x | k)
        # log-sum-exp written out so that the (n, K) exponentials serve both log p(x) and the responsibilities
        # (torch.logsumexp and then exp(joint - log p(x)) computed them twice: a sixth of an iteration, profiled)
        peak = joint.amax(dim=1, keepdim=True)  # (n, 1): every exponent <= 0, the largest exactly 0
        e = torch.exp(joint - peak)  # (n, K)
        total = e.sum(dim=1, keepdim=True)  # (n, 1), in [1, K]
        log_px = peak + total.log()  # (n, 1) log p(x)
        resp = e / total  # (n, K), rows sum to 1
        part = sufficient_statistics(chunk, resp, squares, log_px)
        stats = part if stats is None else stats.add(part)
    if stats is None:
        raise UserInputError("EM needs at least one image.")
    return stats


def log_prior(model: MixtureModel) -> torch.Tensor:
    """log p(theta) up to a constant: alpha sum_kd [log mu_kd + log(1 - mu_kd)] for Bernoulli means (a Beta(1 + alpha,
    1 + alpha) prior), 0 for Gaussians. Differentiable (gradient ascent uses it too)."""
    cfg = model.config
    if cfg.distribution != "bernoulli" or cfg.bernoulli_pseudo_count == 0:
        return torch.zeros((), dtype=torch.float64, device=model.weight_logits.device)
    l = model.mean_logits  # log mu + log(1 - mu) = -softplus(-l) - softplus(l)
    return (
        cfg.bernoulli_pseudo_count
        * -(torch.nn.functional.softplus(-l) + torch.nn.functional.softplus(l)).double().sum()
    )


@torch.no_grad()
def m_step(model: MixtureModel, stats: Statistics) -> int:
    """The closed-form updates (module docstring) written into the model's parameters. Returns how many
    components have pi_k > 0."""
    cfg = model.config
    n, nk = stats.count, stats.resp_sum  # (), (K,)
    alive = nk > 0
    # pi_k = N_k / N  (log 0 = -inf for a component no image is responsible for)
    model.weight_logits.copy_(torch.log(nk) - torch.log(n))
    if cfg.distribution == "bernoulli":
        alpha, eps = cfg.bernoulli_pseudo_count, cfg.mean_clamp
        # mu_k = (S_k + alpha) / (N_k + 2 alpha): the mode of the Beta posterior; clamped to [eps, 1 - eps]
        mu = ((stats.weighted_sum + alpha) / (nk[:, None] + 2 * alpha)).clamp(eps, 1 - eps)  # (K, D)
        logits = torch.log(mu) - torch.log1p(-mu)
        model.mean_logits.copy_(torch.where(alive[:, None], logits, model.mean_logits.double()))
    else:
        safe = nk.clamp_min(torch.finfo(torch.float64).tiny)[:, None]
        mu = stats.weighted_sum / safe  # (K, D) mu_k = S_k / N_k
        var = (stats.weighted_square / safe - mu**2).clamp_min(cfg.min_variance)  # E_r[x^2] - mu^2, floored
        model.means.copy_(torch.where(alive[:, None], mu, model.means.double()))
        model.log_variances.copy_(torch.where(alive[:, None], torch.log(var), model.log_variances.double()))
    return int(alive.sum())


def em_step(model: MixtureModel, x: torch.Tensor, reduce: Callable | None = None, chunk_size: int = 4096) -> EMStep:
    """One EM iteration over the images x: E-step, `reduce` (the sum over processes, or None), M-step. Returns the
    log-likelihood and J per image at the parameters before the update."""
    stats = e_step(model, x, chunk_size)
    if reduce is not None:
        stats = Statistics(*_split_like(stats, reduce(torch.cat([t.reshape(-1) for t in stats.tensors()]))))
    with torch.no_grad():
        prior = float(log_prior(model))
    n = float(stats.count)
    ll = float(stats.log_likelihood)
    alive = m_step(model, stats)
    return EMStep(log_likelihood=ll / n, objective=(ll + prior) / n, alive=alive)


def _split_like(stats: Statistics, flat: torch.Tensor) -> list:
    """The summed flat vector back into Statistics' fields (None where the field is None)."""
    out, offset = [], 0
    for t in (stats.count, stats.resp_sum, stats.weighted_sum, stats.weighted_square, stats.log_likelihood):
        if t is None:
            out.append(None)
            continue
        out.append(flat[offset : offset + t.numel()].reshape(t.shape))
        offset += t.numel()
    return out


def objective(model: MixtureModel, x: torch.Tensor) -> torch.Tensor:
    """J / N = (sum_n log p(x_n) + log p(theta)) / N, differentiable: what gradient ascent maximizes."""
    return (model(x).double().sum() + log_prior(model)) / x.shape[0]


def gradient_ascent_step(model: MixtureModel, x: torch.Tensor, optimizer: torch.optim.Optimizer) -> EMStep:
    """One optimizer step up the gradient of J / N over the images x. Returns the log-likelihood and J per image
    before the step (as `em_step`)."""
    optimizer.zero_grad()
    log_likelihood = model(x).double().sum() / x.shape[0]
    value = log_likelihood + log_prior(model) / x.shape[0]
    (-value).backward()
    optimizer.step()
    return EMStep(log_likelihood=float(log_likelihood.detach()), objective=float(value.detach()),
                  alive=model.config.num_components)  # fmt: skip


@torch.no_grad()
def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: K row indices of x (N, D). The first uniformly; each next with probability
    D(x)^2 / sum D^2, D(x) the distance to the nearest seed chosen so far (Arthur & Vassilvitskii 2007)."""
    n = x.shape[0]
    if k > n:
        raise UserInputError(f"`num_components` ({k}) must be at most the number of training images ({n}).")
    chosen = [int(randint_tensor(0, n, (1,), generator))]
    nearest = ((x - x[chosen[0]]) ** 2).sum(1).double()  # (N,) squared distance to the nearest seed
    for _ in range(1, k):
        total = nearest.sum()
        if total <= 0:  # every image coincides with a seed: the rest uniformly among the images
            index = int(randint_tensor(0, n, (1,), generator))
        else:
            index = int(categorical((nearest / total).cpu(), 1, generator))
        chosen.append(index)
        nearest = torch.minimum(nearest, ((x - x[index]) ** 2).sum(1).double())
    return torch.tensor(chosen)


@torch.no_grad()
def initialize(model: MixtureModel, x: torch.Tensor, method: str, generator: torch.Generator,
               chunk_size: int = 4096) -> None:  # fmt: skip
    """Seeded starting parameters from responsibilities, then one M-step: "kmeans++" (hard assignment to the
    nearest of K k-means++ seeds) or "random" (each image's responsibilities from a flat Dirichlet)."""
    if method not in INIT_METHODS:
        raise UserInputError(f"`init` must be one of {INIT_METHODS}, got {method!r}.")
    x = model.flatten(x)
    k = model.config.num_components
    squares = model.config.distribution == "gaussian"
    if method == "kmeans++":
        seeds = x[kmeans_plus_plus(x, k, generator).to(x.device)]  # (K, D)
    stats = None
    for start in range(0, x.shape[0], chunk_size):
        chunk = x[start : start + chunk_size]
        if method == "kmeans++":
            distance = (chunk * chunk).sum(1, keepdim=True) - 2 * chunk @ seeds.T + (seeds * seeds).sum(1)  # (n, K)
            resp = torch.nn.functional.one_hot(distance.argmin(1), k)
        else:
            e = -torch.log(rand_tensor((chunk.shape[0], k), generator, dtype=torch.float64))  # Exp(1)
            resp = (e / e.sum(1, keepdim=True)).to(chunk.device)  # Dirichlet(1, ..., 1)
        part = sufficient_statistics(chunk, resp, squares)
        stats = part if stats is None else stats.add(part)
    m_step(model, stats)

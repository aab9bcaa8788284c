"""Random draws that give the same numbers on any device: every seeded draw in hubgen goes through here.

A torch.Generator lives on one device and a kernel only takes a generator of its own device: a CPU generator
passed to a draw on CUDA fails ("Expected a 'cuda' device type for generator but found 'cpu'"), and a draw on
CUDA gives other numbers than the same seed on the CPU. hubgen follows diffusers' `randn_tensor`
(diffusers.utils.torch_utils), for every distribution it draws from:

- a CPU generator draws on the CPU and the result moves to the target device, so a seed gives the same
  numbers (and images) on any device;
- a generator on the target's device type draws there;
- a generator on another accelerator than the target (a CUDA generator for a CPU tensor) is refused with a
  ValueError naming `generator`, as diffusers refuses it;
- a list of generators draws row i of the batch (dim 0) from generator i, one image per seed, so image i of a
  batch is the image a one-image call with generator i gives;
- no generator draws from the global RNG on the target device.

`randn_tensor` is diffusers' own (pipelines import it from diffusers); `rand_tensor`, `randint_tensor` and
`bernoulli` are its equivalents for U[0, 1), integers and Bernoulli draws, with the same rule (`draw`).
`bernoulli(p)` is (u < p) for u ~ U[0, 1): bit for bit what torch.bernoulli(p, generator) gives on the CPU
(a test checks it), and the same on any device.
"""

from collections.abc import Callable, Sequence

import torch

from .errors import UserInputError

__all__ = [
    "draw",
    "randn_tensor",
    "rand_tensor",
    "randint_tensor",
    "bernoulli",
    "categorical",
    "check_generators",
    "draw_device",
]

Generators = torch.Generator | list[torch.Generator] | None


def _as_device(device) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


def draw_device(generator: torch.Generator | None, device) -> torch.device:
    """Where a draw for a tensor on `device` happens: the generator's device (a CPU generator's numbers are then
    moved), the target device without a generator; a non-CPU generator of another device type is refused."""
    device = _as_device(device)
    if generator is None:
        return device
    gen_device = generator.device
    if gen_device.type != "cpu" and gen_device.type != device.type:
        raise UserInputError(
            f"`generator` is on {gen_device} but the draw is for a tensor on {device}: pass a CPU generator "
            f"(torch.Generator(), the same numbers on any device) or one on {device.type}."
        )
    return gen_device


def check_generators(generator, num_images: int, device=None, name: str = "generator") -> None:
    """A pipeline's check of `generator`: None, a torch.Generator, or a list of exactly `num_images` of them,
    each usable for draws on `device` (when given: a CPU generator, or one on that device type)."""
    if generator is None:
        return
    if isinstance(generator, (list, tuple)):
        if len(generator) != num_images:
            raise UserInputError(
                f"Got {len(generator)} generators in `{name}` for {num_images} images; pass one per image "
                "(or a single torch.Generator)."
            )
        generators = list(generator)
    else:
        generators = [generator]
    for g in generators:
        if not isinstance(g, torch.Generator):
            raise UserInputError(
                f"`{name}` must be None, a torch.Generator or a list of them (one per image), got {type(g).__name__}."
            )
        if device is not None:
            draw_device(g, device)


def draw(sample: Callable, shape: Sequence[int], generator: Generators = None, device=None, **kwargs) -> torch.Tensor:
    """`sample(shape, generator=g, device=d, **kwargs)` (torch.rand, torch.randn, ...) by the rule above, the
    result on `device`. With a list of generators, row i of dim 0 comes from generator i."""
    device = _as_device(device)
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise UserInputError(f"Got {len(generator)} generators for a batch of {shape[0]}: pass one per image.")
        rows = [sample((1, *shape[1:]), generator=g, device=draw_device(g, device), **kwargs) for g in generator]
        return torch.cat([r.to(device) for r in rows]) if rows else torch.empty(shape, device=device, **kwargs)
    return sample(shape, generator=generator, device=draw_device(generator, device), **kwargs).to(device)


def randn_tensor(shape, generator: Generators = None, device=None, dtype=None) -> torch.Tensor:
    """eps ~ N(0, I) of `shape` on `device`: the numbers diffusers' randn_tensor draws for the same generator."""
    return draw(torch.randn, shape, generator, device, dtype=dtype)


def rand_tensor(shape, generator: Generators = None, device=None, dtype=None) -> torch.Tensor:
    """u ~ U[0, 1) of `shape` on `device`."""
    return draw(torch.rand, shape, generator, device, dtype=dtype)


def randint_tensor(low: int, high: int, shape, generator: Generators = None, device=None) -> torch.Tensor:
    """Integers uniform on {low, ..., high - 1} (int64) of `shape` on `device`."""
    return draw(lambda s, **kw: torch.randint(low, high, s, **kw), shape, generator, device)


def bernoulli(p: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """x ~ Bernoulli(p) elementwise, as (u < p) with u ~ U[0, 1) on p's device, in p's dtype (0. or 1.).

    u is drawn in float32 for half-precision p (float64 for float64 p): what torch.bernoulli does on the CPU."""
    u_dtype = p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32
    u = rand_tensor(p.shape, generator, p.device, u_dtype)
    return (u < p).to(p.dtype)


def categorical(probs: torch.Tensor, num_samples: int, generator: Generators = None, device=None) -> torch.Tensor:
    """`num_samples` indices i ~ Categorical(probs) (int64, with replacement) on `device`, by the rule above: the
    numbers torch.multinomial draws from one generator, or draw j from generator j of a list."""

    def sample(shape, generator=None, device=None):
        return torch.multinomial(probs.to(device), shape[0], replacement=True, generator=generator)

    return draw(sample, (num_samples,), generator, device)

"""The training loops' gradient clipping (hubgen.training.clip_grad_norm) against torch's clip_grad_norm_: the same
norm and the same gradients bit for bit, whether the bound binds or not, with infinite bounds and NaN gradients;
and accelerate's own call wherever the CPU shortcut does not apply."""

import types

import pytest
import torch
from accelerate.utils import DistributedType

from hubgen import training as tr


def _run(distributed_type=DistributedType.NO, device="cpu", scaler=None, calls=None):
    """A Run with the accelerator attributes clip_grad_norm reads; accelerate's clip_grad_norm_ is recorded."""

    def accelerate_clip(parameters, max_norm):
        calls.append(max_norm)
        return torch.tensor(-1.0)

    accelerator = types.SimpleNamespace(distributed_type=distributed_type, device=torch.device(device), scaler=scaler,
                                        clip_grad_norm_=accelerate_clip)  # fmt: skip
    return types.SimpleNamespace(accelerator=accelerator)


def _parameters(scale: float, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in [(64, 2, 3, 3), (64,), (4, 64, 1, 1)]]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * scale
    params.append(torch.nn.Parameter(torch.zeros(3)))  # a parameter without a gradient
    return params


@pytest.mark.parametrize("max_norm", [1.0, 100.0, float("inf")])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3, "nan"])
def test_clipping_equals_torch_bit_for_bit(scale, max_norm):
    ours, theirs = _parameters(1.0), _parameters(1.0)
    for params in (ours, theirs):
        params[0].grad *= float("nan") if scale == "nan" else scale
    before = [p.grad.clone() for p in ours[:-1]]
    norm = tr.clip_grad_norm(_run(calls=[]), ours, max_norm)
    norm_ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    torch.testing.assert_close(norm, norm_ref, rtol=0, atol=0, equal_nan=True)
    for a, b in zip(ours[:-1], theirs[:-1], strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0, equal_nan=True)
    assert ours[-1].grad is None
    binds = scale == "nan" or norm_ref.item() > max_norm
    assert binds == any(not torch.equal(a.grad, b) for a, b in zip(ours[:-1], before, strict=True))


def test_a_generator_of_parameters_is_read_once_and_clipped():
    params = _parameters(1e3)
    norm = tr.clip_grad_norm(_run(calls=[]), (p for p in params), 1.0)
    assert norm > 1.0
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params[:-1]]))
    torch.testing.assert_close(total, torch.tensor(1.0), rtol=1e-5, atol=0)


@pytest.mark.parametrize("attributes", [{"device": "cuda"}, {"distributed_type": DistributedType.FSDP},
                                        {"distributed_type": DistributedType.DEEPSPEED}, {"scaler": object()}],
                         ids=["gpu", "fsdp", "deepspeed", "loss-scaler"])  # fmt: skip
def test_elsewhere_it_is_accelerates_own_clipping(attributes):
    calls, params = [], _parameters(1e3)
    before = [p.grad.clone() for p in params[:-1]]
    assert tr.clip_grad_norm(_run(calls=calls, **attributes), params, 2.5).item() == -1.0
    assert calls == [2.5]
    assert all(torch.equal(p.grad, b) for p, b in zip(params[:-1], before, strict=True))

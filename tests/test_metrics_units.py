"""Likelihood units: closed forms, round trips, the logit transform's log-determinant against autograd, and
agreement with the VAE's bits_per_dim. Also: Inception FID fails clearly without local weights."""

import importlib.util
import math

import pytest
import torch
from torch.distributions import AffineTransform, SigmoidTransform, TransformedDistribution, Uniform

from hubgen.metrics.inception import inception_fid
from hubgen.metrics.units import (
    bits_per_dim_to_nats,
    bits_to_nats,
    inverse_logit_transform,
    logit_transform,
    logit_transform_log_det,
    nats_to_bits,
    nats_to_bits_per_dim,
)
from hubgen.vae.losses import bits_per_dim


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_a_uniform_density_on_the_unit_cube_is_log2_levels_bits_per_dim():
    # p(x) = 1 on [0, 1)^D: NLL = 0, and each of the 256 bins has probability 1/256 per dimension
    assert nats_to_bits_per_dim(0.0, num_dims=784, num_levels=256) == 8.0
    assert nats_to_bits_per_dim(0.0, num_dims=64, num_levels=17) == pytest.approx(math.log2(17), rel=1e-15)
    assert nats_to_bits_per_dim(784 * math.log(2), num_dims=784) == pytest.approx(1.0, rel=1e-15)


def test_nats_and_bits_per_dim_round_trip():
    g = _gen(1)
    nll = torch.rand(7, generator=g, dtype=torch.float64) * 1000
    log_det = torch.randn(7, generator=g, dtype=torch.float64) * 50
    for levels in (None, 17, 256):
        bpd = nats_to_bits_per_dim(nll, 784, levels, log_det_preprocess=log_det)
        back = bits_per_dim_to_nats(bpd, 784, levels, log_det_preprocess=log_det)
        torch.testing.assert_close(back, nll, rtol=1e-12, atol=1e-9)
    assert bits_to_nats(nats_to_bits(3.5)) == pytest.approx(3.5, rel=1e-15)
    assert nats_to_bits(math.log(2)) == pytest.approx(1.0, rel=1e-15)


def test_agrees_exactly_with_the_vae_bits_per_dim():
    nll = torch.rand(9, generator=_gen(2), dtype=torch.float64) * 200
    for levels in (None, 17, 256):
        assert torch.equal(nats_to_bits_per_dim(nll, 64, levels), bits_per_dim(nll, 64, levels))
        assert nats_to_bits_per_dim(123.4, 784, levels) == bits_per_dim(123.4, 784, levels)


@pytest.mark.parametrize("alpha", [0.0, 0.05, 1e-6])
def test_logit_log_det_matches_autograd_and_the_transform_inverts(alpha):
    x = torch.rand(3, 1, 2, 3, generator=_gen(3), dtype=torch.float64) * 0.98 + 0.01
    log_det = logit_transform_log_det(x, alpha)
    assert log_det.shape == (3,)
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: logit_transform(v, alpha).reshape(-1), x[b]).reshape(6, 6)
        sign, logabsdet = torch.linalg.slogdet(jac)
        torch.testing.assert_close(log_det[b], logabsdet, rtol=1e-12, atol=1e-12)
        assert sign == 1
    torch.testing.assert_close(inverse_logit_transform(logit_transform(x, alpha), alpha), x, rtol=1e-12, atol=1e-12)


def test_the_log_det_sign_convention_recovers_the_data_density():
    # x ~ U[0, 1)^D has NLL_x = 0 (8 bits/dim at 256 levels). Its logit image y has the density
    # torch.distributions computes by change of variables; NLL_y - log_det must give back NLL_x = 0.
    alpha, d = 0.05, 6
    to_y = [AffineTransform(alpha, 1 - 2 * alpha), SigmoidTransform().inv]
    law_y = TransformedDistribution(
        Uniform(torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)), to_y
    )
    x = torch.rand(4, d, generator=_gen(4), dtype=torch.float64)
    nll_y = -law_y.log_prob(logit_transform(x, alpha)).sum(1)
    bpd = nats_to_bits_per_dim(nll_y, d, 256, log_det_preprocess=logit_transform_log_det(x, alpha))
    torch.testing.assert_close(bpd, torch.full((4,), 8.0, dtype=torch.float64), rtol=0, atol=1e-12)


def test_invalid_arguments_name_themselves():
    with pytest.raises(ValueError, match="`num_dims`"):
        nats_to_bits_per_dim(1.0, 0)
    with pytest.raises(ValueError, match="`num_levels`"):
        bits_per_dim_to_nats(1.0, 10, num_levels=1)
    with pytest.raises(ValueError, match="`alpha`"):
        logit_transform_log_det(torch.rand(2, 3), alpha=0.5)


def test_inception_fid_refuses_without_local_weights_or_library(tmp_path):
    images = torch.rand(4, 1, 8, 8, generator=_gen(5))
    with pytest.raises(ValueError, match="downloads nothing"):
        inception_fid(images, images, weights_path=None)
    with pytest.raises(ValueError, match="not an existing file"):
        inception_fid(images, images, weights_path=tmp_path / "missing.pth")
    if importlib.util.find_spec("torchmetrics") or importlib.util.find_spec("torch_fidelity"):
        pytest.skip("an Inception FID library is installed here; the no-library path cannot be exercised")
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"not really weights")
    with pytest.raises(ValueError, match="No Inception feature library is installed.*torchmetrics"):
        inception_fid(images, images, weights_path=weights)

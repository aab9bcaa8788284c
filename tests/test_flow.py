"""The flow family's math: every layer inverts and its log-determinant equals autograd's; densities integrate to
one; bits/dim of a known density has its closed form; ActNorm initializes once and survives save/load; the
pipeline saves and loads exactly."""

import copy
import math

import pytest
import torch
from torch.autograd.functional import jacobian

import hubgen
from hubgen.flow import FlowModel, FlowPipeline, losses
from hubgen.flow.modeling_flow import STEP_TENSORS, FlowLevel
from hubgen.flow.transforms import (
    ActNorm,
    AffineCoupling,
    Center,
    InvertibleConv1x1,
    LearnedPrior,
    Logit,
    ReLU,
    Scale,
    Split,
    Squeeze,
    UniformDequantization,
    VariationalDequantization,
    squeeze,
    standard_normal_log_prob,
    without_autocast,
)
from hubgen.pipeline_utils import PICKLE_SUFFIXES

F64 = torch.float64


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def randomize(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its (often zero, identity-making) initialization, so no layer is trivially exact."""
    g = _g(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def tiny_flow(**overrides) -> FlowModel:
    cfg = dict(sample_size=4, in_channels=1, pixel_levels=17, num_levels=2, steps_per_level=1, hidden_channels=4)
    cfg.update(overrides)
    torch.manual_seed(0)
    return FlowModel(**cfg)


def _initialized_level(level: FlowLevel, x: torch.Tensor) -> FlowLevel:
    """ActNorm's data-dependent initialization of every step: one forward pass in training mode."""
    level.train()
    with torch.no_grad():
        level(x)
    return level.eval()


def _layers():
    """(name, layer, input shape (C, H, W), input low) for every bijective layer, in float64."""
    torch.manual_seed(0)
    actnorm = ActNorm(4).double()
    actnorm.initialize(torch.randn(16, 4, 2, 2, generator=_g(1), dtype=F64) * 2 + 1)
    level = randomize(FlowLevel(4, 8, 2).double())
    _initialized_level(level, torch.randn(8, 4, 2, 2, generator=_g(2), dtype=F64))
    return [
        ("squeeze", Squeeze(), (2, 4, 4), None),
        ("actnorm", actnorm, (4, 2, 2), None),
        ("invconv", randomize(InvertibleConv1x1(4).double(), 0.2), (4, 2, 2), None),
        ("coupling", randomize(AffineCoupling(4, 8).double()), (4, 2, 2), None),
        ("coupling_odd_channels", randomize(AffineCoupling(3, 8).double()), (3, 2, 2), None),
        ("split", randomize(Split(4).double()), (4, 2, 2), None),
        ("learned_prior", randomize(LearnedPrior((2, 2, 2)).double()), (2, 2, 2), None),
        ("flow_level", level, (4, 2, 2), None),
        ("scale", Scale(17), (1, 2, 2), 0.0),
        ("logit", Logit(0.05), (1, 2, 2), 0.0),
        ("center", Center(), (1, 2, 2), 0.0),
    ]


LAYERS = _layers()
IDS = [name for name, *_ in LAYERS]


def _inputs(shape, low, n=3, seed=3):
    if low is not None:  # [0, 1) data
        return torch.rand((n, *shape), generator=_g(seed), dtype=F64) * 0.98 + 0.01
    return torch.randn((n, *shape), generator=_g(seed), dtype=F64)


@pytest.mark.parametrize(("name", "layer", "shape", "low"), LAYERS, ids=IDS)
def test_every_layer_inverts_in_float64(name, layer, shape, low):
    layer.eval()
    x = _inputs(shape, low)
    y, log_det = layer(x)
    x_back, log_det_back = layer.inverse(y)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_det_back, -log_det, rtol=0, atol=1e-10)
    assert log_det.shape == (3,) and y.numel() == x.numel()


def _jacobian_log_det(fn, x_one: torch.Tensor) -> torch.Tensor:
    """log |det d fn(x) / dx| by autograd for one example (C, H, W) -> scalar."""
    shape = x_one.shape
    jac = jacobian(lambda v: fn(v.reshape(1, *shape)).reshape(-1), x_one.reshape(-1))  # (D, D)
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign != 0
    return logabsdet


@pytest.mark.parametrize(("name", "layer", "shape", "low"), LAYERS, ids=IDS)
def test_every_layer_log_det_equals_the_autograd_jacobian(name, layer, shape, low):
    layer.eval()
    x = _inputs(shape, low, n=2, seed=5)
    _, log_det = layer(x)
    for i in range(len(x)):
        expected = _jacobian_log_det(lambda v: layer(v)[0], x[i])
        torch.testing.assert_close(log_det[i], expected, rtol=0, atol=1e-9)
    y = layer(x)[0]
    _, log_det_inverse = layer.inverse(y)
    torch.testing.assert_close(log_det_inverse[0], _jacobian_log_det(lambda v: layer.inverse(v)[0], y[0]),
                               rtol=0, atol=1e-9)  # fmt: skip


def _through_layers(layers: torch.nn.ModuleDict, x: torch.Tensor):
    """One step through its three layers of transforms.py, one after the other: (y, the summed log-dets)."""
    log_det = 0
    for name in ("actnorm", "invconv", "coupling"):
        x, ld = layers[name](x)
        log_det = log_det + ld
    return x, log_det


def test_a_level_equals_its_steps_run_through_their_own_layers():
    level = randomize(FlowLevel(4, 8, 3).double(), seed=4)
    _initialized_level(level, torch.randn(8, 4, 3, 3, generator=_g(7), dtype=F64) * 3)
    assert bool(level.actnorm_initialized.all()) and level.actnorm_log_scale.shape == (3, 4)
    # ActNorm + 1x1 convolution of the 3 steps, built in one batched product: each slice is that step's two layers
    weight, bias, per_pixel = level.norm_and_conv()
    assert weight.shape == (3, 4, 4) and bias.shape == (3, 4) and per_pixel.shape == (3,)
    x = torch.randn(5, 4, 3, 3, generator=_g(8), dtype=F64)
    for k in range(3):
        layers = level.step_layers(k)
        h, ld_norm = layers["actnorm"](x)
        h, ld_conv = layers["invconv"](h)
        fused = torch.nn.functional.conv2d(x, weight[k][:, :, None, None], bias[k])
        torch.testing.assert_close(fused, h, rtol=0, atol=1e-12)
        torch.testing.assert_close(9 * per_pixel[k].expand(5), ld_norm + ld_conv, rtol=0, atol=1e-12)
    # the whole level: each step through its own ActNorm, 1x1 convolution and coupling
    y, log_det = level(x)
    h, expected = x, torch.zeros(5, dtype=F64)
    for k in range(3):
        h, ld = _through_layers(level.step_layers(k), h)
        expected = expected + ld
    torch.testing.assert_close(y, h, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_det, expected, rtol=0, atol=1e-12)
    # a running sum passed in receives the steps' terms
    torch.testing.assert_close(level(x, log_det=torch.full((5,), 2.0, dtype=F64))[1], expected + 2, rtol=0, atol=1e-12)


def test_under_bf16_autocast_a_level_casts_its_stacked_weights_as_autocast_casts_each_one():
    # FlowLevel casts each stacked coupling tensor to bf16 once; autocast casts each step's nn.Conv2d weights at each
    # call. The same values either way: the level's output and log-det equal, bit for bit, the fused float32 1x1
    # convolution followed by each step's AffineCoupling layer run by autocast itself
    level = randomize(FlowLevel(4, 8, 3), 0.3, seed=4)  # float32, as trained under autocast
    _initialized_level(level, torch.randn(8, 4, 6, 6, generator=_g(7)) * 3)
    x = torch.randn(5, 4, 6, 6, generator=_g(8)).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, log_det = level(x)
        weight, bias, per_pixel = level.norm_and_conv()
        h, expected = x, None
        for k in range(3):
            with without_autocast(h):
                h = torch.nn.functional.conv2d(h, weight[k][:, :, None, None], bias[k])
            h, ld = level.step_layers(k)["coupling"](h)
            step = (36 * per_pixel[k]).expand(5) + ld
            expected = step if expected is None else expected + step
    assert y.dtype == torch.float32 and log_det.dtype == torch.float32
    torch.testing.assert_close(y, h, rtol=0, atol=0)
    torch.testing.assert_close(log_det, expected, rtol=0, atol=0)
    with torch.no_grad():
        assert (y - level(x)[0]).abs().max() > 1e-4  # bf16 did run: float32 gives other numbers


def test_a_level_initializes_each_step_from_the_data_that_reaches_it():
    # Glow section 3.1: in training mode, step k's ActNorm takes the mean and std of its own input (the output of
    # step k - 1, already initialized), so every step's ActNorm output has zero mean and unit variance per channel
    level = randomize(FlowLevel(4, 8, 3).double(), seed=6)
    fresh = copy.deepcopy(level)
    x = torch.randn(64, 4, 3, 3, generator=_g(12), dtype=F64) * 3 + 1
    _initialized_level(level, x)
    h = x
    for k in range(3):
        layers = level.step_layers(k)
        a, _ = layers["actnorm"](h)
        torch.testing.assert_close(a.mean(dim=(0, 2, 3)), torch.zeros(4, dtype=F64), rtol=0, atol=1e-12)
        torch.testing.assert_close(a.std(dim=(0, 2, 3), unbiased=False), torch.ones(4, dtype=F64), rtol=0, atol=1e-5)
        h, _ = _through_layers(layers, h)
    before = {k: v.clone() for k, v in level.state_dict().items()}
    level.train()(x * 5)  # initialized: a second batch changes nothing
    assert all(torch.equal(v, before[k]) for k, v in level.state_dict().items())
    # initializing on a training batch that is then back-propagated (no initialize() before training)
    y, log_det = fresh.train()(x)
    (y.square().sum() - log_det.sum()).backward()
    assert bool(fresh.actnorm_initialized.all()) and all(p.grad.isfinite().all() for p in fresh.parameters())
    torch.testing.assert_close(y, level.eval()(x)[0], rtol=0, atol=1e-12)  # the same initialization, the same map
    assert all(torch.equal(v, before[k]) for k, v in level.state_dict().items())


def test_a_scale_fused_at_once_equals_its_layers_step_by_step():
    # The model's forward pass against every step of every scale run through its own ActNorm, 1x1 convolution and
    # coupling, one layer at a time
    model = randomize(tiny_flow(sample_size=8, steps_per_level=3, hidden_channels=6).double(), 0.2, seed=5)
    model.initialize(torch.rand(16, 1, 8, 8, generator=_g(9), dtype=F64))
    model.eval()
    x = torch.rand(4, 1, 8, 8, generator=_g(11), dtype=F64)
    z, log_det = model(x)
    h, expected = model.preprocess(x)
    eps = []
    for level, steps in enumerate(model.levels):
        h = squeeze(h)
        for k in range(steps.num_steps):
            h, ld = _through_layers(steps.step_layers(k), h)
            expected = expected + ld
        split = model.splits[level] if level < len(model.splits) else model.top_prior
        h, ld = split(h)
        expected = expected + ld
        if level < len(model.splits):
            eps.append(h[:, split.num_keep :].flatten(1))
            h = h[:, : split.num_keep]
        else:
            eps.append(h.flatten(1))
    torch.testing.assert_close(z, torch.cat(eps, dim=1), rtol=0, atol=1e-10)
    torch.testing.assert_close(log_det, expected, rtol=0, atol=1e-10)


def _per_step_layout(model: FlowModel) -> dict[str, torch.Tensor]:
    """The model's state_dict in the per-step layout of flows saved before FlowLevel: levels.{i}.{k}.{layer key}."""
    state = {}
    for key, value in model.state_dict().items():
        if not key.startswith("levels."):
            state[key] = value.clone()
    for i, level in enumerate(model.levels):
        state.update({f"levels.{i}.{key}": value.clone() for key, value in level.per_step_state_dict().items()})
    return state


def test_a_flow_saved_in_the_per_step_layout_loads_into_the_stacked_one(tmp_path):
    from safetensors.torch import load_file, save_file

    model = randomize(tiny_flow(sample_size=8, steps_per_level=2, hidden_channels=6), 0.2, seed=8)  # float32
    model.initialize(torch.rand(32, 1, 8, 8, generator=_g(8)), generator=_g(8))
    model.eval()
    old = _per_step_layout(model)
    # the keys and shapes that a step's three layers (one FlowStep module per step before FlowLevel) saved
    c = 4  # squeezed channels of the first scale
    assert old["levels.0.1.actnorm.log_scale"].shape == (1, c, 1, 1) and old["levels.0.1.actnorm.initialized"].ndim == 0
    assert old["levels.0.1.invconv.lower"].shape == (c, c) and old["levels.0.1.invconv.sign_s"].shape == (c,)
    assert old["levels.0.1.coupling.net.0.weight"].shape == (6, c // 2, 3, 3)
    assert old["levels.0.1.coupling.net.2.weight"].shape == (6, 6, 1, 1)
    assert old["levels.0.1.coupling.net.4.bias"].shape == (2 * (c - c // 2),)
    assert model.levels[0].coupling_in_weight.shape == (2 * 6, c // 2, 3, 3)  # stacked along the output channels
    assert {key.split(".", 3)[3] for key in old if key.startswith("levels.0.0.")} == set(STEP_TENSORS)
    assert not any("levels.0.actnorm" in key for key in old)
    x = torch.rand(3, 1, 8, 8, generator=_g(4)) * 0.98 + 0.01
    with torch.no_grad():
        expected = model(x)
    # load_state_dict (checkpoints, fine-tuning): strict, every key accounted for
    fresh = tiny_flow(sample_size=8, steps_per_level=2, hidden_channels=6)
    assert not fresh.actnorm_initialized()
    fresh.load_state_dict(old, strict=True)
    assert fresh.actnorm_initialized()
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), expected, rtol=0, atol=0)
    # from_pretrained (the Hub): a saved folder whose weights are in the per-step layout
    model.save_pretrained(tmp_path / "m")
    weights = next((tmp_path / "m").glob("*.safetensors"))
    assert set(load_file(weights)) == set(model.state_dict())
    save_file(old, weights)
    loaded = FlowModel.from_pretrained(tmp_path / "m")
    assert loaded.actnorm_initialized() and set(loaded.state_dict()) == set(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)


def test_invertible_conv_is_lu_parameterized_and_starts_as_a_rotation():
    conv = InvertibleConv1x1(6).double()
    w = conv.weight()
    torch.testing.assert_close(w @ w.T, torch.eye(6, dtype=F64), rtol=0, atol=1e-6)  # QR of a float32 draw
    randomize(conv, 0.2)
    w = conv.weight()
    torch.testing.assert_close(conv.log_s.sum(), torch.linalg.slogdet(w)[1], rtol=0, atol=1e-12)  # Glow eq. (10)
    torch.testing.assert_close(conv.inverse_weight() @ w, torch.eye(6, dtype=F64), rtol=0, atol=1e-12)
    names = {name for name, _ in conv.named_parameters()}
    assert names == {"lower", "upper", "log_s"} and set(dict(conv.named_buffers())) == {"permutation", "sign_s"}


def test_coupling_scale_is_a_bounded_sigmoid():
    coupling = AffineCoupling(4, 8).double()
    x = torch.randn(2, 4, 2, 2, generator=_g(0), dtype=F64)
    y, log_det = coupling(x)  # zero-initialized network: s = sigmoid(2), t = 0
    torch.testing.assert_close(y[:, 2:], x[:, 2:] * torch.sigmoid(torch.tensor(2.0, dtype=F64)))
    torch.testing.assert_close(log_det, torch.full((2,), 8 * math.log(torch.sigmoid(torch.tensor(2.0)).item()),
                                                   dtype=F64), rtol=0, atol=1e-6)  # fmt: skip
    with torch.no_grad():
        coupling.net[-1].bias.fill_(1e4)  # an enormous raw scale: s -> 1, never above
    y, log_det = coupling(x)
    assert torch.isfinite(y).all() and torch.isfinite(log_det).all() and log_det.abs().max() < 1e-8


def test_the_sign_bit_relu_equals_torch_relu_in_bfloat16_with_its_gradient():
    """Every finite bfloat16 value (all 2^16 patterns but NaNs: zeros of both signs, subnormals, +-inf), laid out
    channels-last as in the coupling networks: the same outputs and the same gradient as torch.relu, which is 0 at
    0 (relu's derivative is [y > 0])."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    values = bits.view(torch.bfloat16)
    values = values[~torch.isnan(values)]
    x = values.reshape(1, 2, 1, -1).contiguous(memory_format=torch.channels_last)  # 65,282 values
    g = torch.randn(x.shape, generator=_g(0)).to(torch.bfloat16)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = ReLU()(ours * 1)  # on a non-leaf, in place
    y_ref = torch.relu(theirs * 1)
    assert torch.equal(y, y_ref) and y.dtype == torch.bfloat16
    y.backward(g)
    y_ref.backward(g)
    assert torch.equal(ours.grad, theirs.grad)
    assert (ours.grad[x == 0] == 0).all() and torch.equal(ours.grad[x > 0], g[x > 0])
    z = torch.randn(3, 4, generator=_g(1), dtype=F64)  # other dtypes: torch.relu itself
    assert torch.equal(ReLU()(z.clone()), torch.relu(z))


def test_squeeze_matches_normflows():
    nf = pytest.importorskip("normflows")
    x = torch.randn(2, 3, 4, 6, generator=_g(0))
    ours, _ = Squeeze()(x)
    theirs, _ = nf.flows.Squeeze().inverse(x)  # normflows' generative direction is the unsqueeze
    assert torch.equal(ours, theirs)


# -- the whole flow -------------------------------------------------------------------------------------


def _initialized(model: FlowModel, seed: int = 0) -> FlowModel:
    model = randomize(model.double(), 0.2, seed)
    model.initialize(torch.rand(32, *(model.config.in_channels, model.config.sample_size, model.config.sample_size),
                                generator=_g(seed), dtype=F64), generator=_g(seed))  # fmt: skip
    return model.eval()


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(logit_alpha=None), dict(sample_size=8, num_levels=3, steps_per_level=2),
     dict(sample_size=28, num_levels=2, steps_per_level=1, hidden_channels=8, pixel_levels=256)],
    ids=["4x4", "no_logit", "8x8_3_levels", "28x28"],
)  # fmt: skip
def test_whole_flow_inverts_in_float64(overrides):
    model = _initialized(tiny_flow(**overrides))
    images = torch.rand(4, 1, model.config.sample_size, model.config.sample_size, generator=_g(1), dtype=F64)
    x, _ = model.dequantize(images, generator=_g(2))
    z, log_det = model(x)
    assert z.shape == (4, model.num_dims) and model.actnorm_initialized()
    x_back, log_det_back = model.inverse(z)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-10)
    torch.testing.assert_close(log_det_back, -log_det, rtol=0, atol=1e-8)
    assert torch.equal(model.to_intensities(x_back), model.quantize(images) / (model.config.pixel_levels - 1))


@pytest.mark.parametrize("logit_alpha", [0.05, None])
def test_whole_flow_log_det_equals_the_autograd_jacobian(logit_alpha):
    model = _initialized(tiny_flow(logit_alpha=logit_alpha))  # D = 16: two levels, a split, logit
    x = torch.rand(2, 1, 4, 4, generator=_g(3), dtype=F64) * 0.98 + 0.01
    z, log_det = model(x)
    for i in range(2):
        jac = jacobian(lambda v: model(v.reshape(1, 1, 4, 4))[0].reshape(-1), x[i].reshape(-1))  # (16, 16)
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac)[1], rtol=0, atol=1e-9)
    torch.testing.assert_close(model.log_prob(x), standard_normal_log_prob(z) + log_det, rtol=0, atol=0)


def test_variational_dequantization_flow_inverts_and_its_log_det_is_autograds():
    deq = randomize(VariationalDequantization(1, pixel_levels=17, hidden_channels=6, num_steps=2).double(), 0.2)
    k = torch.randint(0, 17, (2, 1, 4, 4), generator=_g(0)).to(F64)
    eps = torch.randn(2, 1, 4, 4, generator=_g(1), dtype=F64)
    u, log_det = deq.noise(eps, k)
    assert ((u > 0) & (u < 1)).all()
    eps_back, log_det_back = deq.noise_inverse(u, k)
    torch.testing.assert_close(eps_back, eps, rtol=0, atol=1e-10)
    torch.testing.assert_close(log_det_back, -log_det, rtol=0, atol=1e-9)
    for i in range(2):
        k_i = k[i : i + 1]
        jac = jacobian(lambda v, k_i=k_i: deq.noise(v.reshape(1, 1, 4, 4), k_i)[0].reshape(-1), eps[i].reshape(-1))
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac)[1], rtol=0, atol=1e-9)
    # forward(k) returns k + u and -log q(u|k) = -(log N(eps) - log |du/deps|) for its own eps draw
    y, neg_log_q = deq(k, generator=_g(5))
    eps5 = torch.randn(k.shape, generator=_g(5), dtype=F64)
    u5, log_det5 = deq.noise(eps5, k)
    torch.testing.assert_close(y, k + u5, rtol=0, atol=1e-12)
    torch.testing.assert_close(neg_log_q, -(standard_normal_log_prob(eps5) - log_det5), rtol=0, atol=1e-10)
    assert torch.equal(deq.inverse(y)[0], k)


def test_dequantizers_stay_in_their_bin_and_quantize_back():
    k = torch.randint(0, 256, (4, 1, 4, 4), generator=_g(0)).to(F64)
    for deq in (UniformDequantization(), VariationalDequantization(1, 256, 4, 1).double()):
        y, neg_log_q = deq(k, generator=_g(1))
        assert ((y >= k) & (y < k + 1)).all() and torch.equal(deq.inverse(y)[0], k)
    assert torch.equal(UniformDequantization()(k)[1], torch.zeros(4, dtype=F64))  # log q = 0: uniform


# -- densities ------------------------------------------------------------------------------------------


def _trapezoid_density(log_density, grid):
    return torch.trapezoid(log_density(grid).exp(), grid)


def test_density_integrates_to_one_in_1d():
    """x in the logit's support -> Logit -> ActNorm -> LearnedPrior -> eps ~ N(0, 1), with random parameters."""
    alpha = 0.05
    layers = [Logit(alpha), ActNorm(1).double(), randomize(LearnedPrior((1, 1, 1)).double(), 0.5, seed=3)]
    with torch.no_grad():
        layers[1].log_scale.fill_(0.4)
        layers[1].bias.fill_(-0.3)

    def log_density(x):
        h, total = x.reshape(-1, 1, 1, 1), 0.0
        for layer in layers:
            h, log_det = layer(h)
            total = total + log_det
        return standard_normal_log_prob(h) + total

    # The logit with alpha maps x in (-a, 1 + a), a = alpha / (1 - 2 alpha), onto the real line: that is the
    # density's support (slightly wider than [0, 1], so the mass on [0, 1) is a little below one).
    a = alpha / (1 - 2 * alpha)
    grid = torch.linspace(-a, 1 + a, 200_001, dtype=F64)[1:-1]
    assert abs(_trapezoid_density(log_density, grid).item() - 1.0) < 1e-6
    inside = torch.linspace(0, 1, 100_001, dtype=F64)
    assert 0.5 < _trapezoid_density(log_density, inside).item() < 1 - 1e-3


def test_density_integrates_to_one_in_2d():
    """x in R^2 as (B, 2, 1, 1) -> ActNorm -> 1x1 conv -> coupling -> split (conditional prior) -> last prior."""
    torch.manual_seed(0)
    actnorm = ActNorm(2).double()
    actnorm.initialize(torch.randn(64, 2, 1, 1, generator=_g(0), dtype=F64) * torch.tensor([1.5, 0.7]).view(1, 2, 1, 1))
    layers = [
        actnorm,
        randomize(InvertibleConv1x1(2).double(), 0.3, 1),
        randomize(AffineCoupling(2, 8).double(), 0.3, 2),
    ]
    split, prior = randomize(Split(2).double(), 0.3, 3), randomize(LearnedPrior((1, 1, 1)).double(), 0.3, 4)

    def log_density(points):  # (N, 2)
        h, total = points.reshape(-1, 2, 1, 1), 0.0
        for layer in layers:
            h, log_det = layer(h)
            total = total + log_det
        h, log_det = split(h)
        kept, eps = h[:, :1], h[:, 1:]
        top, log_det_top = prior(kept)
        return standard_normal_log_prob(eps) + standard_normal_log_prob(top) + total + log_det + log_det_top

    # The coupling's scale s = sigmoid(r + 2) can approach 0 far from the data, which stretches the density into
    # long tails: integrate over x = sinh(u), dx = cosh(u) du, u in [-6, 6] (x in [-201, 201]).
    u = torch.linspace(-6, 6, 1001, dtype=F64)
    ux, uy = torch.meshgrid(u, u, indexing="ij")
    points = torch.stack([torch.sinh(ux).flatten(), torch.sinh(uy).flatten()], 1)  # (N, 2)
    with torch.no_grad():
        log_jacobian = torch.log(torch.cosh(ux) * torch.cosh(uy))
        density = (log_density(points).reshape(1001, 1001) + log_jacobian).exp()
    mass = torch.trapezoid(torch.trapezoid(density, u, dim=1), u).item()
    assert abs(mass - 1.0) < 1e-6
    edges = torch.cat([density[0], density[-1], density[:, 0], density[:, -1]])
    assert edges.max() < 1e-9  # the grid holds the whole mass


def _gaussian_flow(logit_alpha, mean: float, log_sigma: float) -> FlowModel:
    """A FlowModel whose density is an isotropic Gaussian N(mean, sigma^2) in the preprocessed space: identity 1x1
    convolutions, couplings with s = 1 and t = 0, ActNorm left at the identity, every prior N(mean, sigma^2)."""
    model = tiny_flow(logit_alpha=logit_alpha, sample_size=8, steps_per_level=2).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FlowLevel):
                m.invconv_lower.zero_(), m.invconv_upper.zero_(), m.invconv_log_s.zero_(), m.invconv_sign_s.fill_(1)
                m.invconv_permutation.copy_(torch.eye(m.num_channels, dtype=F64).expand_as(m.invconv_permutation))
                m.coupling_out_weight.zero_()
                m.coupling_out_bias.zero_()
                m.coupling_out_bias[:, m.coupling_out_bias.shape[1] // 2 :].fill_(60.0)  # s = sigmoid(62) = 1 in f64
            elif isinstance(m, Split):
                m.prior.weight.zero_()
                half = m.prior.bias.numel() // 2
                m.prior.bias[:half].fill_(mean), m.prior.bias[half:].fill_(log_sigma)
            elif isinstance(m, LearnedPrior):
                m.mean.fill_(mean), m.log_sigma.fill_(log_sigma)
    return model


@pytest.mark.parametrize("logit_alpha", [None, 0.05])
def test_bits_per_dim_of_a_known_density_has_its_closed_form(logit_alpha):
    mean, log_sigma, levels, d = 0.1, -0.7, 17, 64
    model = _gaussian_flow(logit_alpha, mean, log_sigma)
    images = torch.rand(5, 1, 8, 8, generator=_g(0), dtype=F64)
    x, log_q = model.dequantize(images, generator=_g(1))
    normal = torch.distributions.Normal(torch.tensor(mean, dtype=F64), torch.tensor(math.exp(log_sigma), dtype=F64))
    if logit_alpha is None:  # y = x - 1/2 ~ N(mean, sigma^2)
        log_p = normal.log_prob(x - 0.5).flatten(1).sum(1)
    else:  # y = logit(s), s = alpha + (1 - 2 alpha) x: p(x) = N(y) (1 - 2 alpha) / (s (1 - s))
        s = logit_alpha + (1 - 2 * logit_alpha) * x
        y = torch.log(s / (1 - s))
        log_p = (normal.log_prob(y) + math.log(1 - 2 * logit_alpha) - torch.log(s * (1 - s))).flatten(1).sum(1)
    torch.testing.assert_close(model.log_prob(x), log_p, rtol=0, atol=1e-9)
    expected_bits = -log_p / (d * math.log(2)) + math.log2(levels)  # Theis et al.: NLL / (D ln 2) + log2 L
    torch.testing.assert_close(model.bits_per_dim(x, log_q), expected_bits, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.nll(images, generator=_g(1)), expected_bits * d * math.log(2), rtol=0, atol=1e-9)


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_training_objective_is_the_dequantized_nll_by_the_change_of_variables(dequantization):
    """hubgen.flow.losses against an independent computation: log N(z; 0, I) by torch.distributions, log |det df/dx|
    and log |det du/deps| by autograd's Jacobian, log q(u|k) = log N(eps; 0, I) - log |det du/deps| (Flow++)."""
    model = _initialized(tiny_flow(dequantization=dequantization, dequant_hidden_channels=4))
    d, levels = 16, 17
    images = torch.rand(2, 1, 4, 4, generator=_g(4), dtype=F64)
    x, log_q = model.dequantize(images, generator=_g(5))
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64))
    k = model.quantize(images)
    eps = torch.randn(k.shape, generator=_g(5), dtype=F64)  # the dequantizer's own draw (variational)
    expected_nll = []
    for i in range(2):
        jac = jacobian(lambda v: model(v.reshape(1, 1, 4, 4))[0].reshape(-1), x[i].reshape(-1))  # (16, 16)
        log_px = normal.log_prob(model(x[i : i + 1])[0]).sum() + torch.linalg.slogdet(jac)[1]
        if dequantization == "variational":
            k_i = k[i : i + 1]
            noise = lambda v, k_i=k_i: model.dequantizer.noise(v.reshape(1, 1, 4, 4), k_i)[0].reshape(-1)  # noqa: E731
            log_q_i = normal.log_prob(eps[i]).sum() - torch.linalg.slogdet(jacobian(noise, eps[i].reshape(-1)))[1]
        else:
            log_q_i = torch.zeros((), dtype=F64)  # q = U[0, 1)^D
        torch.testing.assert_close(log_q[i], log_q_i, rtol=0, atol=1e-9)
        expected_nll.append(-log_px + log_q_i + d * math.log(levels))  # -log p(x) + log q(u|k) + D ln L
    expected_nll = torch.stack(expected_nll)
    nll = losses.dequantized_nll(losses.log_prob(model, x), log_q, d, levels)
    torch.testing.assert_close(nll, expected_nll, rtol=0, atol=1e-9)
    bits = losses.bits_per_dim(nll, d)
    torch.testing.assert_close(bits, expected_nll / (d * math.log(2)), rtol=0, atol=1e-12)
    # training and evaluation agree: the loss is the mean of what FlowModel.bits_per_dim (hubgen.metrics.units) reports
    torch.testing.assert_close(bits, model.bits_per_dim(x, log_q), rtol=0, atol=1e-12)


# -- ActNorm's initialization and saving ----------------------------------------------------------------


def test_actnorm_initializes_from_data_once():
    norm = ActNorm(3)
    assert not bool(norm.initialized) and "initialized" in norm.state_dict()
    x = torch.randn(64, 3, 4, 4, generator=_g(0)) * torch.tensor([1.0, 3.0, 0.2]).view(1, 3, 1, 1) + 5
    y, _ = norm.train()(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3), rtol=0, atol=1e-4)
    torch.testing.assert_close(y.std((0, 2, 3), unbiased=False), torch.ones(3), rtol=0, atol=1e-4)
    params = [p.clone() for p in norm.parameters()]
    norm(torch.randn(64, 3, 4, 4, generator=_g(1)) * 10)  # another batch: no second initialization
    assert bool(norm.initialized) and all(torch.equal(a, b) for a, b in zip(params, norm.parameters(), strict=True))
    fresh = ActNorm(3).eval()
    fresh(x)  # eval mode never initializes
    assert not bool(fresh.initialized)


def test_actnorm_state_survives_save_and_load_without_reinitializing(tmp_path):
    model = tiny_flow(sample_size=8)
    images = torch.rand(32, 1, 8, 8, generator=_g(0))
    model.initialize(images, generator=_g(1))
    model.save_pretrained(tmp_path / "m")
    loaded = FlowModel.from_pretrained(tmp_path / "m")
    assert loaded.actnorm_initialized()
    loaded.train()
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    loaded(loaded.dequantize(torch.rand(8, 1, 8, 8, generator=_g(2)) * 0.1)[0])  # training-mode forward
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, before[key]), key  # nothing re-initialized from this very different batch
    # A model saved before its initialization loads uninitialized, and initializes on its first training batch.
    tiny_flow(sample_size=8).save_pretrained(tmp_path / "raw")
    raw = FlowModel.from_pretrained(tmp_path / "raw")
    assert not raw.actnorm_initialized()
    raw.train()(raw.dequantize(images)[0])
    assert raw.actnorm_initialized()


# -- the pipeline ---------------------------------------------------------------------------------------


@pytest.fixture
def flow_pipeline():
    model = tiny_flow(sample_size=8, hidden_channels=8)
    model.initialize(torch.rand(64, 1, 8, 8, generator=_g(0)), generator=_g(0))
    return FlowPipeline(randomize(model, 0.05))


def test_save_and_load_preserve_likelihoods_and_samples_exactly(tmp_path, flow_pipeline):
    flow_pipeline.save_pretrained(tmp_path / "p")
    files = sorted(p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert files == ["flow/config.json", "flow/diffusion_pytorch_model.safetensors", "model_index.json"]
    loaded = hubgen.load_pipeline(tmp_path / "p")
    assert isinstance(loaded, FlowPipeline) and not [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    images = torch.rand(6, 1, 8, 8, generator=_g(4))
    a = flow_pipeline.log_likelihood(images, generator=_g(5))
    b = loaded.log_likelihood(images, generator=_g(5))
    torch.testing.assert_close(a.bits_per_dim, b.bits_per_dim, rtol=0, atol=0)
    for t in (1.0, 0.7):
        sa = flow_pipeline(5, generator=_g(6), temperature=t, output_type="pt").images
        sb = loaded(5, generator=_g(6), temperature=t, output_type="pt").images
        torch.testing.assert_close(sa, sb, rtol=0, atol=0)


def test_pipeline_samples_scores_and_round_trips(flow_pipeline):
    pipe, levels = flow_pipeline, 17
    images = pipe(4, generator=_g(0), output_type="pt").images
    assert images.shape == (4, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images * (levels - 1), (images * (levels - 1)).round())  # on the data's grey levels
    zero = pipe(3, generator=_g(1), temperature=0.0, output_type="pt").images  # z = 0 for every image
    assert torch.equal(zero[0], zero[1]) and torch.equal(zero[1], zero[2])
    eps = torch.randn(2, 64, generator=_g(2))
    torch.testing.assert_close(pipe(2, latents=eps, temperature=0.5, output_type="pt").images,
                               pipe.decode(0.5 * eps), rtol=0, atol=0)  # fmt: skip
    scores = pipe.log_likelihood(images, generator=_g(3))
    torch.testing.assert_close(scores.nll_nats, scores.bits_per_dim * 64 * math.log(2))
    assert scores.dequantization == "uniform" and torch.isfinite(scores.bits_per_dim).all()
    z = pipe.encode(images, generator=_g(4))
    assert torch.equal(pipe.decode(z), images)  # image -> z -> image: the same grey levels
    pil = pipe(2, generator=_g(0)).images
    torch.testing.assert_close(pipe.log_likelihood(pil, generator=_g(3)).bits_per_dim,
                               pipe.log_likelihood(images[:2], generator=_g(3)).bits_per_dim)  # fmt: skip


def test_model_sample_is_the_inverse_of_scaled_noise(flow_pipeline):
    flow = flow_pipeline.flow
    x = flow.sample(3, temperature=0.7, generator=_g(9))
    torch.testing.assert_close(x, flow.inverse(0.7 * torch.randn(3, 64, generator=_g(9)))[0], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(batch_size=0), "batch_size"), (dict(batch_size=2, temperature=-0.1), "temperature"),
     (dict(batch_size=2, temperature=float("nan")), "temperature"),
     (dict(batch_size=2, output_type="gif"), "output_type"),
     (dict(batch_size=2, latents=torch.zeros(2, 3)), "latents")],
)  # fmt: skip
def test_call_validates_inputs(flow_pipeline, kwargs, match):
    with pytest.raises(ValueError, match=match):
        flow_pipeline(**kwargs)


def test_likelihood_and_decode_validate_inputs(flow_pipeline):
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        flow_pipeline.log_likelihood(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"intensities in \[0, 1\]"):
        flow_pipeline.log_likelihood(torch.rand(2, 1, 8, 8) * 3)
    with pytest.raises(ValueError, match="`z`"):
        flow_pipeline.decode(torch.zeros(2, 5))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [(dict(sample_size=28, num_levels=3), "divisible by 2\\*\\*num_levels"),
     (dict(steps_per_level=0), "steps_per_level"), (dict(logit_alpha=0.5), "logit_alpha"),
     (dict(dequantization="gaussian"), "dequantization"),
     (dict(pixel_levels=1), "pixel_levels")],
)  # fmt: skip
def test_model_rejects_bad_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_flow(**overrides)


def test_squeeze_helper_layout():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = squeeze(x)  # channel 2i + j holds pixel (2h + i, 2w + j)
    assert y[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0] and y.shape == (1, 4, 2, 2)


def test_decode_retries_overflowing_rows_in_float64_then_shows_them_as_zero(flow_pipeline, monkeypatch):
    """A z deep in the tail can overflow the inverse in float32: those rows are inverted again in float64; a row
    that overflows even there is shown as 0 with a warning, never as NaN."""
    flow = flow_pipeline.flow
    z = torch.randn(3, flow.num_dims, generator=torch.Generator().manual_seed(0))
    expected = flow_pipeline.decode(z)
    original = type(flow).inverse

    def overflow_in_float32(self, y):
        x, log_det = original(self, y)
        if y.dtype == torch.float32:
            x = x.clone()
            x[0] = float("nan")
        return x, log_det

    monkeypatch.setattr(type(flow), "inverse", overflow_in_float32)
    torch.testing.assert_close(flow_pipeline.decode(z), expected, rtol=0, atol=1e-6)

    def overflow_always(self, y):
        x, log_det = original(self, y)
        x = x.clone()
        x[0] = float("nan")
        return x, log_det

    monkeypatch.setattr(type(flow), "inverse", overflow_always)
    with pytest.warns(UserWarning, match="1 of 1 samples overflow"):
        images = flow_pipeline.decode(z[:1])
    assert torch.isfinite(images).all()

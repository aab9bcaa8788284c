"""PixelCNN's math against independent computations: causality by autograd, the exact likelihood by a slow
value-by-value loop and by enumeration (every 2x2 image), and sampling against the model's conditionals."""

import itertools

import pytest
import torch
from scipy import stats

from hubgen.pixelcnn.modeling_pixelcnn import PixelCNNModel, sample_levels, to_input

F64 = torch.float64


def tiny(architecture="gated", channels=1, levels=2, size=5, layers=3, hidden=None, seed=0):
    torch.manual_seed(seed)
    model = PixelCNNModel(sample_size=size, in_channels=channels, pixel_levels=levels, architecture=architecture,
                          hidden_channels=hidden or 4 * channels, num_layers=layers,
                          output_hidden=4 * channels)  # fmt: skip
    with torch.no_grad():  # larger weights than the default init: every dependence shows in the gradients
        for p in model.parameters():
            p.mul_(3.0)
    return model.to(F64).eval()


def order(r, c, ch, size, channels):
    """The raster index of value (ch, r, c): rows, then columns, then colours R -> G -> B."""
    return (r * size + c) * channels + ch


def dependence(model, size, channels, levels):
    """|d logit(value j) / d input(value i)| summed over random inputs: (n, n) with n = C H W, row j, column i."""
    n = channels * size * size
    total = torch.zeros(n, n, dtype=F64)
    for seed in range(3):
        x = torch.randn(1, channels, size, size, dtype=F64, generator=torch.Generator().manual_seed(seed))
        x.requires_grad_(True)
        out = model(x)
        out = out if levels == 2 else out.sum(2)  # (1, C, H, W)
        for r, c, ch in itertools.product(range(size), range(size), range(channels)):
            (grad,) = torch.autograd.grad(out[0, ch, r, c], x, retain_graph=True)
            for r2, c2, ch2 in itertools.product(range(size), range(size), range(channels)):
                total[order(r, c, ch, size, channels), order(r2, c2, ch2, size, channels)] += grad[0, ch2, r2, c2].abs()
    return total


@pytest.mark.parametrize("architecture", ["pixelcnn", "gated", "multiscale"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_output_depends_only_on_the_values_before_it(architecture, channels):
    size = 4
    model = tiny(architecture, channels, levels=2, size=size)
    d = dependence(model, size, channels, 2)
    later = torch.triu(torch.ones_like(d), diagonal=0).bool()  # column i >= row j: the value itself and after
    assert d[later].abs().max() == 0, "an output sees itself or a later value"


def test_the_gated_and_multiscale_stacks_have_no_blind_spot_and_the_plain_stack_has_one():
    size = 5
    gated = dependence(tiny("gated", layers=4, size=size), size, 1, 2)
    before = torch.tril(torch.ones_like(gated), diagonal=-1).bool()
    # gated: the last value depends on every value before it (4 layers of reach 1 plus the shift cover 5 rows)
    assert (gated[-1][before[-1]] > 0).all()
    # multiscale: one layer per resolution and pass; the coarse resolutions bring every value before it into view,
    # for every value (5 is not a multiple of 4: the padding at the bottom and right must not hide anything)
    multiscale = dependence(tiny("multiscale", layers=1, size=size), size, 1, 2)
    assert (multiscale[before] > 0).all()
    plain = dependence(tiny("pixelcnn", layers=3, size=size), size, 1, 2)
    # the blind spot: on the row above, masked 3x3 blocks add no reach to the right at any depth, so value (1, 0)
    # sees that row only as far as the 7x7 stem does (3 columns) and never (0, 4)
    assert plain[order(1, 0, 0, size, 1), order(0, 4, 0, size, 1)] == 0
    assert plain[order(1, 0, 0, size, 1), order(0, 1, 0, size, 1)] > 0


@pytest.mark.parametrize("architecture", ["pixelcnn", "gated", "multiscale"])
@pytest.mark.parametrize("channels, levels", [(1, 2), (1, 5), (3, 4)])
def test_the_log_likelihood_is_the_sum_of_the_conditionals_computed_one_by_one(architecture, channels, levels):
    size = 4
    model = tiny(architecture, channels, levels, size)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, levels, (2, channels, size, size), generator=g)
    fast = model.log_prob(x).sum((1, 2, 3))
    slow = torch.zeros(2, dtype=F64)
    for r, c, ch in itertools.product(range(size), range(size), range(channels)):
        seen = torch.zeros_like(x)  # only the values before (ch, r, c) are given; the rest are zero
        flat = x.permute(0, 2, 3, 1).reshape(2, -1)
        idx = order(r, c, ch, size, channels)
        seen = seen.permute(0, 2, 3, 1).reshape(2, -1)
        seen[:, :idx] = flat[:, :idx]
        seen = seen.reshape(2, size, size, channels).permute(0, 3, 1, 2)
        logits = model(to_input(seen, levels).to(F64))
        if levels == 2:
            p1 = torch.sigmoid(logits[:, ch, r, c])
            slow += torch.where(x[:, ch, r, c] == 1, p1, 1 - p1).log()
        else:
            slow += torch.log_softmax(logits[:, ch, :, r, c], dim=1).gather(1, x[:, ch, r, c][:, None]).squeeze(1)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("architecture", ["pixelcnn", "gated", "multiscale"])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_probabilities_of_every_2x2_binary_image_sum_to_one(architecture, channels):
    model = tiny(architecture, channels, levels=2, size=2)
    n = 4 * channels
    images = torch.tensor(list(itertools.product([0, 1], repeat=n))).reshape(-1, 2, 2, channels).permute(0, 3, 1, 2)
    with torch.no_grad():
        total = model.log_prob(images).sum((1, 2, 3)).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=F64), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("architecture", ["pixelcnn", "gated", "multiscale"])
@pytest.mark.parametrize("channels, levels", [(1, 2), (3, 4)])
def test_the_fast_sampler_draws_the_naive_samplers_images(architecture, channels, levels):
    model = tiny(architecture, channels, levels, size=6, layers=2)
    naive = sample_levels(model, 3, torch.Generator().manual_seed(7), fast=False)
    fast = sample_levels(model, 3, torch.Generator().manual_seed(7), fast=True)
    assert torch.equal(naive, fast) and naive.shape == (3, channels, 6, 6)
    assert naive.min() >= 0 and naive.max() < levels
    assert not torch.equal(fast, sample_levels(model, 3, torch.Generator().manual_seed(8)))


def test_samples_follow_the_models_distribution():
    """Chi-square of 20,000 draws over the 16 images of a 2x2 binary model against their exact probabilities."""
    model = tiny("gated", 1, 2, size=2, seed=3)
    images = torch.tensor(list(itertools.product([0, 1], repeat=4))).reshape(16, 1, 2, 2)
    with torch.no_grad():
        p = model.log_prob(images).sum((1, 2, 3)).exp()
    draws = sample_levels(model, 20_000, torch.Generator().manual_seed(0)).reshape(20_000, 4)
    index = (draws * torch.tensor([8, 4, 2, 1])).sum(1)
    observed = torch.bincount(index, minlength=16).double()
    assert stats.chisquare(observed.numpy(), (p * 20_000).numpy()).pvalue > 1e-3


@pytest.mark.parametrize("architecture", ["gated", "multiscale"])
def test_completion_keeps_the_known_values_and_the_fast_sampler_completes_as_the_naive_one(architecture):
    model = tiny(architecture, 1, 2, size=5)
    known = torch.randint(0, 2, (2, 1, 5, 5), generator=torch.Generator().manual_seed(2))
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[:, :, :2] = True  # the top two rows are given: the fast sampler draws nothing there
    mask[:, :, 3, 2:] = True  # and the end of row 3: the row's last draw is not its last value
    out = sample_levels(model, 2, torch.Generator().manual_seed(3), known=known, known_mask=mask)
    assert torch.equal(out[mask], known[mask])
    naive = sample_levels(model, 2, torch.Generator().manual_seed(3), known=known, known_mask=mask, fast=False)
    assert torch.equal(out, naive)


@pytest.mark.parametrize("channels, levels, size", [(1, 2, 8), (3, 4, 7)])
def test_the_multiscale_row_by_row_pass_gives_the_whole_pass(channels, levels, size):
    """forward_row over the rows in order (the sampler's cache) equals forward on the whole image, row by row."""
    model = tiny("multiscale", channels, levels, size=size, layers=2)
    x = to_input(torch.randint(0, levels, (2, channels, size, size), generator=torch.Generator().manual_seed(4)),
                 levels).to(F64)  # fmt: skip
    whole, cache = model(x), {}
    rows = torch.cat([model.forward_row(x, r, cache) for r in range(size)], dim=-2)
    torch.testing.assert_close(rows, whole, rtol=1e-12, atol=1e-12)


def test_bad_configurations_are_refused():
    for kwargs, match in [(dict(architecture="lstm"), "architecture"), (dict(in_channels=2), "in_channels"),
                          (dict(pixel_levels=1), "pixel_levels"), (dict(in_channels=3, hidden_channels=8), "multiple"),
                          (dict(kernel_size=4), "kernel_size")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            PixelCNNModel(**kwargs)

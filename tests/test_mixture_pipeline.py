"""MixturePipeline: save/load round trip, the likelihood in nats of the discrete data, p(z | x), bad input."""

import math

import pytest
import torch

from hubgen.mixture.modeling_mixture import MixtureModel
from hubgen.mixture.pipeline_mixture import MixturePipeline


def _pipe(distribution):
    torch.manual_seed(0)
    model = MixtureModel(num_components=3, in_channels=1, height=4, width=4, distribution=distribution,
                         pixel_levels=2 if distribution == "bernoulli" else 17)  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1)
        if distribution == "gaussian":
            model.means.uniform_(0, 1)
            model.log_variances.fill_(math.log(0.02))
    p = MixturePipeline(model=model.eval())
    p.set_progress_bar_config(disable=True)
    return p


@pytest.mark.parametrize("distribution", ["bernoulli", "gaussian"])
def test_save_and_load_give_identical_samples_and_safetensors_only(tmp_path, distribution):
    pipe = _pipe(distribution)
    pipe.save_pretrained(tmp_path / "m")
    assert list((tmp_path / "m").rglob("*.safetensors")) and not list((tmp_path / "m").rglob("*.bin"))
    again = MixturePipeline.from_pretrained(tmp_path / "m")
    for show in ("samples", "means"):
        a = pipe(5, generator=torch.Generator().manual_seed(1), show=show, output_type="pt").images
        b = again(5, generator=torch.Generator().manual_seed(1), show=show, output_type="pt").images
        assert torch.equal(a, b) and a.shape == (5, 1, 4, 4) and 0 <= a.min() and a.max() <= 1
    samples = pipe(6, generator=torch.Generator().manual_seed(2), output_type="pt").images
    if distribution == "bernoulli":
        assert set(samples.unique().tolist()) <= {0.0, 1.0}


def test_samples_follow_the_mixture_weights():
    pipe = _pipe("bernoulli")
    _, z = pipe.model.sample(4000, torch.Generator().manual_seed(3))
    frequencies = torch.bincount(z, minlength=3).double() / 4000
    torch.testing.assert_close(frequencies, pipe.model.log_weights.exp().detach().double(), rtol=0, atol=0.03)


def test_bernoulli_nll_is_the_exact_pmf_and_gaussian_nll_adds_d_log_l():
    pipe = _pipe("bernoulli")
    x = (torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(4)) < 0.5).float()
    scores = pipe.log_likelihood(x)
    torch.testing.assert_close(scores.nll_nats, -pipe.model(x).double())
    torch.testing.assert_close(scores.bits_per_dim, scores.nll_nats / (16 * math.log(2)))
    torch.testing.assert_close(scores.responsibilities.sum(1), torch.ones(3, dtype=torch.float64))
    gauss = _pipe("gaussian")
    levels = torch.randint(0, 17, (2, 1, 4, 4), generator=torch.Generator().manual_seed(5)).float()
    g = gauss.log_likelihood(levels / 16, generator=torch.Generator().manual_seed(6))
    x = (levels + torch.rand(levels.shape, generator=torch.Generator().manual_seed(6))) / 17  # the same draw of u
    torch.testing.assert_close(g.nll_nats, -gauss.model(x).double() + 16 * math.log(17))
    mid = gauss.log_likelihood(levels / 16, fixed_u=0.5)
    torch.testing.assert_close(mid.nll_nats, -gauss.model((levels + 0.5) / 17).double() + 16 * math.log(17))


def test_component_means_come_heaviest_first():
    pipe = _pipe("gaussian")
    means, weights = pipe.component_means()
    assert means.shape == (3, 1, 4, 4) and torch.all(weights[:-1] >= weights[1:])
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: p(0), "batch_size"),
        (lambda p: p(2, show="modes"), "show"),
        (lambda p: p(2, generator=[torch.Generator()]), "Got 1 generators in `generator` for 2 images"),
        (lambda p: p(1, output_type="jpg"), "output_type"),
        (lambda p: p.log_likelihood(torch.rand(1, 1, 5, 5)), "shape"),
        (lambda p: p.log_likelihood(torch.full((1, 1, 4, 4), 2.0)), r"\[0, 1\]"),
        (lambda p: p.log_likelihood(torch.full((1, 1, 4, 4), float("nan"))), "NaN"),
        (lambda p: MixtureModel(num_components=0), "num_components"),
        (lambda p: MixtureModel(distribution="poisson"), "distribution"),
        (lambda p: MixtureModel(distribution="bernoulli", pixel_levels=256), "pixel_levels"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(call, match):
    with pytest.raises(ValueError, match=match):
        call(_pipe("bernoulli"))

"""Golden values: a tiny model of every family, built from a fixed seed, gives fixed numbers at a fixed input.

In the style of diffusers' `expected_slice` tests. Each case below builds a tiny model after
`torch.manual_seed(0)` (as training builds it: the GAN gets `init_dcgan_weights`, the flow's ActNorms are
initialized from a fixed batch), runs one fixed input drawn from `torch.Generator().manual_seed(1)` through the
forward pass (and, for the likelihood families, the ELBO / IWAE bound / log-determinant / bits per dim), and
samples a batch of 2 from its pipeline with a fixed generator (the DDPM pipeline with each of its samplers,
"ddpm", "ddim" and "dpmsolver++"; the text-to-image pipeline with its saved DPM-Solver++ and two others).
For each output the test compares its shape, its first values (flattened) and its sum (taken in float64) with
the literals in EXPECTED, at rtol=1e-4, atol=1e-5 on the CPU in float32 with one torch thread.

So an accidental change of a layer, an initialization, a loss or a sampler shows up here as a changed number.

The values pin TODAY's behaviour; they are not "correct" values (the equation tests in the family test files
check correctness). When a change is deliberate (a new layer, another initialization, a fixed sampler bug),
regenerate them with

    cd /work/main && OMP_WAIT_POLICY=PASSIVE .venv/bin/python tests/test_golden_values.py

paste the printed EXPECTED dict over the one below, and say in the commit message which change moved them and
why. Never widen the tolerances to make a failure go away: a failure that nobody meant is the regression this
file exists to catch.
"""

import copy
import math
import sys

import conftest  # noqa: F401  (offline, telemetry-free environment, set before diffusers is imported)
import pytest
import torch
from conftest import tiny_vae

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RTOL, ATOL = 1e-4, 1e-5
NUM_FIRST = 8  # leading values of each flattened output that are pinned one by one (the sum covers the rest)


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _perturb(module: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    """Move every parameter off its initialization by scale * N(0, 1) from its own generator, so that layers
    initialized to the identity (Glow's zero-initialized couplings and priors) change the numbers too."""
    g = _g(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


# -- VAE ------------------------------------------------------------------------------------------------------

VAE_CONFIGS = {
    "mlp": dict(sample_size=8, in_channels=1, latent_dim=2, architecture="mlp", hidden_dims=(16,),
                activation="relu", decoder_distribution="bernoulli"),
    "conv": dict(sample_size=8, in_channels=1, latent_dim=3, architecture="conv", hidden_dims=(4, 8),
                 activation="relu", decoder_distribution="bernoulli"),
    "conv_gaussian": dict(sample_size=8, in_channels=1, latent_dim=3, architecture="conv", hidden_dims=(4, 8),
                          activation="elu", decoder_distribution="gaussian"),
}  # fmt: skip


def _vae_case(name: str) -> dict[str, torch.Tensor]:
    from hubgen.vae import VAEPipeline
    from hubgen.vae.losses import elbo, iwae_bound

    model = tiny_vae(**VAE_CONFIGS[name])  # torch.manual_seed(0), then VAEModel(**config)
    x = torch.rand(2, 1, 8, 8, generator=_g(1))  # intensities in [0, 1)
    with torch.no_grad():
        out = model(x, sample_posterior=False)
        sampled = model(x, generator=_g(2))
        bound = elbo(model, x, generator=_g(3))
        iwae = iwae_bound(model, x, 8, generator=_g(4))
    pipe = VAEPipeline(model, pixel_levels=17)
    scores = pipe.log_likelihood(x, k=8, generator=_g(5))
    results = {
        "posterior_mean": out.latent_dist.mean,
        "posterior_logvar": out.latent_dist.logvar,
        "decoder_output": out.sample,
        "reparameterized_latents": sampled.latents,
        "elbo": bound["elbo"],
        "elbo_log_px_z": bound["log_px_z"],
        "elbo_kl": bound["kl"],
        "iwae_bound_k8": iwae,
        "pipeline_nll_nats_k8": scores.nll_nats,
        "pipeline_bits_per_dim_k8": scores.bits_per_dim,
        "pipeline_samples": pipe(2, generator=_g(1), output_type="pt").images,
    }
    if out.logvar is not None:
        results["decoder_logvar"] = out.logvar
    return results


# -- GAN ------------------------------------------------------------------------------------------------------


def _gan_case(extra_layers: int) -> dict[str, torch.Tensor]:
    from hubgen.gan import GANPipeline
    from hubgen.gan.modeling_gan import Discriminator, Generator, init_dcgan_weights

    # As train_gan builds them: both networks from one seeded global RNG, then the DCGAN initialization.
    torch.manual_seed(0)
    gen = Generator(latent_dim=8, sample_size=8, in_channels=1, base_channels=4, batch_norm=True,
                    extra_layers=extra_layers)  # fmt: skip
    disc = Discriminator(sample_size=8, in_channels=1, base_channels=4, batch_norm=True, extra_layers=extra_layers)
    gen.apply(init_dcgan_weights)
    disc.apply(init_dcgan_weights)
    fresh_gen = copy.deepcopy(gen)  # for the pipeline: a train-mode pass below updates batch norm's running stats
    z = torch.randn(2, 8, generator=_g(1))
    x = torch.rand(2, 1, 8, 8, generator=_g(1)) * 2 - 1  # images in [-1, 1]
    with torch.no_grad():
        results = {
            "generator_eval": gen.eval()(z),  # batch norm on running statistics (fresh: mean 0, variance 1)
            "discriminator_eval": disc.eval()(x),
            "generator_train": gen.train()(z),  # batch statistics, as in a training step
            "discriminator_train": disc.train()(x),
        }
    pipe = GANPipeline(fresh_gen)
    results["pipeline_samples"] = pipe(2, generator=_g(1), output_type="pt").images
    results["pipeline_samples_truncation_0.7"] = pipe(2, generator=_g(1), truncation=0.7, output_type="pt").images
    return results


# -- flow -----------------------------------------------------------------------------------------------------

FLOW_CONFIGS = {
    "uniform": dict(sample_size=8, in_channels=1, pixel_levels=17, num_levels=2, steps_per_level=2,
                    hidden_channels=8, logit_alpha=0.05, dequantization="uniform"),
    "variational": dict(sample_size=8, in_channels=1, pixel_levels=17, num_levels=2, steps_per_level=1,
                        hidden_channels=8, logit_alpha=None, dequantization="variational",
                        dequant_hidden_channels=4, dequant_steps=1),
}  # fmt: skip


def _tiny_flow(name: str, perturb: bool):
    from hubgen.flow import FlowModel

    torch.manual_seed(0)
    model = FlowModel(**FLOW_CONFIGS[name])
    model.initialize(torch.rand(16, 1, 8, 8, generator=_g(0)), generator=_g(0))  # data-dependent ActNorm init
    if perturb:
        _perturb(model, 0.05, seed=3)
    return model.eval()


def _flow_case(name: str, perturb: bool) -> dict[str, torch.Tensor]:
    from hubgen.flow import FlowPipeline

    model = _tiny_flow(name, perturb)
    intensities = torch.rand(2, 1, 8, 8, generator=_g(1))
    x = intensities * 0.98 + 0.01  # a point of model space [0, 1)
    with torch.no_grad():
        z, log_det = model(x)
        x_dequantized, log_q = model.dequantize(intensities, generator=_g(2))
        results = {
            "z": z,
            "log_det": log_det,
            "log_prob": model.log_prob(x),
            "dequantized": x_dequantized,
            "dequantization_log_q": log_q,
            "nll_nats": model.nll(intensities, generator=_g(2)),
            "sample_model_space_t0.7": model.sample(2, 0.7, generator=_g(1)),
        }
    pipe = FlowPipeline(model)
    results["pipeline_bits_per_dim"] = pipe.log_likelihood(intensities, generator=_g(2)).bits_per_dim
    results["pipeline_samples"] = pipe(2, generator=_g(1), output_type="pt").images
    return results


# -- DDPM -----------------------------------------------------------------------------------------------------

DDPM_T = 10  # training timesteps of the tiny schedule


def _tiny_ddpm():
    from diffusers import DDPMScheduler, UNet2DModel

    from hubgen.ddpm import DDPMPipeline
    from hubgen.ddpm.train_ddpm import unet_config

    torch.manual_seed(0)
    unet = UNet2DModel(**unet_config(8, 1, (8, 16), norm_num_groups=4))  # 8x8 digits, widths 8 and 16
    # The schedule train_ddpm builds (its defaults), with T = 10.
    scheduler = DDPMScheduler(num_train_timesteps=DDPM_T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                              variance_type="fixed_small", clip_sample=True, timestep_spacing="trailing")  # fmt: skip
    pipe = DDPMPipeline(unet=unet.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ddpm_forward_case() -> dict[str, torch.Tensor]:
    pipe = _tiny_ddpm()
    x = torch.randn(2, 1, 8, 8, generator=_g(1))
    with torch.no_grad():
        eps = pipe.unet(x, torch.tensor([3, 9])).sample
    return {"unet_eps": eps}


def _ddpm_sampler_case(sampler: str, steps: int) -> dict[str, torch.Tensor]:
    pipe = _tiny_ddpm()
    out = pipe(2, generator=_g(1), num_inference_steps=steps, sampler=sampler, output_type="pt")
    return {"pipeline_samples": out.images}


# -- text to image --------------------------------------------------------------------------------------------

T2I_PROMPTS = ["a handwritten digit seven", "the number 3"]


def _tiny_text2img():
    """The tiny pipeline of tests/test_text2img.py: 8x8 UNet (widths 8, 16; cross-attention at 4x4 and in the
    middle, pooled text embedding), a 1-layer CLIP text encoder of width 16, the caption tokenizer, and the saved
    sampler train_text2img writes (DPM-Solver++ with x_0 thresholding, from a default 1000-step DDPMScheduler)."""
    from diffusers import DDPMScheduler

    from hubgen.text2img import captions as cap
    from hubgen.text2img.train_text2img import _make_pipeline, build_text_encoder, build_unet

    tokenizer = cap.build_tokenizer(16)
    torch.manual_seed(0)
    text_encoder = build_text_encoder(len(tokenizer), hidden_size=16, layers=1, heads=2)
    unet = build_unet(8, 1, text_encoder.config.hidden_size, (8, 16), attention_heads=2)
    return _make_pipeline(unet.eval(), text_encoder.eval(), tokenizer, DDPMScheduler())


def _text2img_forward_case() -> dict[str, torch.Tensor]:
    pipe = _tiny_text2img()
    x = torch.randn(2, 1, 8, 8, generator=_g(1))
    with torch.no_grad():
        hidden, mask = pipe.encode_prompt(T2I_PROMPTS)
        eps = pipe.unet(x, torch.tensor([10, 900]), encoder_hidden_states=hidden, encoder_attention_mask=mask).sample
    return {"text_encoder_hidden_states": hidden, "unet_eps": eps}


def _text2img_sampler_case(sampler: str | None) -> dict[str, torch.Tensor]:
    pipe = _tiny_text2img()
    seen = []

    def keep_latents(pipeline, step, timestep, tensors):
        seen.append(tensors["latents"].clone())
        return tensors

    images = pipe(T2I_PROMPTS, num_inference_steps=4, guidance_scale=3.0, generator=_g(1), output_type="pt",
                  sampler=sampler, callback_on_step_end=keep_latents).images  # fmt: skip
    # The last latents before [-1, 1] -> [0, 1] and clamping: an untrained UNet's images saturate.
    return {"final_latents": seen[-1], "pipeline_samples": images}


# -- the cases ------------------------------------------------------------------------------------------------

CASES = {
    "vae_mlp": lambda: _vae_case("mlp"),
    "vae_conv": lambda: _vae_case("conv"),
    "vae_conv_gaussian": lambda: _vae_case("conv_gaussian"),
    "gan": lambda: _gan_case(extra_layers=0),
    "gan_extra_layers": lambda: _gan_case(extra_layers=1),
    "flow_at_init": lambda: _flow_case("uniform", perturb=False),
    "flow_perturbed": lambda: _flow_case("uniform", perturb=True),
    "flow_variational_perturbed": lambda: _flow_case("variational", perturb=True),
    "ddpm_unet": _ddpm_forward_case,
    "ddpm_sampler_ddpm": lambda: _ddpm_sampler_case("ddpm", DDPM_T),
    "ddpm_sampler_ddim": lambda: _ddpm_sampler_case("ddim", 4),
    "ddpm_sampler_dpmsolver++": lambda: _ddpm_sampler_case("dpmsolver++", 4),
    "text2img_forward": _text2img_forward_case,
    "text2img_sampler_saved": lambda: _text2img_sampler_case(None),
    "text2img_sampler_ddim": lambda: _text2img_sampler_case("ddim"),
    "text2img_sampler_ddpm": lambda: _text2img_sampler_case("ddpm"),
}


def summarize(t: torch.Tensor) -> tuple[tuple[int, ...], list[float], float]:
    """(shape, the first NUM_FIRST values flattened, the sum in float64) of an output."""
    t = t.detach().cpu()
    return tuple(t.shape), t.flatten()[:NUM_FIRST].float().tolist(), t.double().sum().item()


def _format_case(name: str, outputs: dict[str, torch.Tensor]) -> str:
    lines = [f"    {name!r}: {{"]
    for key, tensor in outputs.items():
        shape, first, total = summarize(tensor)
        values = ", ".join(f"{v:.8g}" for v in first)
        lines.append(f"        {key!r}: ({shape}, [{values}], {total:.10g}),")
    lines.append("    },")
    return "\n".join(lines)


# fmt: off
EXPECTED: dict[str, dict[str, tuple[tuple[int, ...], list[float], float]]] = {
}
# fmt: on


@pytest.mark.parametrize("case", list(CASES))
def test_golden_values(case):
    if case not in EXPECTED:
        pytest.fail(f"No golden values for {case!r}; run `python tests/test_golden_values.py` and paste them.")
    outputs = CASES[case]()
    expected = EXPECTED[case]
    assert sorted(outputs) == sorted(expected), f"{case}: outputs {sorted(outputs)} != pinned {sorted(expected)}"
    fresh = _format_case(case, outputs)
    for key, tensor in outputs.items():
        shape, first, total = expected[key]
        assert tuple(tensor.shape) == shape, f"{case}/{key}: shape {tuple(tensor.shape)} != pinned {shape}"
        assert tensor.dtype == torch.float32, f"{case}/{key}: dtype {tensor.dtype}"
        got_shape, got_first, got_total = summarize(tensor)
        assert all(math.isfinite(v) for v in got_first) and math.isfinite(got_total), f"{case}/{key} not finite"
        for what, got, want in [
            ("first values", torch.tensor(got_first), torch.tensor(first)),
            ("sum", torch.tensor(got_total, dtype=torch.float64), torch.tensor(total, dtype=torch.float64)),
        ]:
            torch.testing.assert_close(
                got, want, rtol=RTOL, atol=ATOL,
                msg=lambda m, key=key, what=what: f"{case}/{key} ({what}) moved:\n{m}\nFresh values of the case:\n{fresh}",
            )  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the tests run (the one_torch_thread fixture)
    names = sys.argv[1:] or list(CASES)
    print("EXPECTED = {")
    for name in names:
        print(_format_case(name, CASES[name]()))
    print("}")

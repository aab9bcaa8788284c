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

    cd /work/main && OMP_WAIT_POLICY=PASSIVE .venv/bin/python tests/test_golden_values.py [CASE ...]

(no CASE: every case; the names are the keys of CASES), paste the printed entries over those in EXPECTED
below, and say in the commit message which change moved them and why. Never widen the tolerances to make a
failure go away: a failure that nobody meant is the regression this file exists to catch.
"""

import copy
import math
import sys
import textwrap

import pytest
import torch
from conftest import tiny_vae  # importing conftest first also sets the offline test environment

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


def _perturb_per_step(model: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    """`_perturb` for a flow, its parameters visited in the per-step layout that flows had until FlowLevel stacked
    the K steps of a scale (levels.{i}.{k}.actnorm.log_scale, ...), so that each draw lands on the entry it landed
    on when these values were recorded; loaded back through that layout's conversion, which this checks too."""
    from hubgen.flow.modeling_flow import STEP_TENSORS

    g, state, done = _g(seed), {}, set()
    params = {name for name, _ in model.named_parameters()}
    for key, value in model.state_dict().items():
        if not key.startswith("levels."):
            state[key] = (value.clone(), key in params)
            continue
        i = int(key.split(".")[1])
        if i not in done:
            level = model.levels[i]
            state.update({f"levels.{i}.{k}": (v.clone(), STEP_TENSORS[k.split(".", 1)[1]] in level._parameters)
                          for k, v in level.per_step_state_dict().items()})  # fmt: skip
            done.add(i)
    for value, is_parameter in state.values():
        if is_parameter:
            value.add_(scale * torch.randn(value.shape, generator=g, dtype=value.dtype))
    model.load_state_dict({key: value for key, (value, _) in state.items()}, strict=True)
    return model


# -- VAE ------------------------------------------------------------------------------------------------------

VAE_CONFIGS = {
    "mlp": dict(sample_size=8, in_channels=1, latent_dim=2, architecture="mlp", hidden_dims=(16,),
                activation="relu", decoder_distribution="bernoulli"),
    "conv": dict(sample_size=8, in_channels=1, latent_dim=3, architecture="conv", hidden_dims=(4, 8),
                 activation="relu", decoder_distribution="bernoulli"),
    "conv_gaussian": dict(sample_size=8, in_channels=1, latent_dim=3, architecture="conv", hidden_dims=(4, 8),
                          activation="elu", decoder_distribution="gaussian"),
    # 32 px RGB, three stride-2 stages, the discretized logistic decoder over 256 levels: scored on 8-bit levels
    "conv_discrete_rgb": dict(sample_size=32, in_channels=3, latent_dim=3, architecture="conv", hidden_dims=(4, 6, 8),
                              activation="elu", decoder_distribution="discretized_logistic", num_levels=256),
}  # fmt: skip


def _vae_case(name: str) -> dict[str, torch.Tensor]:
    from hubgen.vae import VAEPipeline
    from hubgen.vae.losses import elbo, iwae_bound

    config = VAE_CONFIGS[name]
    model = tiny_vae(**config)  # torch.manual_seed(0), then VAEModel(**config)
    discrete = config["decoder_distribution"] == "discretized_logistic"
    if discrete:
        x = torch.randint(0, 256, (2, 3, 32, 32), generator=_g(1)).float() / 255  # 8-bit levels k / 255
    else:
        x = torch.rand(2, 1, 8, 8, generator=_g(1))  # intensities in [0, 1)
    with torch.no_grad():
        out = model(x, sample_posterior=False)
        sampled = model(x, generator=_g(2))
        bound = elbo(model, x, generator=_g(3))
        iwae = iwae_bound(model, x, 8, generator=_g(4))
    pipe = VAEPipeline(model, pixel_levels=256 if discrete else 17)
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
    if discrete:
        results["decoder_log_scale"] = out.log_scale
        results["pipeline_pixel_samples"] = pipe(2, generator=_g(1), output_type="pt", sample_pixels=True).images
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
    z = torch.randn(2, 8, generator=_g(1))
    x = torch.rand(2, 1, 8, 8, generator=_g(1)) * 2 - 1  # images in [-1, 1]
    results = {}
    with torch.no_grad():
        # A training step's pass: batch norm on the batch's statistics (on copies: it updates running stats).
        results["generator_train_at_init"] = copy.deepcopy(gen).train()(z)
        results["discriminator_train_at_init"] = copy.deepcopy(disc).train()(x)
        if extra_layers == 0:
            # In eval mode a fresh network (running mean 0, variance 1, weights ~ N(0, 0.02)) outputs about 1e-4,
            # below the tolerance; scaled by 1e3 the numbers pin the initialization's scale.
            results["generator_eval_at_init_x1e3"] = 1e3 * gen.eval()(z)
            results["discriminator_eval_at_init_x1e3"] = 1e3 * disc.eval()(x)
        # Perturbed off the initialization, eval mode outputs are of order 1: these pin the layers themselves.
        _perturb(gen, 0.1, seed=3)
        _perturb(disc, 0.1, seed=4)
        results["generator_eval_perturbed"] = gen.eval()(z)
        results["discriminator_eval_perturbed"] = disc.eval()(x)
    pipe = GANPipeline(gen)
    results["pipeline_samples"] = pipe(2, generator=_g(1), output_type="pt").images
    results["pipeline_samples_truncation_0.7"] = pipe(2, generator=_g(1), truncation=0.7, output_type="pt").images
    return results


def _gan_dcgan_rgb_case() -> dict[str, torch.Tensor]:
    """The DCGAN paper's architecture at 32x32 RGB (4x4x16 -> 8x8x8 -> 16x16x4 -> 32x32x3), as train_gan builds it."""
    from hubgen.gan import GANPipeline
    from hubgen.gan.modeling_gan import Discriminator, Generator, init_dcgan_weights

    torch.manual_seed(0)
    gen = Generator(latent_dim=8, sample_size=32, in_channels=3, base_channels=4, architecture="dcgan")
    disc = Discriminator(sample_size=32, in_channels=3, base_channels=4, architecture="dcgan")
    gen.apply(init_dcgan_weights)
    disc.apply(init_dcgan_weights)
    z = torch.randn(2, 8, generator=_g(1))
    x = torch.rand(2, 3, 32, 32, generator=_g(1)) * 2 - 1
    results = {}
    with torch.no_grad():
        results["generator_train_at_init"] = copy.deepcopy(gen).train()(z)
        results["discriminator_train_at_init"] = copy.deepcopy(disc).train()(x)
        _perturb(gen, 0.1, seed=3)
        _perturb(disc, 0.1, seed=4)
        results["generator_eval_perturbed"] = gen.eval()(z)
        results["discriminator_eval_perturbed"] = disc.eval()(x)
    results["pipeline_samples"] = GANPipeline(gen)(2, generator=_g(1), output_type="pt").images
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
        _perturb_per_step(model, 0.05, seed=3)
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


def _flow_rgb_case() -> dict[str, torch.Tensor]:
    """A 16x16 RGB flow of 256 levels per channel (D = 768), its levels chosen by the side (2), perturbed."""
    from hubgen.flow import FlowModel, FlowPipeline
    from hubgen.flow.modeling_flow import levels_for

    torch.manual_seed(0)
    model = FlowModel(sample_size=16, in_channels=3, pixel_levels=256, num_levels=levels_for(16), steps_per_level=1,
                      hidden_channels=8)  # fmt: skip
    model.initialize(torch.rand(8, 3, 16, 16, generator=_g(0)), generator=_g(0))
    model = _perturb_per_step(model, 0.05, seed=3).eval()
    intensities = torch.rand(2, 3, 16, 16, generator=_g(1))
    with torch.no_grad():
        z, log_det = model(intensities * 0.98 + 0.01)
        results = {"z": z, "log_det": log_det, "nll_nats": model.nll(intensities, generator=_g(2))}
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


def _ddpm_rgb_case() -> dict[str, torch.Tensor]:
    """A 16x16 RGB UNet with the side's attention (the 8x8 blocks and the mid block), widths 8 and 16: its
    eps_theta and DPM-Solver++ samples."""
    from diffusers import DDPMScheduler, UNet2DModel

    from hubgen.ddpm import DDPMPipeline
    from hubgen.ddpm.train_ddpm import unet_config

    torch.manual_seed(0)
    unet = UNet2DModel(**unet_config(16, 3, (8, 16), norm_num_groups=4)).eval()
    scheduler = DDPMScheduler(num_train_timesteps=DDPM_T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                              variance_type="fixed_small", clip_sample=True, timestep_spacing="trailing")  # fmt: skip
    pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        eps = unet(torch.randn(2, 3, 16, 16, generator=_g(1)), torch.tensor([3, 9])).sample
    images = pipe(2, generator=_g(1), num_inference_steps=4, sampler="dpmsolver++", output_type="pt").images
    return {"unet_eps": eps, "pipeline_samples_dpmsolver++": images}


def _ddpm_sampler_case(sampler: str, steps: int) -> dict[str, torch.Tensor]:
    pipe = _tiny_ddpm()
    out = pipe(2, generator=_g(1), num_inference_steps=steps, sampler=sampler, output_type="pt")
    return {"pipeline_samples": out.images}


# -- text to image --------------------------------------------------------------------------------------------

T2I_PROMPTS = ["a handwritten digit seven", "the number 3"]


def _tiny_text2img():
    """The tiny pipeline of tests/test_text2img.py: 8x8 UNet (widths 8, 16; cross-attention at 4x4 and in the
    middle, pooled text embedding), a 1-layer CLIP text encoder of width 16, the caption tokenizer, and the saved
    sampler the training script writes (DPM-Solver++ with x_0 thresholding, from a default 1000-step DDPMScheduler)."""
    from diffusers import DDPMScheduler

    from hubgen.text2img import captions as cap
    from hubgen.text2img.modeling_text2img import build_text_encoder, build_unet, make_pipeline

    tokenizer = cap.build_tokenizer(16)
    torch.manual_seed(0)
    text_encoder = build_text_encoder(len(tokenizer), hidden_size=16, layers=1, heads=2)
    unet = build_unet(8, 1, text_encoder.config.hidden_size, (8, 16), attention_heads=2)
    return make_pipeline(unet.eval(), text_encoder.eval(), tokenizer, DDPMScheduler())


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
    "vae_conv_discrete_rgb": lambda: _vae_case("conv_discrete_rgb"),
    "gan": lambda: _gan_case(extra_layers=0),
    "gan_extra_layers": lambda: _gan_case(extra_layers=1),
    "flow_at_init": lambda: _flow_case("uniform", perturb=False),
    "flow_perturbed": lambda: _flow_case("uniform", perturb=True),
    "flow_variational_perturbed": lambda: _flow_case("variational", perturb=True),
    "ddpm_unet": _ddpm_forward_case,
    "ddpm_sampler_ddpm": lambda: _ddpm_sampler_case("ddpm", DDPM_T),
    "ddpm_sampler_ddim": lambda: _ddpm_sampler_case("ddim", 4),
    "ddpm_sampler_dpmsolver++": lambda: _ddpm_sampler_case("dpmsolver++", 4),
    "gan_dcgan_rgb32": _gan_dcgan_rgb_case,
    "flow_rgb16_perturbed": _flow_rgb_case,
    "ddpm_rgb16": _ddpm_rgb_case,
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
    """The EXPECTED entry of one case, as Python source (lines within 120 characters)."""
    lines = [f'    "{name}": {{']
    for key, tensor in outputs.items():
        shape, first, total = summarize(tensor)
        values = textwrap.fill(", ".join(f"{v:.8g}" for v in first), width=117, initial_indent=" " * 13,
                               subsequent_indent=" " * 13).strip()  # fmt: skip
        one_line = f'        "{key}": ({shape}, [{values}], {total:.10g}),'
        if len(one_line) <= 120:
            lines.append(one_line)
        else:
            pad = " " * 12
            lines += [f'        "{key}": (', f"{pad}{shape},", f"{pad}[{values}],", f"{pad}{total:.10g},", "        ),"]
    lines.append("    },")
    return "\n".join(lines)


# fmt: off
EXPECTED: dict[str, dict[str, tuple[tuple[int, ...], list[float], float]]] = {
    "vae_mlp": {
        "posterior_mean": ((2, 2), [-0.034346938, 0.34255946, -0.064410672, 0.31180423], 0.5556060821),
        "posterior_logvar": ((2, 2), [-0.093534537, -0.194056, -0.12590596, -0.15982567], -0.5733221695),
        "decoder_output": (
            (2, 1, 8, 8),
            [0.069594361, -0.029521026, 0.36141807, -0.32484314, 0.042774796, 0.15206796, 0.052880883, 0.16899715],
            -2.112195626,
        ),
        "reparameterized_latents": ((2, 2), [0.34002563, 0.13966827, -0.36441749, -0.80068213], -0.6854057163),
        "elbo": ((2,), [-45.280025, -44.590725], -89.87075043),
        "elbo_log_px_z": ((2,), [-45.209808, -44.530178], -89.73998642),
        "elbo_kl": ((2,), [0.070217803, 0.060546197], 0.1307640001),
        "iwae_bound_k8": ((2,), [-45.175911, -44.839733], -90.01564407),
        "pipeline_nll_nats_k8": ((2,), [45.985477, 44.732445], 90.71792221),
        "pipeline_bits_per_dim_k8": ((2,), [1.0366096, 1.0083637], 2.044973373),
        "pipeline_samples": (
            (2, 1, 8, 8),
            [0.49818781, 0.51027274, 0.59304374, 0.39753249, 0.51214659, 0.5334807, 0.55718994, 0.52574635],
            63.53064713,
        ),
    },
    "vae_conv": {
        "posterior_mean": (
            (2, 3),
            [-0.14201015, 0.069725171, 0.026671626, -0.1384282, 0.080290496, 0.01317565],
            -0.0905754054,
        ),
        "posterior_logvar": (
            (2, 3),
            [-0.012144173, -0.082484663, -0.055488646, -0.010618325, -0.089599758, -0.043598868],
            -0.2939344328,
        ),
        "decoder_output": (
            (2, 1, 8, 8),
            [-0.1168057, -0.088546693, -0.11824578, -0.08949215, -0.1708422, -0.09268102, -0.13541621, -0.11342233],
            -18.91858282,
        ),
        "reparameterized_latents": (
            (2, 3),
            [0.24791184, -0.14480609, -0.28408617, -1.3370845, 1.0789948, -0.60639739],
            -1.045467585,
        ),
        "elbo": ((2,), [-44.783085, -44.839138], -89.6222229),
        "elbo_log_px_z": ((2,), [-44.767769, -44.823803], -89.59157181),
        "elbo_kl": ((2,), [0.015317482, 0.015336128], 0.03065360989),
        "iwae_bound_k8": ((2,), [-44.983341, -44.902531], -89.88587189),
        "pipeline_nll_nats_k8": ((2,), [44.237408, 44.207306], 88.44471359),
        "pipeline_bits_per_dim_k8": ((2,), [0.99720448, 0.99652594], 1.993730426),
        "pipeline_samples": (
            (2, 1, 8, 8),
            [0.47021392, 0.47994548, 0.47387531, 0.47511178, 0.45335999, 0.47345984, 0.4664652, 0.47237355],
            59.2412782,
        ),
    },
    "vae_conv_gaussian": {
        "posterior_mean": (
            (2, 3),
            [-0.2454696, 0.090782955, 0.025127996, -0.21531568, 0.1633732, -0.011894014],
            -0.1933951452,
        ),
        "posterior_logvar": (
            (2, 3),
            [-0.02032307, -0.064773142, -0.023656812, -0.0026555359, -0.10429817, -0.060847815],
            -0.2765545491,
        ),
        "decoder_output": (
            (2, 1, 8, 8),
            [0.4749462, 0.47039896, 0.46885735, 0.46614337, 0.46902511, 0.46164334, 0.45709732, 0.45438161],
            58.47686034,
        ),
        "reparameterized_latents": (
            (2, 3),
            [0.14286107, -0.12565657, -0.29061535, -1.4187539, 1.1547648, -0.62614655],
            -1.163546503,
        ),
        "elbo": ((2,), [-14.216176, -15.195203], -29.41137886),
        "elbo_log_px_z": ((2,), [-14.180344, -15.15507], -29.33541393),
        "elbo_kl": ((2,), [0.035832107, 0.040132806], 0.07596491277),
        "iwae_bound_k8": ((2,), [-14.599909, -15.124302], -29.72421074),
        "pipeline_nll_nats_k8": ((2,), [193.11964, 194.2925], 387.4121399),  # + 64 ln 17: nats of the 17-level data
        "pipeline_bits_per_dim_k8": ((2,), [4.3533244, 4.3797631], 8.73308754),
        "pipeline_samples": (
            (2, 1, 8, 8),
            [0.46953493, 0.47162345, 0.47955987, 0.4579401, 0.45941588, 0.45549515, 0.45135638, 0.45723495],
            58.52809846,
        ),
        "decoder_logvar": ((2, 1, 8, 8), [-2, -2, -2, -2, -2, -2, -2, -2], -256),
    },
    "vae_conv_discrete_rgb": {
        "posterior_mean": (
            (2, 3),
            [-0.02837061, 0.013177413, -0.072390959, -0.022468358, 0.011693163, -0.080853023],
            -0.1792123728,
        ),
        "posterior_logvar": (
            (2, 3),
            [-0.039278001, -0.046287656, -0.021387655, 0.013199596, -0.06783966, -0.016353685],
            -0.1779470611,
        ),
        "decoder_output": (
            (2, 3, 32, 32),
            [-0.095256768, -0.087640174, -0.08565107, -0.080618106, -0.079172194, -0.089730114, -0.089597523,
             -0.080358073],
            -450.9306748,
        ),
        "decoder_log_scale": (
            (2, 3, 32, 32),
            [0.010585379, 0.0062662493, 0.0085310005, 0.0010359287, 0.0046353778, 0.0053330837, 0.011022121,
             0.001923563],
            -157.6987442,
        ),
        "reparameterized_latents": (
            (2, 3),
            [0.35629705, -0.2052719, -0.38849276, -1.2354847, 1.0213227, -0.70892406],
            -1.160553664,
        ),
        "elbo": ((2,), [-21426.475, -21395.035], -42821.50977),
        "elbo_log_px_z": ((2,), [-21426.471, -21395.031], -42821.50195),
        "elbo_kl": ((2,), [0.0041311923, 0.0048245927], 0.008955785073),
        "iwae_bound_k8": ((2,), [-21426.994, -21395.086], -42822.08008),
        "pipeline_nll_nats_k8": ((2,), [21426.896, 21395.283], 42822.17969),
        "pipeline_bits_per_dim_k8": ((2,), [10.062655, 10.047809], 20.1104641),
        "pipeline_samples": (
            (2, 3, 32, 32),
            [0.35958165, 0.3605023, 0.36098701, 0.36202204, 0.36267483, 0.36001158, 0.360865, 0.3619101],
            2210.296508,
        ),
        "pipeline_pixel_samples": ((2, 3, 32, 32), [0.67843139, 0, 0, 0, 0.21568628, 0, 1, 0.56470591], 2194.71766),
    },
    "gan": {
        "generator_train_at_init": (
            (2, 1, 8, 8),
            [0.0078546088, 0.0099271471, 0.018352112, -0.017964628, 0.027091328, 0.016752614, 0.061702337,
             -0.017395349],
            -2.828389383,
        ),
        "discriminator_train_at_init": ((2,), [0.0031143769, -0.11713768], -0.1140233011),
        "generator_eval_at_init_x1e3": (
            (2, 1, 8, 8),
            [-0.030661587, -0.021778634, -0.0032417721, -0.062419552, 0.13945116, -0.015994817, 0.093903057,
             -0.093389586],
            -15.48526923,
        ),
        "discriminator_eval_at_init_x1e3": ((2,), [-0.16240762, -0.581568], -0.7439756244),
        "generator_eval_perturbed": (
            (2, 1, 8, 8),
            [0.0011080946, 0.086276568, -0.016014984, 0.098900639, -0.027714727, 0.099487588, -0.023629185,
             0.060757354],
            2.417123397,
        ),
        "discriminator_eval_perturbed": ((2,), [0.073166668, 0.09496624], 0.1681329086),
        "pipeline_samples": (
            (2, 1, 8, 8),
            [0.50055403, 0.54313827, 0.4919925, 0.54945034, 0.48614264, 0.54974377, 0.48818541, 0.5303787],
            65.20856148,
        ),
        "pipeline_samples_truncation_0.7": (
            (2, 1, 8, 8),
            [0.49634799, 0.54635745, 0.49023393, 0.54564083, 0.49096414, 0.5463903, 0.48973033, 0.53040576],
            65.1739094,
        ),
    },
    "gan_extra_layers": {
        "generator_train_at_init": (
            (2, 1, 8, 8),
            [0.029246772, 0.009391373, 0.030798582, -0.05600914, -0.022486277, -0.045482572, 0.0057123951,
             -0.005797246],
            -1.500771562,
        ),
        "discriminator_train_at_init": ((2,), [-0.078891836, -0.1633202], -0.2422120348),
        "generator_eval_perturbed": (
            (2, 1, 8, 8),
            [0.0029798117, 0.022770131, -0.037031852, 0.018552648, -0.039640602, 0.019810939, -0.043614425,
             0.010736112],
            -0.4732801473,
        ),
        "discriminator_eval_perturbed": ((2,), [-0.14155565, -0.13878438], -0.2803400308),
        "pipeline_samples": (
            (2, 1, 8, 8),
            [0.50148988, 0.51138508, 0.48148409, 0.50927633, 0.4801797, 0.50990546, 0.47819278, 0.50536805],
            63.76335987,
        ),
        "pipeline_samples_truncation_0.7": (
            (2, 1, 8, 8),
            [0.50183123, 0.51020116, 0.48155597, 0.5085004, 0.47931579, 0.50847089, 0.47817886, 0.50539297],
            63.75894472,
        ),
    },
    "flow_at_init": {
        "z": (
            (2, 64),
            [0.12593347, 0.29301688, 0.62098718, 0.11817515, -0.2985808, 0.30465132, -1.9335008, -0.91844416],
            -13.29702875,
        ),
        "log_det": ((2,), [77.320709, 77.44706], 154.7677689),
        "log_prob": ((2,), [-4.0427704, -3.0916595], -7.134429932),
        "dequantized": (
            (2, 1, 8, 8),
            [0.74204087, 0.25770664, 0.3904185, 0.73379183, 0.041976109, 0.8011198, 0.3789725, 0.71151584],
            65.78920543,
        ),
        "dequantization_log_q": ((2,), [-0, -0], 0),
        "nll_nats": ((2,), [185.336, 184.66248], 369.9984741),
        "sample_model_space_t0.7": (
            (2, 1, 8, 8),
            [0.16261783, 0.22788195, 0.71405864, 0.5151968, 0.35537732, 0.67142993, 0.38345501, 0.27118781],
            64.18823076,
        ),
        "pipeline_bits_per_dim": ((2,), [4.1778646, 4.1626821], 8.340546608),
        "pipeline_samples": ((2, 1, 8, 8), [0.0625, 0.125, 0.8125, 0.5, 0.3125, 0.75, 0.3125, 0.1875], 63.875),
    },
    "flow_perturbed": {
        "z": (
            (2, 64),
            [0.25340483, 0.29755831, 0.53833783, 0.20026593, -0.46119913, 0.05496794, -1.8906046, -1.2206053],
            -15.05602963,
        ),
        "log_det": ((2,), [76.196083, 76.595413], 152.7914963),
        "log_prob": ((2,), [-7.0278244, -2.9375305], -9.965354919),
        "dequantized": (
            (2, 1, 8, 8),
            [0.74204087, 0.25770664, 0.3904185, 0.73379183, 0.041976109, 0.8011198, 0.3789725, 0.71151584],
            65.78920543,
        ),
        "dequantization_log_q": ((2,), [-0, -0], 0),
        "nll_nats": ((2,), [188.21649, 184.48117], 372.6976624),
        "sample_model_space_t0.7": (
            (2, 1, 8, 8),
            [0.138163, 0.15649405, 0.71867412, 0.54117662, 0.42550105, 0.6870904, 0.31827042, 0.30224276],
            64.14488919,
        ),
        "pipeline_bits_per_dim": ((2,), [4.2427969, 4.1585946], 8.401391506),
        "pipeline_samples": ((2, 1, 8, 8), [0.0625, 0, 0.8125, 0.5625, 0.375, 0.75, 0.25, 0.1875], 63.625),
    },
    "flow_variational_perturbed": {
        "z": (
            (2, 64),
            [0.20230201, -0.12581494, -1.254689, -0.22126967, 0.38492215, 0.49072054, 1.2616454, 0.40578997],
            -8.819234991,
        ),
        "log_det": ((2,), [72.309013, 72.607712], 144.9167252),
        "log_prob": ((2,), [-16.240639, -17.463127], -33.70376587),
        "dequantized": (
            (2, 1, 8, 8),
            [0.72131562, 0.26865312, 0.37252691, 0.73200661, 0.040122248, 0.78499866, 0.37702155, 0.7298547],
            65.69840327,
        ),
        "dequantization_log_q": ((2,), [14.731056, 16.017868], 30.74892426),
        "nll_nats": ((2,), [210.13205, 212.13837], 422.2704163),
        "sample_model_space_t0.7": (
            (2, 1, 8, 8),
            [0.48405451, 0.49755412, 0.48418745, 0.48803425, 0.31856003, 0.67216426, 0.25527602, 0.62806833],
            58.17363945,
        ),
        "pipeline_bits_per_dim": ((2,), [4.7368202, 4.7820463], 9.518866539),
        "pipeline_samples": ((2, 1, 8, 8), [0.4375, 0.5, 0.5, 0.4375, 0.1875, 0.8125, 0.125, 0.6875], 54.625),
    },
    "ddpm_unet": {
        "unet_eps": (
            (2, 1, 8, 8),
            [0.11298256, 0.33681387, 0.26482454, 0.24904779, -0.05321968, 0.19513011, 0.051401719, -0.45375922],
            18.97717725,
        ),
    },
    "ddpm_sampler_ddpm": {
        "pipeline_samples": (
            (2, 1, 8, 8),
            [0.0087706745, 0.019241452, 0.18690714, 0, 0.6869362, 0.0009740591, 0.0011407435, 0],
            57.7650106,
        ),
    },
    "ddpm_sampler_ddim": {
        "pipeline_samples": (
            (2, 1, 8, 8),
            [0.0069690645, 0.061419964, 0.11255044, 0.012074918, 0.42868805, 0.13598302, 0.013661444, 0],
            57.05907178,
        ),
    },
    "ddpm_sampler_dpmsolver++": {
        "pipeline_samples": ((2, 1, 8, 8), [0, 0.052362472, 0.11313871, 0, 0.45800471, 0.14790532, 0, 0], 56.34134376),
    },
    "gan_dcgan_rgb32": {
        "generator_train_at_init": (
            (2, 3, 32, 32),
            [-0.00019487111, -0.014261815, -0.005253152, 0.00023897085, -0.0055649495, -0.0052447864, -0.055439893,
             -0.049557652],
            -4.166063754,
        ),
        "discriminator_train_at_init": ((2,), [0.13554874, 0.28920853], 0.424757272),
        "generator_eval_perturbed": (
            (2, 3, 32, 32),
            [-0.064958103, -0.068032235, -0.060908932, -0.067865528, -0.059273761, -0.07788223, -0.061726488,
             -0.080586247],
            -96.8454728,
        ),
        "discriminator_eval_perturbed": ((2,), [0.42018697, 0.4249377], 0.8451246619),
        "pipeline_samples": (
            (2, 3, 32, 32),
            [0.46752095, 0.46598387, 0.46954554, 0.46606722, 0.47036311, 0.46105888, 0.46913674, 0.45970687],
            3023.577264,
        ),
    },
    "flow_rgb16_perturbed": {
        "z": (
            (2, 768),
            [0.46472731, -0.33014303, 1.9318881, 1.7941228, -1.1610829, -1.5406388, 0.94588929, 0.92967105],
            -65.41516019,
        ),
        "log_det": ((2,), [986.77649, 998.50928], 1985.285767),
        "nll_nats": ((2,), [4493.3364, 4440.3682], 8933.70459),
        "pipeline_bits_per_dim": ((2,), [8.440774, 8.3412724], 16.78204632),
        "pipeline_samples": (
            (2, 3, 16, 16),
            [0.80784315, 0.44705883, 0.074509807, 0.42745098, 0.64313728, 0.86274511, 0.14509805, 0.96078432],
            785.4470723,
        ),
    },
    "ddpm_rgb16": {
        "unet_eps": (
            (2, 3, 16, 16),
            [-0.041615792, -0.11485444, 0.0055073313, 0.058328491, -0.11347273, -0.19900461, -0.085556388,
             -0.13593902],
            28.49345833,
        ),
        "pipeline_samples_dpmsolver++": (
            (2, 3, 16, 16),
            [0, 0.12328923, 0.1547541, 0, 0.4657968, 0.21536991, 0.0013444126, 0],
            786.1622821,
        ),
    },
    "text2img_forward": {
        "text_encoder_hidden_states": (
            (2, 16, 16),
            [-1.8587037, -0.86873716, 1.2232511, 0.075195208, 0.24876253, 0.4005968, -1.7603445, -0.90730178],
            -5.229667295e-07,
        ),
        "unet_eps": (
            (2, 1, 8, 8),
            [-0.040725909, -0.25539404, -0.24938865, -0.27739742, -0.13890924, -0.35636252, -0.078887254, -0.11791167],
            -10.81470546,
        ),
    },
    "text2img_sampler_saved": {
        "final_latents": ((2, 1, 8, 8), [-1, -1, -1, -1, -0.42697063, -1, -1, -1], -10.83759263),
        "pipeline_samples": ((2, 1, 8, 8), [0, 0, 0, 0, 0.2865147, 0, 0, 0], 58.5812037),
    },
    "text2img_sampler_ddim": {
        "final_latents": (
            (2, 1, 8, 8),
            [-0.93873638, -0.77555972, -0.81874782, -0.99844027, -0.7361021, -0.97007442, -0.7372821, -0.52666283],
            -8.129477738,
        ),
        "pipeline_samples": (
            (2, 1, 8, 8),
            [0.03063181, 0.11222014, 0.090626091, 0.00077986717, 0.13194895, 0.014962792, 0.13135895, 0.23666859],
            59.93526101,
        ),
    },
    "text2img_sampler_ddpm": {
        "final_latents": (
            (2, 1, 8, 8),
            [-0.29089251, -0.18804163, 0.79328734, 0.98763382, 1, -0.35808477, 0.37490258, -0.99319834],
            21.19956738,
        ),
        "pipeline_samples": (
            (2, 1, 8, 8),
            [0.35455376, 0.40597919, 0.89664364, 0.99381691, 1, 0.3209576, 0.6874513, 0.0034008324],
            74.59978372,
        ),
    },
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
        _, got_first, got_total = summarize(tensor)
        assert all(math.isfinite(v) for v in got_first) and math.isfinite(got_total), f"{case}/{key} not finite"
        for what, got, want in [
            ("first values", torch.tensor(got_first), torch.tensor(first, dtype=torch.float32)),
            ("sum", torch.tensor(got_total, dtype=torch.float64), torch.tensor(total, dtype=torch.float64)),
        ]:
            torch.testing.assert_close(
                got, want, rtol=RTOL, atol=ATOL,
                msg=lambda m, key=key, what=what: f"{case}/{key} ({what}) moved:\n{m}\nFresh values:\n{fresh}",
            )  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the tests run (the one_torch_thread fixture)
    names = sys.argv[1:] or list(CASES)
    print("EXPECTED = {")
    for name in names:
        print(_format_case(name, CASES[name]()))
    print("}")

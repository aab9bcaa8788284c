"""Device-correct random draws (hubgen.draws), checked on the CPU.

A CPU torch.Generator handed to a draw on CUDA fails there ("Expected a 'cuda' device type for generator"), so a
mix-up shows only on a GPU. Here it shows on the CPU: the code runs on the "meta" device with a CPU generator under
`GeneratorDeviceCheck`, which refuses any draw whose generator is not on the device the draw happens on, as a CUDA
kernel would. A static test keeps every seeded draw in hubgen going through hubgen.draws.
"""

import ast
import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_vae
from diffusers.utils.torch_utils import randn_tensor as diffusers_randn_tensor
from torch.overrides import TorchFunctionMode

from hubgen import draws
from hubgen.errors import UserInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HUBGEN = Path(__file__).resolve().parents[1] / "hubgen"
META = torch.device("meta")


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


class GeneratorDeviceCheck(TorchFunctionMode):
    """Refuse a torch call given a `generator` on another device than the one it draws on (its `device=` argument,
    else its first tensor argument, else the CPU): what CUDA kernels refuse, checked on any device."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if isinstance(generator, torch.Generator):
            device = kwargs.get("device")
            if device is None:
                device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
            if torch.device(device).type != generator.device.type:
                raise AssertionError(f"{func.__name__} on {device} got a generator on {generator.device}")
        return func(*args, **kwargs)


# -- 1. the helpers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (64, 1, 8, 8)])
def test_bernoulli_gives_torch_bernoulli_bit_for_bit_on_the_cpu(shape, dtype):
    p = torch.rand(shape, generator=_g(9), dtype=torch.float64).to(dtype)
    torch.testing.assert_close(draws.bernoulli(p, _g(1)), torch.bernoulli(p, generator=_g(1)), rtol=0, atol=0)


def test_randn_tensor_draws_what_diffusers_draws_for_one_generator_and_a_list():
    shape = (3, 2, 4)
    torch.testing.assert_close(draws.randn_tensor(shape, _g(0)), diffusers_randn_tensor(shape, generator=_g(0)))
    gens = [_g(5), _g(6), _g(7)]
    expected = diffusers_randn_tensor(shape, generator=[_g(5), _g(6), _g(7)])
    torch.testing.assert_close(draws.randn_tensor(shape, gens), expected, rtol=0, atol=0)


@pytest.mark.parametrize("draw", ["randn", "rand", "randint", "bernoulli"])
def test_a_list_of_generators_draws_row_i_from_generator_i(draw):
    p = torch.full((4, 3, 2), 0.5)
    fns = {
        "randn": lambda g, n: draws.randn_tensor((n, 3, 2), g),
        "rand": lambda g, n: draws.rand_tensor((n, 3, 2), g),
        "randint": lambda g, n: draws.randint_tensor(0, 9, (n, 3, 2), g),
        "bernoulli": lambda g, n: draws.bernoulli(p[:n], g),
    }
    batch = fns[draw]([_g(s) for s in range(4)], 4)
    rows = torch.cat([fns[draw](_g(s), 1) for s in range(4)])
    torch.testing.assert_close(batch, rows, rtol=0, atol=0)
    torch.testing.assert_close(fns[draw]([_g(3)], 1), fns[draw](_g(3), 1), rtol=0, atol=0)  # a list of one == one


def test_a_cpu_generator_draws_on_the_cpu_and_the_numbers_move_to_the_target_device():
    p = torch.rand(2, 3).to(META)
    with GeneratorDeviceCheck():
        outs = [draws.randn_tensor((2, 3), _g(), META), draws.rand_tensor((2, 3), [_g(), _g(1)], META),
                draws.randint_tensor(0, 4, (2,), _g(), META), draws.bernoulli(p, _g())]  # fmt: skip
    assert all(out.device == META and out.shape[0] == 2 for out in outs)


def test_the_device_check_catches_the_old_bug():
    """The pattern the helpers replace: a draw on the tensor's device with a CPU generator."""
    p = torch.rand(2, 3).to(META)
    with pytest.raises(AssertionError, match="generator on cpu"), GeneratorDeviceCheck():
        torch.bernoulli(p, generator=_g())


def test_bad_generators_are_refused_naming_the_argument():
    with pytest.raises(UserInputError, match=r"Got 2 generators in `generator` for 3 images"):
        draws.check_generators([_g(), _g()], 3)
    with pytest.raises(UserInputError, match=r"`generator` must be None, a torch.Generator or a list"):
        draws.check_generators(0, 1)
    with pytest.raises(UserInputError, match=r"`generator` must be None"):
        draws.check_generators([_g(), 3], 2)
    draws.check_generators([_g(), _g()], 2, device="meta")  # CPU generators serve any device


# -- 2. every seeded draw goes through hubgen.draws ----------------------------------------------------------------

RANDOM_FUNCTIONS = {"rand", "randn", "randint", "randperm", "bernoulli", "multinomial", "normal", "poisson",
                    "rand_like", "randn_like", "randint_like", "uniform_", "normal_", "bernoulli_", "random_",
                    "exponential_", "geometric_", "cauchy_", "log_normal_"}  # fmt: skip
# Seeded draws left outside hubgen.draws, each a CPU draw for CPU data, with the reason.
ALLOWED = {
    ("flow/train_flow.py", "randperm"): "indices into the CPU dataset for the ActNorm initialization batch",
    ("metrics/train_classifier.py", "randperm"): "the classifier's shuffle of CPU dataset indices",
    ("vae/train_vae.py", "randn"): "the grid's latents drawn on the CPU from a CPU generator, then moved",
}


def _seeded_draws():
    """(file, function name, line) of every torch random call given `generator=` in hubgen, and of every
    torch.Generator created with a device (a seed must give the same numbers on any device: CPU generators)."""
    found = []
    for path in sorted(HUBGEN.rglob("*.py")):
        rel = path.relative_to(HUBGEN).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name = node.func.attr
            if name in RANDOM_FUNCTIONS and any(k.arg == "generator" for k in node.keywords):
                found.append((rel, name, node.lineno))
            if name == "Generator" and (node.args or node.keywords):
                found.append((rel, "Generator(device)", node.lineno))
    return found


def test_every_seeded_draw_in_hubgen_goes_through_hubgen_draws():
    stray = [f"hubgen/{rel}:{line} {name}" for rel, name, line in _seeded_draws()
             if rel != "draws.py" and (rel, name) not in ALLOWED]  # fmt: skip
    assert not stray, f"seeded draws outside hubgen.draws (use randn_tensor / rand_tensor / bernoulli): {stray}"
    assert {(rel, name) for rel, name, _ in _seeded_draws()} >= set(ALLOWED), "an ALLOWED entry is stale"


# -- 3. the code that draws, run on the meta device with a CPU generator --------------------------------------------


def test_data_transforms_draw_on_the_generators_device():
    from hubgen import data
    from hubgen.diffusion.scheduling import drop_condition
    from hubgen.metrics.train_classifier import random_translate

    x = torch.rand(2, 1, 4, 4).to(META)
    cond, null = torch.zeros(2, 3, device=META), torch.ones(3, device=META)
    with GeneratorDeviceCheck():
        outs = [data.binarize(x, _g()), data.dequantize(x, 17, _g()), data.to_model_input(x, "binary", 17, _g()),
                random_translate(x, 1, _g()), drop_condition(cond, null, 0.5, _g())]  # fmt: skip
    assert all(out.device == META for out in outs)


def test_vae_losses_and_samples_draw_on_the_generators_device():
    from hubgen.vae import VAEPipeline, losses

    x = torch.rand(2, 1, 8, 8).round()
    with GeneratorDeviceCheck():
        for kind in ("bernoulli", "gaussian", "discretized_logistic"):
            model = tiny_vae(decoder_distribution=kind).to(META)
            assert losses.iwae_bound(model, x.to(META), 3, generator=_g()).device == META
            assert losses.elbo(model, x.to(META), generator=_g())["elbo"].device == META
            assert model(x.to(META), generator=_g(), num_samples=2).latents.device == META
            assert model.decode_to_images(torch.zeros(2, 2, device=META), sample=True, generator=_g()).device == META
        pipe = VAEPipeline(tiny_vae(), pixel_levels=17).to(META)
        assert pipe(2, generator=_g(), output_type="pt", sample_pixels=True).images.device == META
        assert pipe(2, generator=[_g(), _g(1)], output_type="pt", sample_pixels=True).images.device == META
        assert pipe.log_likelihood(torch.rand(2, 1, 8, 8), k=2, generator=_g()).nll_nats.device == META


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_flow_dequantization_and_sampling_draw_on_the_generators_device(dequantization):
    from hubgen.flow import FlowModel, FlowPipeline

    torch.manual_seed(0)
    flow = FlowModel(sample_size=4, in_channels=1, pixel_levels=17, num_levels=2, steps_per_level=1,
                     hidden_channels=4, dequantization=dequantization).to(META)  # fmt: skip
    with GeneratorDeviceCheck():
        assert flow.dequantize(torch.rand(2, 1, 4, 4).to(META), _g())[0].device == META
        assert flow.sample(2, 0.7, generator=_g()).device == META
        assert FlowPipeline(flow).log_likelihood(torch.rand(2, 1, 4, 4), generator=_g()).bits_per_dim.device == META


def test_gan_and_pixelcnn_pipelines_draw_on_the_generators_device():
    from hubgen.gan.modeling_gan import Generator
    from hubgen.gan.pipeline_gan import GANPipeline
    from hubgen.pixelcnn.modeling_pixelcnn import PixelCNNModel
    from hubgen.pixelcnn.pipeline_pixelcnn import PixelCNNPipeline

    torch.manual_seed(0)
    gan = GANPipeline(Generator(latent_dim=8, sample_size=8, base_channels=4)).to(META)
    pixelcnn = PixelCNNPipeline(PixelCNNModel(sample_size=3, in_channels=1, pixel_levels=2, hidden_channels=4,
                                              num_layers=2).eval()).to(META)  # fmt: skip
    pixelcnn.set_progress_bar_config(disable=True)
    with GeneratorDeviceCheck():
        assert gan(2, generator=_g(), truncation=0.7, output_type="pt").images.device == META
        assert gan(2, generator=[_g(), _g(1)], output_type="pt").images.device == META
        assert pixelcnn(2, generator=[_g(), _g(1)], output_type="pt").images.device == META
        assert pixelcnn.log_likelihood(torch.rand(2, 1, 3, 3), generator=_g()).nll_nats.device == META


def test_the_variational_bound_draws_on_the_generators_device():
    from diffusers import DDPMScheduler

    from hubgen.diffusion.scheduling import variational_bound

    scheduler = DDPMScheduler(num_train_timesteps=4)
    x0 = torch.zeros(2, 1, 2, 2, device=META)
    with GeneratorDeviceCheck():
        bound = variational_bound(lambda xt, t: torch.zeros_like(xt), scheduler, x0, 3, generator=_g(), levels=17)
    assert bound.bits_per_dim.device == META


# -- 4. per-image generators: image i of a batch is the image of a one-image call with generator i -------------------


def _pipelines():
    """One tiny pipeline per built-in family and a call of it: call(pipe, n, generator) -> (n, C, H, W)."""
    from diffusers import DDPMScheduler, UNet2DModel

    from hubgen.ddpm import DDPMPipeline
    from hubgen.ddpm.train_ddpm import unet_config
    from hubgen.flow import FlowModel, FlowPipeline
    from hubgen.gan.modeling_gan import Generator
    from hubgen.gan.pipeline_gan import GANPipeline
    from hubgen.mixture.modeling_mixture import MixtureModel
    from hubgen.mixture.pipeline_mixture import MixturePipeline
    from hubgen.pixelcnn.modeling_pixelcnn import PixelCNNModel
    from hubgen.pixelcnn.pipeline_pixelcnn import PixelCNNPipeline
    from hubgen.text2img import captions as cap
    from hubgen.text2img.modeling_text2img import build_text_encoder, build_unet, make_pipeline
    from hubgen.vae import VAEPipeline

    torch.manual_seed(0)
    tokenizer = cap.build_tokenizer(16)
    text_encoder = build_text_encoder(len(tokenizer), hidden_size=16, layers=1, heads=2)
    t2i_unet = build_unet(8, 1, text_encoder.config.hidden_size, (8, 16), attention_heads=2)
    ddpm_unet = UNet2DModel(**unet_config(8, 1, (8, 16), norm_num_groups=4))
    flow = FlowModel(sample_size=4, in_channels=1, pixel_levels=17, num_levels=2, steps_per_level=1, hidden_channels=4)
    pixelcnn = PixelCNNModel(sample_size=3, in_channels=1, pixel_levels=4, hidden_channels=4, num_layers=2)
    return {
        "vae": (
            VAEPipeline(tiny_vae(), pixel_levels=17),
            lambda p, n, g: p(n, generator=g, sample_pixels=True, output_type="pt").images,
        ),
        "gan": (
            GANPipeline(Generator(latent_dim=8, sample_size=8, base_channels=4)),
            lambda p, n, g: p(n, generator=g, truncation=0.7, output_type="pt").images,
        ),
        "flow": (FlowPipeline(flow), lambda p, n, g: p(n, generator=g, temperature=0.7, output_type="pt").images),
        "ddpm": (
            DDPMPipeline(unet=ddpm_unet, scheduler=DDPMScheduler(num_train_timesteps=20)),  # noise every step
            lambda p, n, g: p(n, generator=g, sampler="ddpm", num_inference_steps=4, output_type="pt").images,
        ),
        "text2img": (
            make_pipeline(t2i_unet.eval(), text_encoder.eval(), tokenizer, DDPMScheduler(num_train_timesteps=20)),
            lambda p, n, g: (
                p(
                    "a 3",
                    num_images_per_prompt=n,
                    generator=g,
                    sampler="ddpm",
                    num_inference_steps=3,
                    guidance_scale=2.0,
                    output_type="pt",
                ).images
            ),
        ),
        "pixelcnn": (PixelCNNPipeline(pixelcnn.eval()), lambda p, n, g: p(n, generator=g, output_type="pt").images),
        "mixture": (
            MixturePipeline(
                MixtureModel(num_components=3, height=4, width=4, distribution="gaussian", pixel_levels=17)
            ),
            lambda p, n, g: p(n, generator=g, output_type="pt").images,
        ),
    }


PIPELINES = {}


def _pipeline(name):
    if not PIPELINES:
        PIPELINES.update(_pipelines())
        for pipe, _ in PIPELINES.values():
            pipe.set_progress_bar_config(disable=True)
    return PIPELINES[name]


FAMILIES = ["vae", "gan", "flow", "ddpm", "text2img", "pixelcnn", "mixture"]


def test_every_built_in_family_is_checked_here():
    from hubgen.registry import list_families

    built_in = {f.name for f in list_families() if f.pipeline_class.startswith("hubgen.")}
    assert built_in == set(FAMILIES), "add the new family's tiny pipeline to _pipelines()"


@pytest.mark.parametrize("name", FAMILIES)
def test_a_list_of_generators_gives_image_i_of_a_one_image_call_with_generator_i(name):
    pipe, call = _pipeline(name)
    batch = call(pipe, 3, [_g(10), _g(11), _g(12)])
    single = torch.cat([call(pipe, 1, _g(s)) for s in (10, 11, 12)])
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-5)  # batched convolutions may round differently
    torch.testing.assert_close(call(pipe, 1, [_g(4)]), call(pipe, 1, _g(4)), rtol=0, atol=0)  # list or alone: same
    assert not torch.equal(batch[0], batch[1]), "per-image seeds must give different images"


@pytest.mark.parametrize("name", FAMILIES)
def test_a_list_of_the_wrong_length_is_refused_naming_generator(name):
    pipe, call = _pipeline(name)
    with pytest.raises(ValueError, match=r"Got 2 generators in `generator` for 3 images"):
        call(pipe, 3, [_g(), _g(1)])


def test_pixelcnn_completions_take_one_generator_per_completion():
    pipe, _ = _pipeline("pixelcnn")
    image, mask = torch.zeros(1, 1, 3, 3), torch.zeros(3, 3, dtype=torch.bool)
    mask[0] = True  # the first row known
    batch = pipe.complete(image, mask, num_completions=2, generator=[_g(1), _g(2)], output_type="pt")
    single = torch.cat([pipe.complete(image, mask, generator=_g(s), output_type="pt") for s in (1, 2)])
    torch.testing.assert_close(batch, single, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"Got 1 generators in `generator` for 2 images"):
        pipe.complete(image, mask, num_completions=2, generator=[_g(1)])


# -- 5. loading in another dtype, moving to another device ---------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_from_pretrained_takes_dtype_without_a_deprecation_warning_and_to_moves_every_component(name, tmp_path):
    import warnings

    pipe, call = _pipeline(name)
    pipe.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        loaded = type(pipe).from_pretrained(tmp_path, dtype=torch.float64)
    modules = [m for m in loaded.components.values() if isinstance(m, torch.nn.Module)]
    assert modules and all(p.dtype == torch.float64 for m in modules for p in m.parameters())
    loaded.set_progress_bar_config(disable=True)
    images = call(loaded, 1, _g(3))
    assert math.isfinite(images.double().sum().item())
    loaded.to(META)
    assert all(p.device == META for m in modules for p in m.parameters())

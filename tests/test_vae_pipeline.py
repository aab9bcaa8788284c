"""VAEModel conventions and VAEPipeline: sampling, save/load round trip, safetensors only, input checks."""

import numpy as np
import pytest
import torch
from conftest import tiny_vae
from PIL import Image

import hubgen
from hubgen.training import config_dict
from hubgen.vae import VAEModel, VAEPipeline


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(sample_size=8, architecture="mlp", hidden_dims=(16, 8)),
        dict(sample_size=28, architecture="conv", hidden_dims=(8, 16), decoder_distribution="gaussian"),
        dict(sample_size=8, architecture="conv", hidden_dims=(4, 8), latent_dim=3),
    ],
)
def test_model_follows_autoencoderkl_conventions(cfg):
    model = tiny_vae(**cfg)
    s, d = model.config.sample_size, model.config.latent_dim
    x = torch.rand(3, 1, s, s)
    dist = model.encode(x).latent_dist
    assert dist.mean.shape == dist.logvar.shape == (3, d)
    torch.testing.assert_close(dist.std, torch.exp(0.5 * dist.logvar))
    torch.testing.assert_close(dist.sample(_g()), dist.sample(_g()))  # a generator makes it deterministic
    out = model.decode(dist.mean)
    assert out.sample.shape == (3, 1, s, s)
    assert (out.logvar is None) == (model.config.decoder_distribution == "bernoulli")
    images = model.decode_to_images(dist.mean)
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize(
    "bad",
    [
        dict(architecture="rnn"),
        dict(decoder_distribution="poisson"),
        dict(latent_dim=0),
        dict(architecture="conv", sample_size=10, hidden_dims=(4, 4)),
        dict(architecture="conv", hidden_dims=(4,)),
    ],
)
def test_model_rejects_bad_config(bad):
    with pytest.raises(ValueError):
        tiny_vae(**bad)


def test_save_and_load_restore_identical_samples(tmp_path, vae_pipeline):
    vae_pipeline.save_pretrained(tmp_path / "m")
    files = sorted(p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file())
    assert files == ["model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]
    loaded = VAEPipeline.from_pretrained(tmp_path / "m")
    assert loaded.config.pixel_levels == 17
    for a, b in [(vae_pipeline, loaded)]:
        torch.testing.assert_close(
            a(4, generator=_g(3), output_type="pt").images,
            b(4, generator=_g(3), output_type="pt").images,
            rtol=0,
            atol=0,
        )
    assert isinstance(hubgen.load_pipeline(tmp_path / "m"), VAEPipeline)


def test_output_types_and_generator_lists(vae_pipeline):
    pil = vae_pipeline(2, generator=_g()).images
    assert len(pil) == 2 and isinstance(pil[0], Image.Image) and pil[0].size == (8, 8)
    arr = vae_pipeline(2, generator=_g(), output_type="np").images
    assert arr.shape == (2, 8, 8, 1)
    per_image = vae_pipeline(2, generator=[_g(1), _g(2)], output_type="pt").images
    one = vae_pipeline(1, generator=_g(2), output_type="pt").images
    torch.testing.assert_close(per_image[1:], one)
    assert vae_pipeline(2, generator=_g(), return_dict=False)[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=2, output_type="jpg"), "output_type"),
        (dict(batch_size=2, generator=[torch.Generator()]), "generators"),
        (dict(batch_size=2, latents=torch.zeros(2, 5)), "latents"),
    ],
)
def test_call_validates_inputs(vae_pipeline, kwargs, match):
    with pytest.raises(ValueError, match=match):
        vae_pipeline(**kwargs)


def test_reconstruct_interpolate_and_likelihood(vae_pipeline):
    x = torch.rand(3, 1, 8, 8)
    rec = vae_pipeline.reconstruct(x, output_type="pt")
    z = vae_pipeline.vae.encode(x).latent_dist.mean
    torch.testing.assert_close(rec, vae_pipeline.vae.decode_to_images(z))
    strip = vae_pipeline.interpolate(1, 2, steps=5, output_type="pt")
    assert strip.shape == (5, 1, 8, 8)
    ends = vae_pipeline(1, generator=_g(1), output_type="pt").images
    torch.testing.assert_close(strip[:1], ends)
    # uint8 numpy and PIL inputs are accepted too
    vae_pipeline.reconstruct((x[:, 0].numpy() * 255).astype(np.uint8))
    vae_pipeline.reconstruct([Image.fromarray((x[0, 0].numpy() * 255).astype(np.uint8))])
    scores = vae_pipeline.log_likelihood(x, k=20, generator=_g())
    assert scores.nll_nats.shape == (3,) and torch.isfinite(scores.nll_nats).all()
    torch.testing.assert_close(scores.bits_per_dim, scores.nll_nats / (64 * np.log(2)))


def test_gaussian_decoder_nats_are_of_the_discrete_data_with_the_dequantization_bin():
    # -L_k(x + u) is a density of the dequantized data; + D ln L makes it nats of the 17-level data (the flow's and
    # the mixture's unit), and bits/dim is those nats over D ln 2 (= the density's bits/dim + log2 L)
    from hubgen.vae.losses import iwae_bound

    pipe = VAEPipeline(tiny_vae(decoder_distribution="gaussian"), pixel_levels=17)
    images = torch.rand(2, 1, 8, 8)
    scores = pipe.log_likelihood(images, k=4, generator=_g())
    g = _g()
    x, levels = pipe.likelihood_input(images, generator=g)  # the same dequantization draw, then the same IWAE draws
    continuous = -iwae_bound(pipe.vae, x, 4, generator=g)
    assert levels == 17
    torch.testing.assert_close(scores.nll_nats, continuous + 64 * np.log(17))
    torch.testing.assert_close(scores.bits_per_dim, continuous / (64 * np.log(2)) + np.log2(17))


@pytest.mark.parametrize(
    "images, match",
    [
        (torch.rand(2, 1, 28, 28), "shape"),
        (torch.rand(2, 3, 8, 8), "shape"),
        (torch.rand(2, 1, 8, 8) * 3, "range"),
        ("not an image", "must be"),
    ],
)
def test_wrong_images_give_clear_errors(vae_pipeline, images, match):
    with pytest.raises(ValueError, match=match):
        vae_pipeline.reconstruct(images)


def test_likelihood_and_interpolation_reject_bad_arguments(vae_pipeline):
    with pytest.raises(ValueError, match="`k`"):
        vae_pipeline.log_likelihood(torch.rand(1, 1, 8, 8), k=0)
    with pytest.raises(ValueError, match="`steps`"):
        vae_pipeline.interpolate(0, 1, steps=1)


def test_loading_refuses_pickle_weights(tmp_path, vae_pipeline):
    folder = tmp_path / "m"
    vae_pipeline.save_pretrained(folder)
    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(vae_pipeline.vae.state_dict(), folder / "vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        VAEPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="use_safetensors"):
        VAEPipeline.from_pretrained(folder, use_safetensors=False)


def test_missing_or_corrupted_weights_give_clear_errors(tmp_path, vae_pipeline):
    folder = tmp_path / "m"
    vae_pipeline.save_pretrained(folder)
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match="Cannot load VAEPipeline"):
        VAEPipeline.from_pretrained(folder)
    assert weights.read_bytes() == b"this is not a safetensors file"  # nothing was touched
    weights.unlink()
    with pytest.raises(ValueError, match="Cannot load VAEPipeline"):
        VAEPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="model_index.json"):
        hubgen.load_pipeline(tmp_path)


def test_model_config_round_trips(tmp_path):
    model = VAEModel(sample_size=8, latent_dim=3, architecture="conv", hidden_dims=(4, 8), activation="elu")
    model.save_pretrained(tmp_path)
    again = VAEModel.from_pretrained(tmp_path, use_safetensors=True)
    assert config_dict(again) == config_dict(model)
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- colour images and the discretized logistic decoder ---------------------------------------------------------


@pytest.fixture(scope="module")
def rgb_pipeline():
    model = tiny_vae(sample_size=16, in_channels=3, latent_dim=3, architecture="conv", hidden_dims=(4, 8),
                     decoder_distribution="discretized_logistic", num_levels=256)  # fmt: skip
    return VAEPipeline(model, pixel_levels=256)


def test_conv_depth_follows_the_resolution_and_bad_sizes_name_the_allowed_ones():
    from hubgen.errors import UserInputError
    from hubgen.vae.modeling_vae import conv_stages, conv_widths

    assert [conv_stages(s) for s in (8, 16, 28, 32, 64)] == [2, 2, 2, 3, 4]  # 64 -> 4x4, 28 -> 7x7 as before
    assert conv_widths(32, (32, 128)) == (32, 64, 128) and conv_widths(64, (16, 128)) == (16, 32, 64, 128)
    assert conv_widths(8, (4, 8)) == (4, 8) and conv_widths(32, (8, 8, 16)) == (8, 8, 16)
    for size in (32, 64):
        model = tiny_vae(sample_size=size, in_channels=3, architecture="conv", hidden_dims=conv_widths(size, (4, 8)),
                         decoder_distribution="discretized_logistic")  # fmt: skip
        out = model(torch.rand(2, 3, size, size), generator=_g())
        assert out.sample.shape == out.log_scale.shape == (2, 3, size, size) and out.num_levels == 256
        assert model.encoder[-3].out_channels == 8 and len(model.encoder) == 2 * conv_stages(size) + 1  # down to 4x4
    for bad in (6, 30, 33):
        with pytest.raises(UserInputError, match=f"multiple of 4 and at least 8.*got {bad}"):
            conv_stages(bad)
    with pytest.raises(UserInputError, match="3 stride-2 stages: give two `hidden_dims`"):
        conv_widths(32, (4, 8, 16, 32))


def test_discrete_rgb_model_means_and_samples_are_colour_images_in_range(rgb_pipeline):
    images = rgb_pipeline(3, generator=_g(1), output_type="pt").images
    assert images.shape == (3, 3, 16, 16) and images.min() >= 0 and images.max() <= 1
    drawn = rgb_pipeline(3, generator=_g(1), output_type="pt", sample_pixels=True).images
    assert drawn.shape == (3, 3, 16, 16) and drawn.min() >= 0 and drawn.max() <= 1
    torch.testing.assert_close(drawn * 255, (drawn * 255).round())  # on the 256 levels
    per_image = rgb_pipeline(2, generator=[_g(4), _g(5)], output_type="pt", sample_pixels=True).images
    alone = rgb_pipeline(1, generator=_g(5), output_type="pt", sample_pixels=True).images
    torch.testing.assert_close(per_image[1:], alone)
    pil = rgb_pipeline(2, generator=_g(1)).images
    assert pil[0].mode == "RGB" and pil[0].size == (16, 16)
    # a Bernoulli model's pixel draws are 0 or 1
    binary = VAEPipeline(tiny_vae(), pixel_levels=17)(4, generator=_g(2), output_type="pt", sample_pixels=True).images
    assert set(binary.unique().tolist()) <= {0.0, 1.0}


def test_discrete_likelihood_is_in_bits_per_sub_pixel_without_a_dequantization_term(rgb_pipeline):
    x = torch.randint(0, 256, (2, 3, 16, 16), generator=_g(6)).float() / 255
    scores = rgb_pipeline.log_likelihood(x, k=8, generator=_g(7))
    torch.testing.assert_close(scores.bits_per_dim, scores.nll_nats / (3 * 16 * 16 * np.log(2)))
    again = rgb_pipeline.log_likelihood(x, k=8, generator=_g(7))
    torch.testing.assert_close(scores.nll_nats, again.nll_nats, rtol=0, atol=0)  # no random input transform
    # colour PIL images keep their colour (the same numbers as the tensor)
    pil = [Image.fromarray((im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for im in x]
    from_pil = rgb_pipeline.log_likelihood(pil, k=8, generator=_g(7))
    torch.testing.assert_close(from_pil.nll_nats, scores.nll_nats)
    with pytest.raises(ValueError, match="shape"):
        rgb_pipeline.reconstruct(torch.rand(1, 1, 16, 16))


def test_discrete_rgb_pipeline_saves_and_reloads_bit_identical(tmp_path, rgb_pipeline):
    rgb_pipeline.save_pretrained(tmp_path / "m")
    loaded = VAEPipeline.from_pretrained(tmp_path / "m")
    cfg = loaded.vae.config
    assert (cfg.decoder_distribution, cfg.num_levels, cfg.in_channels) == ("discretized_logistic", 256, 3)
    for kwargs in (dict(), dict(sample_pixels=True)):
        a = rgb_pipeline(4, generator=_g(3), output_type="pt", **kwargs).images
        b = loaded(4, generator=_g(3), output_type="pt", **kwargs).images
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# -- the hierarchical VAE (latent_dims) -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hierarchical_pipeline():
    return VAEPipeline(tiny_vae(latent_dims=(4, 2), latent_hidden_dims=(8,)), pixel_levels=17)


def test_hierarchical_pipeline_saves_reloads_and_samples_from_the_top_layer(tmp_path, hierarchical_pipeline):
    pipe = hierarchical_pipeline
    hierarchical_pipeline.save_pretrained(tmp_path / "h")
    loaded = VAEPipeline.from_pretrained(tmp_path / "h")
    assert config_dict(loaded.vae) == config_dict(pipe.vae) and loaded.vae.latent_sizes == (4, 2)
    a = pipe(3, generator=_g(5), output_type="pt").images
    torch.testing.assert_close(loaded(3, generator=_g(5), output_type="pt").images, a, rtol=0, atol=0)
    # z2 ~ N(0, I) (size 2), then z1 ~ p(z1|z2) from the same generator, then the decoder's mean E[x|z1]
    g = _g(5)
    with torch.no_grad():
        z1 = pipe.vae.ancestral_latents(torch.randn(3, 2, generator=g), generator=g)
        torch.testing.assert_close(a, pipe.vae.decode_to_images(z1), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"`latents` must have shape \(3, 2\)"):
        pipe(3, latents=torch.zeros(3, 4))
    # a list of generators: image i's z2 and z1 from generator i
    listed = pipe(2, generator=[_g(1), _g(2)], output_type="pt").images
    torch.testing.assert_close(listed[1:], pipe(1, generator=_g(2), output_type="pt").images, rtol=0, atol=1e-6)
    strip = pipe.interpolate(0, 1, steps=4, output_type="pt")
    assert strip.shape == (4, 1, 8, 8)
    x = pipe.reconstruct(strip, output_type="pt")
    scores = pipe.log_likelihood(x, k=20, generator=_g(6))
    assert torch.isfinite(scores.nll_nats).all() and torch.isfinite(scores.neg_elbo_nats).all()
    assert pipe.interpolate(x[:1], x[1:2], steps=2, output_type="pt").shape == (2, 1, 8, 8)

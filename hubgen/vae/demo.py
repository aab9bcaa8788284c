"""The VAE family's Gradio demo: sample, draw-and-score, interpolate, and walk the latent space.

Each tab calls one plain function of this module, which can be tested without a browser:

    sample_grid(pipe, seed, num_images)        z ~ N(0, I) -> E[x|z], tiled into one image
    reconstruct_drawing(pipe, sketch)          sketchpad -> model input x -> E[x|z], z = E[q(z|x)],
                                               and the IWAE bound -L_k(x) (Burda et al., arXiv:1509.00519)
    interpolation_strip(pipe, seed_a, seed_b, steps)   z_t = (1 - t) z_a + t z_b, t in [0, 1]
    latent_grid(pipe, grid_size)               decode z_1, z_2 over a grid of N(0, 1) quantiles
                                               (the manifold figure of Kingma & Welling, arXiv:1312.6114)
    layer_grid(pipe, seed, rows, cols)         hierarchical VAEs only: what each stochastic layer controls;
                                               one draw of z2 per row, z1 ~ p(z1|z2) resampled across a row

In a hierarchical VAE (latent_dims) the sample, interpolation and latent-grid latents are the top layer's (the one
with the N(0, I) prior), taken down to z1 through p(z_l|z_l+1): drawn for samples, by conditional means for the
interpolation and the grid, which stay smooth.

`build_demo(pipeline_or_path)` wires them into a `gr.Blocks`; every event has an `api_name` ("sample",
"reconstruct", "interpolate", "latent_grid", and "layers" for a hierarchical model), so `gradio_client` can call
them. gradio is imported inside
`build_demo` only: importing this module does not pay for it.

Invalid arguments raise ValueError naming the argument and the value; inside the UI they become `gr.Error`.
The sketchpad's preprocessing (`sketch_to_ink`, `fit_to_model`, `preprocess_sketch`) is hubgen.demo_utils'. The
sketchpad draws grey ink: for a colour (3-channel) model the Draw tab shows why it is off instead of a canvas.
"""

import math

import torch
from PIL import Image

from ..demo_utils import (
    MAX_IMAGES,
    MAX_SEED,
    MAX_STEPS,
    EmptyCanvasError,
    check_int,
    demo_event,
    image_out,
    load_family_pipeline,
    preprocess_sketch,
    seed_box,
    show_grid,
    sketchpad,
    upscale,
)
from ..draws import randn_tensor
from ..errors import UserInputError
from .pipeline_vae import LikelihoodOutput, VAEPipeline

__all__ = [
    "EmptyCanvasError",
    "build_demo",
    "load_pipeline",
    "describe",
    "drawing_unavailable",
    "check_int",
    "upscale",
    "sample_grid",
    "likelihood_markdown",
    "reconstruct_drawing",
    "interpolation_strip",
    "latent_traversal",
    "latent_grid",
    "latent_grid_note",
    "layer_grid",
    "layer_grid_note",
]

MAX_GRID = 32
IWAE_K = 1000  # importance samples for the drawing's likelihood: about 30 ms for one MNIST image on CPU
DECODER_NAMES = {
    "bernoulli": "Bernoulli",
    "gaussian": "Gaussian",
    "discretized_logistic": "discretized logistic",
}


# -- inputs -----------------------------------------------------------------------------------------------


def load_pipeline(pipeline_or_path) -> tuple[VAEPipeline, str]:
    """A VAEPipeline, or a folder path / Hub repo id to load one from -> (pipeline, name to show)."""
    return load_family_pipeline(pipeline_or_path, VAEPipeline)


def describe(pipe: VAEPipeline) -> str:
    """One line: family, latent size, decoder, image size (and colour)."""
    cfg = pipe.vae.config
    decoder = DECODER_NAMES.get(cfg.decoder_distribution, cfg.decoder_distribution)
    if cfg.decoder_distribution == "discretized_logistic":
        decoder += f" ({cfg.num_levels} levels)"
    colour = " RGB" if cfg.in_channels == 3 else ""
    sizes = pipe.vae.latent_sizes
    if len(sizes) > 1:
        chain = " → ".join(f"z{i}: {d}" for i, d in enumerate(sizes, start=1))
        kind = f"Hierarchical variational autoencoder (Burda et al., arXiv:1509.00519) · {len(sizes)} stochastic layers"
        latent = f"{chain} (prior on z{len(sizes)})"
    else:
        kind, latent = "Variational autoencoder (Kingma & Welling, arXiv:1312.6114)", f"latent size {cfg.latent_dim}"
    return (
        f"{kind} · {latent} · {decoder[0].upper()}{decoder[1:]} decoder · "
        f"{cfg.sample_size}×{cfg.sample_size}{colour} images"
    )


def drawing_unavailable(pipe: VAEPipeline) -> str | None:
    """Why the Draw tab is off for this model (the sketchpad draws one grey channel), or None when it is on."""
    channels = pipe.vae.config.in_channels
    if channels == 1:
        return None
    return (
        f"Drawing is off for this model: the sketchpad draws grey ink, and this model takes {channels}-channel "
        "(colour) images. Use the Sample, Interpolate and Latent space tabs, or score your own colour images "
        "with `pipe.log_likelihood(images)` in Python."
    )


# -- images ---------------------------------------------------------------------------------------------


def sample_grid(pipe: VAEPipeline, seed: int, num_images: int) -> Image.Image:
    """Draw `num_images` latents z ~ N(0, I) from `seed` and tile their decoded mean images E[x|z]."""
    seed = check_int(seed, "seed", 0, MAX_SEED)
    num_images = check_int(num_images, "num_images", 1, MAX_IMAGES)
    generator = torch.Generator().manual_seed(seed)
    images = pipe(num_images, generator=generator, output_type="pt").images  # (B, C, H, W)
    return show_grid(images, nrow=math.ceil(math.sqrt(num_images)))


# -- drawing --------------------------------------------------------------------------------------------


def likelihood_markdown(scores: LikelihoodOutput, num_dims: int, decoder: str) -> str:
    """The likelihood of one image as Markdown: IWAE NLL with its k, -ELBO, bits/dim."""
    nll, neg_elbo, bpd = (float(t.reshape(-1)[0]) for t in (scores.nll_nats, scores.neg_elbo_nats, scores.bits_per_dim))
    note = {
        "bernoulli": "the drawing was binarized, x ~ Bernoulli(intensity) with a fixed seed, as in training",
        "discretized_logistic": "the drawing's grey levels were scored as they are (a discrete likelihood, no "
        "dequantization), as in training",
    }.get(decoder, "the drawing was dequantized (uniform noise within each grey level), as in training")
    return "\n".join(
        [
            f"- **IWAE NLL** −L_k(x) = **{nll:.2f} nats**, with k = {scores.k} importance samples "
            "(an upper bound on −log p(x); Burda et al., arXiv:1509.00519)",
            f"- **−ELBO** = {neg_elbo:.2f} nats (a one-sample estimate: E[−ELBO] ≥ −L_k holds in expectation, so "
            "one draw can fall below the IWAE figure)",
            f"- **bits/dim** = {bpd:.3f} (the IWAE NLL over {num_dims} pixels)",
            f"- Note: {note}.",
        ]
    )


def reconstruct_drawing(pipe: VAEPipeline, sketch, k: int = IWAE_K, seed: int = 0):
    """Sketchpad value -> (model input, reconstruction, likelihood Markdown).

    The reconstruction is E[x|z] at the posterior mean z = E[q(z|x)]; the scores use `k` importance
    samples drawn from a generator seeded with `seed`, so a drawing always gets the same numbers.
    """
    k = check_int(k, "k", 1, 100_000)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    unavailable = drawing_unavailable(pipe)
    if unavailable:
        raise UserInputError(unavailable)
    size = pipe.vae.config.sample_size
    x = torch.from_numpy(preprocess_sketch(sketch, size))[None, None]  # (1, 1, S, S)
    recon = pipe.reconstruct(x, output_type="pt")  # (1, 1, S, S)
    scores = pipe.log_likelihood(x, k=k, generator=torch.Generator().manual_seed(seed))
    text = likelihood_markdown(scores, num_dims=x[0].numel(), decoder=pipe.vae.config.decoder_distribution)
    return show_grid(x, nrow=1, padding=0), show_grid(recon, nrow=1, padding=0), text


# -- latent space ---------------------------------------------------------------------------------------


def interpolation_strip(pipe: VAEPipeline, seed_a: int, seed_b: int, steps: int) -> Image.Image:
    """Decode z_t = (1 - t) z_a + t z_b at `steps` values of t in [0, 1]; z_a, z_b ~ N(0, I) from seeds."""
    seed_a = check_int(seed_a, "seed_a", 0, MAX_SEED)
    seed_b = check_int(seed_b, "seed_b", 0, MAX_SEED)
    steps = check_int(steps, "steps", 2, MAX_STEPS)
    images = pipe.interpolate(seed_a, seed_b, steps=steps, output_type="pt")  # (steps, C, H, W)
    return show_grid(images, nrow=steps)


def latent_traversal(latent_dim: int, grid_size: int) -> torch.Tensor:
    """Latents (grid_size**2, latent_dim) on a grid of N(0, 1) quantiles in z_1 (columns) and z_2 (rows).

    q_i = Phi^{-1}((i + 1/2) / n), i = 0..n-1: equal prior mass between neighbours, as in Kingma & Welling's
    manifold figure. z_2 decreases down the rows (like a plot's y axis); other dimensions stay at 0. With
    latent_dim 1 there is one row.
    """
    n = grid_size
    p = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # (n,) probabilities in (0, 1)
    q = torch.distributions.Normal(0.0, 1.0).icdf(p).float()  # (n,) quantiles of N(0, 1)
    rows = 1 if latent_dim == 1 else n
    z = torch.zeros(rows, n, latent_dim)  # (rows, n, D)
    z[..., 0] = q[None, :]
    if latent_dim > 1:
        z[..., 1] = q.flip(0)[:, None]
    return z.reshape(rows * n, latent_dim)  # (rows * n, D)


def latent_grid_note(latent_dim: int, num_layers: int = 1) -> str:
    """What the latent-space tab shows for a model with this latent size (of the top layer, of `num_layers`)."""
    if num_layers > 1:
        dims = "its one dimension" if latent_dim == 1 else "its first two dimensions (left to right, bottom to top)"
        rest = f", the other {latent_dim - 2} at 0" if latent_dim > 2 else ""
        return (
            f"The grid runs over the top layer z{num_layers} of this {num_layers}-layer model (size {latent_dim}, the "
            f"layer with the N(0, I) prior): {dims} over evenly spaced quantiles of N(0, 1){rest}. Each tile takes "
            f"z{num_layers} down to z1 by the conditional means E[z_l|z_l+1]."
        )
    if latent_dim == 2:
        return (
            "The whole 2-D latent space: z₁ (left to right) and z₂ (bottom to top) run over evenly "
            "spaced quantiles of N(0, 1), so each tile covers the same prior mass."
        )
    if latent_dim == 1:
        return "This model has a 1-D latent space: one row, z₁ over evenly spaced quantiles of N(0, 1)."
    return (
        f"This model has latent_dim = {latent_dim}, not 2: the grid traverses the **first two** "
        f"latent dimensions z₁, z₂ over N(0, 1) quantiles around z = 0, with the other "
        f"{latent_dim - 2} held at 0."
    )


def latent_grid(pipe: VAEPipeline, grid_size: int) -> Image.Image:
    """Decode latent_traversal(...) and tile it, grid_size tiles per row."""
    grid_size = check_int(grid_size, "grid_size", 2, MAX_GRID)
    vae = pipe.vae
    z = latent_traversal(vae.top_latent_dim, grid_size).to(pipe.device, vae.dtype)  # (N, D_L)
    with torch.no_grad():
        images = vae.decode_to_images(vae.ancestral_latents(z, sample=False))  # (N, C, H, W)
    return show_grid(images, nrow=grid_size)


def layer_grid_note(sizes: tuple[int, ...]) -> str:
    """What the layers tab shows for a hierarchy of these layer sizes."""
    above = "z2" if len(sizes) == 2 else f"z2..z{len(sizes)}"
    return (
        f"What each stochastic layer controls. Each **row** is one draw of {above} from the prior (z{len(sizes)} ~ "
        "N(0, I) and down): varying z2 with z1 resampled. Across a row z2 is fixed and only z1 changes: the first "
        "column decodes the conditional mean E[z1|z2], every other column a draw z1 = μ(z2) + σ(z2) ε_j, with the "
        "same noise ε_j down each column. What stays the same along a row is z2's; what changes, z1's."
    )


def layer_grid(pipe: VAEPipeline, seed: int, rows: int, cols: int) -> Image.Image:
    """Hierarchical VAEs: `rows` draws of the layers above z1 (z_L ~ N(0, I), then z_l ~ p(z_l|z_l+1) down to z2),
    and per row z1 = E[z1|z2] (first column) and z1 = mu(z2) + sigma(z2) eps_j for `cols` - 1 noises eps_j shared by
    all rows, all from `seed`; the decoder means E[x|z1], one row per z2. UserInputError for a one-layer model."""
    seed = check_int(seed, "seed", 0, MAX_SEED)
    rows = check_int(rows, "rows", 1, MAX_GRID)
    cols = check_int(cols, "cols", 2, MAX_GRID)
    vae = pipe.vae
    sizes = vae.latent_sizes
    if len(sizes) < 2:
        raise UserInputError(f"The layers view needs a hierarchical VAE (two or more latent_dims); this one has one "
                             f"stochastic layer of size {sizes[0]}.")  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = randn_tensor((rows, sizes[-1]), g, pipe.device, vae.dtype)  # (rows, D_L)
        for layer in range(len(sizes) - 1, 1, -1):  # down to z2
            z = vae.decode_latent(z, layer).sample(generator=g)
        p1 = vae.decode_latent(z, 1)  # p(z1|z2), (rows, D_1)
        eps = randn_tensor((cols - 1, sizes[0]), g, pipe.device, vae.dtype)  # (cols - 1, D_1)
        z1 = torch.cat([p1.mean[:, None], p1.mean[:, None] + p1.std[:, None] * eps[None]], dim=1)  # (rows, cols, D_1)
        images = vae.decode_to_images(z1.reshape(rows * cols, sizes[0]))  # (rows * cols, C, H, W)
    return show_grid(images, nrow=cols)


# -- the app --------------------------------------------------------------------------------------------


def build_demo(pipeline_or_path):
    """Build the VAE demo: a `gr.Blocks` with Sample, Draw, Interpolate and Latent space tabs.

    `pipeline_or_path` is a VAEPipeline, a local folder or a Hub repo id. Launch it with `.launch()`.
    """
    import gradio as gr

    pipe, name = load_pipeline(pipeline_or_path)
    cfg = pipe.vae.config
    size = cfg.sample_size

    @demo_event
    def sample(seed, num_images):
        return sample_grid(pipe, seed, num_images)

    @demo_event
    def reconstruct(sketch):
        try:
            return reconstruct_drawing(pipe, sketch)
        except EmptyCanvasError as e:
            gr.Warning(str(e))
            return None, None, f"*{e}*"

    @demo_event
    def interpolate(seed_a, seed_b, steps):
        return interpolation_strip(pipe, seed_a, seed_b, steps)

    @demo_event
    def decode_grid(grid_size):
        return latent_grid(pipe, grid_size)

    @demo_event
    def layers(seed, rows, cols):
        return layer_grid(pipe, seed, rows, cols)

    with gr.Blocks(title=f"hubgen VAE · {name}") as demo:
        gr.Markdown(f"# hubgen VAE demo\n**Model:** `{name}`  \n{describe(pipe)}")

        with gr.Tab("Sample"):
            with gr.Row():
                seed = seed_box("Seed")
                num_images = gr.Slider(
                    1, MAX_IMAGES, value=16, step=1, precision=0, label="Number of images", interactive=True
                )
            button = gr.Button("Sample z ~ N(0, I)", variant="primary")
            samples = image_out("Decoded means E[x|z]")
            button.click(sample, [seed, num_images], samples, api_name="sample")

        with gr.Tab("Draw"):
            unavailable = drawing_unavailable(pipe)
            gr.Markdown(
                f"**{unavailable}**"
                if unavailable
                else f"Draw a digit. It is cropped, scaled to {size}×{size} and encoded; the "
                "reconstruction decodes the posterior mean, and the likelihood uses "
                f"k = {IWAE_K} importance samples."
            )
            with gr.Row(visible=unavailable is None):
                sketch = sketchpad("Your digit")
                with gr.Column():
                    model_input = image_out(f"Model input x ({size}×{size})")
                    reconstruction = image_out("Reconstruction E[x|z], z = E[q(z|x)]")
            button = gr.Button("Encode, reconstruct and score", variant="primary", visible=unavailable is None)
            scores = gr.Markdown()
            button.click(reconstruct, sketch, [model_input, reconstruction, scores], api_name="reconstruct")

        with gr.Tab("Interpolate"):
            with gr.Row():
                seed_a, seed_b = seed_box("Seed A", 0), seed_box("Seed B", 1)
                steps = gr.Slider(2, MAX_STEPS, value=10, step=1, precision=0, label="Steps", interactive=True)
            button = gr.Button("Interpolate z_t = (1 - t) z_A + t z_B", variant="primary")
            strip = image_out("Interpolation")
            button.click(interpolate, [seed_a, seed_b, steps], strip, api_name="interpolate")

        with gr.Tab("Latent space"):
            gr.Markdown(latent_grid_note(pipe.vae.top_latent_dim, len(pipe.vae.latent_sizes)))
            grid_size = gr.Slider(
                2, MAX_GRID, value=10, step=1, precision=0, label="Grid size n (n×n tiles)", interactive=True
            )
            button = gr.Button("Decode the grid", variant="primary")
            grid = image_out("Latent traversal")
            button.click(decode_grid, grid_size, grid, api_name="latent_grid")

        if len(pipe.vae.latent_sizes) > 1:
            with gr.Tab("Layers"):
                gr.Markdown(layer_grid_note(pipe.vae.latent_sizes))
                with gr.Row():
                    layer_seed = seed_box("Seed")
                    rows = gr.Slider(1, MAX_GRID, value=6, step=1, precision=0, label="Rows (draws of z2)",
                                     interactive=True)  # fmt: skip
                    cols = gr.Slider(2, MAX_GRID, value=8, step=1, precision=0, label="Columns (E[z1|z2], then draws "
                                     "of z1)", interactive=True)  # fmt: skip
                button = gr.Button("Decode one z2 per row, z1 across", variant="primary")
                layer_image = image_out("Rows: z2 · columns: z1 given z2")
                button.click(layers, [layer_seed, rows, cols], layer_image, api_name="layers")

    return demo

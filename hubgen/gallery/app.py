"""The hub Space: a gallery of hubgen models, each model's card, its family's live demo, and a leaderboard.

    build_gallery(local_dir="models")             # the embedded default: offline, a folder of model folders
    build_gallery(local_dir=None, hub=True, author="someone")      # hubgen models on the Hub

The model view builds the demo of the selected model's family in place (`Family.build_demo` from the plugin
registry, rendered with `gr.render`), so a new family appears here without touching this file. Pipelines load
lazily into a bounded cache. Besides the family demos, the app has its own API: `list_models`, `open_model`,
`sample` (seeds for any family; a prompt for text-to-image families) and `leaderboard`.
"""

import os

import torch
from PIL import Image, ImageDraw

from ..demo_utils import MAX_IMAGES, MAX_SEED, MAX_STEPS, check_int, demo_event, limit_uploads, show_grid
from ..errors import UserInputError
from .catalog import (
    Catalog,
    ModelEntry,
    PipelineCache,
    card_markdown,
    demote_headings,
    leaderboard_columns,
    leaderboard_rows,
    leaderboard_tables,
)

__all__ = ["build_gallery", "gallery_from_env", "tiles", "open_model", "sample", "leaderboard"]

TILE_PX = 192


def _error_tile(message: str) -> Image.Image:
    """A grey tile with a red border and the first words of the error, for a model folder that cannot be read."""
    tile = Image.new("RGB", (TILE_PX, TILE_PX), (235, 235, 235))
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, TILE_PX - 1, TILE_PX - 1], outline=(200, 0, 0), width=4)
    words, lines = message.split(), [""]
    for w in words[:30]:
        lines[-1] = f"{lines[-1]} {w}".strip() if len(lines[-1]) + len(w) < 28 else lines[-1]
        if lines[-1] and not lines[-1].endswith(w):
            lines.append(w)
    draw.text((8, 8), "cannot load\n" + "\n".join(lines[:10]), fill=(150, 0, 0))
    return tile


def _tile_image(entry: ModelEntry) -> Image.Image:
    if entry.error:
        return _error_tile(entry.error)
    if entry.samples_path:
        try:
            image = Image.open(entry.samples_path).convert("RGB")
            return image.resize((TILE_PX, round(TILE_PX * image.height / image.width)), Image.Resampling.NEAREST)
        except OSError as e:
            return _error_tile(f"samples.png unreadable: {e}")
    return Image.new("RGB", (TILE_PX, TILE_PX), (245, 245, 245))


def tiles(catalog: Catalog, family: str = "All", dataset: str = "All", query: str = "") -> tuple[list, list[str]]:
    """Gallery items [(image, caption)] for the filtered models, and their ids in the same order."""
    entries = catalog.filter(family, dataset, query)
    items = []
    for e in entries:
        caption = f"{e.model_id} · {e.family_name} · {e.dataset} · {e.headline()}"
        caption = f"{e.model_id} · error" if e.error else caption
        items.append((_tile_image(e), caption))
    return items, [e.model_id for e in entries]


def open_model(catalog: Catalog, model_id: str) -> tuple[str, list[list]]:
    """The model's card as markdown (with a header naming its family and source) and its metadata table."""
    entry = catalog.get(model_id)
    if entry.error:
        return f"## {model_id}\n\n**This model cannot be shown:** {entry.error}", []
    family = entry.family
    header = (
        f"## {model_id}\n\nFamily **{family.name}** ({family.description}) · dataset **{entry.dataset}** · "
        f"from the {'Hub' if entry.source == 'hub' else 'local folder'} `{entry.location}`\n\n---\n"
    )
    meta = entry.card_metadata
    table = [[key, ", ".join(map(str, v)) if isinstance(v, list) else str(v)]
             for key, v in meta.items() if key != "model-index"]  # fmt: skip
    table += [[f"{r.metric_type} ({r.dataset_split})", f"{r.metric_value} — {r.metric_name}"] for r in entry.results]
    card = demote_headings(card_markdown(entry)) if entry.card_text else "*This model has no card.*"
    return header + card, table


def sample(catalog: Catalog, cache: PipelineCache, model_id: str, seed, num_images, prompt: str = "", steps=None):
    """A grid of `num_images` samples of any family from `seed`.

    The `sample` API's prompt and steps go to the family's declared sample options of those names (`prompt`,
    `num_inference_steps`; steps None: the declared default); a family that declares neither ignores them;
    every other option takes its declared default. An option the family marks `required` (a text-to-image
    prompt) must be given.
    """
    seed = check_int(seed, "seed", 0, MAX_SEED)
    num_images = check_int(num_images, "num_images", 1, MAX_IMAGES)
    steps = None if steps is None else check_int(steps, "steps", 1, MAX_STEPS)  # None: the family's default
    entry = catalog.get(model_id)
    family = entry.family
    values = {"prompt": prompt, "num_inference_steps": steps}
    if family is not None:
        for option in family.sample_options:
            value = values.get(option.name)
            if option.required and (not isinstance(value, str) or not value.strip()):
                raise UserInputError(f"Model {model_id!r} is {family.pipeline_tag}: `{option.name}` must be a "
                                     f"non-empty text, got {value!r}.")  # fmt: skip
    pipe = cache.get(entry)
    kwargs = family.sample_call(num_images, values) if family is not None else {"batch_size": num_images}
    images = pipe(**kwargs, generator=torch.Generator().manual_seed(seed), output_type="pt").images
    images = images if isinstance(images, torch.Tensor) else torch.as_tensor(images)
    nrow = max(1, int(num_images**0.5))
    return show_grid(images.float().clamp(0, 1), nrow=nrow)


def empty_gallery_note(catalog: Catalog) -> str:
    """What an empty gallery says instead of showing nothing: where it looked and what to set."""
    looked = f"the folder `{catalog.local_dir}`" if catalog.local_dir is not None else "no local folder"
    hub = "and the Hub" if catalog.hub else "(the Hub is not listed)"
    return (f"**No models to show.** Looked in {looked} {hub}. Set `HUBGEN_GALLERY_DIR` to a folder of model "
            "folders (`hubgen quickstart` writes `models/`), or `HUBGEN_GALLERY_HUB=1` to list hubgen models on "
            "the Hub (narrowed by `HUBGEN_GALLERY_AUTHOR` and `HUBGEN_GALLERY_TAGS`).")  # fmt: skip


def demote_demo_title(demo) -> None:
    """A family demo's "# title" becomes "## title": inside the gallery the page's one H1 is the gallery's."""
    import gradio as gr

    def walk(block):  # built inside gr.render, the demo's components are its children, not in `demo.blocks`
        yield block
        for child in getattr(block, "children", None) or []:
            yield from walk(child)

    for block in {id(b): b for b in [*walk(demo), *demo.blocks.values()]}.values():  # each block once
        if isinstance(block, gr.Markdown) and isinstance(block.value, str) and block.value.startswith("# "):
            block.value = "#" + block.value


def leaderboard(catalog: Catalog, family: str = "All") -> list[list]:
    return leaderboard_rows(catalog.filter(family))


def build_gallery(
    local_dir: str | os.PathLike | None = "models",
    hub: bool = False,
    author: str | None = None,
    tags: list[str] | None = None,
    max_loaded: int = 3,
    concurrency_limit: int = 2,
    catalog: Catalog | None = None,
):
    """Build the gallery app (a queued `gr.Blocks`); launch it with `.launch()`."""
    import gradio as gr

    limit_uploads()
    if not isinstance(concurrency_limit, int) or concurrency_limit < 1:
        raise UserInputError(f"`concurrency_limit` must be an integer >= 1, got {concurrency_limit!r}.")
    catalog = catalog or Catalog(local_dir, hub=hub, author=author, tags=tags)
    cache = PipelineCache(max_loaded)
    families, datasets = ["All", *catalog.families()], ["All", *catalog.datasets()]

    def show_tiles(family, dataset, query):
        items, ids = tiles(catalog, family, dataset, query)
        return items, ids

    def list_models(family: str = "All", dataset: str = "All", query: str = "") -> list[list[str]]:
        """The listed models as rows [id, family, dataset, headline, error] (the `list_models` API)."""
        return [[e.model_id, e.family_name, e.dataset, e.headline(), e.error or ""]
                for e in catalog.filter(family, dataset, query)]  # fmt: skip

    def select_tile(ids, evt: gr.SelectData):
        return gr.update(value=ids[evt.index]), gr.Tabs(selected="model")

    @demo_event
    def open_card(model_id):
        if not model_id:
            return "*Choose a model in the gallery or the list above.*", []
        return open_model(catalog, model_id)

    @demo_event
    def generate(model_id, seed, num_images, prompt, steps, progress=gr.Progress()):  # noqa: B008 (gradio's API)
        if not model_id:
            raise UserInputError("Choose a model first: `model_id` is empty.")
        progress(0, desc=f"loading {model_id}" if model_id not in cache else "sampling")
        return sample(catalog, cache, model_id, seed, num_images, prompt, steps)

    with gr.Blocks(title="hubgen model gallery") as demo:
        gr.Markdown(
            "# hubgen model gallery\nModels of every registered family, trained with hubgen. "
            "Open a model to read its card and try it; the leaderboard compares what the cards report."
        )
        for warning in catalog.warnings:
            gr.Markdown(f"*{warning}*")
        if not len(catalog):
            gr.Markdown(empty_gallery_note(catalog), elem_id="gallery-empty")
        ids_state = gr.State([])
        with gr.Tabs() as tabs:
            with gr.Tab("Gallery", id="gallery"):
                with gr.Row():
                    family_dd = gr.Dropdown(families, value="All", label="Family")
                    dataset_dd = gr.Dropdown(datasets, value="All", label="Dataset")
                    query = gr.Textbox(label="Search", placeholder="name, family or dataset")
                gallery = gr.Gallery(label="Models", columns=4, object_fit="contain", allow_preview=False,
                                     elem_id="gallery-tiles")  # fmt: skip
            with gr.Tab("Model", id="model"):
                model_dd = gr.Dropdown(list(catalog.entries), value=None, label="Model", interactive=True)
                # one sampler per page: the family's own demo (its defaults are the family's declared ones);
                # the generic `sample` endpoint stays as an API with no controls on the page
                with gr.Tabs():
                    with gr.Tab("Demo", id="demo", elem_id="gallery-demo"):

                        @gr.render(inputs=model_dd)
                        def family_demo(model_id):
                            if not model_id:
                                gr.Markdown("*Choose a model in the gallery or the list above.*")
                                return
                            try:
                                entry = catalog.get(model_id)
                                pipe = cache.get(entry)
                                # Blocks built inside a render function attach to it: no .render() (it would add
                                # them twice)
                                built = entry.family.load("build_demo")(pipe)
                                demote_demo_title(built)
                            except Exception as e:  # a broken model or plugin shows a message, the app keeps serving
                                gr.Markdown(f"**The demo of {model_id!r} could not be built:** {type(e).__name__}: {e}")

                    with gr.Tab("Card", id="card", elem_id="gallery-card"):
                        card_md = gr.Markdown()
                        with gr.Accordion("Card metadata", open=False):
                            meta = gr.Dataframe(headers=["field", "value"], wrap=True)
                with gr.Group(visible=False):  # the `sample` API's inputs and output (not shown)
                    seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED)
                    num_images = gr.Number(16, precision=0, minimum=1, maximum=MAX_IMAGES)
                    prompt = gr.Textbox()
                    steps = gr.Number(None, precision=0, minimum=1, maximum=MAX_STEPS)
                    go = gr.Button()
                    grid = gr.Image(format="png", type="pil", interactive=False)

            with gr.Tab("Leaderboard", id="leaderboard"):
                gr.Markdown(
                    "Figures as each card states them, one table per thing that can be compared. Likelihoods: "
                    "bits/dim and nats per image with the bound each card declares (exact, or which bound), one "
                    "table per dataset and data encoding (binarized pixels and grey levels are different data). "
                    "Sample quality: the Frechet distance in a classifier's features (not Inception FID), one "
                    "table per feature network and N, since the figure moves with N. Click a column header to sort."
                )
                lb_family = gr.Dropdown(families, value="All", label="Family", interactive=True)

                @gr.render(inputs=lb_family)
                def leaderboard_view(family):
                    tables = leaderboard_tables(catalog.filter(family))
                    if not tables:
                        gr.Markdown("*No evaluated model to compare.*")
                    for title, headers, rows in tables:
                        gr.Markdown(f"#### {title}")
                        gr.Dataframe(value=rows, headers=headers, interactive=False, wrap=True,
                                     elem_classes=["hubgen-board"])  # fmt: skip

                # every figure in one flat table: the `leaderboard` API (data, not shown)
                board = gr.Dataframe(headers=leaderboard_columns(), value=leaderboard(catalog), interactive=False,
                                     visible=False)  # fmt: skip

        filters = [family_dd, dataset_dd, query]
        for component in filters:
            component.change(show_tiles, filters, [gallery, ids_state], api_name=False)
        demo.load(show_tiles, filters, [gallery, ids_state], api_name="tiles")
        gr.api(list_models, api_name="list_models")
        gallery.select(select_tile, ids_state, [model_dd, tabs], api_name=False)
        model_dd.change(open_card, model_dd, [card_md, meta], api_name="open_model")
        go.click(generate, [model_dd, seed, num_images, prompt, steps], grid, api_name="sample")
        lb_family.change(lambda f: leaderboard(catalog, f), lb_family, board, api_name="leaderboard")

    demo.queue(default_concurrency_limit=concurrency_limit, max_size=256)
    demo.catalog, demo.cache = catalog, cache  # for tests and embedding apps
    return demo


def gallery_from_env():
    """The gallery configured by environment variables (what spaces/hub/app.py and `hubgen demo` use).

    HUBGEN_GALLERY_DIR (default "models"; "" for none), HUBGEN_GALLERY_HUB=1 to list Hub models,
    HUBGEN_GALLERY_AUTHOR, HUBGEN_GALLERY_TAGS (comma-separated), HUBGEN_GALLERY_MAX_LOADED (default 3),
    HUBGEN_GALLERY_CONCURRENCY (default 2).
    """

    def env_int(name, default):
        value = os.environ.get(name, str(default))
        if not value.isdigit() or int(value) < 1:
            raise UserInputError(f"{name} must be an integer >= 1, got {value!r}.")
        return int(value)

    local = os.environ.get("HUBGEN_GALLERY_DIR", "models") or None
    tags = [t.strip() for t in os.environ.get("HUBGEN_GALLERY_TAGS", "").split(",") if t.strip()]
    return build_gallery(
        local_dir=local,
        hub=os.environ.get("HUBGEN_GALLERY_HUB", "") in ("1", "true", "True"),
        author=os.environ.get("HUBGEN_GALLERY_AUTHOR") or None,
        tags=tags,
        max_loaded=env_int("HUBGEN_GALLERY_MAX_LOADED", 3),
        concurrency_limit=env_int("HUBGEN_GALLERY_CONCURRENCY", 2),
    )

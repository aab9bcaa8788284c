"""Load any hubgen pipeline (a folder or a Hub repo) and render its model card.

The folder's layout, records and writes belong to hubgen.model_folder. Cards are rendered from the family's
Jinja template (its record's `card_template`) through huggingface_hub's `ModelCard.from_template`; the same
figures are also written as `.eval_results/hubgen.yaml` (the Hub's newer metrics format), each labelled by the
family's declared `Metric`.

A Hub repo id ("user/name") is fetched with `download_model` into the normal Hub cache (safetensors, JSON,
Markdown and text files only), so it loads again offline with HF_HUB_OFFLINE=1.
"""

import os
import re
from importlib import resources
from pathlib import Path

import jinja2

from . import model_folder as mf
from .errors import UserInputError
from .registry import Family, family_for_pipeline

__all__ = [
    "load_pipeline",
    "family_of",
    "download_model",
    "render_card",
    "card_data_for",
    "format_declared",
    "eval_results_yaml",
]

# What a model download fetches: weights (safetensors only), configs, the card, tokenizer vocabularies.
HUB_FILE_PATTERNS = ["*.safetensors", "*.json", "*.md", "*.txt"]
REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def family_of(path_or_repo_id: str | os.PathLike, **hub_kwargs) -> Family:
    """The registered family whose pipeline class the folder's model_index.json names."""
    return family_for_pipeline(mf.read_model_index(path_or_repo_id, **hub_kwargs).get("_class_name", "?"))


def load_pipeline(path_or_repo_id: str | os.PathLike, **kwargs):
    """Load any hubgen model folder or Hub repo as the right pipeline class (safetensors only).

    `kwargs` go to the pipeline's `from_pretrained` (e.g. `revision`, `dtype`: diffusers 0.42 deprecates `torch_dtype`).
    """
    hub_kwargs = {k: kwargs[k] for k in ("revision", "cache_dir", "token") if k in kwargs}
    family = family_of(path_or_repo_id, **hub_kwargs)
    return family.load("pipeline_class").from_pretrained(path_or_repo_id, **kwargs)


def download_model(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """Fetch a hubgen model repo into the Hub cache and return its snapshot folder.

    Only `HUB_FILE_PATTERNS` are fetched, so a pickle or code file in the repo never reaches the disk. A second
    call (or HF_HUB_OFFLINE=1) is answered from the cache. Hub errors propagate as huggingface_hub raises them
    (OSError subclasses: repository/revision not found, not cached while offline, Hub unreachable).
    """
    if not REPO_ID_PATTERN.match(str(repo_id)):
        raise UserInputError(f"`repo_id` must look like 'user/name', got {repo_id!r}.")
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            str(repo_id),
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
            allow_patterns=HUB_FILE_PATTERNS,
        )
    )


def format_declared(template: str, fields: dict) -> str:
    """A metric label or bound from its declared format string; a field the record lacks shows as "?"."""

    class Missing(dict):
        def __missing__(self, key):
            return "?"

    return template.format_map(Missing(fields))


def card_data_for(folder: Path, family: Family, info: dict, results: dict, model_name: str | None = None):
    """ModelCardData: library, family tag, pipeline tag, license, datasets and the model-index results.

    Each figure of `results["metrics"]` is labelled by the family's declared `Metric`: its key goes to
    `metric_config` and its unit, direction and bound type (formatted from its declared template) to `metric_args`, so
    the gallery and leaderboard read them as data, never by parsing labels. Then the shared sample-quality
    figures. `model_name` names the model-index entry (default: the folder's name;
    the repo id when pushing).
    """
    from huggingface_hub import EvalResult, ModelCardData

    dataset = info.get("dataset") or results.get("dataset") or "unknown"
    task = family.pipeline_tag
    dataset_id = mf.hub_dataset_id(dataset)
    dataset_label = dataset_id or Path(dataset).name
    eval_results = []
    labels = results.get("metric_labels") or {}
    for key, value in (results.get("metrics") or {}).items():
        spec = family.metric(key)
        if spec is None:
            continue  # a figure the family does not declare is not published
        label = format_declared(spec.label, {**results, "label": labels.get(key, key)})
        if spec.unit in ("nats/image", "bits/dim"):  # a likelihood states its data encoding, N, split and seed
            where = f"{dataset_label} ({results['split']}, first {results['num_images']} images)"
            label += f", {results.get('pixel_mode')} pixels, seed {results.get('seed')}"
        else:
            where = f"{dataset_label} {results.get('split', 'test')}"
        declared = {"unit": spec.unit, "higher_is_better": spec.higher_is_better}
        if spec.bound:
            declared["bound"] = format_declared(spec.bound, results)
        if spec.unit in ("nats/image", "bits/dim"):
            declared["data_encoding"] = data_encoding(results, info)
        eval_results.append(
            EvalResult(
                task_type=task,
                dataset_type=dataset_id or dataset_label,
                dataset_name=where,
                dataset_split=results.get("split"),
                metric_type=spec.metric_type,
                metric_name=label,
                metric_config=key,
                metric_args=declared,
                metric_value=round(value["mean"], 4),
            )  # fmt: skip
        )
    quality = results.get("sample_quality")
    if quality and quality.get("feature_network"):  # no feature network: no figures (the card says why not)
        fd, prdc, net = quality.get("frechet_distance"), quality.get("prdc"), quality["feature_network"]
        where = f"{dataset_label} ({quality['reference_split']}, {quality['num_reference_images']} images)"
        common = f"N={quality['num_samples']} samples, seed {quality['seed']}, features {net['id']}"
        figures = []
        if fd:
            label = f"{fd['name']} (classifier Frechet distance, not Inception FID)"
            figures.append(("frechet_distance", fd["value"], label))
        if prdc:
            figures += [(name, prdc[name], f"{name} (k={prdc['k']})") for name in ("precision", "recall", "coverage")]
        for metric_type, value, label in figures:
            eval_results.append(
                EvalResult(
                    task_type=task,
                    dataset_type=dataset_id or dataset_label,
                    dataset_name=where,
                    dataset_split=quality["reference_split"],
                    metric_type=metric_type,
                    metric_name=f"{label}, {common}",
                    metric_config=metric_type,
                    metric_value=round(float(value), 4),
                )  # fmt: skip
            )
    base_model = info.get("base_model")
    return ModelCardData(
        base_model=base_model if base_model and REPO_ID_PATTERN.match(str(base_model)) else None,
        base_model_relation="finetune" if base_model and REPO_ID_PATTERN.match(str(base_model)) else None,
        library_name="hubgen",
        license=info.get("license", "apache-2.0"),
        pipeline_tag=task,
        tags=["hubgen", family.name, task, "image-generation"],
        datasets=[dataset_id] if dataset_id else None,
        model_name=model_name or folder.resolve().name,
        eval_results=eval_results or None,
    )


def data_encoding(results: dict, info: dict) -> str:
    """The data a likelihood is of, in one canonical form for comparisons (the leaderboard groups by it):
    "binarized" or "<L> levels" (per channel), from the evaluation's pixel mode and levels. Families word their
    pixel modes differently ("continuous" for dequantized data, "256-level discrete"); the data are the same."""
    mode = str(results.get("pixel_mode") or info.get("pixel_mode") or "").lower()
    if "binar" in mode:
        return "binarized"
    levels = results.get("pixel_levels") or info.get("pixel_levels")
    found = re.search(r"(\d+)[- ]level", mode)
    levels = levels or (int(found.group(1)) if found else None)
    return f"{levels} levels" if levels else "unstated"


def eval_results_yaml(card_data) -> str | None:
    """The card's model-index figures in the `.eval_results/*.yaml` format (huggingface_hub `EvalResultEntry`).

    One entry per figure: `dataset.id` is the Hub dataset id when the data is a Hub dataset (mnist ->
    ylecun/mnist) and the local dataset's name otherwise (the Hub links a result to a benchmark only for a Hub
    id), `task_id` the metric type, `notes` the full label (bound, N, k, split, seed). None when there are no
    figures, or when the installed huggingface_hub predates EvalResultEntry.
    """
    try:
        from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml
    except ImportError:
        return None
    import yaml

    entries = [
        EvalResultEntry(
            dataset_id=r.dataset_type,
            task_id=r.metric_type,
            value=r.metric_value,
            notes=f"{r.metric_name}; {r.dataset_name}",
        )
        for r in card_data.eval_results or []
    ]
    if not entries:
        return None
    header = "# Written by hubgen from eval_results.json: the same figures as the model card's model-index.\n"
    return header + yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True)


def _enlarged(picture: Path) -> str:
    """A caption's note on how much a picture was enlarged (its PNG's model_folder.SCALE_KEY chunk), or ""."""
    from PIL import Image

    if not picture.is_file():
        return ""
    with Image.open(picture) as image:
        k = getattr(image, "text", {}).get(mf.SCALE_KEY)
    return f" Shown enlarged {k}x (nearest neighbour: each pixel a {k} x {k} block)." if k and k != "1" else ""


def _same_picture(a: Path, b: Path) -> bool:
    """Two pictures of the folder with the same pixels (a card shows such a picture once)."""
    from PIL import Image

    if not (a.is_file() and b.is_file()):
        return False
    with Image.open(a) as x, Image.open(b) as y:
        return x.size == y.size and x.mode == y.mode and x.tobytes() == y.tobytes()


CARD_FOOTER = "*Card written by hubgen"


def hubgen_requirement() -> tuple[str, str]:
    """The pip requirement that installs this hubgen, and a note on it: $HUBGEN_REQUIREMENT when set (e.g.
    `hubgen @ git+https://github.com/OWNER/hubgen`), else `hubgen==VERSION` (hubgen is not on PyPI, which the note
    says, pointing at its wheel)."""
    import importlib.metadata as md

    chosen = os.environ.get("HUBGEN_REQUIREMENT", "").strip()
    if chosen:
        return chosen, ""
    version = md.version("hubgen")
    note = (
        f"hubgen is not on PyPI: install its wheel (`pip install hubgen-{version}-py3-none-any.whl`, built with "
        '`python -m pip wheel --no-deps .` in its source tree) or its git repository (`pip install "hubgen @ '
        'git+URL"`). A Space made by `hubgen space create` carries the wheel.'
    )
    return f"hubgen=={version}", note


def _with_hub_section(card, folder: Path, family: Family, index: dict, info: dict, repo_id: str, pushed: bool):
    """The card with the shared section on installing, loading, sampling, verifying and fine-tuning (cards/_hub.md)
    before its footer: every command names `repo_id`, the base model of a fine-tune is linked, and the card says
    whether stock diffusers loads the model or hubgen must be installed."""
    from huggingface_hub import ModelCard, constants

    from .diffusers_loading import STOCK_LIBRARIES, needs_hubgen

    requirement, note = hubgen_requirement()
    base_model = info.get("base_model")
    required = "".join(f' --{o.name} "..."' for o in family.sample_options if o.required)
    components = [v for v in index.values() if isinstance(v, list) and v and v[0] is not None]
    try:
        weights = mf.weights_sha256(folder)
    except UserInputError:
        weights = None
    partial = Path(str(resources.files("hubgen.cards").joinpath("_hub.md")))
    section = (
        jinja2.Template(partial.read_text())
        .render(
            repo_id=repo_id,
            pushed=pushed,
            family=family.name,
            needs_hubgen=needs_hubgen(index),
            hubgen_components=any(v[0] not in STOCK_LIBRARIES for v in components),
            pipeline_class=index.get("_class_name"),
            pipeline_module=family.pipeline_class.partition(":")[0],
            requirement=requirement,
            requirement_note=note,
            sample_options=required,
            base_model=base_model,
            base_model_url=f"{constants.ENDPOINT}/{base_model}"
            if base_model and REPO_ID_PATTERN.match(str(base_model))
            else None,
            base_model_sha256=info.get("base_model_weights_sha256"),
            weights_sha256=weights,
        )
        .strip()
    )
    text = str(card)
    at = text.rfind(CARD_FOOTER)
    text = f"{text[:at]}{section}\n\n{text[at:]}" if at >= 0 else f"{text.rstrip()}\n\n{section}\n"
    return ModelCard(text)


def render_card(folder: str | os.PathLike, repo_id: str | None = None, save: bool = True):
    """Render README.md from the family's template and the folder's config, training record and results.

    With `save` (the default) the card goes to README.md and its figures to `.eval_results/hubgen.yaml` (removed
    when there are none); without it nothing is written and the card is only returned.
    """
    from huggingface_hub import ModelCard

    folder = Path(folder)
    index = mf.read_model_index(folder)
    family = family_for_pipeline(index.get("_class_name", "?"))
    info, results = mf.training_record(folder), mf.eval_results(folder)
    components = {
        name: mf.read_json_file(folder / name, "config.json")
        for name, value in index.items()
        if isinstance(value, list) and (folder / name / "config.json").is_file()
    }
    template = family.card_template_path()
    if not template.is_file():
        raise UserInputError(f"The card template of the {family.name} family, {template}, does not exist.")
    has_nn_grid = (folder / "nearest_neighbours.png").is_file()
    # Jinja's {% include %} needs a loader that ModelCard.from_template does not set up: shared partials are
    # rendered here and passed in as text.
    partial = Path(str(resources.files("hubgen.cards").joinpath("_sample_quality.md")))
    sample_quality_section = jinja2.Template(partial.read_text()).render(results=results, has_nn_grid=has_nn_grid)
    data_partial = Path(str(resources.files("hubgen.cards").joinpath("_data.md")))
    data_section = jinja2.Template(data_partial.read_text()).render(info=info)
    cpu = info.get("train_cpu_seconds")
    threads = info.get("torch_threads")
    # wall time alone hides how many cores a run used; a budget in CPU-minutes is checked against this figure
    cpu_time = "" if cpu is None else f"; {cpu} CPU-s in the main process, {threads} torch thread{'s' * (threads != 1)}"
    card = ModelCard.from_template(
        card_data_for(folder, family, info, results, model_name=repo_id),
        template_path=str(template),
        model_id=repo_id or folder.resolve().name,
        # a local card's snippets name the folder by its absolute path: "models/x" read from another folder is
        # taken for a Hub repo id and fails with a network error; a pushed card names the repo id
        repo_id=repo_id or str(folder.resolve()),
        family=family,
        info=info,
        results=results,
        components=components,
        pipeline_class=index.get("_class_name"),
        has_samples=(folder / mf.SAMPLES).is_file(),
        has_loss_curve=(folder / mf.LOSS_CURVE).is_file(),
        sample_quality_section=sample_quality_section.strip(),
        data_section=data_section.strip(),
        cpu_time=cpu_time,
        enlarged=lambda name: _enlarged(folder / name),
        same_picture=lambda a, b: _same_picture(folder / a, folder / b),
        # the re-evaluate command: `hubgen eval REPO_ID` fetches a pushed model into a local folder first
        folder=repo_id or str(folder.resolve()),
    )
    card = _with_hub_section(card, folder, family, index, info, repo_id or str(folder.resolve()), repo_id is not None)
    if save:
        mf.write_text(folder / mf.CARD, str(card))
        figures = eval_results_yaml(card.data)
        if figures:
            mf.write_text(folder / mf.EVAL_YAML, figures)
        elif (folder / mf.EVAL_YAML).is_file():
            (folder / mf.EVAL_YAML).unlink()
    return card

"""Model folders: load any hubgen pipeline, save one without clobbering, and render its model card.

A hubgen model folder is a diffusers pipeline folder (model_index.json + one subfolder per component, weights
in safetensors) plus `README.md` (the card), `samples.png`, `loss_curve.png`, `hubgen_training.json` (how it
was trained) and `eval_results.json` (what it scored, with N, k, split and seeds). Cards are rendered from
the family's Jinja template in model_cards/ through huggingface_hub's `ModelCard.from_template`; the same
figures are also written as `.eval_results/hubgen.yaml` (the Hub's newer metrics format).

A Hub repo id ("user/name") is fetched with `download_model` into the normal Hub cache (safetensors, JSON,
Markdown and text files only), so it loads again offline with HF_HUB_OFFLINE=1.
"""

import collections
import json
import os
import re
import shutil
from importlib import resources
from pathlib import Path

import jinja2

from .registry import Family, family_for_pipeline

__all__ = [
    "load_pipeline",
    "family_of",
    "download_model",
    "save_pipeline_atomic",
    "render_card",
    "card_data_for",
    "eval_results_yaml",
]

HF_DATASET_IDS = {"mnist": "ylecun/mnist"}
# What a model download fetches: weights (safetensors only), configs, the card, tokenizer vocabularies.
HUB_FILE_PATTERNS = ["*.safetensors", "*.json", "*.md", "*.txt"]
EVAL_RESULTS_FILE = ".eval_results/hubgen.yaml"
REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _read_model_index(path_or_repo_id: str | os.PathLike, **hub_kwargs) -> dict:
    path = Path(path_or_repo_id)
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            raise ValueError(f"{path} is not a hubgen model folder: it has no model_index.json.")
    elif path.exists():
        raise ValueError(f"{path} is a file; a hubgen model is a folder or a Hub repo id.")
    elif path.is_absolute() or str(path_or_repo_id).startswith(".") or str(path_or_repo_id).count("/") > 1:
        raise ValueError(f"Model folder {path} does not exist (and it is not a Hub repo id 'user/name').")
    else:
        from huggingface_hub import hf_hub_download

        try:
            index = Path(hf_hub_download(str(path_or_repo_id), "model_index.json", **hub_kwargs))
        except OSError as e:  # offline and not cached, no such repo, or the Hub unreachable
            raise ValueError(f"Cannot fetch model_index.json of {path_or_repo_id!r} from the Hub: {e}") from e
    try:
        return json.loads(index.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{index} is not valid JSON ({e}).") from e


def family_of(path_or_repo_id: str | os.PathLike, **hub_kwargs) -> Family:
    """The registered family whose pipeline class the folder's model_index.json names."""
    return family_for_pipeline(_read_model_index(path_or_repo_id, **hub_kwargs).get("_class_name", "?"))


def load_pipeline(path_or_repo_id: str | os.PathLike, **kwargs):
    """Load any hubgen model folder or Hub repo as the right pipeline class (safetensors only).

    `kwargs` go to the pipeline's `from_pretrained` (e.g. `revision`, `torch_dtype`).
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
        raise ValueError(f"`repo_id` must look like 'user/name', got {repo_id!r}.")
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


def save_pipeline_atomic(pipeline, folder: str | os.PathLike) -> None:
    """save_pretrained into a temporary folder beside the target, then swap each entry into place.

    A failure while writing leaves the previous model untouched; files of the folder that the pipeline does
    not write (card, samples, checkpoints) are left alone.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".tmp-pipeline"
    if tmp.exists():
        shutil.rmtree(tmp)  # our own leftover from an interrupted save
    pipeline.save_pretrained(tmp, safe_serialization=True)
    for entry in sorted(tmp.iterdir()):
        target = folder / entry.name
        if target.exists():
            old = folder / f".old-{entry.name}"
            if old.exists():
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            os.replace(target, old)
            os.replace(entry, target)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(entry, target)
    tmp.rmdir()


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _dataset_id(dataset: str) -> str | None:
    """The Hub dataset id for the card's `datasets:` field, when the data is a Hub dataset."""
    name = Path(dataset).stem if dataset not in HF_DATASET_IDS else dataset
    return HF_DATASET_IDS.get(name)


def card_data_for(folder: Path, family: Family, info: dict, results: dict, model_name: str | None = None):
    """ModelCardData: library, family tag, pipeline tag, license, datasets and model-index results.

    `model_name` names the model-index entry (default: the folder's name; the repo id when pushing).
    """
    from huggingface_hub import EvalResult, ModelCardData

    dataset = info.get("dataset", "unknown")
    # text-conditioned families (a tokenizer in the folder) generate from a prompt
    prompted = family.name == "text2img" or (folder / "tokenizer").is_dir()
    task = "text-to-image" if prompted else "unconditional-image-generation"
    dataset_id = _dataset_id(dataset)
    dataset_label = dataset_id or Path(dataset).name
    eval_results = []
    metrics = results.get("metrics", {})
    # results["metrics"] keys -> (metric type, label): each likelihood says which bound it is
    names = {
        "iwae_nll_nats": ("nll", "IWAE NLL (nats, k={k})"),
        "neg_elbo_nats": ("neg_elbo", "negative ELBO (nats)"),
        "bits_per_dim": ("bits_per_dim", "IWAE bits/dim (k={k})"),
        "exact_nll_nats": ("nll", "exact NLL (nats, change of variables)"),
        "exact_bits_per_dim": ("bits_per_dim", "exact bits/dim (change of variables)"),
        "vlb_nats": ("nll", "variational bound on the NLL (nats, {num_timesteps} timesteps)"),
        "vlb_bits_per_dim": ("bits_per_dim", "variational bound bits/dim ({num_timesteps} timesteps)"),
    }
    for key, (metric_type, label) in names.items():
        if key in metrics:
            label = label.format_map(collections.defaultdict(lambda: "?", results))
            eval_results.append(
                EvalResult(
                    task_type=task,
                    dataset_type=dataset_id or dataset_label,
                    dataset_name=f"{dataset_label} ({results['split']}, first {results['num_images']} images)",
                    dataset_split=results["split"],
                    metric_type=metric_type,
                    metric_name=label + f", {results.get('pixel_mode')} pixels, seed {results.get('seed')}",
                    metric_value=round(metrics[key]["mean"], 4),
                )
            )
    # prompt accuracy (text2img): the evaluation labels each key (template set, guidance scale, sampler, N, seed)
    for key, value in metrics.items():
        if key.startswith("prompt_accuracy"):
            eval_results.append(
                EvalResult(
                    task_type=task,
                    dataset_type=dataset_id or dataset_label,
                    dataset_name=f"{dataset_label} digit prompts, frozen digit classifier",
                    metric_type="accuracy",
                    metric_name=results.get("metric_labels", {}).get(key, key),
                    metric_value=round(value["mean"], 4),
                )
            )
    quality = results.get("sample_quality")
    if quality:
        fd, prdc, net = quality["frechet_distance"], quality["prdc"], quality["feature_network"]
        where = f"{dataset_label} ({quality['reference_split']}, {quality['num_reference_images']} images)"
        common = f"N={quality['num_samples']} samples, seed {quality['seed']}, features {net['id']}"
        for metric_type, value, label in [
            ("frechet_distance", fd["value"], f"{fd['name']} (classifier Frechet distance, not Inception FID)"),
            ("precision", prdc["precision"], f"precision (k={prdc['k']})"),
            ("recall", prdc["recall"], f"recall (k={prdc['k']})"),
            ("coverage", prdc["coverage"], f"coverage (k={prdc['k']})"),
        ]:
            eval_results.append(
                EvalResult(
                    task_type=task,
                    dataset_type=dataset_id or dataset_label,
                    dataset_name=where,
                    dataset_split=quality["reference_split"],
                    metric_type=metric_type,
                    metric_name=f"{label}, {common}",
                    metric_value=round(float(value), 4),
                )
            )
    return ModelCardData(
        library_name="hubgen",
        license=info.get("license", "apache-2.0"),
        pipeline_tag=task,
        tags=["hubgen", family.name, task, "image-generation"],
        datasets=[dataset_id] if dataset_id else None,
        model_name=model_name or folder.resolve().name,
        eval_results=eval_results or None,
    )


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


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


def _card_file(name: str) -> Path:
    return Path(str(resources.files("hubgen.model_cards").joinpath(name)))


def render_card(folder: str | os.PathLike, repo_id: str | None = None, save: bool = True):
    """Render README.md from the family's template and the folder's config, training record and results.

    With `save` (the default) the card goes to README.md and its figures to `.eval_results/hubgen.yaml` (removed
    when there are none); without it nothing is written and the card is only returned.
    """
    from huggingface_hub import ModelCard

    folder = Path(folder)
    index = _read_model_index(folder)
    family = family_for_pipeline(index.get("_class_name", "?"))
    info = _read_json(folder / "hubgen_training.json")
    results = _read_json(folder / "eval_results.json")
    components = {
        name: _read_json(folder / name / "config.json")
        for name, value in index.items()
        if isinstance(value, list) and (folder / name / "config.json").is_file()
    }
    template = Path(family.card_template)
    if not template.is_absolute():
        template = _card_file(family.card_template)
    has_nn_grid = (folder / "nearest_neighbours.png").is_file()
    # Jinja's {% include %} needs a loader that ModelCard.from_template does not set up: shared partials are
    # rendered here and passed in as text.
    sample_quality_section = jinja2.Template(_card_file("_sample_quality.md").read_text()).render(
        results=results, has_nn_grid=has_nn_grid
    )
    card = ModelCard.from_template(
        card_data_for(folder, family, info, results, model_name=repo_id),
        template_path=str(template),
        model_id=repo_id or folder.resolve().name,
        repo_id=repo_id or str(folder),
        family=family,
        info=info,
        results=results,
        components=components,
        pipeline_class=index.get("_class_name"),
        has_samples=(folder / "samples.png").is_file(),
        has_loss_curve=(folder / "loss_curve.png").is_file(),
        sample_quality_section=sample_quality_section.strip(),
        folder=str(folder),
    )
    if save:
        _write_text_atomic(folder / "README.md", str(card))
        figures = eval_results_yaml(card.data)
        if figures:
            _write_text_atomic(folder / EVAL_RESULTS_FILE, figures)
        elif (folder / EVAL_RESULTS_FILE).is_file():
            (folder / EVAL_RESULTS_FILE).unlink()
    return card

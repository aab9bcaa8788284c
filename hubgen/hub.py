"""Model folders: load any hubgen pipeline, save one without clobbering, and render its model card.

A hubgen model folder is a diffusers pipeline folder (model_index.json + one subfolder per component, weights
in safetensors) plus `README.md` (the card), `samples.png`, `loss_curve.png`, `hubgen_training.json` (how it
was trained) and `eval_results.json` (what it scored, with N, k, split and seeds). Cards are rendered from
the family's Jinja template in model_cards/ through huggingface_hub's `ModelCard.from_template`.
"""

import collections
import json
import os
import shutil
from importlib import resources
from pathlib import Path

import jinja2

from .registry import Family, family_for_pipeline

__all__ = ["load_pipeline", "family_of", "save_pipeline_atomic", "render_card", "card_data_for"]

HF_DATASET_IDS = {"mnist": "ylecun/mnist"}


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


def card_data_for(folder: Path, family: Family, info: dict, results: dict):
    """ModelCardData: library, family tag, pipeline tag, license, datasets and model-index results."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset = info.get("dataset", "unknown")
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
                    task_type="unconditional-image-generation",
                    dataset_type=dataset_id or dataset_label,
                    dataset_name=f"{dataset_label} ({results['split']}, first {results['num_images']} images)",
                    dataset_split=results["split"],
                    metric_type=metric_type,
                    metric_name=label
                    + f", {results.get('pixel_mode')} pixels, seed {results.get('seed')}",
                    metric_value=round(metrics[key]["mean"], 4),
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
                    task_type="unconditional-image-generation",
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
        pipeline_tag="unconditional-image-generation",
        tags=["hubgen", family.name, "unconditional-image-generation", "image-generation"],
        datasets=[dataset_id] if dataset_id else None,
        model_name=folder.resolve().name,
        eval_results=eval_results or None,
    )


def _card_file(name: str) -> Path:
    return Path(str(resources.files("hubgen.model_cards").joinpath(name)))


def render_card(folder: str | os.PathLike, repo_id: str | None = None):
    """Render README.md from the family's template and the folder's config, training record and results."""
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
        card_data_for(folder, family, info, results),
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
    card.save(folder / "README.md")
    return card

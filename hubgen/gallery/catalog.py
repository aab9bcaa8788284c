"""What the gallery shows: model entries found in a local folder and/or on the Hub, their leaderboard rows, and a
bounded cache of loaded pipelines.

Everything here is read from what a hubgen model already publishes: `model_index.json` names the pipeline class and
so the family (through the plugin registry), the card's front matter carries the dataset and the `model-index`
results, `samples.png` is the tile. Nothing is family-specific, so a new family (or a third-party plugin) shows up
without touching this file. A folder that cannot be read becomes an entry with `error` set (an error tile), never an
exception that takes the app down.
"""

import collections
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserInputError
from ..registry import Family

__all__ = [
    "ModelEntry",
    "Catalog",
    "PipelineCache",
    "leaderboard_rows",
    "LEADERBOARD_COLUMNS",
    "bound_type",
    "card_markdown",
]

LEADERBOARD_COLUMNS = [
    "model",
    "family",
    "dataset",
    "bits/dim",
    "NLL (nats)",
    "likelihood bound",
    "classifier FD",
    "FD features and N",
    "precision",
    "recall",
    "coverage",
    "prompt accuracy (guidance 3)",
]


@dataclass
class ModelEntry:
    """One model of the gallery: where it is, what it is, and what its card says it scored."""

    model_id: str  # folder name (local) or repo id (Hub)
    source: str  # "local" or "hub"
    location: str  # the folder path, or the repo id
    family: Family | None = None
    dataset: str = "unknown"
    card_text: str = ""  # the card's markdown body (front matter removed)
    card_metadata: dict = field(default_factory=dict)
    results: list = field(default_factory=list)  # huggingface_hub EvalResult objects from the card's model-index
    samples_path: str | None = None
    error: str | None = None

    @property
    def family_name(self) -> str:
        return self.family.name if self.family else "unknown"

    def headline(self) -> str:
        """The figure for the tile: a likelihood with its bound type, else the prompt accuracy of a text-to-image
        model, else the Frechet distance."""
        for r in self.results:
            if r.metric_type == "bits_per_dim":
                return f"{r.metric_value:.3f} bits/dim ({bound_type(r.metric_name)})"
        accuracy = reference_accuracy(self)
        if accuracy is not None:
            return f"prompt accuracy {accuracy.metric_value:.3f} (guidance 3)"
        for r in self.results:
            if r.metric_type == "frechet_distance":
                return f"classifier FD {r.metric_value:.1f}"
        return "not evaluated"


def reference_accuracy(entry: "ModelEntry"):
    """The prompt accuracy a text-to-image card reports at its reference point (training templates, guidance 3),
    else its first accuracy figure, else None."""
    accuracies = [r for r in entry.results if "accuracy" in r.metric_type]
    reference = [r for r in accuracies if "training templates, guidance 3," in (r.metric_name or "")]
    return (reference or accuracies or [None])[0]


def card_markdown(entry: ModelEntry) -> str:
    """The card's markdown with its relative image links made absolute, so they show inside the app.

    A local folder's images are inlined as data URIs (the app serves no files from model folders); a Hub model's
    point at the Hub's resolve URL.
    """
    import base64

    def replace(match: re.Match) -> str:
        alt, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("/"):
            return match.group(0)
        if entry.source == "hub":
            from huggingface_hub import constants

            return f"![{alt}]({constants.ENDPOINT}/{entry.location}/resolve/main/{target})"
        path = Path(entry.location) / target
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp") or not path.is_file():
            return f"*[{alt}: {target} is not in the folder]*"
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{alt}](data:image/{path.suffix.lower().lstrip('.')};base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", replace, entry.card_text)


def bound_type(metric_name: str) -> str:
    """Which likelihood a card's metric name reports: exact, IWAE-k, a variational bound, or an ELBO."""
    name = metric_name or ""
    if "exact" in name.lower():
        return "exact"
    if "IWAE" in name:
        k = re.search(r"k=(\d+)", name)
        return f"IWAE-{k.group(1)}" if k else "IWAE"
    if "variational bound" in name.lower():
        t = re.search(r"\((?:[^()]*?)(\d+) timesteps", name)
        return f"variational bound ({t.group(1)} timesteps)" if t else "variational bound"
    if "elbo" in name.lower():
        return "ELBO"
    return "unstated"


def _read_card(entry: ModelEntry, text: str) -> None:
    """Fill the entry from README.md: front matter, markdown body, and the model-index results (EvalResult)."""
    from huggingface_hub import ModelCard

    card = ModelCard(text, ignore_metadata_errors=True)
    entry.card_metadata, entry.card_text = card.data.to_dict(), card.text
    entry.results = list(card.data.eval_results or [])


def _dataset_of(metadata: dict, info: dict) -> str:
    dataset = info.get("dataset")
    if dataset:
        return Path(dataset).stem if dataset.endswith(".npz") else os.path.basename(dataset.rstrip("/")) or dataset
    datasets = metadata.get("datasets") or []
    return datasets[0] if datasets else "unknown"


def read_local_entry(folder: Path) -> ModelEntry:
    """A model folder -> its entry; any failure to read it becomes `entry.error`."""
    from ..hub import family_of

    entry = ModelEntry(model_id=folder.name, source="local", location=str(folder))
    try:
        entry.family = family_of(folder)
        card = folder / "README.md"
        if card.is_file():
            _read_card(entry, card.read_text(encoding="utf-8"))
        info_path = folder / "hubgen_training.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        entry.dataset = _dataset_of(entry.card_metadata, info)
        if (folder / "samples.png").is_file():
            entry.samples_path = str(folder / "samples.png")
    except (ValueError, OSError, json.JSONDecodeError) as e:
        entry.error = f"{type(e).__name__}: {e}"
    return entry


def read_hub_entry(repo_id: str, **hub_kwargs) -> ModelEntry:
    """A Hub repo -> its entry from README.md (and samples.png when the repo has one); errors become `entry.error`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from ..hub import family_of

    entry = ModelEntry(model_id=repo_id, source="hub", location=repo_id)
    try:
        entry.family = family_of(repo_id, **hub_kwargs)
        card = Path(hf_hub_download(repo_id, "README.md", **hub_kwargs))
        _read_card(entry, card.read_text(encoding="utf-8"))
        entry.dataset = _dataset_of(entry.card_metadata, {})
        try:
            entry.samples_path = hf_hub_download(repo_id, "samples.png", **hub_kwargs)
        except EntryNotFoundError:
            pass
    except (ValueError, OSError) as e:
        entry.error = f"{type(e).__name__}: {e}"
    return entry


class Catalog:
    """The models the gallery lists: every model folder under `local_dir`, and hubgen models on the Hub.

    `hub=True` lists `list_models(filter="hubgen")`, narrowed by `author` and `tags`; `local_dir=None` skips the
    local folder. Entries are read once at construction (and again by `refresh()`).
    """

    def __init__(
        self,
        local_dir: str | os.PathLike | None = "models",
        hub: bool = False,
        author: str | None = None,
        tags: list[str] | None = None,
        limit: int = 100,
    ):
        if local_dir is None and not hub:
            raise UserInputError("The gallery needs a source: pass `local_dir` (a folder of model folders) or `hub=True`.")
        if local_dir is not None and Path(local_dir).exists() and not Path(local_dir).is_dir():
            raise UserInputError(f"`local_dir` must be a folder of model folders, got the file {local_dir}.")
        if not isinstance(limit, int) or limit < 1:
            raise UserInputError(f"`limit` must be an integer >= 1, got {limit!r}.")
        self.local_dir = Path(local_dir) if local_dir is not None else None
        self.hub, self.author, self.tags, self.limit = hub, author, list(tags or []), limit
        self.warnings: list[str] = []
        self.entries: dict[str, ModelEntry] = {}
        self.refresh()

    def refresh(self) -> None:
        entries, self.warnings = [], []
        if self.local_dir is not None and self.local_dir.is_dir():
            for folder in sorted(p for p in self.local_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                entries.append(read_local_entry(folder))
        if self.hub:
            entries += self._hub_entries()
        self.entries = {e.model_id: e for e in entries}

    def _hub_entries(self) -> list[ModelEntry]:
        from huggingface_hub import HfApi

        try:
            models = list(HfApi().list_models(filter=["hubgen", *self.tags], author=self.author, limit=self.limit))
        except Exception as e:  # offline, unreachable endpoint: the local models still show
            self.warnings.append(f"Could not list hubgen models on the Hub ({type(e).__name__}: {e}).")
            return []
        return [read_hub_entry(m.id) for m in models]

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, model_id: str) -> ModelEntry:
        if not isinstance(model_id, str) or model_id not in self.entries:
            known = ", ".join(self.entries) or "none"
            raise UserInputError(f"Unknown model {model_id!r}; the gallery lists: {known}.")
        return self.entries[model_id]

    def families(self) -> list[str]:
        return sorted({e.family_name for e in self.entries.values()})

    def datasets(self) -> list[str]:
        return sorted({e.dataset for e in self.entries.values()})

    def filter(self, family: str | None = None, dataset: str | None = None, query: str = "") -> list[ModelEntry]:
        """Entries of `family` and `dataset` (None or "All": any) whose id, family or dataset contains `query`."""
        query = (query or "").strip().lower()
        out = []
        for e in self.entries.values():
            if family not in (None, "All") and e.family_name != family:
                continue
            if dataset not in (None, "All") and e.dataset != dataset:
                continue
            if query and not any(query in s.lower() for s in (e.model_id, e.family_name, e.dataset)):
                continue
            out.append(e)
        return out


def _value(entry: ModelEntry, metric_type: str):
    for r in entry.results:
        if r.metric_type == metric_type:
            return r
    return None


def leaderboard_rows(entries: list[ModelEntry]) -> list[list]:
    """One row per evaluated model, in LEADERBOARD_COLUMNS order; figures as the cards state them.

    Likelihoods are shown in both units (bits/dim and nats per image) with the bound they are (exact for flows,
    IWAE-k for VAEs, the variational bound for diffusion); an empty cell means the card does not report it.
    """
    rows = []
    for e in entries:
        if e.error:
            continue
        bpd, nll, fd = _value(e, "bits_per_dim"), _value(e, "nll"), _value(e, "frechet_distance")
        accuracy = reference_accuracy(e)
        fd_where = ""
        if fd is not None:
            n = re.search(r"N=(\d+)", fd.metric_name)
            net = re.search(r"features (\S+)", fd.metric_name)
            fd_where = f"{net.group(1) if net else '?'}, N={n.group(1) if n else '?'}"
        rows.append(
            [
                e.model_id,
                e.family_name,
                e.dataset,
                round(bpd.metric_value, 4) if bpd else None,
                round(nll.metric_value, 2) if nll else None,
                bound_type((bpd or nll).metric_name) if (bpd or nll) else "",
                round(fd.metric_value, 2) if fd else None,
                fd_where,
                *(round(r.metric_value, 3) if r else None for r in (_value(e, t) for t in ("precision", "recall"))),
                round(_value(e, "coverage").metric_value, 3) if _value(e, "coverage") else None,
                round(accuracy.metric_value, 3) if accuracy else None,
            ]
        )
    return rows


class PipelineCache:
    """At most `max_loaded` pipelines in memory, least recently used evicted first; loads are serialized."""

    def __init__(self, max_loaded: int = 3):
        if not isinstance(max_loaded, int) or max_loaded < 1:
            raise UserInputError(f"`max_loaded` must be an integer >= 1, got {max_loaded!r}.")
        self.max_loaded = max_loaded
        self._pipelines: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a pipeline was actually loaded (tests read it)

    def get(self, entry: ModelEntry):
        if entry.error:
            raise UserInputError(f"Model {entry.model_id!r} cannot be loaded: {entry.error}")
        with self._lock:
            if entry.model_id in self._pipelines:
                self._pipelines.move_to_end(entry.model_id)
                return self._pipelines[entry.model_id]
            from ..hub import load_pipeline

            try:
                pipe = load_pipeline(entry.location)
            except (OSError, RuntimeError) as e:
                raise UserInputError(f"Model {entry.model_id!r} could not be loaded: {type(e).__name__}: {e}") from e
            self.loads += 1
            self._pipelines[entry.model_id] = pipe
            while len(self._pipelines) > self.max_loaded:
                self._pipelines.popitem(last=False)
            return pipe

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._pipelines

    def __len__(self) -> int:
        return len(self._pipelines)

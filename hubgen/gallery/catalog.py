"""What the gallery shows: model entries found in a local folder and/or on the Hub, their leaderboard rows, and a
bounded cache of loaded pipelines.

Everything here is read from what a hubgen model already publishes: `model_index.json` names the pipeline class and
so the family (through the plugin registry), the card's front matter carries the dataset and the `model-index`
results, `samples.png` is the tile. Nothing is family-specific, so a new family (or a third-party plugin) shows up
without touching this file. A folder that cannot be read becomes an entry with `error` set (an error tile), never an
exception that takes the app down.
"""

import collections
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
    "leaderboard_columns",
    "bound_type",
    "card_markdown",
]

# The columns every family shares; each registered family's figures with a declared `column` follow them.
BASE_COLUMNS = [
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

    def declared(self, result):
        """The family's `Metric` for a card figure (found by the key the card stores in `metric_config`)."""
        if self.family is None or not result.metric_config:
            return None
        return self.family.metric(result.metric_config)

    def headline(self) -> str:
        """The figure for the tile: the one the family declares as its headline (a likelihood with its bound
        type, a prompt accuracy, ...), else the classifier Frechet distance."""
        for r in self.results:
            spec = self.declared(r)
            if spec is not None and spec.headline:
                if spec.unit == "bits/dim":
                    return f"{r.metric_value:.3f} bits/dim ({bound_type(r)})"
                return f"{spec.column or spec.metric_type} {r.metric_value:.3f}"
        for r in self.results:
            if r.metric_type == "frechet_distance":
                return f"classifier FD {r.metric_value:.1f}"
        return "not evaluated"


def card_markdown(entry: ModelEntry) -> str:
    """The card's markdown with its relative image links made absolute, so they show inside the app.

    A local folder's images are inlined as data URIs (the app serves no files from model folders), only files
    inside the folder (a card linking `../../secret.png`, or to a symlink out of the folder, gets a note instead);
    a Hub model's point at the Hub's resolve URL.
    """
    import base64

    def replace(match: re.Match) -> str:
        alt, target = match.group(1), match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("/"):
            return match.group(0)
        if entry.source == "hub":
            from huggingface_hub import constants

            return f"![{alt}]({constants.ENDPOINT}/{entry.location}/resolve/main/{target})"
        folder = Path(entry.location).resolve()
        path = (folder / target).resolve()  # links and ".." followed: only a file inside the folder is inlined
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp") or not path.is_file() \
                or not path.is_relative_to(folder):  # fmt: skip
            return f"*[{alt}: {target} is not in the folder]*"
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{alt}](data:image/{path.suffix.lower().lstrip('.')};base64,{data})"

    # alt text may hold one level of brackets (E[x|z]): an alt that stopped at the first "]" left the link relative
    return re.sub(r"!\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(([^)\s]+)\)", replace, entry.card_text)


def demote_headings(markdown: str) -> str:
    """Every markdown heading one level down (# -> ##), code fences left alone: inside the gallery the card is
    a section of a page whose one H1 is the gallery's title."""
    lines, fenced = [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,5} ", line):
            line = "#" + line
        lines.append(line)
    return "\n".join(lines)


def bound_type(result) -> str:
    """Which likelihood a card figure reports (an exact one, or which bound), as the card's
    model-index states it in the figure's `args` (written from the family's declared `Metric.bound`)."""
    args = result.metric_args or {}
    return str(args.get("bound") or "unstated")


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
    from .. import model_folder as mf
    from ..hub import family_of

    entry = ModelEntry(model_id=folder.name, source="local", location=str(folder))
    try:
        entry.family = family_of(folder)
        card = folder / mf.CARD
        if card.is_file():
            _read_card(entry, card.read_text(encoding="utf-8"))
        entry.dataset = _dataset_of(entry.card_metadata, mf.training_record(folder))
        if (folder / mf.SAMPLES).is_file():
            entry.samples_path = str(folder / mf.SAMPLES)
    except (ValueError, OSError) as e:
        entry.error = f"{type(e).__name__}: {e}"
    return entry


def read_hub_entry(repo_id: str, **hub_kwargs) -> ModelEntry:
    """A Hub repo -> its entry from README.md (and samples.png when the repo has one); errors become `entry.error`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from .. import model_folder as mf
    from ..hub import family_of

    entry = ModelEntry(model_id=repo_id, source="hub", location=repo_id)
    try:
        entry.family = family_of(repo_id, **hub_kwargs)
        card = Path(hf_hub_download(repo_id, mf.CARD, **hub_kwargs))
        _read_card(entry, card.read_text(encoding="utf-8"))
        entry.dataset = _dataset_of(entry.card_metadata, {})
        try:
            entry.samples_path = hf_hub_download(repo_id, mf.SAMPLES, **hub_kwargs)
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
            raise UserInputError(
                "The gallery needs a source: pass `local_dir` (a folder of model folders) or `hub=True`."
            )
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


def _likelihoods(entry: ModelEntry) -> tuple:
    """The card's first bits/dim figure and its first nats/image figure (or None), by their declared units."""
    units = {}
    for r in entry.results:
        spec = entry.declared(r)
        if spec is not None and spec.unit in ("bits/dim", "nats/image"):
            units.setdefault(spec.unit, r)
    return units.get("bits/dim"), units.get("nats/image")


def _fd_features_and_n(fd) -> tuple[str, str]:
    """The feature network and N a card's Frechet distance names in its label ("?" where it does not)."""
    n = re.search(r"N=(\d+)", fd.metric_name)
    net = re.search(r"features (\S+)", fd.metric_name)
    return (net.group(1) if net else "?", n.group(1) if n else "?")


def _declared_columns() -> dict:
    """{column title: (family name, Metric)} for every registered family's figure that has its own column."""
    from ..registry import list_families

    return {spec.column: (f.name, spec) for f in list_families() for spec in f.metrics if spec.column}


def leaderboard_columns() -> list[str]:
    return BASE_COLUMNS + list(_declared_columns())


def leaderboard_rows(entries: list[ModelEntry]) -> list[list]:
    """One row per evaluated model, in `leaderboard_columns()` order; figures as the cards state them.

    Likelihoods are shown in both units (bits/dim and nats per image) with the bound the card declares for them;
    an empty cell means the card does not report it.
    """
    columns = _declared_columns()
    rows = []
    for e in entries:
        if e.error:
            continue
        (bpd, nll), fd = _likelihoods(e), _value(e, "frechet_distance")
        fd_where = "{}, N={}".format(*_fd_features_and_n(fd)) if fd is not None else ""
        own = []
        for family_name, spec in columns.values():
            match = [r for r in e.results if e.family_name == family_name and r.metric_config == spec.key]
            own.append(round(match[0].metric_value, 3) if match else None)
        rows.append(
            [
                e.model_id,
                e.family_name,
                e.dataset,
                round(bpd.metric_value, 4) if bpd else None,
                round(nll.metric_value, 2) if nll else None,
                bound_type(bpd or nll) if (bpd or nll) else "",
                round(fd.metric_value, 2) if fd else None,
                fd_where,
                *(round(r.metric_value, 3) if r else None for r in (_value(e, t) for t in ("precision", "recall"))),
                round(_value(e, "coverage").metric_value, 3) if _value(e, "coverage") else None,
                *own,
            ]
        )
    return rows


def leaderboard_tables(entries: list[ModelEntry]) -> list[tuple[str, list[str], list[list]]]:
    """The leaderboard as narrow tables, each comparing only figures that can be compared: (title, headers, rows).

    Likelihoods: one table per dataset and data encoding (binarized, L levels), never two encodings in one
    column, each figure with its bound type. Sample quality: one table per dataset, feature network and N (a
    Frechet distance moves with N: its bias shrinks as N grows). Then one table per family with figures of its own
    (prompt accuracy). Rows sorted best first.
    """
    likelihood, quality, own = {}, {}, {}
    columns = _declared_columns()
    for e in entries:
        if e.error:
            continue
        bpd, nll = _likelihoods(e)
        if bpd or nll:
            encoding = str(((bpd or nll).metric_args or {}).get("data_encoding") or "unstated encoding")
            likelihood.setdefault((e.dataset, encoding), []).append(
                [
                    e.model_id,
                    e.family_name,
                    round(bpd.metric_value, 4) if bpd else None,
                    round(nll.metric_value, 2) if nll else None,
                    bound_type(bpd or nll),
                ]  # fmt: skip
            )
        fd = _value(e, "frechet_distance")
        if fd is not None:
            key = (e.dataset, *_fd_features_and_n(fd))
            quality.setdefault(key, []).append(
                [
                    e.model_id,
                    e.family_name,
                    round(fd.metric_value, 2),
                    *(
                        round(r.metric_value, 3) if r else None
                        for r in (_value(e, t) for t in ("precision", "recall", "coverage"))
                    ),
                ]  # fmt: skip
            )
        values = []
        for title, (family_name, spec) in columns.items():
            match = [r for r in e.results if e.family_name == family_name and r.metric_config == spec.key]
            if match:
                values.append((title, round(match[0].metric_value, 3)))
        if values:
            own.setdefault(e.family_name, {})[e.model_id] = (e.dataset, dict(values))

    def best_first(rows, column, higher=False):
        known = sorted((r for r in rows if r[column] is not None), key=lambda r: r[column], reverse=higher)
        return known + [r for r in rows if r[column] is None]

    tables = []
    for (dataset, encoding), rows in sorted(likelihood.items()):
        tables.append((f"Likelihood: {dataset}, {encoding} (lower is better)",
                       ["model", "family", "bits/dim", "NLL (nats/image)", "bound"], best_first(rows, 2)))  # fmt: skip
    for (dataset, net, n), rows in sorted(quality.items()):
        tables.append((f"Sample quality: {dataset}, classifier Frechet distance in {net} features, N = {n} "
                       "(not Inception FID; comparable only at equal features and N)",
                       ["model", "family", "FD", "precision", "recall", "coverage"], best_first(rows, 2)))  # fmt: skip
    for family_name, models in sorted(own.items()):
        titles = sorted({t for _, values in models.values() for t in values})
        rows = [[model_id, dataset, *(values.get(t) for t in titles)] for model_id, (dataset, values) in models.items()]
        tables.append((f"{family_name}: the family's own figures", ["model", "dataset", *titles],
                       best_first(rows, 2, higher=True)))  # fmt: skip
    return tables


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

"""The family contract: everything the core (CLI, cards, publishing, gallery) needs from a model family.

A family is one `Family` record. Its code is named by "module:attribute" strings, so `hubgen --help` imports
nothing heavy; its figures, options and metadata are plain data. Every family, built-in or third-party,
registers through the entry-point group `hubgen.families` (see docs/adding-a-family.md):

    [project.entry-points."hubgen.families"]
    mine = "my_package.family:FAMILY"

The contract, field by field:

- `pipeline_class`, `model_class`: the diffusers pipeline (its class name is the `_class_name` of
  model_index.json, which is how a folder finds its family) and the main trained model.
- `train`: `main(argv) -> int`, the family's training script (`hubgen train NAME ...`); its argparse parser
  owns the family's training options.
- `evaluate`: `evaluate(folder, request, pipeline=None) -> EvalResult`; `eval_request` is the dataclass of
  its options (an `EvalRequest` subclass): `hubgen eval` and `hubgen verify` build their options from its
  fields, so an option a family does not have is refused by the parser.
- `metrics`: the figures its evaluation reports (`Metric`: key, label, unit, bound type, better direction);
  cards, model-index, leaderboard and tile headline read them from here.
- `sample_options`: the arguments its pipeline's `__call__` takes besides `batch_size`/`generator`
  (prompt, steps, guidance...), for `hubgen sample` and the gallery.
- `build_demo`: `build_demo(pipeline_or_path) -> gr.Blocks`.
- `card_template`: a Jinja template, "package.module:file.md" (a package resource) or an absolute path.
- `space`: the Space front matter that is the family's own (colours, emoji).
- `quickstart`: the training options `hubgen quickstart` (the README's main job) uses for a small model of
  this family on the bundled digits, a minute or two on a laptop CPU.
- `smoke_test`: training options for a run of a few seconds on the digits, with a tiny evaluation: the
  contract test (tests/test_family_contract.py) trains every registered family with them.
"""

import dataclasses
import importlib
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from .errors import UserInputError

__all__ = [
    "Family",
    "Metric",
    "SampleOption",
    "SpaceStyle",
    "EvalRequest",
    "EvalResult",
    "SAMPLE_QUALITY_METRICS",
    "register_family",
    "get_family",
    "list_families",
    "family_for_pipeline",
    "entry_point_names",
    "count_or_all",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "hubgen.families"


@dataclass(frozen=True)
class Metric:
    """One figure an evaluation reports under `EvalResult.metrics[key]`.

    `label` and `bound` are format strings over the result's JSON record (e.g. "IWAE NLL (nats, k={k})");
    a `key` ending in "*" matches every key with that prefix, labelled by `EvalResult.metric_labels[key]`.
    `metric_type` is the model-index type (nll, bits_per_dim, accuracy, ...); `unit` what the value counts;
    `bound` which likelihood it is ("exact", "IWAE-{k}", "ELBO", "variational bound", "" for none).
    `headline` marks the figure a gallery tile shows; `column` names its own leaderboard column when it is
    neither a likelihood nor a sample-quality figure; `count_based` figures (a fraction of N samples) must be
    reproduced exactly by `hubgen verify`, the others within a relative tolerance.
    """

    key: str
    label: str
    metric_type: str
    unit: str
    bound: str = ""
    higher_is_better: bool = False
    headline: bool = False
    column: str | None = None
    count_based: bool = False

    def matches(self, key: str) -> bool:
        return key.startswith(self.key[:-1]) if self.key.endswith("*") else key == self.key


# The sample-quality figures every family with a sampler reports through hubgen.metrics.evaluate_samples.
SAMPLE_QUALITY_METRICS = (
    Metric("frechet_distance", "classifier Frechet distance", "frechet_distance", "squared feature distance"),
    Metric("precision", "precision", "precision", "fraction", higher_is_better=True, count_based=True),
    Metric("recall", "recall", "recall", "fraction", higher_is_better=True, count_based=True),
    Metric("coverage", "coverage", "coverage", "fraction", higher_is_better=True, count_based=True),
)


@dataclass(frozen=True)
class SampleOption:
    """An argument of the pipeline's `__call__` that users set when sampling (CLI `hubgen sample`, gallery).

    `kind` is "prompt", "text", "int", "float" or "choice". A "prompt" follows diffusers' convention: with a
    prompt the image count goes to `num_images_per_prompt`, without one to `batch_size`. `required`: the gallery
    asks for it before sampling (the CLI leaves it to the pipeline's default)."""

    name: str
    kind: str
    default: Any = None
    help: str = ""
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False


@dataclass(frozen=True)
class SpaceStyle:
    """The family's own Space front matter (colours from the Spaces palette)."""

    color_from: str = "gray"
    color_to: str = "blue"
    emoji: str = "🎲"


def count_or_all(text: str) -> int | None:
    """An image count on the command line (`hubgen eval`, the training scripts' --eval_num_images): a whole
    number, or `all` (None: the whole split)."""
    import argparse

    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from None


MAX_REQUEST_LIST = 32  # values of a list option of an evaluation request (guidance scales, samplers, ...)
# The bounds of the common counts, also when a family redeclares the field (metadata["max"] overrides)
COUNT_LIMITS = {"num_images": 1_000_000, "num_samples": 100_000}


@dataclass
class EvalRequest:
    """What `hubgen eval` (and `verify`) asks of every family; a family subclasses it to add its own options.

    `num_images` counts test images for figures computed on data (likelihoods); `num_samples` counts
    generated samples for the sample-quality figures. In both, 0 skips those figures and None (the CLI's
    `all`) takes the whole split. The field's `metadata["help"]` is the CLI help; `metadata["all"]` marks a
    count that the CLI also takes as `all` (None); `metadata["max"]` bounds a count (COUNT_LIMITS the common
    ones, redeclared or not), checked with every other field before any work starts.
    """

    dataset: str | None = field(default=None, metadata={"help": "default: the dataset the model was trained on"})
    split: str = field(default="test", metadata={"help": "train, valid or test", "choices": ("train", "valid", "test")})
    num_images: int | None = field(
        default=1000, metadata={"help": "first N images of the split (0: skip, all: all)", "all": True}
    )
    num_samples: int | None = field(
        default=1000, metadata={"help": "generated samples for sample quality (0: skip)", "all": True}
    )
    seed: int = field(default=0, metadata={"help": "seed of every random draw of the evaluation"})
    feature_network: str | None = field(
        default=None,
        metadata={"help": "a classifier folder from `hubgen metrics train-classifier` for the Frechet distance and "
                  "precision/recall (default: the shipped one for the image shape, else not measured)"},
    )  # fmt: skip

    def __post_init__(self):
        if self.split not in ("train", "valid", "test"):
            raise UserInputError(f"`split` must be train, valid or test, got {self.split!r}.")
        for name in ("num_images", "num_samples"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise UserInputError(f"`{name}` must be an integer >= 0 or None (all), got {value!r}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise UserInputError(f"`seed` must be an integer in [0, 2**63), got {self.seed!r}.")
        # Every count is bounded before any work starts: a request may come from a downloaded eval_results.json
        # (`hubgen verify`), where k = 1e9 or num_samples = 1e8 would hang or exhaust memory.
        for f in dataclasses.fields(self):
            value, high = getattr(self, f.name), f.metadata.get("max", COUNT_LIMITS.get(f.name))
            if high is not None and isinstance(value, int) and not isinstance(value, bool) and value > high:
                raise UserInputError(f"`{f.name}` must be at most {high:,}, got {value!r}.")
            if isinstance(value, (tuple, list)) and len(value) > MAX_REQUEST_LIST:
                raise UserInputError(f"`{f.name}` takes at most {MAX_REQUEST_LIST} values, got {len(value)}.")

    def skips_everything(self) -> bool:
        """True when every count is 0 ("0 skips"); None (`all`) asks for the whole split, so it is not a skip."""
        return self.num_images == 0 and self.num_samples == 0

    @classmethod
    def from_record(cls, record: dict) -> "EvalRequest":
        """The request an earlier evaluation ran (its eval_results.json), to repeat it."""
        saved = record.get("request") or {}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in names})


@dataclass
class EvalResult:
    """What an evaluation returns: figures, the protocol that produced them, and pictures.

    `metrics` maps a declared `Metric` key to {"mean", "stderr"}; `sample_quality` is the
    hubgen.metrics.evaluate_samples report (or None); `details` holds the family's own records that its card
    shows (protocols, sweeps), flattened into the JSON record; `pictures` ({file name: PIL image}) are written
    beside eval_results.json by hubgen.model_folder, never by the evaluation itself; `notes` are extra lines
    that `hubgen eval` prints.
    """

    family: str
    request: EvalRequest
    dataset: str
    split: str
    num_images: int | None
    seed: int
    pixel_mode: str
    metrics: dict = field(default_factory=dict)
    metric_labels: dict = field(default_factory=dict)
    sample_quality: dict | None = None
    details: dict = field(default_factory=dict)
    pictures: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # extra lines `hubgen eval` prints (e.g. one per sampler)

    def add_sample_quality(self, samples, dataset, description: str) -> None:
        """hubgen.metrics.evaluate_samples of `samples` (B, C, H, W) in [0, 1] against the request's split and
        feature network, seeded with the request's seed: the report becomes `sample_quality` (saying what the
        samples are) and its pictures (the nearest-neighbour grid) join `pictures`."""
        from .metrics import evaluate_samples

        quality = evaluate_samples(samples, dataset, seed=self.request.seed, reference_split=self.request.split,
                                   feature_network=self.request.feature_network)  # fmt: skip
        self.pictures.update(quality.pop("pictures", {}))
        quality["samples"] = description
        self.sample_quality = quality

    def add_samples_of(self, pipeline, split_size: int, dataset, description: str, **call) -> None:
        """`add_sample_quality` of the request's `num_samples` images drawn by `pipeline(n, generator=seed,
        output_type="pt", **call)` (0 skips; None, `all`, draws as many as the split holds)."""
        if self.request.num_samples == 0:
            return
        import torch

        n = self.request.num_samples or split_size
        generator = torch.Generator().manual_seed(self.request.seed)
        samples = pipeline(n, generator=generator, output_type="pt", **call).images
        self.add_sample_quality(samples, dataset, description)

    def to_json(self) -> dict:
        record = {**self.details}
        record.update(
            family=self.family,
            request=dataclasses.asdict(self.request),
            dataset=str(self.dataset),  # a name, or a hubgen.data.DataSpec (its name)
            split=self.split,
            num_images=self.num_images,
            seed=self.seed,
            pixel_mode=self.pixel_mode,
            metrics=self.metrics,
            metric_labels=self.metric_labels,
            sample_quality=self.sample_quality,
            pictures=sorted(self.pictures),
        )
        return record


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    pipeline_class: str
    model_class: str
    train: str
    evaluate: str
    eval_request: str
    build_demo: str
    card_template: str
    metrics: tuple[Metric, ...] = ()
    sample_options: tuple[SampleOption, ...] = ()
    pipeline_tag: str = "unconditional-image-generation"
    space: SpaceStyle = SpaceStyle()
    quickstart: str = ""
    smoke_test: str = ""

    def load(self, attribute: str):
        """Import what `attribute` (one of the "module:name" fields) points at."""
        target = getattr(self, attribute)
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def pipeline_class_name(self) -> str:
        return self.pipeline_class.partition(":")[2]

    def metric(self, key: str) -> Metric | None:
        """The declared metric for a result key (the family's own first, then the sample-quality ones)."""
        for spec in (*self.metrics, *SAMPLE_QUALITY_METRICS):
            if spec.matches(key):
                return spec
        return None

    def sample_call(self, num_images: int, values: dict) -> dict:
        """The pipeline's keyword arguments for `num_images` images with the declared sample options set from
        `values`; a value that is missing or None takes the option's declared default (so the CLI, the gallery
        and the demos sample alike), and a default of None or an empty prompt keeps the pipeline's. With a
        prompt the count goes to `num_images_per_prompt` (diffusers' convention), otherwise to `batch_size`."""
        kwargs = {"batch_size": num_images}
        for option in self.sample_options:
            value = values.get(option.name)
            value = option.default if value is None else value
            if value is None or (option.kind == "prompt" and not str(value).strip()):
                continue
            kwargs[option.name] = value
            if option.kind == "prompt":
                kwargs["num_images_per_prompt"] = kwargs.pop("batch_size")
        return kwargs

    def sample_default(self, name: str):
        """The declared default of sample option `name` (the demos start their controls from it)."""
        for option in self.sample_options:
            if option.name == name:
                return option.default
        raise KeyError(f"The {self.name} family declares no sample option {name!r}.")

    def card_template_path(self):
        """The card template as a path (a package resource, or an absolute path)."""
        from importlib import resources
        from pathlib import Path

        package, sep, name = self.card_template.partition(":")
        if not sep:
            return Path(self.card_template)
        return Path(str(resources.files(package).joinpath(name)))


_FAMILIES: dict[str, Family] = {}
_entry_points_loaded = False


def register_family(family: Family, replace: bool = False) -> Family:
    if not isinstance(family, Family):
        raise UserInputError(f"register_family needs a hubgen.registry.Family, got {type(family).__name__}.")
    if family.name in _FAMILIES and not replace and _FAMILIES[family.name] != family:
        raise UserInputError(f"A family named {family.name!r} is already registered.")
    _FAMILIES[family.name] = family
    return family


def entry_point_names() -> list[str]:
    """The names declared in the `hubgen.families` entry-point group (whether or not they load)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            family = obj() if callable(obj) and not isinstance(obj, Family) else obj
            register_family(family)
        except Exception as e:  # a broken plugin must not take the CLI down (the contract test makes it fail)
            warnings.warn(f"hubgen: skipping family plugin {ep.name!r} ({ep.value}): {e}", stacklevel=2)


def list_families() -> list[Family]:
    _load_entry_points()
    return [_FAMILIES[name] for name in sorted(_FAMILIES)]


def get_family(name: str) -> Family:
    _load_entry_points()
    if name not in _FAMILIES:
        raise UserInputError(f"Unknown family {name!r}; available: {', '.join(sorted(_FAMILIES)) or 'none'}.")
    return _FAMILIES[name]


def family_for_pipeline(class_name: str) -> Family:
    """The family whose pipeline class is `class_name` (the `_class_name` of a model_index.json)."""
    for family in list_families():
        if family.pipeline_class_name == class_name:
            return family
    raise UserInputError(
        f"No hubgen family provides the pipeline class {class_name!r}; known: "
        f"{', '.join(f.pipeline_class_name for f in list_families())}."
    )

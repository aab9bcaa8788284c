"""Publish to the Hugging Face Hub: push a saved model folder, verify a published card, make a Space.

    hubgen push out/model me/model-digits            # validate, create the repo, one upload commit
    hubgen verify me/model-digits                    # re-run the card's evaluation, figure by figure
    hubgen space create me/model-digits --out space/ --push

`push` never uploads from a temporary copy: the local folder is the lasting record of what is on the Hub.
It runs in two phases:

1. Offline checks, before any request: the files to upload (everything but checkpoints/, logs/ and
   save leftovers) are safetensors weights, JSON configs, the card, images and text, and no pickle
   (.bin/.pt/.pth/.pkl/.ckpt) or code (.py) file; model_index.json names a registered family and each
   component folder has its config; the card carries the metadata the Hub reads (library_name hubgen, the
   family tag, pipeline_tag, license). A folder that fails is refused before the Hub is contacted.
2. The Hub: HF_HUB_OFFLINE and a missing token stop here with one message. Then whoami (the Hub is
   reachable, the token valid), `ModelCard.validate()` (the Hub's own metadata check; a rejected card stops
   the push, while a validator that cannot be reached does not block it: the local checks passed and
   upload_folder re-validates README.md server-side), `create_repo(exist_ok=True)`, a branch if `revision`
   names a new one, and ONE `upload_folder` commit. Unchanged files are skipped by the client, so pushing the
   same folder again makes no commit.

The card on the Hub must name the repo in its usage snippet, so push re-renders README.md for `repo_id` (as
`hubgen card FOLDER --repo_id REPO_ID` does; cards are generated files, which `hubgen eval` also rewrites) with
`.eval_results/hubgen.yaml`, and writes them into the folder only after the Hub has answered whoami: a Hub
that cannot be reached, a missing or wrong token, or HF_HUB_OFFLINE leave the folder untouched. Any failure
ends in one `PublishError` naming the repo, the endpoint, the cause, the local folder (and whether the card
was refreshed) and the command to retry (the CLI prints it and exits 2). The token is only handed to
huggingface_hub; it is never printed, logged or written to a file.
"""

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from . import model_folder as mf
from .errors import UserInputError
from .hub import REPO_ID_PATTERN, card_data_for, download_model, family_of, render_card

__all__ = [
    "push",
    "verify",
    "create_space",
    "update_space",
    "check_folder",
    "PublishError",
    "VerifyReport",
    "PUSH_IGNORE",
    "PUSH_OPTIONS",
]

# Not part of a published model: training checkpoints (optimizer state), tensorboard logs, save leftovers.
PUSH_IGNORE = mf.NOT_PUBLISHED
# The same suffixes as hubgen.pipeline_utils.PICKLE_SUFFIXES (not imported from there: it pulls in torch).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".dll", ".dylib", ".sh", ".ipynb", ".exe")
ALLOWED_SUFFIXES = (".safetensors", ".json", ".md", ".txt", ".yaml", ".yml", ".png", ".jpg", ".jpeg", ".gif", ".webp")
ALLOWED_NAMES = (".gitattributes", "LICENSE")
# Count-based figures (fractions of N samples; `Metric.count_based`) must be reproduced exactly; floating-point
# estimates (likelihoods, bounds, Frechet distances) within VERIFY_RTOL, which covers summation order and BLAS
# differences between machines. The card rounds to 4 decimals, so both compare the re-run figure rounded the same
# way.
VERIFY_RTOL = 1e-4
# The keyword arguments of `push` that a pipeline's `push_to_hub` / `save_pretrained(push_to_hub=True)` take.
PUSH_OPTIONS = ("repo_id", "private", "revision", "create_pr", "commit_message", "token")


class PublishError(Exception):
    """A push or Space upload that could not complete; the message says what to do next."""


# -- offline checks ---------------------------------------------------------------------------------------------


def _upload_files(folder: Path) -> list[str]:
    """The folder's files that `push` uploads, as repo paths (PUSH_IGNORE and huggingface_hub's defaults applied)."""
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=PUSH_IGNORE + DEFAULT_IGNORE_PATTERNS))


def check_folder(folder: str | os.PathLike) -> tuple[list[str], "object"]:
    """Offline checks of a model folder before upload. Returns (files to upload, family); ValueError otherwise."""
    from .registry import family_for_pipeline

    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"Model folder {folder} does not exist (or is not a folder).")
    files = _upload_files(folder)
    suffix = {f: Path(f).suffix.lower() for f in files}
    pickles = [f for f in files if suffix[f] in PICKLE_SUFFIXES]
    code = [f for f in files if suffix[f] in CODE_SUFFIXES]
    other = [f for f in files if f not in pickles + code and suffix[f] not in ALLOWED_SUFFIXES]
    other = [f for f in other if Path(f).name not in ALLOWED_NAMES]
    if pickles or code or other:
        problems = [f"pickle files {pickles} (convert them to .safetensors)"] if pickles else []
        problems += [f"code files {code} (hubgen models carry no code; loading never runs any)"] if code else []
        problems += [f"files of other types {other}"] if other else []
        raise UserInputError(
            f"{folder} cannot be published: it holds {'; '.join(problems)}. A hubgen model holds "
            f"{', '.join(ALLOWED_SUFFIXES)} files only (checkpoints/ and logs/ are not uploaded). "
            "Nothing was uploaded."
        )
    for name in (f for f in files if f.endswith(".json")):
        try:
            json.loads((folder / name).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserInputError(f"{folder / name} is not valid JSON ({e}); nothing was uploaded.") from e
    if mf.MODEL_INDEX not in files:
        raise UserInputError(f"{folder} is not a hubgen model folder: it has no {mf.MODEL_INDEX}.")
    index = mf.read_model_index(folder)
    family = family_for_pipeline(index.get("_class_name", "?"))
    for name, value in index.items():
        if isinstance(value, list) and value and value[0] is not None:
            if not any(f.startswith(f"{name}/") and f.endswith(".json") for f in files):
                raise UserInputError(f"{folder}: component {name!r} of model_index.json has no config in {name}/.")
    if not any(f.endswith(".safetensors") for f in files):
        raise UserInputError(f"{folder} holds no .safetensors weights.")
    return files, family


def _check_card(text: str, family, folder: Path) -> None:
    """The card metadata the Hub reads for a hubgen model, checked offline (ValueError naming what is missing)."""
    from huggingface_hub import ModelCard

    data = ModelCard(text).data
    problems = []
    if data.library_name != "hubgen":
        problems.append(f"library_name must be 'hubgen' (got {data.library_name!r})")
    if family.name not in (data.tags or []):
        problems.append(f"tags must include the family {family.name!r}")
    if not data.pipeline_tag:
        problems.append("pipeline_tag is missing")
    if not data.license:
        problems.append("license is missing")
    if problems:
        raise UserInputError(
            f"The card {folder / 'README.md'} lacks metadata the Hub needs: {'; '.join(problems)}. "
            f"`hubgen card {folder}` re-renders it."
        )


def _card_plan(folder: Path, repo_id: str) -> dict[str, str]:
    """Derived files to (re)write before the upload, {relative path: text}; empty when they are current.

    The card is re-rendered for `repo_id` (as `hubgen card FOLDER --repo_id REPO_ID` does), so its usage
    snippet and model-index name the repo; `.eval_results/hubgen.yaml` follows the card's figures.
    """
    from .hub import eval_results_yaml

    card = render_card(folder, repo_id=repo_id, save=False)
    readme = folder / mf.CARD
    plan = {}
    if not readme.is_file() or readme.read_text(encoding="utf-8") != str(card):
        plan[mf.CARD] = str(card)
    figures = eval_results_yaml(card.data)
    existing = folder / mf.EVAL_YAML
    if figures and (not existing.is_file() or existing.read_text(encoding="utf-8") != figures):
        plan[mf.EVAL_YAML] = figures
    return plan


# -- the Hub phase ----------------------------------------------------------------------------------------------


def _retry_command(folder: Path, repo_id: str, private, revision, create_pr, commit_message) -> str:
    argv = ["hubgen", "push", str(folder), repo_id]  # the folder as given: the card names it
    argv += ["--private"] if private else []
    argv += ["--revision", revision] if revision else []
    argv += ["--create-pr"] if create_pr else []
    argv += ["--commit-message", commit_message] if commit_message else []
    return shlex.join(argv)


def _cause(error: BaseException, token: str | None) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > 400:
        text = text[:400] + " ..."
    text = f"{type(error).__name__}: {text}"
    return text.replace(token, "***") if token else text


def _headline(error: BaseException) -> str:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, OfflineModeIsEnabled):
        return "offline mode is on (HF_HUB_OFFLINE)"
    if isinstance(error, HfHubHTTPError) and status == 401:
        return "the Hub rejected the token (401)"
    if isinstance(error, HfHubHTTPError) and status == 403:
        return "the token may not write to this repo (403)"
    if isinstance(error, HfHubHTTPError):
        return f"the Hub answered {status}"
    return "cannot reach the Hub"


def _hub_errors() -> tuple:
    import importlib

    from huggingface_hub.errors import HfHubHTTPError

    # OSError covers huggingface_hub's offline and connection errors, RuntimeError its LFS upload failures, and
    # the transport's own errors (a refused connection, a timeout) come from httpx2 (huggingface_hub 2.x) or httpx.
    errors = [HfHubHTTPError, OSError, RuntimeError]
    for transport in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(transport).HTTPError)
        except ImportError:
            pass
    return tuple(errors)


def _fail(headline, *, repo, endpoint, cause, folder, state, retry) -> PublishError:
    lines = [
        f"push failed: {headline}.",
        f"  repo:      {repo}",
        f"  endpoint:  {endpoint}",
        f"  cause:     {cause}",
        f"  folder:    {folder} ({state})",
        f"  retry:     {retry}",
    ]
    return PublishError("\n".join(lines))


def push(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a saved hubgen model folder to the Hub as one commit; return (and print) the repo's URL.

    `revision` pushes to that branch (created from main if it does not exist); `create_pr` opens a pull request
    against main instead of committing to it. ValueError for a folder that may not be published (nothing is
    sent); PublishError when the Hub cannot take it (the message says how to retry).
    """
    from huggingface_hub import HfApi, ModelCard, constants, get_token

    folder = Path(folder)
    if not REPO_ID_PATTERN.match(str(repo_id)):
        raise UserInputError(f"`repo_id` must look like 'user/name' (a namespace and a name), got {repo_id!r}.")
    if create_pr and revision not in (None, "main"):
        raise UserInputError(
            f"`create_pr` opens a pull request against main; it cannot be combined with `revision`={revision!r}."
        )
    files, family = check_folder(folder)
    plan = _card_plan(folder, repo_id)
    card_text = plan.get(mf.CARD) or (folder / mf.CARD).read_text(encoding="utf-8")  # what will be pushed
    _check_card(card_text, family, folder)

    endpoint = constants.ENDPOINT
    retry = _retry_command(folder, repo_id, private, revision, create_pr, commit_message)
    where = dict(repo=f"{repo_id} (model)", endpoint=endpoint, folder=folder.resolve(), retry=retry)
    untouched = "untouched"
    if constants.is_offline_mode():
        cause = "HF_HUB_OFFLINE is set, so huggingface_hub makes no request"
        raise _fail("offline mode is on", cause=cause + "; unset it to push", state=untouched, **where)
    token = token or get_token()
    if not token:
        cause = "no token: set HF_TOKEN to a write token, or log in once with `hf auth login`"
        raise _fail("no Hub token", cause=cause, state=untouched, **where)

    api = HfApi(endpoint=endpoint, token=token)
    state = untouched
    try:
        user = api.whoami()["name"]
        try:
            ModelCard(card_text).validate(repo_type="model")
        except ValueError as e:  # 400: the Hub's validator rejected the metadata
            raise UserInputError(f"The Hub rejected the card of {folder}: {' '.join(str(e).split())}") from e
        except _hub_errors() as e:  # a mirror without the validator: the local checks stand, upload re-validates
            print(f"note: the Hub's card validator could not be used ({_cause(e, token)}); the card passed "
                  "hubgen's checks and upload_folder validates it again.")  # fmt: skip
        for relative, text in plan.items():
            mf.write_text(folder / relative, text)
        if plan:
            state = f"kept; refreshed {', '.join(sorted(plan))} for {repo_id}, nothing else changed"
            print(f"refreshed {', '.join(sorted(plan))} in {folder} for {repo_id}")
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        before = api.repo_info(repo_id, revision=revision or "main")
        if private and not before.private:
            print(f"note: {repo_id} already exists and is public; --private does not change an existing repo.")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            create_pr=create_pr,
            commit_message=commit_message or f"Upload {family.name} model with hubgen",
            allow_patterns=[_escape(f) for f in files + sorted(set(plan) - set(files))],
        )
    except _hub_errors() as e:
        raise _fail(_headline(e), cause=_cause(e, token), state=state, **where) from None
    url = f"{endpoint}/{repo_id}" + (f"/tree/{revision}" if revision and revision != "main" else "")
    if commit.oid == before.sha:
        print(f"{repo_id} is up to date (commit {commit.oid[:12]}): no new commit. {url}")
    elif commit.pr_url:
        print(f"opened {commit.pr_url} ({user}: {len(files)} files, commit {commit.oid[:12]})")
        return commit.pr_url
    else:
        print(f"pushed {folder} to {url} ({user}: commit {commit.oid[:12]})")
    return url


def _escape(path: str) -> str:
    """A literal path as an fnmatch pattern (allow_patterns), so exactly the checked files are uploaded."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in path)


# -- verify -----------------------------------------------------------------------------------------------------


@dataclass
class Check:
    metric_type: str
    name: str
    card: float
    rerun: float | None
    tolerance: str
    ok: bool


@dataclass
class VerifyReport:
    """Each card figure beside its re-run value. `ok` when every figure is reproduced within its tolerance."""

    model: str
    family: str
    arguments: dict
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def format(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.arguments.items())
        lines = [f"verify {self.model} ({self.family}): re-ran evaluate({args})"]
        lines.append(f"  {'figure':58s} {'card':>12s} {'re-run':>12s}  {'tolerance':14s} result")
        for c in self.checks:
            rerun = "missing" if c.rerun is None else f"{c.rerun:.4f}"
            label = f"{c.metric_type}: {c.name}"
            label = label if len(label) <= 58 else label[:55] + "..."
            lines.append(f"  {label:58s} {c.card:12.4f} {rerun:>12s}  {c.tolerance:14s} {'pass' if c.ok else 'FAIL'}")
        failed = sum(not c.ok for c in self.checks)
        lines.append(f"{len(self.checks) - failed} passed, {failed} failed")
        return "\n".join(lines)


def _trusted_request(request, folder: Path, dataset: str | None, feature_network: str | None):
    """The evaluation request of a model's records made safe to run. A downloaded record is untrusted input: its
    counts are bounded by the request's own checks (EvalRequest.__post_init__), its dataset must be a named one
    ('digits', 'mnist') or a Hub dataset id, never a local path (a record holding "/" would have the evaluation
    walk the filesystem), and it may not name a feature network folder: a local path is used only when the user
    passes it (`dataset`, `feature_network`)."""
    import dataclasses

    from .data import NAMED_DATASETS

    if dataset is None:
        recorded = request.dataset
        if recorded is None:
            record = mf.training_record(folder)
            data = record.get("data")
            recorded = data.get("dataset") if isinstance(data, dict) else record.get("dataset")
        if recorded is not None:
            name = str(recorded)
            hub_id = REPO_ID_PATTERN.match(name) and not name.startswith(".") and not Path(name).exists()
            if name not in NAMED_DATASETS and not hub_id:
                raise UserInputError(f"The model's records name the dataset {name!r}, which is neither a named dataset "
                                     f"({', '.join(NAMED_DATASETS)}) nor a Hub dataset id: a recorded local path is "
                                     "not followed. Pass `--dataset PATH` to evaluate on your copy.")  # fmt: skip
            dataset = name
    if feature_network is None and request.feature_network is not None:
        raise UserInputError(f"The model's evaluation used the feature network {request.feature_network!r}, a folder "
                             "path that is not followed from a record: pass `--feature_network PATH` with your copy "
                             "of it.")  # fmt: skip
    return dataclasses.replace(request, dataset=dataset, feature_network=feature_network or request.feature_network)


def verify(repo_id_or_folder: str | os.PathLike, revision: str | None = None, token: str | None = None,
           dataset: str | None = None, feature_network: str | None = None) -> VerifyReport:  # fmt: skip
    """Re-run a published model's evaluation with the N, k, split and seeds in its eval_results.json and compare
    every figure of its card (model-index) with the new value: count-based figures exactly, floating-point
    estimates within a relative VERIFY_RTOL. A repo id is downloaded (safetensors/JSON/Markdown only). The
    records are untrusted (`_trusted_request`): `dataset` and `feature_network` are where the user's own copies
    are, when the records name local paths."""
    from huggingface_hub import ModelCard

    source = Path(repo_id_or_folder)
    folder = source if source.is_dir() else download_model(str(repo_id_or_folder), revision=revision, token=token)
    for name in (mf.CARD, mf.EVAL_RESULTS):
        if not (folder / name).is_file():
            raise UserInputError(f"{repo_id_or_folder} has no {name}: there is nothing to verify (run `hubgen eval`).")
    card = ModelCard.load(folder / mf.CARD)
    figures = card.data.eval_results or []
    if not figures:
        raise UserInputError(f"The card of {repo_id_or_folder} states no figures (no model-index results).")
    family = family_of(folder)
    # The request the card's evaluation ran (eval_results.json records it), repeated field for field. The
    # evaluation only reads the folder: its pictures come back in the result and are not written.
    request = _trusted_request(family.load("eval_request").from_record(mf.eval_results(folder)), folder, dataset,
                               feature_network)  # fmt: skip
    rerun = family.load("evaluate")(folder, request).to_json()
    args = {k: v for k, v in rerun["request"].items() if v is not None}
    fresh = card_data_for(folder, family, mf.training_record(folder), rerun).eval_results or []
    by_key = {(r.metric_type, r.metric_name): r.metric_value for r in fresh}
    report = VerifyReport(str(repo_id_or_folder), family.name, args)
    for figure in figures:
        value = by_key.get((figure.metric_type, figure.metric_name))
        claimed = float(figure.metric_value)
        spec = family.metric(figure.metric_config or "")
        if spec is not None and spec.count_based:
            tolerance, ok = "exact", value is not None and round(value, 4) == claimed
        else:
            tolerance = f"rel {VERIFY_RTOL:.0e}"
            ok = value is not None and abs(round(value, 4) - claimed) <= VERIFY_RTOL * abs(claimed) + 1e-12
        report.checks.append(Check(figure.metric_type, figure.metric_name, claimed, value, tolerance, ok))
    return report


# -- Spaces -----------------------------------------------------------------------------------------------------

SPACE_APP = '''\
"""Gradio Space for the hubgen model {repo_id} ({family}), written by `hubgen space create`.

The model is HUBGEN_MODEL if set (a Hub repo id or a local folder, so the app also runs offline), else
{repo_id}. The UI is the demo builder of the model's family, found through hubgen's registry from the
model's model_index.json; this file only picks the model.
"""

import os

from hubgen.demo_utils import launch_options, limit_uploads, space_demo

limit_uploads()  # image uploads are bounded before Gradio decodes them
model = os.environ.get("HUBGEN_MODEL", "{repo_id}")
demo = space_demo(model)  # a model that cannot be loaded: a page that says so, not a crash

if __name__ == "__main__":
    demo.launch(**launch_options())
'''

SPACE_FILES = ("app.py", "requirements.txt", "README.md", "hubgen-*.whl")


def check_space_folder(out: Path, overwrite: bool) -> None:
    """Refuse a Space folder that would lose files: never one holding a model or a training run (its card is a
    README.md too); a non-empty one only with `overwrite`, and then only the Space's own files are replaced."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"`--out` {out} exists and is not a folder.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if mf.is_model_folder(out) or (out / mf.TRAINING_RECORD).is_file() or (out / mf.RUN_MARKER).is_file() \
            or (out / mf.CHECKPOINTS).is_dir():  # fmt: skip
        raise UserInputError(f"`--out` {out} holds a hubgen model or training run; writing a Space there would replace "
                             "its model card. Choose an empty or new folder.")  # fmt: skip
    if not overwrite:
        raise UserInputError(f"`--out` {out} is not empty; pass `--overwrite` to replace its {', '.join(SPACE_FILES)} "
                             "(nothing else is touched), or choose an empty or new folder.")  # fmt: skip


def create_space(
    repo_id: str,
    out_dir: str | os.PathLike,
    push: bool = False,
    space_id: str | None = None,
    token: str | None = None,
    overwrite: bool = False,
    hubgen_requirement: str | None = None,
) -> Path:
    """Write a Gradio Space for the model `repo_id` into `out_dir` (app.py, requirements.txt, the hubgen wheel,
    README.md with the Spaces front matter: sdk gradio at the installed version, app_file, `models: [repo_id]`),
    and with `push` upload it as the Space repo `space_id` (default: the same id as the model, in the Spaces
    namespace). requirements.txt installs hubgen from the wheel, by its URL in the Space repo, or from
    `hubgen_requirement` (then no wheel is written); its other lines are hubgen's own pins
    (hubgen.space_requirements). The model's family and license are read from the Hub (or the cache). A folder
    that holds a model is refused; a non-empty one needs `overwrite` (`check_space_folder`)."""
    import gradio
    from huggingface_hub import ModelCard, SpaceCard, SpaceCardData, constants, hf_hub_download

    if not REPO_ID_PATTERN.match(str(repo_id)):
        raise UserInputError(f"`repo_id` must look like 'user/name', got {repo_id!r}.")
    space_id = space_id or repo_id
    if not REPO_ID_PATTERN.match(str(space_id)):
        raise UserInputError(f"`space_id` must look like 'user/name', got {space_id!r}.")
    out = Path(out_dir)
    check_space_folder(out, overwrite)
    family = family_of(repo_id, token=token)
    try:
        license_id = ModelCard.load(hf_hub_download(repo_id, "README.md", token=token)).data.license
    except OSError:
        license_id = None
    out.mkdir(parents=True, exist_ok=True)
    data = SpaceCardData(
        title=f"hubgen {family.name}: {repo_id.split('/')[1]}"[:60],
        emoji=family.space.emoji,
        colorFrom=family.space.color_from,
        colorTo=family.space.color_to,
        sdk="gradio",
        sdk_version=gradio.__version__,
        app_file="app.py",
        pinned=False,
        license=license_id or "apache-2.0",
        short_description=f"hubgen {family.name} demo of {repo_id}"[:60],
        models=[repo_id],
        tags=["hubgen", family.name],
    )
    body = (
        f"\n# hubgen {family.name}: {repo_id}\n\n"
        f"A Gradio demo of the hubgen model [{repo_id}]({constants.ENDPOINT}/{repo_id}), built by the "
        f"{family.name} family's `build_demo`. {family.description}.\n\n"
        "The app loads the model named by the environment variable `HUBGEN_MODEL` (a Hub repo id or a local "
        f"folder), default `{repo_id}`. Offline: `HUBGEN_MODEL=./my-model python app.py`.\n\n"
        "hubgen is not on PyPI: `requirements.txt` installs it from the wheel in this Space (or from the requirement "
        "given to `hubgen space create --hubgen_requirement`), followed by hubgen's own dependency pins.\n"
    )
    mf.write_text(out / "README.md", str(SpaceCard(f"---\n{data.to_yaml()}\n---\n{body}")))
    mf.write_text(out / "app.py", SPACE_APP.format(repo_id=repo_id, family=family.name))
    written = write_space_requirements(out, space_id, hubgen_requirement)
    print(f"wrote {', '.join(str(out / name) for name in ['app.py', *written, 'README.md'])} (model {repo_id})")
    if push:
        _push_space(out, space_id, repo_id, token)
    return out


def write_space_requirements(out: Path, space_id: str, hubgen_requirement: str | None = None) -> list[str]:
    """requirements.txt (and, without `hubgen_requirement`, the hubgen wheel it names by its URL in the Space
    `space_id`) in the Space folder `out`; returns the names written."""
    from .space_requirements import hubgen_wheel, space_requirements, wheel_requirement

    if hubgen_requirement is not None and not hubgen_requirement.strip().lower().startswith("hubgen"):
        raise UserInputError(f"`--hubgen_requirement` must be a pip requirement for hubgen (e.g. 'hubgen @ "
                             f"git+https://github.com/OWNER/hubgen'), got {hubgen_requirement!r}.")  # fmt: skip
    if hubgen_requirement is not None:
        for old in out.glob("hubgen-*.whl"):
            old.unlink()
        mf.write_text(out / "requirements.txt", space_requirements(hubgen_requirement.strip()))
        return ["requirements.txt"]
    wheel = hubgen_wheel(out)
    mf.write_text(out / "requirements.txt", space_requirements(wheel_requirement(space_id, wheel.name)))
    return ["requirements.txt", wheel.name]


def update_space(folder: str | os.PathLike, space_id: str, hubgen_requirement: str | None = None) -> Path:
    """Refresh an existing Space folder (the repository's spaces/*) before it is pushed as `space_id`: its
    requirements.txt and hubgen wheel (`write_space_requirements`) and its README's `sdk_version` (the installed
    gradio's). Nothing else changes."""
    import gradio
    from huggingface_hub import SpaceCard

    folder = Path(folder)
    if not REPO_ID_PATTERN.match(str(space_id)):
        raise UserInputError(f"`space_id` must look like 'user/name', got {space_id!r}.")
    if not (folder / "app.py").is_file() or not (folder / "README.md").is_file():
        raise UserInputError(f"{folder} is not a Space folder (it needs app.py and README.md).")
    card = SpaceCard.load(folder / "README.md")
    card.data.sdk_version = gradio.__version__
    mf.write_text(folder / "README.md", str(card))
    written = write_space_requirements(folder, space_id, hubgen_requirement)
    print(f"updated {folder}: {', '.join(written)}, README.md sdk_version {gradio.__version__}")
    return folder


def _push_space(out: Path, space_id: str, repo_id: str, token: str | None) -> str:
    from huggingface_hub import HfApi, constants, get_token

    endpoint = constants.ENDPOINT
    retry = shlex.join(
        ["hubgen", "space", "create", repo_id, "--out", str(out.resolve()), "--push", "--space_id", space_id]
    )
    where = dict(repo=f"{space_id} (space)", endpoint=endpoint, folder=out.resolve(), retry=retry, state="kept")
    if constants.is_offline_mode():
        raise _fail("offline mode is on", cause="HF_HUB_OFFLINE is set; unset it to push", **where)
    token = token or get_token()
    if not token:
        raise _fail("no Hub token", cause="no token: set HF_TOKEN or run `hf auth login`", **where)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(space_id, repo_type="space", space_sdk="gradio", exist_ok=True)
        commit = api.upload_folder(
            repo_id=space_id,
            repo_type="space",
            folder_path=out,
            allow_patterns=["app.py", "requirements.txt", "README.md", "hubgen-*.whl"],
            commit_message=f"Space for {repo_id}, written by hubgen",
        )
    except _hub_errors() as e:
        raise _fail(_headline(e), cause=_cause(e, token), **where) from None
    url = f"{endpoint}/spaces/{space_id}"
    print(f"pushed the Space to {url} (commit {commit.oid[:12]})")
    return url

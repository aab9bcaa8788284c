"""`diffusers.DiffusionPipeline.from_pretrained(repo_id)` for hubgen models, with no remote code.

How diffusers 0.42 loads a folder or repo (diffusers/pipelines/pipeline_utils.py and pipeline_loading_utils.py):

- `model_index.json`'s `_class_name`, a string, is looked up as an attribute of the `diffusers` package
  (`_get_pipeline_class`); a ["module", "Class"] list is taken for a custom pipeline *file* of the repo, i.e.
  remote code (`trust_remote_code`). There is no registry or entry point for pipeline classes of other packages.
- A component entry ["library", "Class"] whose library is not diffusers or transformers is imported by module
  path (`importlib.import_module(library)`), so an installed package's classes load as they are: hubgen writes
  ["hubgen.vae.modeling_vae", "VAEModel"] and diffusers imports it. No code comes from the repo.
- Before a repo id is downloaded, every component library must be a key of `LOADABLE_CLASSES` (diffusers' table of
  loadable libraries and their base classes) or ship a `<component>/<library>.py` file (remote code again).

So the supported, code-free way is what this module does when a hubgen pipeline class is defined (the
`SafetensorsLoadingMixin.__init_subclass__` hook), i.e. once its module is imported: the class becomes the
attribute of `diffusers` that `_class_name` names, and the modules of its component classes become entries of
`LOADABLE_CLASSES` (base class ModelMixin, loaded with `from_pretrained`). A class whose name diffusers already
has is left alone: hubgen's DDPMPipeline folders name diffusers' own DDPMPipeline and load with stock diffusers,
without hubgen, as diffusers' class. The families whose models need hubgen for this are those whose pipeline
class or a component class is hubgen's (`needs_hubgen`, which the card states).

    import hubgen.vae.pipeline_vae            # the family's pipeline module (hubgen.load_pipeline needs nothing)
    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("user/vae-digits")   # a hubgen VAEPipeline
"""

import functools
import inspect
import typing
from importlib.util import find_spec
from pathlib import Path

__all__ = ["register_with_diffusers", "needs_hubgen", "STOCK_LIBRARIES"]

STOCK_LIBRARIES = ("diffusers", "transformers")


def register_with_diffusers(pipeline_class) -> bool:
    """Make `pipeline_class` what diffusers resolves its name to, and its component classes' modules loadable
    libraries. Returns False (and changes nothing) for a name diffusers already defines or that an earlier class
    took (a subclass of the same name, e.g. in a test, never replaces a family's pipeline)."""
    import diffusers
    from diffusers.pipelines import pipeline_loading_utils as loading

    name = pipeline_class.__name__
    if _diffusers_defines(name) or name in vars(diffusers):  # diffusers' own, or the first hubgen class of that name
        return False
    setattr(diffusers, name, pipeline_class)
    for hint in _component_classes(pipeline_class):
        if hint.__module__.split(".")[0] not in (*STOCK_LIBRARIES, "builtins"):
            loading.LOADABLE_CLASSES.setdefault(hint.__module__, {"ModelMixin": ["save_pretrained", "from_pretrained"]})
    return True


def _component_classes(pipeline_class) -> list[type]:
    """The classes the pipeline's `__init__` annotates its arguments with (string annotations resolved)."""
    try:
        hints = typing.get_type_hints(pipeline_class.__init__)
    except Exception:  # noqa: BLE001 -- an unresolvable annotation: fall back to the plain ones
        hints = {p.name: p.annotation for p in inspect.signature(pipeline_class.__init__).parameters.values()}
    return [hint for name, hint in hints.items() if name != "return" and isinstance(hint, type)]


@functools.cache
def _diffusers_import_table() -> str:
    spec = find_spec("diffusers")
    return "" if spec is None or spec.origin is None else Path(spec.origin).read_text(encoding="utf-8")


def _diffusers_defines(name: str) -> bool:
    """Whether the installed diffusers itself exports `name` (read from its package's import table, without
    importing torch, so that `hubgen push` stays light)."""
    return f'"{name}"' in _diffusers_import_table()


def needs_hubgen(model_index: dict) -> bool:
    """Whether loading a folder with this model_index.json in diffusers needs hubgen installed: its pipeline class is
    not one of diffusers' own, or a component's library is neither diffusers nor transformers."""
    libraries = [v[0] for k, v in model_index.items() if isinstance(v, list) and v and v[0] is not None]
    return not _diffusers_defines(str(model_index.get("_class_name"))) or any(
        library not in STOCK_LIBRARIES for library in libraries
    )

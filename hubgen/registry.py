"""Families are plugins: one record each, found by name.

A `Family` names, as "module:attribute" strings, everything the core needs: the model and pipeline
classes, the training entry point `main(argv) -> int`, the evaluation function
`evaluate(folder, **options) -> dict`, the card template and the demo builder `build_demo(path) -> Blocks`.
Strings keep `hubgen --help` fast: nothing heavy is imported until a family is used.

Built-in families are listed below. A third-party package adds one through the entry-point group
`hubgen.families`, pointing at a `Family` (or a function returning one):

    [project.entry-points."hubgen.families"]
    mine = "my_package.hubgen_plugin:FAMILY"
"""

import importlib
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points

__all__ = ["Family", "register_family", "get_family", "list_families", "family_for_pipeline"]

ENTRY_POINT_GROUP = "hubgen.families"


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    model_class: str
    pipeline_class: str
    train: str
    evaluate: str
    build_demo: str
    card_template: str  # a file name in model_cards/ (hubgen.model_cards), or an absolute path

    def load(self, attribute: str):
        """Import what `attribute` (one of the "module:name" fields) points at."""
        target = getattr(self, attribute)
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def pipeline_class_name(self) -> str:
        return self.pipeline_class.partition(":")[2]


_FAMILIES: dict[str, Family] = {}
_entry_points_loaded = False


def register_family(family: Family, replace: bool = False) -> Family:
    if not isinstance(family, Family):
        raise ValueError(f"register_family needs a hubgen.registry.Family, got {type(family).__name__}.")
    if family.name in _FAMILIES and not replace and _FAMILIES[family.name] != family:
        raise ValueError(f"A family named {family.name!r} is already registered.")
    _FAMILIES[family.name] = family
    return family


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
        except Exception as e:  # a broken plugin must not take the CLI down
            warnings.warn(f"hubgen: skipping family plugin {ep.name!r} ({ep.value}): {e}", stacklevel=2)


def list_families() -> list[Family]:
    _load_entry_points()
    return [_FAMILIES[name] for name in sorted(_FAMILIES)]


def get_family(name: str) -> Family:
    _load_entry_points()
    if name not in _FAMILIES:
        raise ValueError(f"Unknown family {name!r}; available: {', '.join(sorted(_FAMILIES)) or 'none'}.")
    return _FAMILIES[name]


def family_for_pipeline(class_name: str) -> Family:
    """The family whose pipeline class is `class_name` (the `_class_name` of a model_index.json)."""
    for family in list_families():
        if family.pipeline_class_name == class_name:
            return family
    raise ValueError(
        f"No hubgen family provides the pipeline class {class_name!r}; known: "
        f"{', '.join(f.pipeline_class_name for f in list_families())}."
    )


register_family(
    Family(
        name="vae",
        description="Variational autoencoder: ELBO, reparameterization, IWAE likelihood (Kingma & Welling 2013)",
        model_class="hubgen.vae.modeling_vae:VAEModel",
        pipeline_class="hubgen.vae.pipeline_vae:VAEPipeline",
        train="hubgen.vae.train_vae:main",
        evaluate="hubgen.vae.train_vae:evaluate",
        build_demo="hubgen.vae.demo:build_demo",
        card_template="vae.md",
    )
)

register_family(
    Family(
        name="gan",
        description="DCGAN with the non-saturating loss; sample quality, mode coverage, memorization (Goodfellow 2014)",
        model_class="hubgen.gan.modeling_gan:Generator",
        pipeline_class="hubgen.gan.pipeline_gan:GANPipeline",
        train="hubgen.gan.train_gan:main",
        evaluate="hubgen.gan.train_gan:evaluate",
        build_demo="hubgen.gan.demo:build_demo",
        card_template="gan.md",
    )
)

register_family(
    Family(
        name="flow",
        description="Multi-scale Glow/RealNVP flow: exact likelihood, dequantization (Kingma & Dhariwal 2018)",
        model_class="hubgen.flow.modeling_flow:FlowModel",
        pipeline_class="hubgen.flow.pipeline_flow:FlowPipeline",
        train="hubgen.flow.train_flow:main",
        evaluate="hubgen.flow.train_flow:evaluate",
        build_demo="hubgen.flow.demo:build_demo",
        card_template="flow.md",
    )
)

register_family(
    Family(
        name="ddpm",
        description="DDPM on diffusers' UNet2DModel and schedulers: closed forms, variational bound (Ho et al. 2020)",
        model_class="diffusers:UNet2DModel",
        pipeline_class="hubgen.diffusion.pipeline_ddpm:DDPMPipeline",
        train="hubgen.diffusion.train_ddpm:main",
        evaluate="hubgen.diffusion.train_ddpm:evaluate",
        build_demo="hubgen.diffusion.demo:build_demo",
        card_template="ddpm.md",
    )
)

register_family(
    Family(
        name="text2img",
        description="Text-to-image diffusion: cross-attention UNet, CLIP text encoder, classifier-free guidance "
        "(Ho & Salimans 2022)",
        model_class="diffusers:UNet2DConditionModel",
        pipeline_class="hubgen.text2img.pipeline_text2img:Text2ImagePipeline",
        train="hubgen.text2img.train_text2img:main",
        evaluate="hubgen.text2img.train_text2img:evaluate",
        build_demo="hubgen.text2img.demo:build_demo",
        card_template="text2img.md",
    )
)

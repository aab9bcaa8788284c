"""The GAN family's record in the family contract (hubgen.registry); the entry point `gan` names FAMILY.

A GAN has no likelihood: its figures are the sample-quality ones every family shares."""

from ..registry import Family, SampleOption, SpaceStyle

FAMILY = Family(
    name="gan",
    description="DCGAN with the non-saturating loss; sample quality, mode coverage, memorization (Goodfellow 2014)",
    pipeline_class="hubgen.gan.pipeline_gan:GANPipeline",
    model_class="hubgen.gan.modeling_gan:Generator",
    train="hubgen.gan.train_gan:main",
    evaluate="hubgen.gan.evaluation:evaluate",
    eval_request="hubgen.gan.evaluation:GANEvalRequest",
    build_demo="hubgen.gan.demo:build_demo",
    card_template="hubgen.gan:card.md",
    sample_options=(
        SampleOption("truncation", "float", None, "truncate z to [-t, t] (none: the full prior)", minimum=0.0,
                     maximum=3.0),  # fmt: skip
    ),
    space=SpaceStyle("green", "blue"),
)

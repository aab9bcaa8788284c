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
        SampleOption(
            "truncation", "float", None, "truncate z to [-t, t] (none: the full prior)", minimum=0.0, maximum=3.0
        ),  # fmt: skip
    ),
    space=SpaceStyle("green", "blue"),
    # the paper's rates on the 8x8 digits: the MNIST recipe (the default) collapsed there in 60 s (FD-digits 405.9,
    # recall 0, against 17.9; BENCHMARKS.md "GAN on MNIST")
    quickstart=(
        "--recipe dcgan --num_epochs 100000 --checkpointing_steps 100000 --sample_steps 100000 --latent_dim 32 "
        "--base_channels 32 --train_batch_size 64 --max_train_time 60 --eval_num_samples 1000"
    ),
    # the paper's rates for the 4-step smoke model: at the MNIST recipe's it drew the same image for every seed, and
    # the gallery's load test then met a gradio race (identical output images share one cache file, which gradio
    # rewrites in place while another request downloads it)
    smoke_test=(
        "--recipe dcgan --max_train_steps 4 --train_batch_size 32 --latent_dim 8 --base_channels 4 "
        "--eval_num_samples 40"
    ),
)

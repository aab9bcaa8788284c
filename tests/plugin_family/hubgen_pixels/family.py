"""The plugin's record in the hubgen family contract."""

from hubgen.registry import Family, Metric, SampleOption, SpaceStyle

FAMILY = Family(
    name="pixels",
    description="Independent Bernoulli pixels: the simplest exact likelihood (a test plugin)",
    pipeline_class="hubgen_pixels.pipeline:PixelPipeline",
    model_class="hubgen_pixels.modeling:PixelModel",
    train="hubgen_pixels.train:main",
    evaluate="hubgen_pixels.evaluation:evaluate",
    eval_request="hubgen_pixels.evaluation:PixelEvalRequest",
    build_demo="hubgen_pixels.demo:build_demo",
    card_template="hubgen_pixels:card.md",
    metrics=(
        Metric("nll_nats", "exact NLL (nats, independent pixels)", "nll", "nats/image", "exact"),
        Metric(
            "bits_per_dim", "exact bits/dim (independent pixels)", "bits_per_dim", "bits/dim", "exact", headline=True
        ),  # fmt: skip
    ),
    sample_options=(SampleOption("temperature", "float", 1.0, "logits divided by T", minimum=0.1, maximum=5.0),),
    space=SpaceStyle("gray", "green", "🧮"),
    quickstart="--max_train_steps 50",
    smoke_test="--max_train_steps 3 --train_batch_size 32 --eval_num_images 20 --eval_num_samples 0",
)

"""The mixture family's record in the family contract (hubgen.registry); the entry point `mixture` names FAMILY."""

from ..registry import Family, Metric, SampleOption, SpaceStyle

FAMILY = Family(
    name="mixture",
    description="Mixtures of Bernoullis (binarized) or diagonal Gaussians (dequantized) fitted by EM: the shallow "
    "latent-variable model, p(z | x) as a clustering",
    pipeline_class="hubgen.mixture.pipeline_mixture:MixturePipeline",
    model_class="hubgen.mixture.modeling_mixture:MixtureModel",
    train="hubgen.mixture.train_mixture:main",
    evaluate="hubgen.mixture.evaluation:evaluate",
    eval_request="hubgen.mixture.evaluation:MixtureEvalRequest",
    build_demo="hubgen.mixture.demo:build_demo",
    card_template="hubgen.mixture:card.md",
    metrics=(
        # `bound` is the evaluation's: "exact" for a Bernoulli mixture's pmf of binarized images, "dequantization
        # bound, 1 draw" for a Gaussian mixture's density of dequantized ones (nats of the discrete levels)
        Metric("nll_nats", "NLL (nats of the discrete data, {bound})", "nll", "nats/image", "{bound}"),
        Metric(
            "bits_per_dim",
            "bits/dim (of the discrete data, {bound})",
            "bits_per_dim",
            "bits/dim",
            "{bound}",
            headline=True,
        ),  # fmt: skip
        Metric(
            "adjusted_rand_index",
            "adjusted Rand index of argmax_k p(z = k | x) vs the labels",
            "adjusted_rand_index",
            "index (1: the labels' partition, 0: chance)",
            higher_is_better=True,
            column="clustering ARI",
        ),  # fmt: skip
    ),
    sample_options=(
        SampleOption(
            "show",
            "choice",
            "samples",
            "samples: x ~ p(x | z); means: E[x | z] of the drawn component",
            choices=("samples", "means"),
        ),  # fmt: skip
    ),
    space=SpaceStyle("green", "blue", "🧩"),
    quickstart="--num_components 20 --num_epochs 50 --checkpointing_steps 100 --eval_num_samples 200",
    smoke_test=(
        "--max_train_steps 3 --num_components 4 --checkpointing_steps 2 --eval_num_images 16 --eval_num_samples 30"
    ),
)

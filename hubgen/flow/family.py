"""The flow family's record in the family contract (hubgen.registry); the entry point `flow` names FAMILY."""

from ..registry import Family, Metric, SampleOption, SpaceStyle

_BOUND = "{dequantization} dequantization bound, 1 draw"

FAMILY = Family(
    name="flow",
    description="Multi-scale Glow/RealNVP flow: exact likelihood, dequantization (Kingma & Dhariwal 2018)",
    pipeline_class="hubgen.flow.pipeline_flow:FlowPipeline",
    model_class="hubgen.flow.modeling_flow:FlowModel",
    train="hubgen.flow.train_flow:main",
    evaluate="hubgen.flow.evaluation:evaluate",
    eval_request="hubgen.flow.evaluation:FlowEvalRequest",
    build_demo="hubgen.flow.demo:build_demo",
    card_template="hubgen.flow:card.md",
    # The keys keep their first names (saved cards use them); the bound says what the figure is: the density of the
    # dequantized image is exact, but as a likelihood of the discrete image it is a bound (Theis et al. 2016),
    # estimated with one draw of u per image.
    metrics=(
        Metric("exact_nll_nats", "NLL (nats, change of variables on dequantized data)", "nll", "nats/image",
               _BOUND),  # fmt: skip
        Metric("exact_bits_per_dim", "bits/dim (change of variables on dequantized data)", "bits_per_dim",
               "bits/dim", _BOUND, headline=True),  # fmt: skip
    ),
    sample_options=(SampleOption("temperature", "float", 1.0, "z ~ N(0, T^2 I)", minimum=0.0, maximum=2.0),),
    space=SpaceStyle("purple", "pink"),
    quickstart=(
        "--num_epochs 100000 --checkpointing_steps 100000 --sample_steps 100000 --max_train_time 60 "
        "--eval_num_samples 1000"
    ),
    smoke_test=(
        "--max_train_steps 2 --steps_per_level 1 --hidden_channels 8 --init_batch_size 64 "
        "--eval_num_images 8 --eval_num_samples 30"
    ),
)

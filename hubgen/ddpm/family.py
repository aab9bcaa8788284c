"""The DDPM family's record in the family contract (hubgen.registry); the entry point `ddpm` names FAMILY."""

from ..registry import Family, Metric, SampleOption, SpaceStyle

_BOUND = "variational bound ({num_timesteps} timesteps)"

FAMILY = Family(
    name="ddpm",
    description="DDPM on diffusers' UNet2DModel and schedulers: closed forms, variational bound (Ho et al. 2020)",
    pipeline_class="hubgen.ddpm.pipeline_ddpm:DDPMPipeline",
    model_class="diffusers:UNet2DModel",
    train="hubgen.ddpm.train_ddpm:main",
    evaluate="hubgen.ddpm.evaluation:evaluate",
    eval_request="hubgen.ddpm.evaluation:DDPMEvalRequest",
    build_demo="hubgen.ddpm.demo:build_demo",
    card_template="hubgen.ddpm:card.md",
    metrics=(
        Metric(
            "vlb_nats", "variational bound on the NLL (nats, {num_timesteps} timesteps)", "nll", "nats/image", _BOUND
        ),  # fmt: skip
        Metric(
            "vlb_bits_per_dim",
            "variational bound bits/dim ({num_timesteps} timesteps)",
            "bits_per_dim",
            "bits/dim",
            _BOUND,
            headline=True,
        ),  # fmt: skip
    ),
    sample_options=(
        SampleOption(
            "sampler",
            "choice",
            "dpmsolver++",
            "a sampler of the shared table: ddpm is the paper's ancestral "
            "sampler over every training timestep, ddim and dpmsolver++ take fewer steps",
            choices=("ddpm", "ddim", "dpmsolver++"),
        ),  # fmt: skip
        SampleOption(
            "num_inference_steps",
            "int",
            None,
            "denoising steps (default: the sampler's: 20 for dpmsolver++, 50 for ddim, every timestep for ddpm)",
            minimum=1,
            maximum=1000,
        ),  # fmt: skip
    ),
    space=SpaceStyle("yellow", "red"),
    quickstart=(
        "--num_epochs 100000 --checkpointing_steps 100000 --sample_steps 100000 --max_train_time 90 "
        "--eval_num_images 100 --eval_num_samples 200"
    ),
    smoke_test=(
        "--max_train_steps 2 --block_out_channels 8 16 --attention none --norm_num_groups 4 "
        "--num_train_timesteps 50 --train_batch_size 16 --eval_num_images 2 --eval_num_samples 20 "
        "--eval_samplers dpmsolver++:5"
    ),
)

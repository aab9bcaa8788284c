"""The text-to-image family's record in the family contract (hubgen.registry); the entry point `text2img`
names FAMILY. Its figures are prompt accuracies, one key per template set and guidance scale
(`prompt_accuracy_<set>_w<w>`), each labelled by the evaluation; the headline is the training templates at
guidance 3."""

from ..diffusion.samplers import SAMPLERS
from ..registry import Family, Metric, SampleOption

FAMILY = Family(
    name="text2img",
    description="Text-to-image diffusion: cross-attention UNet, CLIP text encoder, classifier-free guidance "
    "(Ho & Salimans 2022)",
    pipeline_class="hubgen.text2img.pipeline_text2img:Text2ImagePipeline",
    model_class="diffusers:UNet2DConditionModel",
    train="hubgen.text2img.train_text2img:main",
    evaluate="hubgen.text2img.evaluation:evaluate",
    eval_request="hubgen.text2img.evaluation:Text2ImageEvalRequest",
    build_demo="hubgen.text2img.demo:build_demo",
    card_template="hubgen.text2img:card.md",
    metrics=(
        Metric(
            "prompt_accuracy_train_w3",
            "{label}",
            "accuracy",
            "fraction",
            higher_is_better=True,
            headline=True,
            column="prompt accuracy (training templates, guidance 3)",
            count_based=True,
        ),  # fmt: skip
        Metric("prompt_accuracy_*", "{label}", "accuracy", "fraction", higher_is_better=True, count_based=True),
    ),
    sample_options=(
        SampleOption("prompt", "prompt", None, "what to draw, e.g. 'a handwritten seven'", required=True),
        SampleOption("guidance_scale", "float", 3.0, "classifier-free guidance scale w", minimum=0.0, maximum=20.0),
        SampleOption("num_inference_steps", "int", 20, "denoising steps", minimum=1, maximum=1000),
        SampleOption("sampler", "choice", None, "a sampler of the shared table (default: the saved DPM-Solver++)",
                     choices=tuple(SAMPLERS)),  # fmt: skip
    ),
    pipeline_tag="text-to-image",
    quickstart=(
        "--num_epochs 100000 --checkpointing_steps 100000 --sample_steps 100000 --max_train_time 90 "
        "--eval_num_samples 200"
    ),
    smoke_test=(
        "--max_train_steps 2 --train_batch_size 32 --block_out_channels 8 16 --attention_heads 2 "
        "--text_hidden_size 16 --text_layers 1 --text_heads 2 --num_inference_steps 2 --eval_num_samples "
        "20"
    ),
)

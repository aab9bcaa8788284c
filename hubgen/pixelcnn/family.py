"""The PixelCNN family's record in the family contract (hubgen.registry); the entry point `pixelcnn` names FAMILY."""

from ..registry import Family, Metric, SampleOption, SpaceStyle

FAMILY = Family(
    name="pixelcnn",
    description="Autoregressive PixelCNN: exact likelihood from masked or shifted convolutions (van den Oord et "
    "al. 2016; Gated PixelCNN; PixelCNN++'s multiscale network)",
    pipeline_class="hubgen.pixelcnn.pipeline_pixelcnn:PixelCNNPipeline",
    model_class="hubgen.pixelcnn.modeling_pixelcnn:PixelCNNModel",
    train="hubgen.pixelcnn.train_pixelcnn:main",
    evaluate="hubgen.pixelcnn.evaluation:evaluate",
    eval_request="hubgen.pixelcnn.evaluation:PixelCNNEvalRequest",
    build_demo="hubgen.pixelcnn.demo:build_demo",
    card_template="hubgen.pixelcnn:card.md",
    metrics=(
        Metric("nll_nats", "exact NLL (nats, product of the conditionals)", "nll", "nats/image", "exact"),
        Metric("bits_per_dim", "exact bits/dim (product of the conditionals)", "bits_per_dim", "bits/dim", "exact",
               headline=True),  # fmt: skip
    ),
    sample_options=(
        SampleOption("temperature", "float", 1.0, "logits divided by T (1: the model's distribution)", minimum=0.05,
                     maximum=10.0),  # fmt: skip
    ),
    space=SpaceStyle("red", "yellow"),
    quickstart=(
        "--num_epochs 100000 --checkpointing_steps 100000 --sample_steps 100000 --max_train_time 60 "
        "--eval_num_samples 200"
    ),
    smoke_test=(
        "--max_train_steps 3 --train_batch_size 32 --hidden_channels 8 --num_layers 2 --checkpointing_steps 2 "
        "--eval_num_images 16 --eval_num_samples 30"
    ),
)

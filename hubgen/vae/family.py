"""The VAE family's record in the family contract (hubgen.registry); the entry point `vae` names FAMILY."""

from ..registry import Family, Metric, SpaceStyle

FAMILY = Family(
    name="vae",
    description="Variational autoencoder, one or more stochastic layers: ELBO, reparameterization, IWAE likelihood "
    "(Kingma & Welling 2013; Burda et al. 2015)",
    pipeline_class="hubgen.vae.pipeline_vae:VAEPipeline",
    model_class="hubgen.vae.modeling_vae:VAEModel",
    train="hubgen.vae.train_vae:main",
    evaluate="hubgen.vae.evaluation:evaluate",
    eval_request="hubgen.vae.evaluation:VAEEvalRequest",
    build_demo="hubgen.vae.demo:build_demo",
    card_template="hubgen.vae:card.md",
    metrics=(
        Metric("iwae_nll_nats", "IWAE NLL (nats, k={k})", "nll", "nats/image", "IWAE-{k}"),
        Metric("neg_elbo_nats", "negative ELBO (nats)", "neg_elbo", "nats/image", "ELBO"),
        Metric("bits_per_dim", "IWAE bits/dim (k={k})", "bits_per_dim", "bits/dim", "IWAE-{k}", headline=True),
    ),
    space=SpaceStyle("blue", "indigo"),
    quickstart=(
        "--latent_dim 2 --hidden_dims 256 128 --num_epochs 1000 --max_train_time 75 --train_batch_size "
        "64 --learning_rate 2e-3 --checkpointing_steps 5000 --sample_steps 5000 --eval_k 1000 "
        "--eval_num_images 1000"
    ),
    smoke_test=(
        "--max_train_steps 6 --train_batch_size 32 --latent_dim 2 --hidden_dims 32 --checkpointing_steps "
        "3 --sample_steps 3 --eval_k 8 --eval_num_images 16 --eval_num_samples 50"
    ),
)

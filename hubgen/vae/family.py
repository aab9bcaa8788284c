"""The VAE family's record in the family contract (hubgen.registry); the entry point `vae` names FAMILY."""

from ..registry import Family, Metric, SpaceStyle

FAMILY = Family(
    name="vae",
    description="Variational autoencoder: ELBO, reparameterization, IWAE likelihood (Kingma & Welling 2013)",
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
)

"""Diffusion shared by the diffusion families (`ddpm` and `text2img`), written out and model-agnostic.

`hubgen.diffusion.scheduling` holds the closed forms (q_sample, q_posterior, eps_to_x0, eps_to_score, the
variational bound, classifier-free guidance) that both families build on; `hubgen.diffusion.samplers` holds the
one sampler table both pipelines use (name -> diffusers scheduler built from the saved config). It is not a family
itself: the `ddpm` family (hubgen.ddpm) and the `text2img` family (hubgen.text2img) each have their own folder.
"""

__all__ = []

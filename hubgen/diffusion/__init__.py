"""The diffusion families: the DDPM algebra (scheduling), DDPMPipeline, its training script and demo.

`hubgen.diffusion.scheduling` holds the closed forms (q_sample, q_posterior, eps_to_x0, eps_to_score, the
variational bound, classifier-free guidance) that every diffusion family here builds on.
"""

from .pipeline_ddpm import DDPMPipeline, DDPMPipelineOutput, Trajectory

__all__ = ["DDPMPipeline", "DDPMPipelineOutput", "Trajectory"]

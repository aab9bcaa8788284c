"""The samplers of hubgen's diffusion families: one table, shared by `ddpm` and `text2img`.

A sampler is a diffusers scheduler built from the pipeline's saved scheduler configuration with `from_config`,
so it has the same betas and the same T as the model was trained with; hubgen writes no sampler of its own.

    name               scheduler (diffusers)           from_config overrides                          default steps
    "ddpm"             DDPMScheduler                   -                                              T (every step)
    "ddim"             DDIMScheduler                   -                                              50
    "dpmsolver++"      DPMSolverMultistepScheduler     algorithm_type "dpmsolver++", solver_order 2   20
    "sde-dpmsolver++"  DPMSolverMultistepScheduler     algorithm_type "sde-dpmsolver++", order 2      20
    "euler"            EulerDiscreteScheduler          -                                              50
    "euler_a"          EulerAncestralDiscreteScheduler -                                              50
    "unipc"            UniPCMultistepScheduler         -                                              20

The overrides name the algorithm only. Everything else comes from the saved configuration, in particular how
each family keeps the predicted x_0 in the data range [-1, 1]: the `ddpm` family saves a DDPMScheduler with
`clip_sample=True` (DDPM and DDIM steps clip x_0), the `text2img` family saves a DPM-Solver++ with
`thresholding=True, sample_max_value=1.0` (Imagen's static thresholding, which every sampler built from that
configuration inherits). DPM-Solver's `variance_type` is cleared: the `ddpm` family's fixed variances are
DDPM's, which DPM-Solver does not use (it reads only "learned" ones).

Which scheduler a pipeline call uses (both families, `sampler=` of `__call__`):

    None                      the pipeline's own `scheduler`, as saved or as swapped in by the user
                              (`pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)`)
    a name of the table       that sampler, built from `pipe.scheduler.config`
    a scheduler class         `cls.from_config(pipe.scheduler.config)`
    a scheduler instance      a fresh copy of it, `type(s).from_config(s.config)`

Each call builds a fresh scheduler (`make_scheduler`): schedulers keep per-run state (step index, the solver's
history), so a call never changes `pipe.scheduler`. The `ddpm` family offers the first three names (its
`SAMPLERS`); `text2img` offers all of them.
"""

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import UserInputError

__all__ = [
    "Sampler",
    "SAMPLERS",
    "UNKNOWN_SAMPLER_STEPS",
    "make_scheduler",
    "sampler_of",
    "default_steps",
    "step_kwargs",
    "check_step_callback",
]

UNKNOWN_SAMPLER_STEPS = 50  # default steps for a swapped-in scheduler the table does not name


@dataclass(frozen=True)
class Sampler:
    """One named sampler: `scheduler_class.from_config(saved config, **overrides)`.

    name: the key in SAMPLERS and the value of `sampler=` ("dpmsolver++").
    class_name: the diffusers scheduler class ("DPMSolverMultistepScheduler"; `scheduler_class` imports it).
    overrides: the from_config keyword arguments that make the algorithm (empty for most).
    default_steps: steps when the caller gives none; None means every training timestep (T).
    display_name: for people, "DPM-Solver++ (2M)"; label: short, in figure keys, "DPM-Solver++".
    reference: the paper.
    """

    name: str
    class_name: str
    overrides: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    default_steps: int | None = 50
    display_name: str = ""
    label: str = ""
    reference: str = ""

    @property
    def scheduler_class(self) -> type:
        import diffusers

        return getattr(diffusers, self.class_name)

    def build(self, config, **extra):
        """A fresh scheduler from a saved scheduler `config`; `extra` adds from_config arguments (e.g. thresholding)."""
        return self.scheduler_class.from_config(config, **{**self.overrides, **extra})

    def steps(self, num_train_timesteps: int) -> int:
        """The default step count for a schedule of T = num_train_timesteps steps (never more than T)."""
        return min(self.default_steps or num_train_timesteps, num_train_timesteps)


def _dpm_solver(algorithm_type: str) -> Mapping[str, Any]:
    return MappingProxyType({"algorithm_type": algorithm_type, "solver_order": 2, "variance_type": None})


SAMPLERS: Mapping[str, Sampler] = MappingProxyType(
    {
        s.name: s
        for s in (
            Sampler("ddpm", "DDPMScheduler", default_steps=None, display_name="DDPM (ancestral)", label="DDPM",
                    reference="Ho et al. 2020, arXiv:2006.11239, Algorithm 2"),
            Sampler("ddim", "DDIMScheduler", default_steps=50, display_name="DDIM (eta = 0)", label="DDIM",
                    reference="Song, Meng & Ermon 2021, arXiv:2010.02502"),
            Sampler("dpmsolver++", "DPMSolverMultistepScheduler", _dpm_solver("dpmsolver++"), default_steps=20,
                    display_name="DPM-Solver++ (2M)", label="DPM-Solver++",
                    reference="Lu et al. 2022, arXiv:2211.01095"),
            Sampler("sde-dpmsolver++", "DPMSolverMultistepScheduler", _dpm_solver("sde-dpmsolver++"),
                    default_steps=20, display_name="SDE-DPM-Solver++ (2M)", label="SDE-DPM-Solver++",
                    reference="Lu et al. 2022, arXiv:2211.01095"),
            Sampler("euler", "EulerDiscreteScheduler", default_steps=50, display_name="Euler", label="Euler",
                    reference="Karras et al. 2022, arXiv:2206.00364 (Euler steps of the probability-flow ODE)"),
            Sampler("euler_a", "EulerAncestralDiscreteScheduler", default_steps=50, display_name="Euler ancestral",
                    label="Euler-a", reference="Karras et al. 2022, arXiv:2206.00364 (ancestral Euler steps)"),
            Sampler("unipc", "UniPCMultistepScheduler", default_steps=20, display_name="UniPC (bh2)", label="UniPC",
                    reference="Zhao et al. 2023, arXiv:2302.04867"),
        )
    }
)  # fmt: skip


def make_scheduler(config, sampler, names: Mapping[str, Sampler] | None = None):
    """A fresh diffusers scheduler for `sampler`: a name in `names` (default: all of SAMPLERS) built from the saved
    scheduler `config`, a scheduler class (`cls.from_config(config)`), or a scheduler instance (a fresh copy from
    its own config). Raises UserInputError for anything else, naming the names offered."""
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    names = SAMPLERS if names is None else names
    if isinstance(sampler, str) and sampler in names:
        return names[sampler].build(config)
    if isinstance(sampler, type) and issubclass(sampler, SchedulerMixin):
        return sampler.from_config(config)
    if isinstance(sampler, SchedulerMixin):
        return type(sampler).from_config(sampler.config)
    offered = ", ".join(repr(n) for n in names)
    if isinstance(sampler, str):
        raise UserInputError(f"`sampler` must be one of {offered} (or a diffusers scheduler), got {sampler!r}.")
    raise UserInputError(
        f"`sampler` must be None, a name in {offered}, a diffusers scheduler class or instance, got "
        f"{type(sampler).__name__}."
    )


def sampler_of(scheduler) -> Sampler | None:
    """The table's entry for a scheduler instance: same class and same overrides, else the first of its class
    (a text2img DPM-Solver++ saved with its own settings is "dpmsolver++"); None for a class the table lacks."""
    candidates = [s for s in SAMPLERS.values() if s.class_name == type(scheduler).__name__]
    for s in candidates:
        if all(scheduler.config.get(k) == v for k, v in s.overrides.items()):
            return s
    return candidates[0] if candidates else None


def default_steps(scheduler) -> int:
    """Steps for a call that names none: the sampler's default (every timestep for "ddpm"), at most T."""
    T = scheduler.config.num_train_timesteps
    entry = sampler_of(scheduler)
    return entry.steps(T) if entry else min(UNKNOWN_SAMPLER_STEPS, T)


def step_kwargs(scheduler, **candidates) -> dict:
    """The keyword arguments of `candidates` (e.g. generator, eta) that `scheduler.step` takes."""
    accepted = inspect.signature(scheduler.step).parameters
    return {k: v for k, v in candidates.items() if k in accepted}


def check_step_callback(pipeline, callback_on_step_end, tensor_inputs) -> list[str]:
    """Check diffusers' `callback_on_step_end` convention -> the tensor names the callback gets. A diffusers
    `PipelineCallback` / `MultiPipelineCallbacks` brings its own `tensor_inputs`; each name must be one of the
    pipeline class's `_callback_tensor_inputs`."""
    from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

    if callback_on_step_end is None:
        return []
    if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
        tensor_inputs = callback_on_step_end.tensor_inputs
    if not callable(callback_on_step_end):
        raise UserInputError(
            "`callback_on_step_end` must be callable as fn(pipeline, step_index, timestep, callback_kwargs), got "
            f"{callback_on_step_end!r}."
        )
    allowed = pipeline._callback_tensor_inputs
    unknown = [k for k in tensor_inputs or () if k not in allowed]
    if isinstance(tensor_inputs, str) or unknown:
        raise UserInputError(
            f"`callback_on_step_end_tensor_inputs` must be a list of names in {allowed}, got {tensor_inputs!r}."
        )
    return list(tensor_inputs or ())

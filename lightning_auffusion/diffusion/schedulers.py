"""Noise schedules: the DDPM schedule a U-Net is trained with and the sampling schedulers built from it.

Training uses Stable Diffusion v1.5's DDPM schedule (1000 steps, scaled-linear betas 0.00085 -> 0.012,
epsilon prediction) unless a config overrides it. Every sampling scheduler is a fresh diffusers scheduler
sharing that schedule; released Auffusion samples with PNDM (PLMS without Runge-Kutta warm-up, as Stable
Diffusion does).
"""

from __future__ import annotations

import os
from typing import Any, Literal, get_args

from lightning_auffusion.errors import UserInputError

SchedulerName = Literal["pndm", "ddim", "dpmsolver++", "euler"]
DEFAULT_SCHEDULER: SchedulerName = "pndm"  # as released

# name -> (diffusers class name, settings applied on top of the training schedule)
SCHEDULER_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True, "set_alpha_to_one": False, "steps_offset": 1}),
    "ddim": ("DDIMScheduler", {"set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": ("EulerDiscreteScheduler", {}),
}
SCHEDULERS = frozenset(get_args(SchedulerName))
assert SCHEDULERS == set(SCHEDULER_SETTINGS), "SchedulerName and SCHEDULER_SETTINGS must name the same schedulers"

_SD15_NOISE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "steps_offset": 1,
    "variance_type": "fixed_small",
}


def sd15_noise_config(**overrides: Any) -> dict[str, Any]:
    """Stable Diffusion v1.5's DDPM training schedule: 1000 steps, scaled-linear betas 0.00085 -> 0.012, epsilon."""
    return {**_SD15_NOISE, **overrides}


def build_noise_scheduler(config: dict[str, Any] | str | None = None) -> Any:
    """The DDPM training schedule: SD-1.5's by default, a config dict overriding it, or a layout's ``scheduler/``."""
    from diffusers import DDPMScheduler

    if config is None or isinstance(config, dict):
        return DDPMScheduler.from_config(sd15_noise_config(**(config or {})))
    source = os.path.expanduser(config)
    try:
        return DDPMScheduler.from_pretrained(source, subfolder="scheduler")
    except (OSError, ValueError) as err:
        raise OSError(f"could not load a noise schedule from {source!r}/scheduler: {err}") from err


def check_scheduler_name(name: str) -> str:
    """``name`` normalised (lower case, stripped); a ValueError naming the choices when it is unknown."""
    key = str(name).lower().strip()
    if key not in SCHEDULER_SETTINGS:
        raise UserInputError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    return key


def make_scheduler(name: str, train_scheduler_config: dict | None = None, **overrides: Any):
    """A fresh diffusers sampling scheduler ``name`` sharing the noise schedule the U-Net was trained with.

    ``train_scheduler_config`` is the training (DDPM) scheduler's config (SD-1.5's schedule when None);
    its betas, timestep count and prediction type carry over. ``overrides`` set any scheduler argument.
    """
    import diffusers

    class_name, settings = SCHEDULER_SETTINGS[check_scheduler_name(name)]
    config = dict(train_scheduler_config) if train_scheduler_config is not None else sd15_noise_config()
    cls = getattr(diffusers, class_name)
    # settings go in as keyword arguments: they win over the config, and keys the training scheduler only
    # had at their default (its ``_use_default_values``) take this scheduler's own defaults, as in diffusers
    return cls.from_config(config, **{**settings, **overrides})


def fresh_scheduler(scheduler: str | Any, train_scheduler_config: dict | None = None):
    """A new sampling scheduler: built by name (:func:`make_scheduler`), or a copy of a diffusers scheduler."""
    if isinstance(scheduler, str):
        return make_scheduler(scheduler, train_scheduler_config)
    return type(scheduler).from_config(scheduler.config)

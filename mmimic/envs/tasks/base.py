"""The interface between the env shell (``MuscleEnv``: TorchRL specs, resets, NaN handling, the
simulator) and a task (what to observe, reward and end). See ``mmimic.envs.terms`` for the tables."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmimic.envs.body import BodyTables
from mmimic.envs.terms import BoundReward, Observation


class Task:
    """Base of the tasks. A task owns its per-world buffers and its term tables; the shell calls, per step:
    ``advance()`` (after the physics step), ``state(action)``, the terms on that state, ``truncated``,
    then ``end_step``; and ``reset(mask)`` for the worlds whose episode ended.

    Subclasses set, in ``__init__``, the active term tables (``observations``, ``privileged``,
    ``rewards``, ``terminations``, ``errors``) and implement ``reset`` and ``state``.
    """

    observations: dict[str, Observation]  # the policy's observation, in concatenation order
    privileged: dict[str, Observation]  # appended for the critic ("critic_observation"); empty: none
    rewards: dict[str, BoundReward]
    terminations: dict[str, Callable]
    errors: dict[str, Callable]

    def __init__(self, cfg, sim, body: BodyTables, rng: torch.Generator, num_envs: int, device: torch.device):
        self.cfg, self.sim, self.body, self.rng = cfg, sim, body, rng
        self.num_envs, self.device = int(num_envs), torch.device(device)
        self.privileged = {}

    def reset(self, mask: torch.Tensor, **options) -> None:
        """Draw new episodes for the masked worlds and write their start states into the simulator
        (``options``: a task's own, e.g. the imitation task's chosen clips)."""
        raise NotImplementedError

    def advance(self) -> None:
        """After the physics step, before the state: move task time on (default: nothing)."""

    def state(self, action: torch.Tensor | None):
        """The per-step state the terms read; ``action`` None: a fresh reset (no action taken yet)."""
        raise NotImplementedError

    def truncated(self, s, episode_step: torch.Tensor) -> torch.Tensor:
        """(N,) bool: the episode ends without failing (the learner bootstraps)."""
        limit = int(self.cfg.max_episode_steps)
        return episode_step >= limit if limit > 0 else torch.zeros_like(episode_step, dtype=torch.bool)

    def end_step(self, s, obs: dict[str, torch.Tensor], terminated: torch.Tensor, truncated: torch.Tensor) -> None:
        """After the step's outputs are computed: keep what the next step needs (default: nothing)."""

    # ------------------------------------------------------------------ saving (exact resume)
    saved: tuple[str, ...] = ()  # per-world / per-clip tensor buffers that ``state_dict`` holds

    def state_dict(self) -> dict:
        return {k: getattr(self, k).clone() for k in self.saved}

    def load_state_dict(self, state: dict) -> None:
        for k in self.saved:
            buf = getattr(self, k)
            if tuple(state[k].shape) != tuple(buf.shape):
                raise ValueError(f"task state: {k} is {tuple(state[k].shape)} in the saved state, {tuple(buf.shape)} "
                                 "here (another model, motion set or option)")
            setattr(self, k, state[k].to(buf.device, buf.dtype).clone())

    def uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        """U(-1, 1) from the env's generator."""
        return torch.rand(shape, generator=self.rng, device=self.device) * 2.0 - 1.0

"""Posture holding: keep a target posture with the muscles, sampled per episode around the model's
default pose. The task of ``MuscleEnv`` (see ``PostureTaskConfig`` for the formulas)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mmimic.envs import body as proprio
from mmimic.envs.body import BodyTables
from mmimic.envs.tasks.base import Task
from mmimic.envs.terms import (Observation, Reward, Termination, active, bind_rewards, bind_terminations,
                               reward_defaults)


@dataclass
class PostureState:
    """What the posture terms read at one control step."""

    sim: Any  # the simulator's torch views (qpos, qvel, act, actuator_*)
    body: BodyTables
    target_qpos: torch.Tensor  # (N, nj) the posture to hold
    start_root_height: torch.Tensor  # (N,) free root: the height at the episode's start

    @property
    def posture_error(self) -> torch.Tensor:
        return self.target_qpos - self.sim.qpos[:, self.body.q0:]


# ---------------------------------------------------------------------- terms
def posture_error(s: PostureState) -> torch.Tensor:
    """Observation: target minus current joint positions (rad)."""
    return s.posture_error


def posture(s: PostureState, scale: float) -> torch.Tensor:
    """exp(-scale * mean_j (q_j - q*_j)^2)."""
    return torch.exp(-scale * s.posture_error.square().mean(-1))


def upright(s: PostureState, scale: float) -> torch.Tensor:
    """Free root: exp(-scale * tilt^2), tilt the angle between the root's up axis and the vertical."""
    up_z = -proprio.root(s)[:, 3]  # cos(tilt): minus gravity's z in the root frame
    return torch.exp(-scale * torch.arccos(up_z.clamp(-1.0, 1.0)).square())


def posture_rms(s: PostureState) -> torch.Tensor:
    """Tracking error: RMS joint deviation from the target (rad)."""
    return s.posture_error.square().mean(-1).sqrt()


def posture_lost(s: PostureState, threshold: float) -> torch.Tensor:
    return posture_rms(s) > threshold


def fallen(s: PostureState, threshold: float) -> torch.Tensor:
    """Free root below ``threshold`` x its start height."""
    return s.sim.qpos[:, 2] < threshold * s.start_root_height


OBSERVATIONS = {**{k: Observation(fn, root) for k, (fn, root) in proprio.PROPRIOCEPTION.items()},
                "posture_error": Observation(posture_error)}
REWARDS = {
    "posture": Reward(posture, 1.0, {"scale": 4.0}),
    "effort": Reward(proprio.effort, -0.1),
    "upright": Reward(upright, 0.5, {"scale": 2.0}, free_root_only=True),
}
TERMINATIONS = {
    "posture_lost": Termination(posture_lost, "max_posture_error"),
    "fallen": Termination(fallen, "fall_height_fraction", free_root_only=True),
}
ERRORS = {"posture": posture_rms}


@dataclass
class PostureTaskConfig:
    """Hold a target posture with the muscles, sampled per episode around the model's default pose.

    reward = 1.0 * exp(-4 * mean_j (q_j - q*_j)^2)            posture (rad)
             - 0.1 * mean_m act_m^2                           effort
             + 0.5 * exp(-2 * tilt^2)                         upright (free root only, tilt in rad)
    (the default weights and scales: ``rewards``). The episode terminates when the RMS joint error
    exceeds ``max_posture_error`` (rad) or, for a free-root model, when the root falls below
    ``fall_height_fraction`` of its start height; it is truncated after ``max_episode_steps``.
    """

    target_range: float = 0.1  # target = default + U(-r, r) * half joint range, clipped to the range
    reset_noise: float = 0.02  # rad (or m) of uniform noise on the start joint positions
    rewards: dict[str, dict[str, float]] = field(  # term name -> {weight, parameters}
        default_factory=lambda: reward_defaults(REWARDS))
    max_posture_error: float = 1.0  # rad, RMS joint error -> terminated (<= 0: never)
    fall_height_fraction: float = 0.6  # free root: height below this x the start height -> terminated (<= 0: never)
    max_episode_steps: int = 500  # control steps -> truncated

    def validate(self) -> None:
        if self.target_range < 0 or self.reset_noise < 0:
            raise ValueError(f"MuscleEnv: target_range and reset_noise must be >= 0, got {self.target_range}, "
                             f"{self.reset_noise}")


class PostureTask(Task):
    """Targets drawn per episode: default + U(-r, r) x half the joint range; start pose: default + noise."""

    saved = ("target_qpos", "start_root_height")

    def __init__(self, cfg, sim, body, rng, num_envs, device):
        super().__init__(cfg, sim, body, rng, num_envs, device)
        fr = body.free_root
        self.observations = active(OBSERVATIONS, fr)
        self.rewards = bind_rewards(REWARDS, cfg.rewards, fr, "PostureTask")
        self.terminations = bind_terminations(TERMINATIONS, cfg, fr)
        self.errors = dict(ERRORS)
        n = self.num_envs
        self.target_qpos = body.default_joint_qpos.expand(n, -1).clone()
        self.start_root_height = torch.ones(n, device=self.device)

    def reset(self, mask: torch.Tensor) -> None:
        """New targets and start poses for the masked worlds (no options)."""
        n, cfg, body = self.num_envs, self.cfg, self.body
        lo, hi = body.joint_range[:, 0], body.joint_range[:, 1]
        half = 0.5 * (hi - lo).clamp_max(2 * torch.pi)
        default, nj = body.default_joint_qpos, body.default_joint_qpos.numel()
        target = torch.minimum(torch.maximum(default + cfg.target_range * half * self.uniform((n, nj)), lo), hi)
        start = torch.minimum(torch.maximum(default + cfg.reset_noise * self.uniform((n, nj)), lo), hi)
        qpos = self.sim.default_qpos.expand(n, -1).clone()
        qpos[:, body.q0:] = start
        self.sim.reset(mask, qpos=qpos)
        self.target_qpos = torch.where(mask[:, None], target, self.target_qpos)
        if body.free_root:
            self.start_root_height = torch.where(mask, self.sim.qpos[:, 2], self.start_root_height)

    def state(self, action: torch.Tensor | None) -> PostureState:
        return PostureState(self.sim, self.body, self.target_qpos, self.start_root_height)

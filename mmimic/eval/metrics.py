"""Tracking metrics of played episodes, defined to compare with published numbers.

Per episode (a clip played from its start until its end or the termination rule), over its steps:

- ``joint_pos_error_rad``: RMSE over non-root joints and steps;
- ``site_rel_error_m``: RMSE of root-relative (anchor-relative) mimic-site positions (over sites, steps);
- ``site_abs_error_m``: mean Euclidean site distance after removing the reference's initial root xy
  offset (the body's root xy minus the reference's, at the episode start);
- ``root_pos_error_m`` (RMSE) and ``root_yaw_error_rad`` (mean |wrapped yaw difference|): free roots only;
- ``early_termination_rate``: 1 if the episode ended by the termination rule (or blew up) before the
  clip's end, else 0;
- ``frame_coverage``: steps survived / the clip's length in control steps;
- ``mean_activation``: mean muscle activation.

Everything accumulates on the device in (N,) sums, masked by which worlds are still playing.
"""

from __future__ import annotations

import math

import torch

from mmimic.envs.tasks.imitation import TrackingState
from mmimic.math import quat_yaw

METRICS = ("joint_pos_error_rad", "site_rel_error_m", "site_abs_error_m", "root_pos_error_m",
           "root_yaw_error_rad", "early_termination_rate", "frame_coverage", "mean_activation")
ROOT_METRICS = ("root_pos_error_m", "root_yaw_error_rad")
_SUMS = ("steps", "joint_sq", "site_rel_sq", "site_abs", "root_sq", "yaw_abs", "activation")


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    """Angles into [-pi, pi)."""
    return torch.remainder(a + math.pi, 2.0 * math.pi) - math.pi


class EpisodeAccumulator:
    """Per-world sums over one episode's steps; ``start`` at the reset, ``add`` after every step."""

    def __init__(self, num_worlds: int, free_root: bool, device: torch.device | str = "cpu"):
        self.free_root = free_root
        self.device = torch.device(device)
        self.sums = {k: torch.zeros(num_worlds, dtype=torch.float64, device=self.device) for k in _SUMS}
        self.xy_offset = torch.zeros(num_worlds, 2, device=self.device)

    def start(self, s: TrackingState) -> None:
        for v in self.sums.values():
            v.zero_()
        if self.free_root:
            self.xy_offset = s.sim.qpos[:, :2] - s.ref["qpos"][:, :2]

    @torch.no_grad()
    def add(self, s: TrackingState, playing: torch.Tensor) -> None:
        """Add this step's errors of the worlds still ``playing`` ((N,) bool)."""
        site_abs = s.site_abs.clone()
        if self.free_root:
            site_abs[..., :2] -= self.xy_offset[:, None]
        terms = {"steps": torch.ones_like(playing, dtype=torch.float64),
                 "joint_sq": s.dq.square().mean(-1), "site_rel_sq": s.site_rel.square().sum(-1).mean(-1),
                 "site_abs": site_abs.norm(dim=-1).mean(-1), "activation": s.sim.act.mean(-1)}
        if self.free_root:
            terms["root_sq"] = s.root_dp.square().sum(-1)
            terms["yaw_abs"] = wrap_angle(quat_yaw(s.sim.qpos[:, 3:7]) - quat_yaw(s.ref["qpos"][:, 3:7])).abs()
        for k, v in terms.items():
            v = torch.nan_to_num(v.to(torch.float64), nan=0.0, posinf=0.0, neginf=0.0)  # a blown-up world
            self.sums[k] += torch.where(playing, v, torch.zeros_like(v))

    def episode_metrics(self, clip_steps: torch.Tensor, terminated: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N,) metrics of the episodes; ``clip_steps``: each clip's length in control steps; ``terminated``:
        ended by the rule before the clip's end."""
        n = self.sums["steps"].clamp_min(1.0)
        out = {"joint_pos_error_rad": (self.sums["joint_sq"] / n).sqrt(),
               "site_rel_error_m": (self.sums["site_rel_sq"] / n).sqrt(),
               "site_abs_error_m": self.sums["site_abs"] / n,
               "early_termination_rate": terminated.to(torch.float64),
               "frame_coverage": (self.sums["steps"] / clip_steps.to(torch.float64)).clamp(max=1.0),
               "mean_activation": self.sums["activation"] / n}
        if self.free_root:
            out["root_pos_error_m"] = (self.sums["root_sq"] / n).sqrt()
            out["root_yaw_error_rad"] = self.sums["yaw_abs"] / n
        return out

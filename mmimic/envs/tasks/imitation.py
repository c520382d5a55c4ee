"""Motion imitation: track reference motions from a MotionLibrary (DeepMimic-style rewards,
reference-state initialisation, early termination, failure-weighted clip sampling).

Everything per world lives in (N, ...) tensors on the device; the step uses only gathers,
``torch.where`` and ``index_add_``: no host sync, no Python loop over worlds. The terms below are
functions of one ``TrackingState``; the tables at the end list them (see ``mmimic.envs.terms``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from mmimic.envs import body as proprio
from mmimic.envs.body import VEL_SCALE, BodyTables
from mmimic.envs.tasks.base import Task
from mmimic.envs.terms import (Observation, Reward, Termination, active, bind_rewards, bind_terminations,
                               reward_defaults)
from mmimic.math import (quat_angle, quat_conjugate, quat_mul, quat_to_axis_angle, quat_to_matrix, quat_yaw,
                         rotate_z_inverse)
from mmimic.motion.library import MotionLibrary

SAMPLING = ("uniform", "failure")


@dataclass
class TrackingState:
    """What the imitation terms read at one control step (all (N, ...) on the device).

    Site positions are those of the simulator's last kinematics (one physics step older than qpos
    unless ``refresh_kinematics``); velocities of sites are finite differences over the control step.
    The derived quantities (``dq``, ``site_rel``, ...) are computed when first read.
    """

    sim: Any  # the simulator's torch views
    body: BodyTables
    action: torch.Tensor  # (N, nu) this step's raw action (a fresh reset: the previous action)
    prev_action: torch.Tensor  # (N, nu) the previous step's clipped action
    ref: dict[str, torch.Tensor]  # reference now: qpos, qvel, site_pos (N, S, 3), site_quat (N, S, 4)
    goal: dict[str, torch.Tensor]  # reference at the K lookahead frames: the same keys, (N, K, ...)
    site_pos: torch.Tensor  # (N, S, 3) the body's mimic sites
    site_quat: torch.Tensor  # (N, S, 4)
    prev_site_pos: torch.Tensor  # (N, S, 3) the sites and the reference's sites one control step ago
    prev_ref_site_pos: torch.Tensor
    anchor: int  # index of the anchor site (root-relative positions are relative to it)
    dt: float  # control step (s)
    phase: torch.Tensor  # (N,) reference time / clip duration
    history: torch.Tensor | None = None  # (N, H, P) previous proprioception vectors, newest first

    # ------------------------------------------------------------------ differences to the reference
    @cached_property
    def dq(self) -> torch.Tensor:
        q0 = self.body.q0
        return self.sim.qpos[:, q0:] - self.ref["qpos"][:, q0:]

    @cached_property
    def dqd(self) -> torch.Tensor:
        v0 = self.body.v0
        return self.sim.qvel[:, v0:] - self.ref["qvel"][:, v0:]

    @cached_property
    def site_rel(self) -> torch.Tensor:
        """(N, S, 3) root-relative (anchor-relative) site offsets minus the reference's."""
        a, pos, ref = self.anchor, self.site_pos, self.ref["site_pos"]
        return (pos - pos[:, a:a + 1]) - (ref - ref[:, a:a + 1])

    @cached_property
    def site_abs(self) -> torch.Tensor:
        return self.site_pos - self.ref["site_pos"]

    @cached_property
    def site_angle(self) -> torch.Tensor:
        """(N, S) rotation angle between each site and its reference (rad)."""
        return quat_angle(self.site_quat, self.ref["site_quat"])

    @cached_property
    def site_vel(self) -> torch.Tensor:
        """(N, S, 3) site velocity minus the reference's, by finite differences over the control step."""
        return ((self.site_pos - self.prev_site_pos) - (self.ref["site_pos"] - self.prev_ref_site_pos)) / self.dt

    @cached_property
    def root_dp(self) -> torch.Tensor:
        return self.sim.qpos[:, :3] - self.ref["qpos"][:, :3]

    @cached_property
    def root_angle(self) -> torch.Tensor:
        return quat_angle(self.sim.qpos[:, 3:7], self.ref["qpos"][:, 3:7])

    @cached_property
    def root_axis_angle(self) -> torch.Tensor:
        q = self.sim.qpos[:, 3:7]
        return quat_to_axis_angle(quat_mul(quat_conjugate(q), self.ref["qpos"][:, 3:7]))

    @cached_property
    def root_dv(self) -> torch.Tensor:
        return self.sim.qvel[:, :3] - self.ref["qvel"][:, :3]

    @cached_property
    def root_dw(self) -> torch.Tensor:
        return self.sim.qvel[:, 3:6] - self.ref["qvel"][:, 3:6]

    # ------------------------------------------------------------------ frames
    def to_heading(self, v: torch.Tensor) -> torch.Tensor:
        """World vectors (N, ..., 3) -> the root's heading frame (yaw only) for free roots; else unchanged."""
        if not self.body.free_root:
            return v
        yaw = quat_yaw(self.sim.qpos[:, 3:7]).reshape((-1,) + (1,) * (v.ndim - 2))
        return rotate_z_inverse(yaw.expand(v.shape[:-1]), v)


# ---------------------------------------------------------------------- observation terms
def site_pos(s: TrackingState) -> torch.Tensor:
    """Proprioception: the mimic sites relative to the anchor site, heading frame (S*3)."""
    return s.to_heading(s.site_pos - s.site_pos[:, s.anchor:s.anchor + 1]).flatten(1)


def goal_sites(s: TrackingState) -> torch.Tensor:
    """The K lookahead frames' reference sites relative to the current anchor (K*S*3)."""
    return s.to_heading(s.goal["site_pos"] - s.site_pos[:, s.anchor, None, None]).flatten(1)


def goal_root(s: TrackingState) -> torch.Tensor:
    """Free root, per lookahead frame: reference minus current root position, linear velocity, angular
    velocity (x0.1), and the rotation to the reference root (6: two matrix columns) (K*15)."""
    q, qd, g = s.sim.qpos, s.sim.qvel, s.goal
    dp = s.to_heading(g["qpos"][..., :3] - q[:, None, :3])
    dv = s.to_heading(g["qvel"][..., :3] - qd[:, None, :3])
    dw = (g["qvel"][..., 3:6] - qd[:, None, 3:6]) * VEL_SCALE
    rel = quat_mul(quat_conjugate(q[:, None, 3:7]).expand_as(g["qpos"][..., 3:7]), g["qpos"][..., 3:7])
    rot6 = quat_to_matrix(rel)[..., :2].flatten(-2)
    return torch.cat([dp, dv, dw, rot6], dim=-1).flatten(1)


def goal_joints(s: TrackingState) -> torch.Tensor:
    """Reference minus current joint positions at the K lookahead frames (K*nj)."""
    q0 = s.body.q0
    return (s.goal["qpos"][..., q0:] - s.sim.qpos[:, None, q0:]).flatten(1)


def phase(s: TrackingState) -> torch.Tensor:
    """Reference time / clip duration, in [0, 1] (1)."""
    return s.phase[:, None]


def history(s: TrackingState) -> torch.Tensor:
    """The previous proprioception vectors, newest first (H*P)."""
    return s.history.flatten(1)


def tracking(s: TrackingState) -> torch.Tensor:
    """Privileged (critic only): every tracking difference to the reference."""
    parts = [s.dq, s.dqd * VEL_SCALE, s.site_rel.flatten(1), s.site_abs.flatten(1), s.site_angle]
    if s.body.free_root:
        parts += [s.root_dp, s.root_axis_angle, s.root_dv, s.root_dw * VEL_SCALE]
    return torch.cat(parts, dim=-1)


# ---------------------------------------------------------------------- reward terms
def joint_pos_reward(s: TrackingState, scale: float) -> torch.Tensor:
    """exp(-scale * mean over hinge/slide joints of dq^2); a free root adds its orientation angle^2 as one
    more joint (rad^2)."""
    joint_sq, nj = s.dq.square().sum(-1), s.dq.shape[-1]
    if s.body.free_root:
        joint_sq, nj = joint_sq + s.root_angle.square(), nj + 1
    return torch.exp(-scale * joint_sq / max(nj, 1))


def joint_vel_reward(s: TrackingState, scale: float) -> torch.Tensor:
    """exp(-scale * mean over non-root dofs of dqdot^2) ((rad/s)^2)."""
    return torch.exp(-scale * s.dqd.square().mean(-1))


def root_pos_reward(s: TrackingState, scale: float) -> torch.Tensor:
    """Free root: exp(-scale * |p - p_ref|^2) (m^2)."""
    return torch.exp(-scale * s.root_dp.square().sum(-1))


def root_vel_reward(s: TrackingState, scale: float, ang_vel_factor: float) -> torch.Tensor:
    """Free root: exp(-scale * (|v - v_ref|^2 + ang_vel_factor |w - w_ref|^2))."""
    vel = s.root_dv.square().sum(-1) + ang_vel_factor * s.root_dw.square().sum(-1)
    return torch.exp(-scale * vel)


def site_pos_reward(s: TrackingState, scale: float) -> torch.Tensor:
    """exp(-scale * mean over mimic sites of |root-relative offset - reference's|^2) (m^2)."""
    return torch.exp(-scale * s.site_rel.norm(dim=-1).square().mean(-1))


def site_rot_reward(s: TrackingState, scale: float) -> torch.Tensor:
    """exp(-scale * mean over mimic sites of the orientation angle^2) (rad^2)."""
    return torch.exp(-scale * s.site_angle.square().mean(-1))


def site_vel_reward(s: TrackingState, scale: float) -> torch.Tensor:
    """exp(-scale * mean over mimic sites of |v - v_ref|^2) ((m/s)^2; 1 on a freshly reset state)."""
    return torch.exp(-scale * s.site_vel.square().sum(-1).mean(-1))


def action_rate(s: TrackingState) -> torch.Tensor:
    """mean (a_t - a_{t-1})^2 of the clipped actions (>= 0)."""
    return (s.action.clamp(-1.0, 1.0) - s.prev_action).square().mean(-1)


def action_bound(s: TrackingState) -> torch.Tensor:
    """mean max(|a| - 1, 0)^2 of the raw actions: what clipping hid from the physics (>= 0)."""
    return (s.action.abs() - 1.0).clamp_min(0.0).square().mean(-1)


# ---------------------------------------------------------------------- tracking errors (SI units)
def joint_pos_error(s: TrackingState) -> torch.Tensor:
    """Mean |dq| over non-root joints (rad)."""
    return s.dq.abs().mean(-1)


def joint_vel_error(s: TrackingState) -> torch.Tensor:
    return s.dqd.abs().mean(-1)


def site_rel_error(s: TrackingState) -> torch.Tensor:
    """Mean root-relative site deviation (m)."""
    return s.site_rel.norm(dim=-1).mean(-1)


def site_abs_error(s: TrackingState) -> torch.Tensor:
    return s.site_abs.norm(dim=-1).mean(-1)


def site_rot_error(s: TrackingState) -> torch.Tensor:
    return s.site_angle.mean(-1)


def root_pos_error(s: TrackingState) -> torch.Tensor:
    return s.root_dp.norm(dim=-1)


def root_rot_error(s: TrackingState) -> torch.Tensor:
    return s.root_angle


# ---------------------------------------------------------------------- termination terms
def site_deviation(s: TrackingState, threshold: float) -> torch.Tensor:
    """Mean root-relative site deviation above ``threshold`` (m)."""
    return site_rel_error(s) > threshold


def root_drift(s: TrackingState, threshold: float) -> torch.Tensor:
    return root_pos_error(s) > threshold


def root_turned(s: TrackingState, threshold: float) -> torch.Tensor:
    return root_rot_error(s) > threshold


# ---------------------------------------------------------------------- the tables
PROPRIOCEPTION = {**{k: Observation(fn, root) for k, (fn, root) in proprio.PROPRIOCEPTION.items()},
                  "site_pos": Observation(site_pos)}
GOAL = {"goal_sites": Observation(goal_sites), "goal_root": Observation(goal_root, free_root_only=True),
        "goal_joints": Observation(goal_joints), "phase": Observation(phase)}
PRIVILEGED = {"tracking": Observation(tracking)}
REWARDS = {
    "joint_pos": Reward(joint_pos_reward, 0.3, {"scale": 5.0}),
    "joint_vel": Reward(joint_vel_reward, 0.1, {"scale": 0.1}),
    "root_pos": Reward(root_pos_reward, 0.1, {"scale": 20.0}, free_root_only=True),
    "root_vel": Reward(root_vel_reward, 0.1, {"scale": 1.0, "ang_vel_factor": 0.1}, free_root_only=True),
    "site_pos": Reward(site_pos_reward, 0.3, {"scale": 40.0}),
    "site_rot": Reward(site_rot_reward, 0.1, {"scale": 2.0}),
    "site_vel": Reward(site_vel_reward, 0.1, {"scale": 0.5}),
    "effort": Reward(proprio.effort, -0.05),
    "action_rate": Reward(action_rate, -0.02),
    "action_bound": Reward(action_bound, -0.1),
}
ERRORS = {"joint_pos": joint_pos_error, "joint_vel": joint_vel_error, "site_rel": site_rel_error,
          "site_abs": site_abs_error, "site_rot": site_rot_error, "root_pos": root_pos_error,
          "root_rot": root_rot_error}
ROOT_ERRORS = ("root_pos", "root_rot")
TERMINATIONS = {
    "site_deviation": Termination(site_deviation, "max_site_error"),
    "root_drift": Termination(root_drift, "max_root_pos_error", free_root_only=True),
    "root_turned": Termination(root_turned, "max_root_rot_error", free_root_only=True),
}
MOTION_FEATURES = ("joint_pos", "joint_vel")  # observation terms AMP compares (a reference motion has both)


@dataclass
class ImitationTaskConfig:
    """Track reference motions from a MotionLibrary (DeepMimic-style rewards, RSI, early termination).

    Reward: ``sum_name weight * term`` over ``rewards`` (see ``REWARDS`` in this module for each term's
    formula). Tracking terms are ``exp(-scale * error)`` in (0, 1]; penalties are >= 0 with weights < 0.
    """

    # reference-state initialisation and clip sampling
    random_start: bool = True  # start at a uniform time in the clip (RSI); False: at time 0
    start_end_margin_s: float = 0.1  # RSI leaves this much of each clip's end out (s)
    reset_activation: float = 0.05  # muscle activation set on reset (MuJoCo act, 0..1)
    sampling: str = "uniform"  # uniform | failure (weights ~ (early-termination rate + eps) ^ power)
    failure_eps: float = 0.05  # failure sampling: floor added to every clip's failure rate
    failure_power: float = 1.0  # failure sampling: exponent on (rate + eps)
    weight_update_interval: int = 200  # control steps between sampling-weight updates (one host sync)
    stats_decay: float = 1.0  # per-clip counts are multiplied by this at each weight update (1: no decay)
    # observation
    lookahead_frames: int = 3  # K reference frames, at t + control_dt + stride * (0..K-1)
    lookahead_stride_s: float = 0.05  # time between lookahead frames (s)
    goal_joint_pos: bool = True  # add the K reference joint positions (minus current) to the goal
    history_steps: int = 0  # past proprioception vectors appended to the observation
    critic_obs: bool = False  # add "critic_observation": observation + privileged tracking state
    refresh_kinematics: bool = False  # recompute site positions after each step (else 1 physics step old)
    rewards: dict[str, dict[str, float]] = field(  # term name -> {weight, parameters}
        default_factory=lambda: reward_defaults(REWARDS))
    # episode end (a threshold <= 0 disables that check)
    max_site_error: float = 0.3  # m, mean root-relative site deviation -> terminated
    max_root_pos_error: float = 0.5  # m, free root -> terminated
    max_root_rot_error: float = 1.0  # rad, free root -> terminated
    max_episode_steps: int = 1000  # -> truncated (as is reaching the clip's end)

    def validate(self) -> None:
        if self.sampling not in SAMPLING:
            raise ValueError(f"MuscleImitationEnv: sampling must be one of {SAMPLING}, got {self.sampling!r}")
        if self.lookahead_frames < 1 or not self.lookahead_stride_s > 0 or self.history_steps < 0:
            raise ValueError("MuscleImitationEnv: need lookahead_frames >= 1, lookahead_stride_s > 0 and "
                             f"history_steps >= 0; got {self.lookahead_frames}, {self.lookahead_stride_s}, "
                             f"{self.history_steps}")
        if not 0.0 <= self.reset_activation <= 1.0:
            raise ValueError(f"MuscleImitationEnv: reset_activation must be in [0, 1], got {self.reset_activation}")


class ImitationTask(Task):
    """N worlds tracking the clips of a MotionLibrary. Per-clip early-termination counts are
    ``clip_episodes`` / ``clip_failures`` (they drive ``sampling: failure``)."""

    def __init__(self, cfg: ImitationTaskConfig, sim, body: BodyTables, rng, num_envs, device,
                 library: MotionLibrary, embodiment):
        super().__init__(cfg, sim, body, rng, num_envs, device)
        self.library = library
        m, lay, dev = embodiment.model, library.layout, self.device
        self.site_names = list(lay.site_names)
        self.site_ids = torch.tensor([m.site(s).id for s in lay.site_names], device=dev)
        ids = self.site_ids.cpu().numpy()
        self.site_body = torch.as_tensor(m.site_bodyid[ids], device=dev)  # site pose = body pose * local pose
        self.site_local_quat = torch.as_tensor(m.site_quat[ids], dtype=torch.float32, device=dev)
        self.anchor = self.site_names.index(embodiment.smpl_map.anchor)
        self.num_sites = len(self.site_names)
        self.dt = float(sim.control_dt)
        k = torch.arange(cfg.lookahead_frames, device=dev, dtype=torch.float32)
        # reference times relative to now: the current frame, then K goal frames from the next control step
        self.ref_offsets = torch.cat([torch.zeros(1, device=dev), self.dt + cfg.lookahead_stride_s * k])
        # term tables
        fr = body.free_root
        self.proprioception = active(PROPRIOCEPTION, fr)
        goal = active(GOAL, fr)
        if not cfg.goal_joint_pos:
            goal.pop("goal_joints")
        self.observations = {**self.proprioception, **goal}
        if cfg.history_steps:
            self.observations["history"] = Observation(history)
        self.privileged = dict(PRIVILEGED) if cfg.critic_obs else {}
        self.rewards = bind_rewards(REWARDS, cfg.rewards, fr, "MuscleImitationEnv")
        self.terminations = bind_terminations(TERMINATIONS, cfg, fr)
        self.errors = {k: f for k, f in ERRORS.items() if fr or k not in ROOT_ERRORS}
        self.motion_feature_keys = MOTION_FEATURES
        # per-world buffers
        n = self.num_envs
        self.clip_id = torch.zeros(n, dtype=torch.long, device=dev)
        self.ref_time = torch.zeros(n, device=dev)
        self.hold_action = 2.0 * cfg.reset_activation - 1.0  # the action whose excitation keeps that activation
        self.prev_action = torch.full((n, sim.nu), self.hold_action, device=dev)
        self.prev_site_pos = torch.zeros(n, self.num_sites, 3, device=dev)
        self.prev_ref_site_pos = torch.zeros(n, self.num_sites, 3, device=dev)
        self.update_reference()
        self.history = None
        P = self._proprio_flat(self.state(None)).shape[-1]
        self.history = torch.zeros(n, cfg.history_steps, P, device=dev)
        # per-clip episode statistics (float counts, so that they can decay)
        self.clip_episodes = torch.zeros(library.num_clips, device=dev)
        self.clip_failures = torch.zeros(library.num_clips, device=dev)
        self._steps_since_weights = 0

    saved = ("clip_id", "ref_time", "prev_action", "prev_site_pos", "prev_ref_site_pos", "history",
             "clip_episodes", "clip_failures")

    def state_dict(self) -> dict:
        # the library's sampling distribution too (failure-weighted sampling changes it during training)
        return {**super().state_dict(), "steps_since_weights": self._steps_since_weights,
                "sampling": self.library.sampling_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._steps_since_weights = int(state["steps_since_weights"])
        self.library.load_sampling_state(state["sampling"])
        self.update_reference()

    # ------------------------------------------------------------------ reference
    def update_reference(self) -> None:
        """The reference now (``self.ref``: qpos, qvel, site_pos, site_quat (N, ...)) and at the K goal frames."""
        t = self.ref_time[:, None] + self.ref_offsets  # (N, K + 1)
        state = self.library.state(self.clip_id[:, None].expand_as(t), t)
        self.ref = {k: v[:, 0] for k, v in state.items()}
        self.goal = {k: v[:, 1:] for k, v in state.items()}

    def site_pose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mimic sites of the sim: positions (N, S, 3) and orientations (N, S, 4) in the world."""
        pos = self.sim.site_xpos[:, self.site_ids]
        quat = quat_mul(self.sim.xquat[:, self.site_body], self.site_local_quat)
        return pos, quat

    # ------------------------------------------------------------------ the per-step state
    def state(self, action: torch.Tensor | None) -> TrackingState:
        pos, quat = self.site_pose()
        duration = self.library.duration[self.clip_id].clamp_min(1e-6)
        return TrackingState(
            sim=self.sim, body=self.body, action=self.prev_action if action is None else action,
            prev_action=self.prev_action, ref=self.ref, goal=self.goal, site_pos=pos, site_quat=quat,
            prev_site_pos=self.prev_site_pos, prev_ref_site_pos=self.prev_ref_site_pos, anchor=self.anchor,
            dt=self.dt, phase=(self.ref_time / duration).clamp(0.0, 1.0), history=self.history)

    def _proprio_flat(self, s: TrackingState) -> torch.Tensor:
        parts = [t.fn(s) for t in self.proprioception.values()]
        return torch.nan_to_num(torch.cat(parts, dim=-1), nan=0.0, posinf=0.0, neginf=0.0)

    def motion_features(self, qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
        """The ``MOTION_FEATURES`` observation terms of a kinematic state (e.g. a reference frame),
        computed by the same functions as the env's observation (AMP's expert side)."""
        s = _Kinematic(_Views(qpos, qvel), self.body)
        return torch.cat([PROPRIOCEPTION[k].fn(s) for k in self.motion_feature_keys], dim=-1)

    def reference_transitions(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` reference transitions ``[f(s), f(s')]`` one control step apart (AMP's real samples)."""
        ids, t = self.library.sample(n, generator=generator, truncate_end=self.dt)
        parts = []
        for tt in (t, t + self.dt):
            ref = self.library.state(ids, tt)
            parts.append(self.motion_features(ref["qpos"], ref["qvel"]))
        return torch.cat(parts, dim=-1)

    # ------------------------------------------------------------------ episode
    def reset(self, mask: torch.Tensor, clip_id: torch.Tensor | None = None, time: torch.Tensor | None = None) -> None:
        """Draw (clip, time) for the masked worlds and put them on the reference state there. ``clip_id`` /
        ``time`` (N,), if given, choose them instead (evaluation plays chosen clips from their start):
        ``env.reset(clip_id=..., time=...)``."""
        n, cfg = self.num_envs, self.cfg
        ids, times = self.library.sample(n, generator=self.rng, truncate_end=cfg.start_end_margin_s)
        if not cfg.random_start:
            times = torch.zeros_like(times)
        if clip_id is not None:
            ids = torch.as_tensor(clip_id, dtype=torch.long, device=self.device).expand(n)
            times = torch.zeros_like(times) if time is None else torch.as_tensor(
                time, dtype=times.dtype, device=self.device).expand(n)
        self.clip_id = torch.where(mask, ids, self.clip_id)
        self.ref_time = torch.where(mask, times, self.ref_time)
        self.update_reference()
        act = torch.full((n, self.sim.act.shape[-1]), cfg.reset_activation, device=self.device)
        self.sim.reset(mask, qpos=self.ref["qpos"], qvel=self.ref["qvel"], act=act)
        m2 = mask[:, None]
        self.prev_action = torch.where(m2, torch.full_like(self.prev_action, self.hold_action), self.prev_action)
        pos, _ = self.site_pose()
        self.prev_site_pos = torch.where(m2[..., None], pos, self.prev_site_pos)
        self.prev_ref_site_pos = torch.where(m2[..., None], self.ref["site_pos"], self.prev_ref_site_pos)
        if cfg.history_steps:
            p = self._proprio_flat(self.state(None))
            self.history = torch.where(m2[..., None], p[:, None].expand_as(self.history), self.history)

    def advance(self) -> None:
        self.ref_time = self.ref_time + self.dt
        if self.cfg.refresh_kinematics:
            self.sim.forward_kinematics()
        self.update_reference()

    def truncated(self, s: TrackingState, episode_step: torch.Tensor) -> torch.Tensor:
        """At the clip's last frame or after max_episode_steps: bootstrapped, not a failure."""
        end = self.ref_time >= self.library.duration[self.clip_id] - 1e-6
        return super().truncated(s, episode_step) | end

    def end_step(self, s: TrackingState, obs: dict[str, torch.Tensor], terminated: torch.Tensor,
                 truncated: torch.Tensor) -> None:
        self.prev_action = s.action.clamp(-1.0, 1.0)
        self.prev_site_pos = s.site_pos
        self.prev_ref_site_pos = s.ref["site_pos"]
        if self.cfg.history_steps:
            p = torch.cat([obs[k] for k in self.proprioception], dim=-1)  # (already sanitized)
            self.history = torch.cat([p[:, None], self.history[:, :-1]], dim=1)
        # per-clip statistics: every ended episode, and those that failed (unstable worlds included)
        self.clip_episodes.index_add_(0, self.clip_id, (terminated | truncated).to(self.clip_episodes.dtype))
        self.clip_failures.index_add_(0, self.clip_id, terminated.to(self.clip_failures.dtype))
        self._steps_since_weights += 1
        cfg = self.cfg
        if cfg.sampling == "failure" and cfg.weight_update_interval > 0 and \
                self._steps_since_weights >= cfg.weight_update_interval:
            self.update_sampling_weights()

    # ------------------------------------------------------------------ clip sampling
    def clip_failure_rate(self) -> torch.Tensor:
        """(C,) early terminations / ended episodes per clip; 1 for clips not played yet (so they get played)."""
        seen = self.clip_episodes > 0
        return torch.where(seen, self.clip_failures / self.clip_episodes.clamp_min(1e-9),
                           torch.ones_like(self.clip_episodes))

    def update_sampling_weights(self) -> torch.Tensor:
        """Set the library's clip weights to (failure rate + eps) ^ power (one host sync); returns them (C,).

        Called every ``weight_update_interval`` steps when ``sampling == "failure"``; the trainer may
        call it too. The counts are then multiplied by ``stats_decay`` (old episodes fade).
        """
        cfg = self.cfg
        weights = (self.clip_failure_rate() + cfg.failure_eps).pow(cfg.failure_power)
        self.library.set_weights(weights)
        if cfg.stats_decay != 1.0:
            self.clip_episodes.mul_(cfg.stats_decay)
            self.clip_failures.mul_(cfg.stats_decay)
        self._steps_since_weights = 0
        return weights


@dataclass
class _Views:
    qpos: torch.Tensor
    qvel: torch.Tensor


@dataclass
class _Kinematic:
    sim: _Views
    body: BodyTables

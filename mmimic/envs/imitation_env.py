"""MuscleImitationEnv: N muscle-driven worlds tracking reference motions from a MotionLibrary.

The posture env's machinery (the simulator, specs, partial resets, NaN handling) with the imitation task
in its hooks. Everything per world lives in (N, ...) tensors on the device and the step uses only
gathers, ``torch.where`` and ``index_add_``: no host sync, no Python loop over worlds.

Episode: a reset draws a clip (uniformly, or weighted towards clips that end in early termination)
and a time in it (reference-state initialisation), and puts that world exactly on the reference
state (qpos, qvel; activation a small constant). Each step advances the reference time by the
control step; the episode is terminated when the body leaves the reference (mean root-relative site
error, root position or orientation), truncated at the clip's end or after ``max_episode_steps``.

Observation (``Composite``; ``observation`` is the concatenation of the parts, in this order):
- proprioception as in MuscleEnv (``root`` for free roots, ``joint_pos``, ``joint_vel``, ``muscle_*``)
  plus ``site_pos``: the mimic sites relative to the anchor site (S*3);
- the goal: ``goal_sites`` (K*S*3) reference sites of K lookahead frames relative to the current
  anchor; ``goal_root`` (free root, K*15) reference minus current root position, linear velocity,
  angular velocity (x0.1) and the rotation to the reference root (6: two matrix columns);
  ``goal_joints`` (K*nj, optional) reference minus current joint positions; ``phase`` (time/duration);
  for free roots every vector is expressed in the root's heading frame (yaw only);
- ``history`` (optional): the ``history_steps`` previous proprioception vectors, newest first.
Optional ``critic_observation``: ``observation`` plus privileged tracking state for an asymmetric critic.
Also in every output (declared in the observation spec, so TorchRL carries them): ``reward_terms``
and ``tracking_errors``, sub-tensordicts of (N,) tensors, one per name (see ``reward_term_names``).

Timing: after a step ``qpos``/``qvel`` are at the new time, site positions one physics step older
(the simulators' convention) unless ``refresh_kinematics``; joint errors use qpos, site errors the sites.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchrl.data import Composite, Unbounded

from mmimic.envs.config import MuscleImitationEnvConfig
from mmimic.envs.muscle_env import VEL_SCALE, MuscleEnv, resolve_env_config
from mmimic.math import quat_angle, quat_conjugate, quat_mul, quat_to_axis_angle, quat_to_matrix, quat_yaw, \
    rotate_z_inverse
from mmimic.motion.library import MotionLibrary

SAMPLING = ("uniform", "failure")


def load_library(motions: str | os.PathLike, device: torch.device, embodiment: str) -> MotionLibrary:
    """A directory (recursive ``*.npz``), a single ``.npz``, or a list file -> MotionLibrary on ``device``."""
    if not str(motions):
        raise ValueError("MuscleImitationEnv: 'motions' is empty; give a directory of motion files, "
                         "a list file, or one .npz (or a MotionLibrary)")
    path = Path(motions)
    if path.is_dir():
        return MotionLibrary.from_dir(path, device=device, embodiment=embodiment)
    if not path.is_file():
        raise FileNotFoundError(f"MuscleImitationEnv: motions {path}: no such file or directory")
    if path.suffix == ".npz":
        return MotionLibrary([path], device=device, embodiment=embodiment)
    return MotionLibrary.from_list(path, device=device, embodiment=embodiment)


class MuscleImitationEnv(MuscleEnv):
    """N worlds imitating the clips of ``motions`` (a path, or a MotionLibrary on the env's device).

    ``MuscleImitationEnv("arm26", motions="data/motions/arm26", num_envs=4, history_steps=2)`` or
    ``MuscleImitationEnv(MuscleImitationEnvConfig(...))``. Options are the fields of
    ``MuscleImitationEnvConfig``, ``EmbodimentConfig`` and ``ImitationTaskConfig``. See the module
    docstring for the specs; per-clip early-termination counts are ``clip_episodes``/``clip_failures``.
    """

    config_class = MuscleImitationEnvConfig

    def __init__(self, model: str | MuscleImitationEnvConfig = "arm26",
                 motions: str | os.PathLike | MotionLibrary | None = None, num_envs: int = 16,
                 device: str = "cpu", **options):
        library = motions if isinstance(motions, MotionLibrary) else None
        if isinstance(model, MuscleImitationEnvConfig):
            cfg = model
            if motions is not None and library is None:
                cfg.motions = str(motions)
        else:
            path = "" if motions is None or library is not None else str(motions)
            cfg = MuscleImitationEnvConfig.from_options(model, num_envs, device, motions=path, **options)
        task = cfg.task
        if task.sampling not in SAMPLING:
            raise ValueError(f"MuscleImitationEnv: sampling must be one of {SAMPLING}, got {task.sampling!r}")
        if task.lookahead_frames < 1 or not task.lookahead_stride_s > 0 or task.history_steps < 0:
            raise ValueError("MuscleImitationEnv: need lookahead_frames >= 1, lookahead_stride_s > 0 and "
                             f"history_steps >= 0; got {task.lookahead_frames}, {task.lookahead_stride_s}, "
                             f"{task.history_steps}")
        if not 0.0 <= task.reset_activation <= 1.0:
            raise ValueError(f"MuscleImitationEnv: reset_activation must be in [0, 1], got {task.reset_activation}")
        resolve_env_config(cfg)
        dev = torch.device(cfg.device)
        if library is None:
            library = load_library(cfg.motions, dev, cfg.model)
        elif (library.device.type, library.device.index or 0) != (dev.type, dev.index or 0):
            raise ValueError(f"MuscleImitationEnv: the MotionLibrary is on {library.device}, the env on {dev}")
        self.library = library
        super().__init__(cfg)

    # ---------------------------------------------------------------- tables and specs
    def _init_model_tables(self) -> None:
        super()._init_model_tables()
        lib, emb, m = self.library, self.embodiment, self.embodiment.model
        lay = lib.layout
        problems = []
        if lay.embodiment != emb.name:
            problems.append(f"motions are for {lay.embodiment!r}")
        if list(lay.joint_names) != emb.joint_names or (lay.nq, lay.nv) != (m.nq, m.nv):
            problems.append(f"joints differ (motions: nq {lay.nq}, {len(lay.joint_names)} joints; model: "
                            f"nq {m.nq}, {m.njnt} joints; retarget with the same remove_fingers setting)")
        if emb.smpl_map is None:
            problems.append("the model has no mimic sites (no SMPL map, or mimic_sites=False)")
        elif not set(lay.site_names) <= set(emb.smpl_map.site_names):
            problems.append(f"sites {sorted(set(lay.site_names) - set(emb.smpl_map.site_names))} are not "
                            "mimic sites of the model")
        elif emb.smpl_map.anchor not in lay.site_names:
            problems.append(f"the motions lack the anchor site {emb.smpl_map.anchor!r}")
        if problems:
            raise ValueError(f"MuscleImitationEnv({emb.name}): motions {lib.paths[0]}...: " + "; ".join(problems))
        dev = self.device
        self.site_ids = torch.tensor([m.site(s).id for s in lay.site_names], device=dev)
        ids = self.site_ids.cpu().numpy()
        self.site_body = torch.as_tensor(m.site_bodyid[ids], device=dev)  # site pose = body pose * local pose
        self.site_local_quat = torch.as_tensor(m.site_quat[ids], dtype=torch.float32, device=dev)
        self.anchor = list(lay.site_names).index(emb.smpl_map.anchor)
        self.num_sites = len(lay.site_names)
        self.dt = float(self.sim.control_dt)
        task = self.cfg.task
        k = torch.arange(task.lookahead_frames, device=dev, dtype=torch.float32)
        # reference times relative to now: the current frame, then K goal frames from the next control step
        self.ref_offsets = torch.cat([torch.zeros(1, device=dev), self.dt + task.lookahead_stride_s * k])

    def _proprio_sizes(self) -> dict[str, int]:
        return {**super()._proprio_sizes(), "site_pos": 3 * self.num_sites}

    def _obs_sizes(self) -> dict[str, int]:
        task, nj = self.cfg.task, self.embodiment.model.nq - self.q0
        K = task.lookahead_frames
        sizes = {**self._proprio_sizes(), "goal_sites": K * 3 * self.num_sites}
        if self.free_root:
            sizes["goal_root"] = K * 15
        if task.goal_joint_pos:
            sizes["goal_joints"] = K * nj
        sizes["phase"] = 1
        if task.history_steps:
            sizes["history"] = task.history_steps * sum(self._proprio_sizes().values())
        return sizes

    def _privileged_size(self) -> int:
        m, S = self.embodiment.model, self.num_sites
        return (m.nq - self.q0) + (m.nv - self.v0) + 7 * S + (12 if self.free_root else 0)

    @property
    def reward_term_names(self) -> list[str]:
        root = ["root_pos", "root_vel"] if self.free_root else []
        return ["joint_pos", "joint_vel", *root, "site_pos", "site_rot", "site_vel", "effort", "action_rate",
                "action_bound"]

    @property
    def tracking_error_names(self) -> list[str]:
        root = ["root_pos", "root_rot"] if self.free_root else []
        return ["joint_pos", "joint_vel", "site_rel", "site_abs", "site_rot", *root]

    def _make_specs(self) -> None:
        super()._make_specs()
        n, dev = self.batch_size, self.device
        spec = self.observation_spec
        if self.cfg.task.critic_obs:
            size = spec["observation"].shape[-1] + self._privileged_size()
            spec["critic_observation"] = Unbounded(shape=n + (size,), device=dev)
        for key, names in (("reward_terms", self.reward_term_names), ("tracking_errors", self.tracking_error_names)):
            spec[key] = Composite({k: Unbounded(shape=n, device=dev) for k in names}, shape=n, device=dev)
        self.observation_spec = spec

    def _init_task_state(self) -> None:
        n, dev, task = self.num_envs, self.device, self.cfg.task
        S, P = self.num_sites, sum(self._proprio_sizes().values())
        self.clip_id = torch.zeros(n, dtype=torch.long, device=dev)
        self.ref_time = torch.zeros(n, device=dev)
        self.hold_action = 2.0 * task.reset_activation - 1.0  # the action whose excitation keeps that activation
        self.prev_action = torch.full((n, self.sim.nu), self.hold_action, device=dev)
        self._action = self.prev_action
        self.prev_site_pos = torch.zeros(n, S, 3, device=dev)
        self.prev_ref_site_pos = torch.zeros(n, S, 3, device=dev)
        self.history = torch.zeros(n, task.history_steps, P, device=dev)
        self._last_proprio = torch.zeros(n, P, device=dev)
        # per-clip episode statistics (float counts, so that they can decay)
        self.clip_episodes = torch.zeros(self.library.num_clips, device=dev)
        self.clip_failures = torch.zeros(self.library.num_clips, device=dev)
        self._steps_since_weights = 0
        self._update_reference()

    # ---------------------------------------------------------------- reference
    def _update_reference(self) -> None:
        """Reference now (``self.ref``: qpos, qvel, site_pos, site_quat (N, ...)) and at the K goal frames."""
        t = self.ref_time[:, None] + self.ref_offsets  # (N, K + 1)
        state = self.library.state(self.clip_id[:, None].expand_as(t), t)
        self.ref = {k: v[:, 0] for k, v in state.items()}
        self.goal_ref = {k: v[:, 1:] for k, v in state.items()}

    def _site_pose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mimic sites of the sim: positions (N, S, 3) and orientations (N, S, 4) in the world."""
        pos = self.sim.site_xpos[:, self.site_ids]
        quat = quat_mul(self.sim.xquat[:, self.site_body], self.site_local_quat)
        return pos, quat

    def _to_heading(self, v: torch.Tensor) -> torch.Tensor:
        """World vectors (N, ..., 3) -> the root's heading frame for free roots; unchanged for fixed roots."""
        if not self.free_root:
            return v
        yaw = quat_yaw(self.sim.qpos[:, 3:7]).reshape((-1,) + (1,) * (v.ndim - 2))
        return rotate_z_inverse(yaw.expand(v.shape[:-1]), v)

    # ---------------------------------------------------------------- task hooks
    def _reset_worlds(self, mask: torch.Tensor) -> None:
        """Draw (clip, time) for the masked worlds and put them on the reference state there."""
        n, task = self.num_envs, self.cfg.task
        ids, times = self.library.sample(n, generator=self.rng, truncate_end=task.start_end_margin_s)
        if not task.random_start:
            times = torch.zeros_like(times)
        self.clip_id = torch.where(mask, ids, self.clip_id)
        self.ref_time = torch.where(mask, times, self.ref_time)
        self._update_reference()
        act = torch.full((n, self.embodiment.model.na), task.reset_activation, device=self.device)
        self.sim.reset(mask, qpos=self.ref["qpos"], qvel=self.ref["qvel"], act=act)
        self.episode_step = torch.where(mask, torch.zeros_like(self.episode_step), self.episode_step)
        m2 = mask[:, None]
        self.prev_action = torch.where(m2, torch.full_like(self.prev_action, self.hold_action), self.prev_action)
        self._action = self.prev_action
        pos, _ = self._site_pose()
        self.prev_site_pos = torch.where(m2[..., None], pos, self.prev_site_pos)
        self.prev_ref_site_pos = torch.where(m2[..., None], self.ref["site_pos"], self.prev_ref_site_pos)
        if task.history_steps:
            p = self._proprio_flat(self._proprioception())
            self.history = torch.where(m2[..., None], p[:, None].expand_as(self.history), self.history)

    def _advance(self, action: torch.Tensor) -> None:
        self._action = action
        self.ref_time = self.ref_time + self.dt
        if self.cfg.task.history_steps:
            self.history = torch.cat([self._last_proprio[:, None], self.history[:, :-1]], dim=1)
        if self.cfg.task.refresh_kinematics:
            self.sim.forward_kinematics()
        self._update_reference()

    def _proprioception(self) -> dict[str, torch.Tensor]:
        obs = super()._proprioception()
        pos = self.sim.site_xpos[:, self.site_ids]
        obs["site_pos"] = self._to_heading(pos - pos[:, self.anchor:self.anchor + 1]).flatten(1)
        return obs

    @staticmethod
    def _proprio_flat(parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nan_to_num(torch.cat(list(parts.values()), dim=-1), nan=0.0, posinf=0.0, neginf=0.0)

    def _observation(self) -> dict[str, torch.Tensor]:
        self._track = self._tracking()
        obs = self._proprioception()
        self._last_proprio = self._proprio_flat(obs)
        obs.update(self._goal())
        if self.cfg.task.history_steps:
            obs["history"] = self.history.flatten(1)
        out = self._flatten(obs)
        if self.cfg.task.critic_obs:
            out["critic_observation"] = torch.nan_to_num(
                torch.cat([out["observation"], self._privileged()], dim=-1), nan=0.0, posinf=0.0, neginf=0.0)
        return out

    def _goal(self) -> dict[str, torch.Tensor]:
        sim, g, task = self.sim, self.goal_ref, self.cfg.task
        anchor = sim.site_xpos[:, self.site_ids[self.anchor]]  # (N, 3)
        goal = {"goal_sites": self._to_heading(g["site_pos"] - anchor[:, None, None]).flatten(1)}
        if self.free_root:
            q, qd = sim.qpos, sim.qvel
            dp = self._to_heading(g["qpos"][..., :3] - q[:, None, :3])
            dv = self._to_heading(g["qvel"][..., :3] - qd[:, None, :3])
            dw = (g["qvel"][..., 3:6] - qd[:, None, 3:6]) * VEL_SCALE
            rel = quat_mul(quat_conjugate(q[:, None, 3:7]).expand_as(g["qpos"][..., 3:7]), g["qpos"][..., 3:7])
            rot6 = quat_to_matrix(rel)[..., :2].flatten(-2)
            goal["goal_root"] = torch.cat([dp, dv, dw, rot6], dim=-1).flatten(1)
        if task.goal_joint_pos:
            goal["goal_joints"] = (g["qpos"][..., self.q0:] - sim.qpos[:, None, self.q0:]).flatten(1)
        duration = self.library.duration[self.clip_id].clamp_min(1e-6)
        goal["phase"] = (self.ref_time / duration).clamp(0.0, 1.0)[:, None]
        return goal

    def _tracking(self) -> dict[str, torch.Tensor]:
        """Differences between the sim and the reference now, kept for the reward and the critic."""
        sim, ref, a = self.sim, self.ref, self.anchor
        pos, quat = self._site_pose()
        rel = (pos - pos[:, a:a + 1]) - (ref["site_pos"] - ref["site_pos"][:, a:a + 1])
        vel = (pos - self.prev_site_pos) - (ref["site_pos"] - self.prev_ref_site_pos)
        t = {
            "dq": sim.qpos[:, self.q0:] - ref["qpos"][:, self.q0:],
            "dqd": sim.qvel[:, self.v0:] - ref["qvel"][:, self.v0:],
            "site_rel": rel,
            "site_abs": pos - ref["site_pos"],
            "site_angle": quat_angle(quat, ref["site_quat"]),
            "site_vel": vel / self.dt,
            "site_pos": pos,
        }
        if self.free_root:
            q, qd = sim.qpos, sim.qvel
            t["root_dp"] = q[:, :3] - ref["qpos"][:, :3]
            t["root_angle"] = quat_angle(q[:, 3:7], ref["qpos"][:, 3:7])
            t["root_axis_angle"] = quat_to_axis_angle(quat_mul(quat_conjugate(q[:, 3:7]), ref["qpos"][:, 3:7]))
            t["root_dv"] = qd[:, :3] - ref["qvel"][:, :3]
            t["root_dw"] = qd[:, 3:6] - ref["qvel"][:, 3:6]
        return t

    def _privileged(self) -> torch.Tensor:
        t = self._track
        parts = [t["dq"], t["dqd"] * VEL_SCALE, t["site_rel"].flatten(1), t["site_abs"].flatten(1),
                 t["site_angle"]]
        if self.free_root:
            parts += [t["root_dp"], t["root_axis_angle"], t["root_dv"], t["root_dw"] * VEL_SCALE]
        return torch.cat(parts, dim=-1)

    def _terms_and_errors(self, action: torch.Tensor | None) -> tuple[dict, dict]:
        """Reward terms and tracking errors (each (N,)) of the current state; ``action`` None: no action yet."""
        t, task = self._track, self.cfg.task
        site_rel = t["site_rel"].norm(dim=-1)  # (N, S)
        errors = {"joint_pos": t["dq"].abs().mean(-1), "joint_vel": t["dqd"].abs().mean(-1),
                  "site_rel": site_rel.mean(-1), "site_abs": t["site_abs"].norm(dim=-1).mean(-1),
                  "site_rot": t["site_angle"].mean(-1)}
        joint_sq = t["dq"].square().sum(-1)
        nj = t["dq"].shape[-1]
        terms = {}
        if self.free_root:
            errors["root_pos"] = t["root_dp"].norm(dim=-1)
            errors["root_rot"] = t["root_angle"]
            joint_sq, nj = joint_sq + t["root_angle"].square(), nj + 1
        terms["joint_pos"] = torch.exp(-task.joint_pos_scale * joint_sq / max(nj, 1))
        terms["joint_vel"] = torch.exp(-task.joint_vel_scale * t["dqd"].square().mean(-1))
        if self.free_root:
            terms["root_pos"] = torch.exp(-task.root_pos_scale * t["root_dp"].square().sum(-1))
            vel = t["root_dv"].square().sum(-1) + task.root_ang_vel_factor * t["root_dw"].square().sum(-1)
            terms["root_vel"] = torch.exp(-task.root_vel_scale * vel)
        terms["site_pos"] = torch.exp(-task.site_pos_scale * site_rel.square().mean(-1))
        terms["site_rot"] = torch.exp(-task.site_rot_scale * t["site_angle"].square().mean(-1))
        terms["site_vel"] = torch.exp(-task.site_vel_scale * t["site_vel"].square().sum(-1).mean(-1))
        terms["effort"] = self.sim.act.square().mean(-1)
        if action is None:
            zero = torch.zeros_like(terms["effort"])
            terms["action_rate"], terms["action_bound"] = zero, zero.clone()
        else:
            terms["action_rate"] = (action.clamp(-1.0, 1.0) - self.prev_action).square().mean(-1)
            terms["action_bound"] = (action.abs() - 1.0).clamp_min(0.0).square().mean(-1)
        return terms, errors

    def reward_weights(self) -> dict[str, float]:
        """Weight of each reward term (``total = sum weight * term``), from the task config."""
        return {k: float(getattr(self.cfg.task, f"{k}_weight")) for k in self.reward_term_names}

    def _reward_and_failure(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        task = self.cfg.task
        terms, errors = self._terms_and_errors(self._action)
        self._terms, self._errors = terms, errors
        reward = sum(w * terms[k] for k, w in self.reward_weights().items())
        failed = torch.zeros_like(errors["site_rel"], dtype=torch.bool)
        if task.max_site_error > 0:
            failed = failed | (errors["site_rel"] > task.max_site_error)
        if self.free_root and task.max_root_pos_error > 0:
            failed = failed | (errors["root_pos"] > task.max_root_pos_error)
        if self.free_root and task.max_root_rot_error > 0:
            failed = failed | (errors["root_rot"] > task.max_root_rot_error)
        return reward, failed

    def _truncated(self, terminated: torch.Tensor) -> torch.Tensor:
        """At the clip's last frame or after max_episode_steps (and not failed): bootstrapped, not a failure."""
        end = self.ref_time >= self.library.duration[self.clip_id] - 1e-6
        return (super()._truncated(terminated) | end) & ~terminated

    def _step_extras(self, terminated: torch.Tensor, truncated: torch.Tensor, unstable: torch.Tensor) -> dict:
        terms = {k: torch.where(unstable, torch.zeros_like(v), v) for k, v in self._terms.items()}
        errors = {k: torch.where(unstable, torch.zeros_like(v), v) for k, v in self._errors.items()}
        self.prev_action = self._action.clamp(-1.0, 1.0)
        self.prev_site_pos = self._track["site_pos"]
        self.prev_ref_site_pos = self.ref["site_pos"]
        # per-clip statistics: every ended episode, and those that failed (unstable worlds included)
        self.clip_episodes.index_add_(0, self.clip_id, (terminated | truncated).to(self.clip_episodes.dtype))
        self.clip_failures.index_add_(0, self.clip_id, terminated.to(self.clip_failures.dtype))
        task = self.cfg.task
        self._steps_since_weights += 1
        if task.sampling == "failure" and task.weight_update_interval > 0 and \
                self._steps_since_weights >= task.weight_update_interval:
            self.update_sampling_weights()
        return {"reward_terms": terms, "tracking_errors": errors}

    def _reset_extras(self, obs: dict[str, torch.Tensor], mask: torch.Tensor) -> dict:
        terms, errors = self._terms_and_errors(None)
        terms["site_vel"] = torch.ones_like(terms["site_vel"])  # no velocity history on a fresh state
        return {"reward_terms": terms, "tracking_errors": errors}

    # ---------------------------------------------------------------- clip sampling
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
        task = self.cfg.task
        weights = (self.clip_failure_rate() + task.failure_eps).pow(task.failure_power)
        self.library.set_weights(weights)
        if task.stats_decay != 1.0:
            self.clip_episodes.mul_(task.stats_decay)
            self.clip_failures.mul_(task.stats_decay)
        self._steps_since_weights = 0
        return weights

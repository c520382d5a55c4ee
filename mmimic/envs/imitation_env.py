"""MuscleImitationEnv: the env shell (``MuscleEnv``) with the imitation task (``mmimic.envs.tasks.imitation``):
N muscle-driven worlds tracking reference motions from a MotionLibrary.

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
Also in every output: ``reward_terms`` and ``tracking_errors`` (one (N,) tensor per term; see the
tables in ``mmimic.envs.tasks.imitation``) and ``unstable``.

Timing: after a step ``qpos``/``qvel`` are at the new time, site positions one physics step older
(the simulators' convention) unless ``refresh_kinematics``; joint errors use qpos, site errors the sites.
"""

from __future__ import annotations

import os

import torch

from mmimic.envs.config import MuscleImitationEnvConfig
from mmimic.envs.muscle_env import MuscleEnv, resolve_env_config
from mmimic.envs.tasks.imitation import ImitationTask
from mmimic.motion.library import MotionLibrary


def load_library(motions: str | os.PathLike, device: torch.device, embodiment: str) -> MotionLibrary:
    """A directory (recursive ``*.npz``), a single ``.npz``, or a list file -> MotionLibrary on ``device``."""
    if not str(motions):
        raise ValueError("MuscleImitationEnv: 'motions' is empty; give a directory of motion files, "
                         "a list file, or one .npz (or a MotionLibrary)")
    return MotionLibrary.from_path(motions, device=device, embodiment=embodiment)


def check_motions_fit(library: MotionLibrary, embodiment) -> None:
    """The motions were retargeted onto this model (same joints, mimic sites with the anchor), or a
    ValueError that says what differs."""
    lay, emb, m = library.layout, embodiment, embodiment.model
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
        raise ValueError(f"MuscleImitationEnv({emb.name}): motions {library.paths[0]}...: " + "; ".join(problems))


class MuscleImitationEnv(MuscleEnv):
    """N worlds imitating the clips of ``motions`` (a path, or a MotionLibrary on the env's device).

    Options are the fields of ``MuscleImitationEnvConfig``, ``EmbodimentConfig`` and ``ImitationTaskConfig``.
    The task (``env.task``) holds the per-world reference (``clip_id``, ``ref_time``) and per-clip statistics.

    Examples:
        >>> from mmimic.envs import MuscleImitationEnv
        >>> from mmimic.motion.demo import ensure_demo_library
        >>> motions = ensure_demo_library("arm26", "data", log=lambda *_: None)  # synthesized reaches
        >>> env = MuscleImitationEnv("arm26", motions=motions, num_envs=4, backend="mujoco", history_steps=2,
        ...                          rewards={"site_pos": {"weight": 0.5}})
        >>> td = env.rollout(10, break_when_any_done=False)
        >>> td["next", "tracking_errors", "site_rel"].shape  # mean root-relative site error (m), per step
        torch.Size([4, 10])
        >>> env.reward_weights()["site_pos"]
        0.5
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
        resolve_env_config(cfg)
        dev = torch.device(cfg.device)
        if library is None:
            library = load_library(cfg.motions, dev, cfg.model)
        elif (library.device.type, library.device.index or 0) != (dev.type, dev.index or 0):
            raise ValueError(f"MuscleImitationEnv: the MotionLibrary is on {library.device}, the env on {dev}")
        self.library = library
        super().__init__(cfg)

    def _make_task(self) -> ImitationTask:
        check_motions_fit(self.library, self.embodiment)
        return ImitationTask(self.cfg.task, self.sim, self.body, self.rng, self.num_envs, self.device,
                             self.library, self.embodiment)

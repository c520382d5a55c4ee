"""What every task reads of the body: model tables (joint ranges, muscle normalization) and the
proprioception observation terms (what the body senses of itself), shared by all tasks.

Each term is a function of a step state ``s`` with ``s.sim`` (the simulator's torch views, or any
object with the same attributes) and ``s.body`` (a ``BodyTables``), returning ``(N, size)``.
Every part is scaled to be O(1).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import torch

from mmimic.math import projected_gravity

VEL_SCALE = 0.1  # velocities (joint, muscle, root) are observed x0.1


@dataclass
class BodyTables:
    """Per-model constants on the device, read by the terms of every task."""

    free_root: bool
    q0: int  # first non-root qpos (7 for a free root)
    v0: int  # first non-root qvel (6 for a free root)
    joint_range: torch.Tensor  # (nj, 2) of the hinge/slide joints; unlimited joints get [-pi, pi]
    default_joint_qpos: torch.Tensor  # (nj,) the model's default (keyframe 0) joint positions
    length_lo: torch.Tensor  # (nu,) actuator length range: lower end
    length_span: torch.Tensor  # (nu,) and its width
    muscle_f0: torch.Tensor  # (nu,) peak isometric force F0
    root_body: int

    @classmethod
    def from_model(cls, m: mujoco.MjModel, free_root: bool, default_qpos: torch.Tensor,
                   device: torch.device, name: str = "model") -> "BodyTables":
        q0 = 7 if free_root else 0
        hinge_slide = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        joints = [j for j in range(m.njnt) if int(m.jnt_type[j]) in hinge_slide]
        if len(joints) != m.nq - q0:
            raise ValueError(f"{name}: only hinge/slide joints besides a free root are supported")
        rng = torch.as_tensor(m.jnt_range[joints], dtype=torch.float32, device=device)
        limited = torch.as_tensor(m.jnt_limited[joints], dtype=torch.bool, device=device)
        big = torch.tensor([-torch.pi, torch.pi], device=device)
        lr = torch.as_tensor(m.actuator_lengthrange, dtype=torch.float32, device=device)  # (nu, 2)
        f0 = torch.as_tensor(m.actuator_gainprm[:, 2], dtype=torch.float32, device=device)
        return cls(free_root=free_root, q0=q0, v0=6 if free_root else 0,
                   joint_range=torch.where(limited[:, None], rng, big),
                   default_joint_qpos=default_qpos[q0:].clone(),
                   length_lo=lr[:, 0], length_span=(lr[:, 1] - lr[:, 0]).clamp_min(1e-6),
                   muscle_f0=f0.abs().clamp_min(1e-6),
                   root_body=int(m.jnt_bodyid[0]) if free_root else 0)


# ---------------------------------------------------------------------- proprioception terms
def root(s) -> torch.Tensor:
    """Free root: height (m), gravity in the root frame (3), linear (world) and angular (local)
    velocity (6, x0.1)."""
    q, qd = s.sim.qpos, s.sim.qvel
    return torch.cat([q[:, 2:3], projected_gravity(q[:, 3:7]), qd[:, :6] * VEL_SCALE], -1)


def joint_pos(s) -> torch.Tensor:
    """Non-root joint positions (rad or m)."""
    return s.sim.qpos[:, s.body.q0:]


def joint_vel(s) -> torch.Tensor:
    """Non-root joint velocities (x0.1)."""
    return s.sim.qvel[:, s.body.v0:] * VEL_SCALE


def muscle_length(s) -> torch.Tensor:
    """0..1 across each actuator's length range."""
    return (s.sim.actuator_length - s.body.length_lo) / s.body.length_span


def muscle_velocity(s) -> torch.Tensor:
    """Length ranges per second (x0.1)."""
    return s.sim.actuator_velocity / s.body.length_span * VEL_SCALE


def muscle_force(s) -> torch.Tensor:
    """Force / F0 (negative: pulling)."""
    return s.sim.actuator_force / s.body.muscle_f0


def muscle_activation(s) -> torch.Tensor:
    """MuJoCo's muscle activation, 0..1."""
    return s.sim.act


def effort(s) -> torch.Tensor:
    """Reward term: mean squared muscle activation (>= 0; give it a negative weight)."""
    return s.sim.act.square().mean(-1)


# name -> (function, free root only), in the order they are concatenated
PROPRIOCEPTION = {
    "root": (root, True),
    "joint_pos": (joint_pos, False),
    "joint_vel": (joint_vel, False),
    "muscle_length": (muscle_length, False),
    "muscle_velocity": (muscle_velocity, False),
    "muscle_force": (muscle_force, False),
    "muscle_activation": (muscle_activation, False),
}

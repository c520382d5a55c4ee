"""Rotation helpers on torch tensors. Quaternions are MuJoCo's order, (w, x, y, z), everywhere."""

from __future__ import annotations

import torch


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) -> (..., 4): the inverse rotation of a unit quaternion."""
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4)."""
    w, xyz = q[..., :1], q[..., 1:]
    t = 2.0 * torch.cross(xyz, v, dim=-1)
    return v + w * t + torch.cross(xyz, t, dim=-1)


def quat_rotate_inverse(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Express world vectors v (..., 3) in the frame whose orientation is q (..., 4)."""
    return quat_rotate(quat_conjugate(q), v)


def projected_gravity(q: torch.Tensor) -> torch.Tensor:
    """World down (0, 0, -1) seen from a body with orientation q: (..., 4) -> (..., 3).

    Upright (q = identity) gives (0, 0, -1); its z component is -cos(tilt).
    """
    down = torch.zeros(q.shape[:-1] + (3,), dtype=q.dtype, device=q.device)
    down[..., 2] = -1.0
    return quat_rotate_inverse(q, down)

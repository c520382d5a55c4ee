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


def quat_slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Spherical interpolation of unit quaternions: (..., 4), (..., 4), t (...) -> (..., 4), unit.

    q and -q are the same rotation, so q1 is flipped onto q0's hemisphere first: the result takes
    the short way round. The angle comes from atan2 (not acos), which stays accurate for nearly
    equal quaternions; below 1e-6 rad it falls back to a normalised lerp, avoiding 0/0.
    t = 0 gives q0, t = 1 gives q1 (up to sign). Branch-free, so it batches without host syncs.
    """
    t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device).unsqueeze(-1)
    dot = (q0 * q1).sum(dim=-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    half = torch.atan2((q0 - q1).norm(dim=-1, keepdim=True), (q0 + q1).norm(dim=-1, keepdim=True))
    theta = 2.0 * half  # angle between the two 4-vectors
    small = theta < 1e-6
    sin_theta = torch.where(small, torch.ones_like(theta), torch.sin(theta))
    w0 = torch.where(small, 1.0 - t, torch.sin((1.0 - t) * theta) / sin_theta)
    w1 = torch.where(small, t, torch.sin(t * theta) / sin_theta)
    out = w0 * q0 + w1 * q1
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rotation vectors (..., 3) (axis * angle, radians; SMPL's pose format) -> matrices (..., 3, 3).

    Rodrigues' formula R = I + a K + b K^2 with a = sin(t)/t and b = (1 - cos t)/t^2; both use
    their Taylor series below 1e-4 rad, so zero rotations (most of a flat hand) stay exact.
    """
    t2 = (aa * aa).sum(dim=-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    small = t2 < 1e-8
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2_safe)
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / t2_safe)
    x, y, z = aa[..., 0], aa[..., 1], aa[..., 2]
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(aa.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_quat(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4), (w, x, y, z) with w >= 0.

    Each of the four rows below is 4 * q_k * q for one component k; the row with the largest
    4 * q_k^2 on its diagonal is the best conditioned, so it is the one normalised (no division by
    a small number for any rotation, 180 degrees included).
    """
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    rows = torch.stack([
        torch.stack([1.0 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, 1.0 + m00 - m11 - m22, m01 + m10, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m01 + m10, 1.0 - m00 + m11 - m22, m12 + m21], dim=-1),
        torch.stack([m10 - m01, m02 + m20, m12 + m21, 1.0 - m00 - m11 + m22], dim=-1),
    ], dim=-2)  # (..., 4, 4)
    best = torch.diagonal(rows, dim1=-2, dim2=-1).argmax(dim=-1)
    q = torch.gather(rows, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4), (w, x, y, z) -> rotation matrices (..., 3, 3)."""
    w, x, y, z = q.unbind(dim=-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def quat_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4), (w, x, y, z) -> rotation vectors (..., 3), angle in [0, pi]."""
    q = torch.where(q[..., :1] < 0, -q, q)
    s = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(s, q[..., :1])
    small = s < 1e-8
    # angle / sin(angle / 2) -> 2 / w as the angle -> 0
    scale = torch.where(small, 2.0 / q[..., :1].clamp_min(1e-12), angle / torch.where(small, torch.ones_like(s), s))
    return q[..., 1:] * scale


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> rotation vectors (..., 3), angle in [0, pi]."""
    return quat_to_axis_angle(matrix_to_quat(m))


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of (..., 4) quaternions: the rotation b, then a."""
    aw, ax, ay, az = a.unbind(dim=-1)
    bw, bx, by, bz = b.unbind(dim=-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (radians, in [0, pi]) of the rotation between unit quaternions a and b: (..., 4) -> (...).

    From |<a, b>| = cos(angle / 2), via atan2 of the two half-chords (accurate near 0, no acos).
    """
    b = torch.where((a * b).sum(dim=-1, keepdim=True) < 0, -b, b)
    return 4.0 * torch.atan2((a - b).norm(dim=-1), (a + b).norm(dim=-1))


def quat_yaw(q: torch.Tensor) -> torch.Tensor:
    """Heading (radians) of a body with orientation q (..., 4): the world angle of its x axis about z."""
    w, x, y, z = q.unbind(dim=-1)
    return torch.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def rotate_z_inverse(yaw: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Express world vectors v (..., 3) in a frame turned by ``yaw`` (...) about z (the heading frame)."""
    c, s = torch.cos(yaw).unsqueeze(-1), torch.sin(yaw).unsqueeze(-1)
    x, y, z = v[..., :1], v[..., 1:2], v[..., 2:]
    return torch.cat([c * x + s * y, -s * x + c * y, z], dim=-1)

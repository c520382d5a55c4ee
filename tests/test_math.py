"""Quaternion helpers (w, x, y, z) against MuJoCo's own C implementations."""

import mujoco
import numpy as np
import pytest
import torch

from mmimic.math import (
    projected_gravity, quat_angle, quat_conjugate, quat_mul, quat_rotate, quat_rotate_inverse, quat_to_axis_angle,
    quat_yaw, rotate_z_inverse,
)


@pytest.fixture
def quats_and_vecs():
    rng = np.random.default_rng(1234)
    q = rng.normal(size=(64, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    v = rng.normal(size=(64, 3)) * 3.0
    return q, v


def _mj_rot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, v, q)
    return out


def _mj_neg(q: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_negQuat(out, q)
    return out


def test_quat_conjugate_matches_mju_negQuat(quats_and_vecs):
    q, _ = quats_and_vecs
    got = quat_conjugate(torch.as_tensor(q)).numpy()
    want = np.stack([_mj_neg(qi) for qi in q])
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_quat_rotate_matches_mju_rotVecQuat(quats_and_vecs, dtype, atol):
    q, v = quats_and_vecs
    got = quat_rotate(torch.as_tensor(q, dtype=dtype), torch.as_tensor(v, dtype=dtype)).numpy()
    want = np.stack([_mj_rot(qi, vi) for qi, vi in zip(q, v)])
    np.testing.assert_allclose(got, want, atol=atol * np.abs(want).max())


def test_quat_rotate_inverse_matches_mujoco(quats_and_vecs):
    q, v = quats_and_vecs
    got = quat_rotate_inverse(torch.as_tensor(q), torch.as_tensor(v)).numpy()
    want = np.stack([_mj_rot(_mj_neg(qi), vi) for qi, vi in zip(q, v)])
    np.testing.assert_allclose(got, want, atol=1e-12)
    # and it undoes quat_rotate
    back = quat_rotate(torch.as_tensor(q), torch.as_tensor(got)).numpy()
    np.testing.assert_allclose(back, v, atol=1e-12)


def test_quat_rotate_broadcasts_leading_dims(quats_and_vecs):
    q, v = quats_and_vecs
    qt = torch.as_tensor(q).reshape(4, 16, 4)
    vt = torch.as_tensor(v).reshape(4, 16, 3)
    out = quat_rotate(qt, vt)
    assert out.shape == (4, 16, 3)
    flat = quat_rotate(torch.as_tensor(q), torch.as_tensor(v))
    np.testing.assert_allclose(out.reshape(64, 3).numpy(), flat.numpy())


def test_projected_gravity_identity_is_down():
    g = projected_gravity(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert g.shape == (3,)
    torch.testing.assert_close(g, torch.tensor([0.0, 0.0, -1.0]))
    gb = projected_gravity(torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 3))
    torch.testing.assert_close(gb, torch.tensor([[0.0, 0.0, -1.0]] * 3))


def test_projected_gravity_matches_mujoco_and_tilt(quats_and_vecs):
    q, _ = quats_and_vecs
    got = projected_gravity(torch.as_tensor(q)).numpy()
    want = np.stack([_mj_rot(_mj_neg(qi), np.array([0.0, 0.0, -1.0])) for qi in q])
    np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-12)
    # z component is -cos(tilt): rotating by angle t about x tilts the body by t
    for t in (0.3, 1.2, 2.5):
        qx = torch.tensor([np.cos(t / 2), np.sin(t / 2), 0.0, 0.0], dtype=torch.float64)
        assert projected_gravity(qx)[2].item() == pytest.approx(-np.cos(t), abs=1e-12)


def test_quat_mul_matches_mujoco(quats_and_vecs):
    q, _ = quats_and_vecs
    a, b = q, np.roll(q, 1, axis=0)
    out = quat_mul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    for i in range(len(q)):
        ref = np.zeros(4)
        mujoco.mju_mulQuat(ref, a[i], b[i])
        np.testing.assert_allclose(out[i], ref, atol=1e-12)


def test_quat_angle_is_the_relative_rotation_angle(quats_and_vecs):
    q, _ = quats_and_vecs
    a, b = torch.from_numpy(q), torch.from_numpy(np.roll(q, 3, axis=0))
    expected = quat_to_axis_angle(quat_mul(quat_conjugate(a), b)).norm(dim=-1)
    torch.testing.assert_close(quat_angle(a, b), expected)
    torch.testing.assert_close(quat_angle(a, -a), torch.zeros(len(q), dtype=a.dtype))  # q and -q: one rotation
    small = torch.tensor([[np.cos(5e-7), 0.0, 0.0, np.sin(5e-7)]], dtype=torch.float64)
    torch.testing.assert_close(quat_angle(torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64), small),
                               torch.tensor([1e-6], dtype=torch.float64))


def test_heading_frame_undoes_a_yaw(quats_and_vecs):
    _, v = quats_and_vecs
    yaw = torch.linspace(-3.0, 3.0, len(v), dtype=torch.float64)
    qz = torch.stack([torch.cos(yaw / 2), 0 * yaw, 0 * yaw, torch.sin(yaw / 2)], dim=-1)
    torch.testing.assert_close(quat_yaw(qz), yaw)
    vt = torch.from_numpy(v)
    torch.testing.assert_close(rotate_z_inverse(quat_yaw(qz), quat_rotate(qz, vt)), vt)

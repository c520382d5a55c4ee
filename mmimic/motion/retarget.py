"""Retarget SMPL joint trajectories onto a muscle model: targets, inverse kinematics, QA metrics.

1. Targets (``keypoint_targets``): each mimic site of the embodiment's SMPL map gets a world
   target per frame, built from its parent's: ``root`` follows the SMPL joint (scaled by the
   clip's leg-length ratio; a fixed-root model keeps it fixed and sees the motion in the SMPL
   chest frame), ``rigid`` adds the model's own rest offset rotated by the SMPL segment's
   rotation, ``limb`` adds the model's segment length along the SMPL segment's direction. So
   segment lengths are the model's (per-segment scale) and directions are the human's.
2. Resample the targets to the output rate (the env's control rate by default).
3. IK (``solve_ik``): per frame, warm-started from the previous one, damped Gauss-Newton on
   weighted site errors, the model's joint-equality polynomials (coupled knee/shoulder joints) as
   stiff residuals, and small pulls towards the previous frame (smoothness) and the default pose
   (for joints no site sees); joint limits are enforced by projection after every step.
4. Floor: the clip is lifted so that the feet's lowest collision point touches z = 0, and any
   frame still below is raised. Velocities: finite differences with ``mj_differentiatePos``.

Written by hand rather than with mink + daqp: the same least squares without a QP per frame is
about 10x faster than the 0.02 s/frame target on one core (see README for the measured figures),
and joint limits as a projection keep violations at zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import mujoco
import numpy as np
import torch

from mmimic.embodiments import Embodiment
from mmimic.embodiments.smpl_map import DEFAULT_SMPL_TO_MODEL, SmplMap
from mmimic.math import quat_to_matrix
from mmimic.motion.motion_file import MotionClip, finite_difference_qvel

# SMPL's native body frame (x left, y up, z forward) -> the frame of models facing -y (x left, z up):
# the default of ``SmplMap.smpl_to_model``. Each map may give its own (arm26 faces +x); the code below
# always reads the map's.
SMPL_TO_MODEL = np.array(DEFAULT_SMPL_TO_MODEL)


@dataclass
class RetargetConfig:
    """IK and QA settings (defaults measured on the synthesized demo motions)."""

    fps: float | None = None  # output frame rate; None: the embodiment's control rate
    iterations: int = 30  # max Gauss-Newton steps per frame
    step_tolerance: float = 1e-4  # stop when the step's norm falls below (rad / m)
    damping: float = 1e-4  # Levenberg-Marquardt damping
    smooth_weight: float = 0.01  # pull towards the previous frame's pose
    rest_weight: float = 0.001  # pull towards the default pose (keeps joints no site sees in place)
    equality_weight: float = 30.0  # joint-equality (coupled joint) residual weight
    tendon_jump_m: float = 0.005  # a tendon length change this far from J_ten dq is a wrapping jump
    floor: bool = True  # free-root models: feet on, never below, z = 0


# ---------------------------------------------------------------------------------------- targets
def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    """(..., 4) w,x,y,z -> (..., 3, 3), numpy in and out."""
    return quat_to_matrix(torch.from_numpy(np.asarray(q, dtype=np.float64))).numpy()


def rest_site_positions(emb: Embodiment) -> np.ndarray:
    """(K, 3) mimic site positions of the model in its default pose (keyframe 0 or qpos0)."""
    m = emb.model
    d = mujoco.MjData(m)
    if m.nkey:
        mujoco.mj_resetDataKeyframe(m, d, 0)
    mujoco.mj_kinematics(m, d)
    return np.array([d.site_xpos[m.site(k.site).id] for k in emb.smpl_map.keypoints])


def keypoint_targets(smpl_map: SmplMap, rest: np.ndarray, joint_names: list[str], positions: np.ndarray,
                     rotations: np.ndarray, free_root: bool) -> tuple[np.ndarray, float]:
    """World targets (T, K, 3) of the mimic sites, and the global scale used for the root.

    positions (T, J, 3) and rotations (T, J, 4, w x y z) are SMPL joints in the z-up world.
    """
    idx = {n: i for i, n in enumerate(joint_names)}
    kps = smpl_map.keypoints
    site_index = {k.site: i for i, k in enumerate(kps)}
    for k in kps:
        for joint in (k.smpl, k.frame):
            if joint not in idx:
                raise ValueError(f"SMPL map of {smpl_map.embodiment}: unknown SMPL joint {joint!r} (site {k.site})")
    R = _quat_to_mat(rotations)  # (T, J, 3, 3) SMPL body frame -> world
    to_model = smpl_map.smpl_to_model_matrix  # SMPL body frame -> the model's body frame
    T = positions.shape[0]
    root = next(k for k in kps if k.mode == "root")
    if free_root:
        frame = np.broadcast_to(np.eye(3), (T, 3, 3))  # world stays world
        scale = _leg_scale(kps, site_index, rest, idx, positions)
    else:  # fixed root: see the motion from the SMPL chest, placed at the model's chest
        frame = to_model @ np.swapaxes(R[:, idx[root.frame]], -1, -2)
        scale = 1.0
    targets = np.zeros((T, len(kps), 3))
    for i, k in enumerate(kps):
        if k.mode == "root":
            targets[:, i] = scale * positions[:, idx[k.smpl]] if free_root else rest[i]
            continue
        p = site_index[k.parent]
        offset = rest[i] - rest[p]
        if k.mode == "rigid":
            vec = R[:, idx[k.frame]] @ (to_model.T @ offset)
        else:  # limb
            parent_joint = kps[p].smpl
            vec = positions[:, idx[k.smpl]] - positions[:, idx[parent_joint]]
            vec = vec / np.maximum(np.linalg.norm(vec, axis=-1, keepdims=True), 1e-9) * np.linalg.norm(offset)
        targets[:, i] = targets[:, p] + np.einsum("tij,tj->ti", frame, vec)
    return targets, scale


def _leg_scale(kps, site_index, rest, idx, positions) -> float:
    """Model leg length over the clip's SMPL leg length (hip-knee-ankle), both sides averaged."""
    model_len, smpl_len = [], []
    for k in kps:
        if k.mode == "limb" and k.smpl in ("L_Knee", "R_Knee", "L_Ankle", "R_Ankle"):
            parent = kps[site_index[k.parent]]
            model_len.append(np.linalg.norm(rest[site_index[k.site]] - rest[site_index[k.parent]]))
            smpl_len.append(np.linalg.norm(positions[:, idx[k.smpl]] - positions[:, idx[parent.smpl]], axis=-1).mean())
    return float(sum(model_len) / sum(smpl_len)) if smpl_len else 1.0


def resample(x: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Linear resampling along axis 0 from fps_in to fps_out, covering the same duration."""
    T = x.shape[0]
    duration = (T - 1) / fps_in
    n_out = max(int(round(duration * fps_out)) + 1, 2)
    t = np.arange(n_out) / fps_out * fps_in
    t = np.clip(t, 0, T - 1)
    i0 = np.floor(t).astype(int)
    i1 = np.minimum(i0 + 1, T - 1)
    a = (t - i0).reshape((-1,) + (1,) * (x.ndim - 1))
    return (1 - a) * x[i0] + a * x[i1]


# ------------------------------------------------------------------------------------------- IK
class IKSolver:
    """Per-frame damped Gauss-Newton IK of the mimic sites onto targets, on C MuJoCo."""

    def __init__(self, emb: Embodiment, cfg: RetargetConfig):
        self.emb, self.cfg = emb, cfg
        m = self.m = emb.model
        self.d = mujoco.MjData(m)
        if m.nkey:
            mujoco.mj_resetDataKeyframe(m, self.d, 0)
        self.q_default = self.d.qpos.copy()
        self.site_ids = np.array([m.site(k.site).id for k in emb.smpl_map.keypoints])
        self.sqrt_w = np.sqrt(np.array([k.weight for k in emb.smpl_map.keypoints]))
        # hinge/slide joints with limits: (qpos address, dof address, lo, hi)
        lim = [j for j in range(m.njnt) if m.jnt_limited[j] and m.jnt_type[j] in (2, 3)]
        self.lim_qadr = m.jnt_qposadr[lim]
        self.lim_lo, self.lim_hi = m.jnt_range[lim, 0], m.jnt_range[lim, 1]
        # joint equalities: q1 - q1_0 = poly(q2 - q2_0)
        eqs = [e for e in range(m.neq) if m.eq_type[e] == mujoco.mjtEq.mjEQ_JOINT and m.eq_active0[e]]
        self.eq_j1 = m.eq_obj1id[eqs]
        self.eq_j2 = m.eq_obj2id[eqs]
        self.eq_coef = m.eq_data[eqs, :5]
        self.free = emb.free_root
        self.nroot = 6 if self.free else 0
        self._jacp = np.zeros((3, m.nv))
        self._dq = np.zeros(m.nv)

    def _residuals(self, q: np.ndarray, target: np.ndarray, q_prev: np.ndarray):
        m, d, cfg = self.m, self.d, self.cfg
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        K = len(self.site_ids)
        neq = len(self.eq_j1)
        J = np.zeros((3 * K + neq, m.nv))
        r = np.zeros(3 * K + neq)
        for i, sid in enumerate(self.site_ids):
            mujoco.mj_jacSite(m, d, self._jacp, None, sid)
            J[3 * i:3 * i + 3] = self.sqrt_w[i] * self._jacp
            r[3 * i:3 * i + 3] = self.sqrt_w[i] * (d.site_xpos[sid] - target[i])
        if neq:
            se = np.sqrt(cfg.equality_weight)
            qa1 = m.jnt_qposadr[self.eq_j1]
            x = np.where(self.eq_j2 >= 0, q[m.jnt_qposadr[self.eq_j2]] - self.q0_of(self.eq_j2), 0.0)
            c = self.eq_coef
            poly = c[:, 0] + x * (c[:, 1] + x * (c[:, 2] + x * (c[:, 3] + x * c[:, 4])))
            dpoly = c[:, 1] + x * (2 * c[:, 2] + x * (3 * c[:, 3] + x * 4 * c[:, 4]))
            rows = np.arange(3 * K, 3 * K + neq)
            r[rows] = se * (q[qa1] - m.qpos0[qa1] - poly)
            J[rows, m.jnt_dofadr[self.eq_j1]] += se
            has2 = self.eq_j2 >= 0
            J[rows[has2], m.jnt_dofadr[self.eq_j2[has2]]] -= se * dpoly[has2]
        mujoco.mj_differentiatePos(m, self._dq, 1.0, q_prev, q)
        dprev = self._dq.copy()
        mujoco.mj_differentiatePos(m, self._dq, 1.0, self.q_default, q)
        drest = self._dq.copy()
        drest[: self.nroot] = 0.0
        return J, r, dprev, drest

    def q0_of(self, joints: np.ndarray) -> np.ndarray:
        return self.m.qpos0[self.m.jnt_qposadr[joints]]

    def solve_frame(self, q: np.ndarray, target: np.ndarray, q_prev: np.ndarray, first: bool = False) -> np.ndarray:
        """One frame. ``first``: no previous frame to stay near, so no smoothing and more iterations."""
        m, cfg = self.m, self.cfg
        ws, wr = (0.0 if first else cfg.smooth_weight), cfg.rest_weight
        reg = np.full(m.nv, ws + wr)
        reg[: self.nroot] = ws
        q = q.copy()
        for _ in range(cfg.iterations * (10 if first else 1)):
            J, r, dprev, drest = self._residuals(q, target, q_prev)
            H = J.T @ J
            H[np.diag_indices_from(H)] += reg + cfg.damping
            g = J.T @ r + ws * dprev + wr * drest
            step = -np.linalg.solve(H, g)
            mujoco.mj_integratePos(m, q, step, 1.0)
            q[self.lim_qadr] = np.clip(q[self.lim_qadr], self.lim_lo, self.lim_hi)
            if np.linalg.norm(step) < cfg.step_tolerance:
                break
        return q

    def initial_pose(self, target0: np.ndarray, root_rot: np.ndarray | None) -> np.ndarray:
        """Default pose; a free root is placed at the anchor target with the SMPL pelvis heading."""
        q = self.q_default.copy()
        if self.free and root_rot is not None:
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, root_rot.reshape(-1))
            q[3:7] = quat
            d = self.d
            d.qpos[:] = q
            mujoco.mj_kinematics(self.m, d)
            anchor = [k.site for k in self.emb.smpl_map.keypoints].index(self.emb.smpl_map.anchor)
            q[:3] += target0[anchor] - d.site_xpos[self.site_ids[anchor]]
        return q

    def solve(self, targets: np.ndarray, root_rot0: np.ndarray | None = None) -> np.ndarray:
        """(T, K, 3) targets -> (T, nq) joint trajectory, warm-started frame to frame."""
        q = self.initial_pose(targets[0], root_rot0)
        q_prev = q.copy()
        out = np.zeros((targets.shape[0], self.m.nq))
        for t in range(targets.shape[0]):
            q = self.solve_frame(q, targets[t], q_prev, first=t == 0)
            out[t] = q
            q_prev = q
        return out


# ---------------------------------------------------------------------------------- floor and QA
def _foot_geoms(emb: Embodiment) -> np.ndarray:
    """Collidable geoms of the subtrees below the ankle keypoints' bodies."""
    m = emb.model
    roots = {m.body(k.body).id for k in emb.smpl_map.keypoints if k.smpl in ("L_Ankle", "R_Ankle")}
    bodies = set(roots)
    for b in range(m.nbody):
        if m.body_parentid[b] in bodies:
            bodies.add(b)
    return np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in bodies
                     and (m.geom_contype[g] or m.geom_conaffinity[g])], dtype=int)


def lowest_point(m: mujoco.MjModel, d: mujoco.MjData, geoms: np.ndarray) -> float:
    """Lowest world z of the given geoms (sphere, capsule, cylinder, ellipsoid, box) after kinematics."""
    low = np.inf
    for g in geoms:
        z, R, s, typ = d.geom_xpos[g, 2], d.geom_xmat[g].reshape(3, 3), m.geom_size[g], m.geom_type[g]
        if typ == mujoco.mjtGeom.mjGEOM_SPHERE:
            h = s[0]
        elif typ == mujoco.mjtGeom.mjGEOM_CAPSULE:
            h = s[0] + abs(R[2, 2]) * s[1]
        elif typ == mujoco.mjtGeom.mjGEOM_CYLINDER:
            h = abs(R[2, 2]) * s[1] + s[0] * np.sqrt(max(0.0, 1 - R[2, 2] ** 2))
        elif typ == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
            h = np.sqrt(np.sum((R[2] * s) ** 2))
        else:  # box and others: bounding box
            h = np.sum(np.abs(R[2]) * s)
        low = min(low, z - h)
    return float(low)


def place_on_floor(emb: Embodiment, qpos: np.ndarray) -> tuple[np.ndarray, float]:
    """Shift a free-root clip so the feet touch z=0, raise frames still below. Returns (qpos, shift)."""
    m, d = emb.model, mujoco.MjData(emb.model)
    geoms = _foot_geoms(emb)
    if not emb.free_root or len(geoms) == 0:
        return qpos, 0.0
    low = np.empty(len(qpos))
    for t, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        low[t] = lowest_point(m, d, geoms)
    shift = -float(np.percentile(low, 2))
    qpos = qpos.copy()
    qpos[:, 2] += shift + np.maximum(0.0, -(low + shift))
    return qpos, shift


def qa_metrics(emb: Embodiment, qpos: np.ndarray, targets: np.ndarray, fps: float, tendon_jump_m: float) -> dict:
    """Keypoint RMSE, joint-limit violation, tendon jump rate and floor penetration of a clip."""
    m, d = emb.model, mujoco.MjData(emb.model)
    sites = np.array([m.site(k.site).id for k in emb.smpl_map.keypoints])
    lim = [j for j in range(m.njnt) if m.jnt_limited[j] and m.jnt_type[j] in (2, 3)]
    qadr = m.jnt_qposadr[lim]
    geoms = _foot_geoms(emb) if emb.free_root else np.array([], int)
    T = len(qpos)
    err = np.empty((T, len(sites)))
    ten_len = np.empty((T, m.ntendon))
    ten_J = np.empty((T, m.ntendon, m.nv))
    low = np.full(T, np.inf)
    for t in range(T):
        d.qpos[:] = qpos[t]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_tendon(m, d)
        err[t] = np.linalg.norm(d.site_xpos[sites] - targets[t], axis=-1)
        ten_len[t] = d.ten_length
        ten_J[t] = _dense_ten_J(m, d)
        if len(geoms):
            low[t] = lowest_point(m, d, geoms)
    lo, hi = m.jnt_range[lim, 0], m.jnt_range[lim, 1]
    viol = (qpos[:, qadr] < lo - 1e-6) | (qpos[:, qadr] > hi + 1e-6)
    dq = np.empty((T - 1, m.nv))
    for t in range(T - 1):
        mujoco.mj_differentiatePos(m, dq[t], 1.0, qpos[t], qpos[t + 1])
    predicted = 0.5 * np.einsum("tkv,tv->tk", ten_J[:-1] + ten_J[1:], dq)
    jumps = np.abs(np.diff(ten_len, axis=0) - predicted) > tendon_jump_m
    return {
        "rmse_m": float(np.sqrt(np.mean(err ** 2))),
        "max_keypoint_error_m": float(err.max()),
        "joint_limit_violation_pct": float(100.0 * viol.mean()) if viol.size else 0.0,
        "tendon_jump_pct": float(100.0 * jumps.any(axis=1).mean()) if T > 1 else 0.0,
        "floor_penetration_m": float(max(0.0, -low.min())) if len(geoms) else 0.0,
        "frames": int(T),
        "fps": float(fps),
    }


def _dense_ten_J(m: mujoco.MjModel, d: mujoco.MjData) -> np.ndarray:
    """(ntendon, nv) tendon Jacobian; MuJoCo keeps it sparse with the pattern in the model."""
    if d.ten_J.size == m.ntendon * m.nv:
        return d.ten_J.reshape(m.ntendon, m.nv).copy()
    dense = np.zeros((m.ntendon, m.nv))
    mujoco.mju_sparse2dense(dense, d.ten_J, m.ten_J_rownnz, m.ten_J_rowadr, m.ten_J_colind)
    return dense


# ------------------------------------------------------------------------------------- one clip
@dataclass
class RetargetResult:
    clip: MotionClip
    qa: dict


def retarget_joints(emb: Embodiment, joint_names: list[str], positions: np.ndarray, rotations: np.ndarray,
                    fps_in: float, source: str, cfg: RetargetConfig | None = None,
                    solver: IKSolver | None = None) -> RetargetResult:
    """SMPL joints of one clip (world, z-up) -> a motion clip on ``emb`` with QA metrics."""
    cfg = cfg or RetargetConfig()
    if emb.smpl_map is None:
        raise ValueError(f"embodiment {emb.name!r} has no SMPL map (mmimic/embodiments/smpl_maps/)")
    fps_out = float(cfg.fps or 1.0 / emb.control_dt)
    solver = solver or IKSolver(emb, cfg)
    rest = rest_site_positions(emb)
    targets, scale = keypoint_targets(emb.smpl_map, rest, joint_names, positions, rotations, emb.free_root)
    targets = resample(targets, fps_in, fps_out)
    root_rot0 = None
    if emb.free_root:
        pelvis = joint_names.index(next(k.frame for k in emb.smpl_map.keypoints if k.mode == "root"))
        root_rot0 = _quat_to_mat(rotations[0, pelvis]) @ emb.smpl_map.smpl_to_model_matrix.T
    t0 = time.perf_counter()
    qpos = solver.solve(targets, root_rot0)
    ik_seconds = time.perf_counter() - t0
    shift = 0.0
    if cfg.floor:
        qpos, shift = place_on_floor(emb, qpos)
        targets = targets + np.array([0.0, 0.0, shift])
    qa = qa_metrics(emb, qpos, targets, fps_out, cfg.tendon_jump_m)
    qa.update(seconds_per_frame=ik_seconds / len(qpos), scale=scale, floor_shift_m=shift, source_fps=float(fps_in))
    m = emb.model
    d = mujoco.MjData(m)
    site_ids = [m.site(k.site).id for k in emb.smpl_map.keypoints]
    site_pos = np.empty((len(qpos), len(site_ids), 3), np.float32)
    site_quat = np.empty((len(qpos), len(site_ids), 4), np.float32)
    quat = np.empty(4)
    for t, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        site_pos[t] = d.site_xpos[site_ids]
        for i, sid in enumerate(site_ids):
            mujoco.mju_mat2Quat(quat, d.site_xmat[sid])
            site_quat[t, i] = quat
    clip = MotionClip(
        qpos=qpos.astype(np.float32),
        qvel=finite_difference_qvel(m, qpos, fps_out).astype(np.float32),
        fps=fps_out,
        joint_names=[m.joint(j).name for j in range(m.njnt)],
        free_root=emb.free_root,
        site_names=emb.smpl_map.site_names,
        site_pos=site_pos,
        site_quat=site_quat,
        embodiment=emb.name,
        source=source,
        qa=qa,
    )
    return RetargetResult(clip=clip, qa=qa)

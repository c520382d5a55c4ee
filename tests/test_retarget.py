"""Retargeting SMPL motions onto the muscle models: targets, IK quality (the issue's QA targets), floor,
output files, the batch driver (resume, bad inputs, summary.json), the CLI, the QA metrics themselves and
determinism. Clips are short (1.0-1.2 s at 30 fps -> ~100-120 IK frames at the 100 Hz control rate)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

from helpers import refuse_writes_in
from mmimic.cli import main
from mmimic.embodiments import EMBODIMENTS, EmbodimentInfo, embodiment_info
from mmimic.embodiments import smpl_map as smpl_map_module
from mmimic.math import axis_angle_to_matrix, matrix_to_axis_angle
from mmimic.motion import batch
from mmimic.motion.batch import SUMMARY_KEYS, retarget_dir, write_summary
from mmimic.motion.library import MotionLibrary
from mmimic.motion.motion_file import MotionClip, load_motion, save_motion
from mmimic.motion.retarget import (
    SMPL_TO_MODEL, IKSolver, RetargetConfig, _foot_geoms, keypoint_targets, lowest_point, place_on_floor,
    qa_metrics, rest_site_positions, retarget_joints,
)
from mmimic.motion.smpl import AmassClip, smpl_joints
from mmimic.motion.synth import save_npz, synthesize, write_synth

# The targets for a retargeted clip (seconds_per_frame: IK time per output frame on one core).
TARGETS = {"rmse_m": 0.025, "joint_limit_violation_pct": 0.27, "tendon_jump_pct": 3.2,
           "seconds_per_frame": 0.02, "floor_penetration_m": 0.005}
DURATION = 1.2  # seconds of synthesized motion per clip
QA_SEEN: dict[str, dict] = {}  # clip -> QA, printed at the end of the module (pytest -s, or -rA)


# ------------------------------------------------------------------------------------------- helpers

def _joints(arrays: dict, path: str = "<mem>"):
    """SMPL world joints (built-in skeleton) of an AMASS-like dict, as numpy arrays."""
    clip = AmassClip(path, np.asarray(arrays["poses"], float), np.asarray(arrays["trans"], float),
                     np.zeros(16), "neutral", float(arrays["mocap_framerate"]), "smplh")
    sj = smpl_joints(clip)
    return list(sj.joint_names), sj.positions.numpy(), sj.rotations.numpy(), sj.fps


def _rest_clip(T: int = 5, fps: float = 30.0) -> dict:
    """SMPL's rest (T-)pose, rotated +90 deg about x: y-up -> z-up, SMPL facing -y like the models."""
    poses = np.zeros((T, 156))
    poses[:, :3] = [np.pi / 2, 0.0, 0.0]
    trans = np.zeros((T, 3))
    trans[:, 2] = 0.9
    return dict(poses=poses, trans=trans, mocap_framerate=fps)


def _targets(emb, arrays):
    names, pos, rot, _ = _joints(arrays)
    rest = rest_site_positions(emb)
    targets, scale = keypoint_targets(emb.smpl_map, rest, names, pos, rot, emb.free_root)
    return targets, scale, rest, names, pos


def _side(site: str) -> int:
    return 1 if site.startswith("left") else -1


def _rz(deg: float) -> torch.Tensor:
    return axis_angle_to_matrix(torch.tensor([[0.0, 0.0, np.radians(deg)]], dtype=torch.float64))


def _turned(root_orient: np.ndarray, yaw_deg: float) -> np.ndarray:
    """root_orient (T, 3) turned by yaw_deg about the world vertical: Rz @ R_root."""
    R = axis_angle_to_matrix(torch.as_tensor(root_orient, dtype=torch.float64))
    return matrix_to_axis_angle(_rz(yaw_deg) @ R).numpy()


def _limited(m):
    """(qpos address, lo, hi) of the limited hinge/slide joints."""
    j = [i for i in range(m.njnt) if m.jnt_limited[i] and m.jnt_type[i] in (2, 3)]
    return m.jnt_qposadr[j], m.jnt_range[j, 0], m.jnt_range[j, 1]


def _default_q(m):
    d = mujoco.MjData(m)
    if m.nkey:
        mujoco.mj_resetDataKeyframe(m, d, 0)
    return d.qpos.copy()


def _site_traj(emb, qpos):
    """(T, K, 3) mimic site positions along qpos: targets that qpos meets exactly."""
    m, d = emb.model, mujoco.MjData(emb.model)
    ids = [m.site(k.site).id for k in emb.smpl_map.keypoints]
    out = np.empty((len(qpos), len(ids), 3))
    for t, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        out[t] = d.site_xpos[ids]
    return out


def _lowest_foot(emb, qpos):
    m, d, geoms = emb.model, mujoco.MjData(emb.model), _foot_geoms(emb)
    low = np.empty(len(qpos))
    for t, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        low[t] = lowest_point(m, d, geoms)
    return low


def _check_summary_entry(name, entry):
    QA_SEEN[name] = {k: entry.get(k) for k in SUMMARY_KEYS}
    assert entry["status"] == "ok", (name, entry["status"])
    for key, limit in TARGETS.items():
        assert entry[key] is not None and 0.0 <= entry[key] <= limit, (name, key, entry[key], limit)


def _check_motion_file(emb, path, n_in: int, fps_in: float = 30.0):
    """Loads; control-rate fps and frame count; within limits; unit root quaternion; qvel = finite diffs."""
    clip = load_motion(path)
    m = emb.model
    fps = 1.0 / emb.control_dt
    assert clip.fps == pytest.approx(fps) and fps == pytest.approx(100.0)
    assert clip.embodiment == emb.name and clip.free_root == emb.free_root
    assert clip.num_frames == int(round((n_in - 1) / fps_in * fps)) + 1
    assert clip.qpos.shape == (clip.num_frames, m.nq) and clip.qvel.shape == (clip.num_frames, m.nv)
    assert clip.joint_names == emb.joint_names and clip.site_names == emb.smpl_map.site_names
    q = clip.qpos.astype(np.float64)
    adr, lo, hi = _limited(m)
    assert (q[:, adr] >= lo - 1e-5).all() and (q[:, adr] <= hi + 1e-5).all()
    if emb.free_root:
        np.testing.assert_allclose(np.linalg.norm(q[:, 3:7], axis=1), 1.0, atol=1e-5)
    qv = clip.qvel.astype(np.float64)
    nxt = np.empty(m.nq)
    for t in range(clip.num_frames - 1):
        nxt[:] = q[t]
        mujoco.mj_integratePos(m, nxt, qv[t], 1.0 / clip.fps)
        np.testing.assert_allclose(nxt, q[t + 1], atol=2e-4, err_msg=f"{path} frame {t}")
    # the stored sites are where the model's mimic sites are along qpos
    np.testing.assert_allclose(clip.site_pos, _site_traj(emb, q), atol=1e-4)
    assert clip.qa["frames"] == clip.num_frames
    return clip


# ------------------------------------------------------------------------------------------- 1. targets

def test_rest_pose_targets_bimanual_are_the_rest_sites(bimanual):
    targets, scale, rest, names, pos = _targets(bimanual, _rest_clip())
    kps = bimanual.smpl_map.keypoints
    idx = {k.site: i for i, k in enumerate(kps)}
    assert scale == 1.0 and targets.shape == (5, len(kps), 3)
    for i, k in enumerate(kps):
        if k.mode in ("root", "rigid"):  # fixed chest at its rest place; shoulders at their rest offsets
            np.testing.assert_allclose(targets[:, i], np.broadcast_to(rest[i], targets[:, i].shape),
                                       atol=1e-12, err_msg=k.site)
        else:  # limbs: the model's segment length, along the SMPL segment (T-pose: sideways, +-x)
            p = idx[k.parent]
            seg = targets[:, i] - targets[:, p]
            np.testing.assert_allclose(np.linalg.norm(seg, axis=-1), np.linalg.norm(rest[i] - rest[p]),
                                       rtol=1e-12)
            smpl_seg = pos[:, names.index(k.smpl)] - pos[:, names.index(kps[p].smpl)]
            direction = smpl_seg / np.linalg.norm(smpl_seg, axis=-1, keepdims=True)
            np.testing.assert_allclose(seg / np.linalg.norm(seg, axis=-1, keepdims=True), direction,
                                       atol=1e-9)
            assert abs(direction[0, 0]) > 0.95, k.site  # T-pose arms point sideways
            assert np.sign(direction[0, 0]) == _side(k.site), k.site  # the model's left is +x


@pytest.mark.slow
@pytest.mark.parametrize("yaw_deg", [0.0, 90.0, -35.0])
def test_rest_pose_targets_fullbody_rigid_offsets_are_the_models(myofullbody, yaw_deg):
    """Rest pose turned by ``yaw`` about the world vertical: rigid offsets are the model's, turned alike."""
    clip = _rest_clip()
    clip["poses"][:, :3] = _turned(clip["poses"][:, :3], yaw_deg)
    Rz = _rz(yaw_deg)[0].numpy()
    targets, scale, rest, names, pos = _targets(myofullbody, clip)
    kps = myofullbody.smpl_map.keypoints
    idx = {k.site: i for i, k in enumerate(kps)}
    root = next(i for i, k in enumerate(kps) if k.mode == "root")
    assert 0.5 < scale < 2.0
    np.testing.assert_allclose(targets[:, root], scale * pos[:, names.index(kps[root].smpl)], atol=1e-12)
    for i, k in enumerate(kps):
        p = idx.get(k.parent)
        if k.mode == "rigid":  # rest pose: the SMPL frame is the model's frame (up to the yaw)
            expected = np.broadcast_to(Rz @ (rest[i] - rest[p]), targets[:, i].shape)
            np.testing.assert_allclose(targets[:, i] - targets[:, p], expected, atol=1e-9, err_msg=k.site)
        elif k.mode == "limb":  # T-pose arms sideways, legs straight down
            seg = targets[0, i] - targets[0, p]
            seg = Rz.T @ seg / np.linalg.norm(seg)
            if "elbow" in k.site or "hand" in k.site:
                assert abs(seg[0]) > 0.95 and np.sign(seg[0]) == _side(k.site), k.site
            else:
                assert seg[2] < -0.95, k.site


@pytest.mark.parametrize("kind", ["wave", "walk"])
@pytest.mark.parametrize("model", ["bimanual", pytest.param("myofullbody", marks=pytest.mark.slow)])
def test_segment_lengths_are_the_models_at_every_frame(kind, model, request):
    emb = request.getfixturevalue(model)
    targets, _, rest, names, pos = _targets(emb, synthesize(kind, duration=1.0, seed=3))
    kps = emb.smpl_map.keypoints
    idx = {k.site: i for i, k in enumerate(kps)}
    assert np.isfinite(targets).all()
    for i, k in enumerate(kps):
        if k.mode == "root":
            continue
        p = idx[k.parent]
        length = np.linalg.norm(targets[:, i] - targets[:, p], axis=-1)
        np.testing.assert_allclose(length, np.linalg.norm(rest[i] - rest[p]), rtol=1e-9, err_msg=k.site)
    # and the targets move with the clip (else lengths would hold trivially)
    assert np.ptp(targets, axis=0).max() > 0.05


def test_fixed_root_targets_ignore_global_yaw_and_translation(bimanual):
    a = synthesize("wave", duration=1.0, seed=1)
    b = {**a, "poses": a["poses"].copy(), "trans": a["trans"] + [1.5, -2.0, 0.3]}
    b["poses"][:, :3] = _turned(a["poses"][:, :3], 70.0)  # the whole body turned 70 deg about the vertical
    ta, *_ = _targets(bimanual, a)
    tb, *_ = _targets(bimanual, b)
    np.testing.assert_allclose(ta, tb, atol=1e-9)


# ---------------------------------------------------------------------------- 2. end to end (batch)

@pytest.fixture(scope="module")
def fullbody_run(tmp_path_factory):
    src = tmp_path_factory.mktemp("amass_full")
    write_synth(src, kinds=("walk", "squat"), count=1, duration=DURATION)
    out = tmp_path_factory.mktemp("retarget_full")
    summary = retarget_dir(src, "myofullbody", out, jobs=1, progress=False)
    return src, out, summary


@pytest.fixture(scope="module")
def bimanual_run(tmp_path_factory):
    src = tmp_path_factory.mktemp("amass_bi")
    write_synth(src, kinds=("reach", "wave"), count=1, duration=DURATION)
    out = tmp_path_factory.mktemp("retarget_bi")
    summary = retarget_dir(src, "bimanual", out, jobs=1, progress=False)
    return src, out, summary


def _summary_checks(src, out, summary, names):
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert set(on_disk["clips"]) == {str(src / f"{n}.npz") for n in names}
    for path, entry in on_disk["clips"].items():
        assert set(SUMMARY_KEYS) | {"status"} <= set(entry)
        _check_summary_entry(f"{on_disk['model']}/{Path(path).stem}", entry)
    agg = on_disk["aggregate"]
    assert agg["clips"] == len(names) and agg["ok"] == len(names) and agg["errors"] == 0
    for key in SUMMARY_KEYS:
        assert agg[key] == pytest.approx(np.mean([e[key] for e in on_disk["clips"].values()]))


@pytest.mark.slow
def test_fullbody_batch_meets_the_qa_targets(fullbody_run, myofullbody):
    src, out, summary = fullbody_run
    _summary_checks(src, out, summary, ["walk_0", "squat_0"])
    n_in = int(round(DURATION * 30))
    clips = [_check_motion_file(myofullbody, out / f"{n}.npz", n_in) for n in ("walk_0", "squat_0")]
    lib = MotionLibrary([out / "walk_0.npz", out / "squat_0.npz"], embodiment="myofullbody")
    assert lib.num_clips == 2 and not lib.skipped
    np.testing.assert_allclose(lib.qpos[: clips[0].num_frames].numpy(), clips[0].qpos)


@pytest.mark.slow
def test_fullbody_walk_moves_forward_with_feet_on_the_ground(fullbody_run, myofullbody):
    _, out, _ = fullbody_run
    clip = load_motion(out / "walk_0.npz")
    q = clip.qpos.astype(np.float64)
    assert q[-1, 0] - q[0, 0] > 0.5  # synthesized walks head +x
    assert abs(q[-1, 1] - q[0, 1]) < 0.15
    low = _lowest_foot(myofullbody, q)
    assert low.min() >= -1e-6
    window = int(round(0.5 * clip.fps))
    for start in range(0, len(low) - window + 1, window // 2):
        seg = low[start:start + window]
        assert ((seg >= -1e-6) & (seg <= 0.01)).any(), (start, seg.min())
    # upright: the head site stays well above the pelvis site
    sites = clip.site_names
    z = clip.site_pos[:, :, 2]
    assert (z[:, sites.index("head_mimic")] - z[:, sites.index("pelvis_mimic")]).min() > 0.4


@pytest.mark.slow
def test_fullbody_squat_keeps_feet_down_and_lowers_the_pelvis(fullbody_run, myofullbody):
    _, out, _ = fullbody_run
    clip = load_motion(out / "squat_0.npz")
    q = clip.qpos.astype(np.float64)
    low = _lowest_foot(myofullbody, q)
    assert low.min() >= -1e-6 and low.max() < 0.02  # both feet stay planted the whole time
    assert q[:, 2].max() - q[:, 2].min() > 0.1  # the pelvis goes down and comes up


def test_bimanual_batch_meets_the_qa_targets(bimanual_run, bimanual):
    src, out, summary = bimanual_run
    _summary_checks(src, out, summary, ["reach_0", "wave_0"])
    n_in = int(round(DURATION * 30))
    for n in ("reach_0", "wave_0"):
        clip = _check_motion_file(bimanual, out / f"{n}.npz", n_in)
        assert np.ptp(clip.qpos, axis=0).max() > 0.3  # the arm actually moves
    lib = MotionLibrary.from_dir(out, embodiment="bimanual")
    assert lib.num_clips == 2 and not lib.skipped


# --------------------------------------------------------------------------- 3. resume and bad input

def test_second_run_resumes_without_rewriting(bimanual_run):
    src, out, first = bimanual_run
    files = sorted(out.glob("*.npz"))
    before = {p: p.stat().st_mtime_ns for p in files}
    again = retarget_dir(src, "bimanual", out, jobs=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert all(e["status"] == "exists" for e in again["clips"].values())
    assert again["aggregate"]["existing"] == 2 and again["aggregate"]["ok"] == 0
    for key, entry in again["clips"].items():
        for k in SUMMARY_KEYS:
            assert entry[k] == pytest.approx(first["clips"][key][k])


def test_bad_inputs_are_reported_and_skipped_by_the_cli(tmp_path, capsys):
    src = tmp_path / "in"
    write_synth(src, kinds=("reach",), count=1, duration=1.0)
    (src / "sub").mkdir()
    (src / "sub" / "not_a_zip.npz").write_text("this is not an npz archive")
    bad = synthesize("wave", duration=1.0)
    bad["poses"][5, 10] = np.nan
    save_npz(src / "sub" / "nan_poses.npz", bad)
    out = tmp_path / "out"
    rc = main(["retarget", str(src), "--model", "bimanual", "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 1
    assert str(out / "summary.json") in printed.out
    clips = json.loads((out / "summary.json").read_text())["clips"]
    nz, nan = clips[str(src / "sub" / "not_a_zip.npz")], clips[str(src / "sub" / "nan_poses.npz")]
    assert nz["status"].startswith("error:") and "not_a_zip.npz" in nz["status"] and "zip" in nz["status"]
    assert nan["status"].startswith("error:") and "nan_poses.npz" in nan["status"]
    assert "'poses'" in nan["status"] and "finite" in nan["status"]
    _check_summary_entry("bimanual/reach_0 (cli)", clips[str(src / "reach_0.npz")])
    assert (out / "reach_0.npz").is_file()
    assert not (out / "sub" / "not_a_zip.npz").exists() and not (out / "sub" / "nan_poses.npz").exists()
    agg = json.loads((out / "summary.json").read_text())["aggregate"]
    assert (agg["ok"], agg["errors"], agg["clips"]) == (1, 2, 3)
    assert agg["rmse_m"] == pytest.approx(clips[str(src / "reach_0.npz")]["rmse_m"])  # errors left out


def test_cli_returns_zero_when_all_clips_succeed(tmp_path, capsys):
    write_synth(tmp_path / "in" / "nested", kinds=("bimanual_lift",), count=1, duration=1.0)
    out = tmp_path / "out"
    rc = main(["retarget", str(tmp_path / "in"), "--model", "bimanual", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert f"summary: {out / 'summary.json'}" in printed
    assert (out / "nested" / "bimanual_lift_0.npz").is_file()  # same relative path as the input
    entry = json.loads((out / "summary.json").read_text())["clips"][str(tmp_path / "in" / "nested" /
                                                                          "bimanual_lift_0.npz")]
    _check_summary_entry("bimanual/bimanual_lift_0 (cli)", entry)


def test_cli_unknown_model_lists_the_known_ones(tmp_path, capsys):
    write_synth(tmp_path, kinds=("reach",), count=1, duration=1.0)
    with pytest.raises(SystemExit) as exc:
        main(["retarget", str(tmp_path), "--model", "no_such_body", "--out", str(tmp_path / "out")])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "no_such_body" in err and "bimanual" in err and "myofullbody" in err
    assert not (tmp_path / "out").exists()


def test_cli_model_without_smpl_map_is_a_clear_error(tmp_path, monkeypatch):
    """A known embodiment without an SMPL map: a message, not a crashed worker pool."""
    info = embodiment_info("arm26")
    monkeypatch.setitem(EMBODIMENTS, "arm26_nomap", EmbodimentInfo(
        name="arm26_nomap", xml_path=info.xml_path, description="arm26 without a map", default_substeps=5))
    write_synth(tmp_path / "in", kinds=("reach",), count=1, duration=1.0)
    with pytest.raises(SystemExit, match="arm26_nomap.*no SMPL map"):
        main(["retarget", str(tmp_path / "in"), "--model", "arm26_nomap", "--out", str(tmp_path / "out")])


def test_cli_input_without_npz_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no motions here")
    with pytest.raises(SystemExit) as exc:
        main(["retarget", str(tmp_path / "empty"), "--model", "bimanual", "--out", str(tmp_path / "out")])
    msg = str(exc.value.code)
    assert "no .npz" in msg and str(tmp_path / "empty") in msg
    with pytest.raises(SystemExit, match="no such file"):
        main(["retarget", str(tmp_path / "missing"), "--model", "bimanual", "--out", str(tmp_path / "out")])


# ---------------------------------------------------------------------------- 4. QA metrics can fire

def _still(emb, T=20):
    return np.tile(_default_q(emb.model), (T, 1))


def test_qa_counts_joint_limit_violations(bimanual):
    m = bimanual.model
    q = _still(bimanual)
    targets = _site_traj(bimanual, q)
    clean = qa_metrics(bimanual, q, targets, 100.0, 0.005)
    assert clean["joint_limit_violation_pct"] == 0.0 and clean["rmse_m"] < 1e-9
    adr, lo, hi = _limited(m)
    elbow = m.jnt_qposadr[m.joint("elbow_flex_r").id]
    k = list(adr).index(elbow)
    bad = q.copy()
    bad[3:6, elbow] = hi[k] + 0.2  # 3 frames above the range
    bad[10, adr[0]] = lo[0] - 0.1  # 1 frame below
    qa = qa_metrics(bimanual, bad, targets, 100.0, 0.005)
    assert qa["joint_limit_violation_pct"] == pytest.approx(100.0 * 4 / (len(q) * len(adr)))
    assert qa["rmse_m"] > 0.0


# A tendon whose length is nearly linear in the joint over the step is not a "jump" (the metric looks for
# changes that J_ten dq does not predict, i.e. wrapping discontinuities): an elbow step of 1.5 rad from
# 0.05 rad is predicted to within 4.4 mm (< 5 mm), so the elbow steps over its full range (24 mm off).
@pytest.mark.parametrize("joint,size", [("elbow_flex_r", None), ("shoulder_elv_l", 1.5)])
def test_qa_tendon_jump_fires_on_a_sudden_jump_only(bimanual, joint, size):
    m = bimanual.model
    j = m.joint(joint).id
    a, (lo, hi) = m.jnt_qposadr[j], m.jnt_range[j]
    T = 40
    smooth = _still(bimanual, T)
    smooth[:, a] = lo + (hi - lo) * (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, T)))  # the full range, slowly
    targets = _site_traj(bimanual, smooth)
    assert qa_metrics(bimanual, smooth, targets, 100.0, 0.005)["tendon_jump_pct"] == 0.0
    start, end = (lo, hi) if size is None else (lo + 0.05, lo + 0.05 + size)
    assert end <= hi
    jump = _still(bimanual, T)
    jump[:, a] = start
    jump[T // 2:, a] = end  # in one frame
    qa = qa_metrics(bimanual, jump, _site_traj(bimanual, jump), 100.0, 0.005)
    assert qa["tendon_jump_pct"] == pytest.approx(100.0 / (T - 1))  # exactly one of T-1 transitions
    assert qa["joint_limit_violation_pct"] == 0.0


@pytest.mark.slow
def test_qa_floor_penetration_and_place_on_floor(myofullbody):
    T = 100
    q, _ = place_on_floor(myofullbody, _still(myofullbody, T))
    assert abs(_lowest_foot(myofullbody, q)).max() < 1e-9
    targets = _site_traj(myofullbody, q)
    assert qa_metrics(myofullbody, q, targets, 100.0, 0.005)["floor_penetration_m"] < 1e-9
    sunk = q.copy()
    sunk[:, 2] -= 0.05
    qa = qa_metrics(myofullbody, sunk, targets, 100.0, 0.005)
    assert qa["floor_penetration_m"] == pytest.approx(0.05, abs=0.01)
    assert qa["rmse_m"] == pytest.approx(0.05, abs=1e-6)  # every site 5 cm below its target
    fixed, shift = place_on_floor(myofullbody, sunk)
    assert shift == pytest.approx(0.05, abs=1e-6)
    assert qa_metrics(myofullbody, fixed, targets, 100.0, 0.005)["floor_penetration_m"] < 1e-6
    np.testing.assert_allclose(_lowest_foot(myofullbody, fixed), 0.0, atol=1e-6)
    # the deepest frame counts, not a typical one: 10 frames 5 cm down, the rest on the floor
    part = q.copy()
    part[30:40, 2] -= 0.05
    qa = qa_metrics(myofullbody, part, targets, 100.0, 0.005)
    assert qa["floor_penetration_m"] == pytest.approx(0.05, abs=0.01)
    assert qa["rmse_m"] == pytest.approx(0.05 * np.sqrt(0.1), abs=1e-6)
    # one frame dipping lower still is raised on its own; the others keep touching the floor (the shift is
    # the 2nd percentile of the lowest point: robust to one outlier frame in a clip of 100)
    dip = sunk.copy()
    dip[40, 2] -= 0.1
    fixed, _ = place_on_floor(myofullbody, dip)
    np.testing.assert_allclose(_lowest_foot(myofullbody, fixed), 0.0, atol=1e-6)
    # a jump stays a jump: frames in the air keep their height above the floor
    jump = sunk.copy()
    jump[20:80, 2] += 0.1
    fixed, _ = place_on_floor(myofullbody, jump)
    low = _lowest_foot(myofullbody, fixed)
    np.testing.assert_allclose(low[20:80], 0.1, atol=1e-6)
    np.testing.assert_allclose(np.r_[low[:20], low[80:]], 0.0, atol=1e-6)


# ------------------------------------------------------------------------------------------- IK itself

def _apply_equalities(m, q):
    """Set the coupled joints of (T, nq) from their drivers by the model's joint-equality polynomials."""
    eqs = [e for e in range(m.neq) if m.eq_type[e] == mujoco.mjtEq.mjEQ_JOINT and m.eq_active0[e]]
    for _ in range(3):  # chains of couplings settle in a few passes
        for e in eqs:
            a1, j2, c = m.jnt_qposadr[m.eq_obj1id[e]], m.eq_obj2id[e], m.eq_data[e, :5]
            x = q[:, m.jnt_qposadr[j2]] - m.qpos0[m.jnt_qposadr[j2]] if j2 >= 0 else np.zeros(len(q))
            q[:, a1] = m.qpos0[a1] + c[0] + x * (c[1] + x * (c[2] + x * (c[3] + x * c[4])))
    return q


def test_ik_follows_targets_the_model_can_reach(bimanual):
    """Targets made by the model itself (feasible, couplings respected): the IK tracks them closely.
    Not to zero: the pulls to the default pose and the previous frame bias the fit (8 mm RMSE measured)."""
    m = bimanual.model
    T = 60
    q = np.tile(_default_q(m), (T, 1))
    s = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, T))
    for name, amp in [("shoulder_elv_r", 1.0), ("elbow_flex_r", 1.2), ("shoulder_elv_l", 0.6),
                      ("elbow_flex_l", 0.8), ("shoulder_rot_r", 0.4)]:
        j = m.joint(name).id
        q[:, m.jnt_qposadr[j]] = np.clip(q[:, m.jnt_qposadr[j]] + amp * s, *m.jnt_range[j])
    q = _apply_equalities(m, q)
    adr, lo, hi = _limited(m)
    assert ((q[:, adr] >= lo - 1e-9) & (q[:, adr] <= hi + 1e-9)).all()
    targets = _site_traj(bimanual, q)
    sol = IKSolver(bimanual, RetargetConfig()).solve(targets)
    qa = qa_metrics(bimanual, sol, targets, 100.0, 0.005)
    assert qa["rmse_m"] < 0.012 and qa["max_keypoint_error_m"] < 0.035
    assert qa["joint_limit_violation_pct"] == 0.0 and qa["tendon_jump_pct"] == 0.0
    # the moving elbows are followed (within 0.3 rad over a 0.8-1.2 rad sweep)
    for name in ("elbow_flex_r", "elbow_flex_l"):
        a = m.jnt_qposadr[m.joint(name).id]
        assert np.abs(sol[:, a] - q[:, a]).max() < 0.3, name


@pytest.mark.parametrize("model,kind", [("bimanual", "wave"),
                                        pytest.param("myofullbody", "walk", marks=pytest.mark.slow)])
def test_motionless_clip_has_no_velocity(model, kind, request):
    emb = request.getfixturevalue(model)
    a = synthesize(kind, duration=1.0, seed=0)
    still = {**a, "poses": np.repeat(a["poses"][:1], 30, 0), "trans": np.repeat(a["trans"][:1], 30, 0)}
    names, pos, rot, fps = _joints(still)
    res = retarget_joints(emb, names, pos, rot, fps, source="x")
    assert np.abs(res.clip.qvel).max() < 0.05


# ------------------------------------------------------------------------------------- 5. determinism

@pytest.mark.parametrize("model,kind", [("bimanual", "wave"),
                                        pytest.param("myofullbody", "walk", marks=pytest.mark.slow)])
def test_retargeting_is_deterministic(model, kind, request):
    emb = request.getfixturevalue(model)
    names, pos, rot, fps = _joints(synthesize(kind, duration=1.0, seed=2))
    runs = [retarget_joints(emb, names, pos, rot, fps, source="x", cfg=RetargetConfig()) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].clip.qpos, runs[1].clip.qpos)
    np.testing.assert_array_equal(runs[0].clip.qvel, runs[1].clip.qvel)
    qa = runs[0].qa
    QA_SEEN[f"{model}/{kind} (in process)"] = {k: qa[k] for k in SUMMARY_KEYS}
    assert qa["rmse_m"] <= TARGETS["rmse_m"]
    assert qa["joint_limit_violation_pct"] <= TARGETS["joint_limit_violation_pct"]


@pytest.mark.slow
def test_batch_output_matches_an_in_process_retarget(fullbody_run, myofullbody):
    """The spawned one-thread worker and this process compute the same clip."""
    src, out, _ = fullbody_run
    names, pos, rot, fps = _joints(dict(np.load(src / "squat_0.npz")))
    res = retarget_joints(myofullbody, names, pos, rot, fps, source="x")
    np.testing.assert_allclose(load_motion(out / "squat_0.npz").qpos, res.clip.qpos, atol=1e-5)


# ------------------------------------------------------------------------- 6. arm26 (planar right arm)
# arm26 faces +x (left +y, up +z) and moves in the x-z plane: its map carries its own smpl_to_model.
# reach seeds 0 and 1 reach with the right arm (the side is drawn per seed).

def test_smpl_to_model_defaults_and_arm26_rotation(arm26, bimanual, myofullbody):
    for emb in (bimanual, myofullbody):  # the models built facing -y keep the old constant
        np.testing.assert_array_equal(emb.smpl_map.smpl_to_model_matrix, SMPL_TO_MODEL)
    M = arm26.smpl_map.smpl_to_model_matrix
    np.testing.assert_array_equal(M @ [1, 0, 0], [0, 1, 0])  # SMPL left -> +y
    np.testing.assert_array_equal(M @ [0, 1, 0], [0, 0, 1])  # SMPL up -> +z
    np.testing.assert_array_equal(M @ [0, 0, 1], [1, 0, 0])  # SMPL forward -> +x
    assert arm26.smpl_map.anchor == "shoulder_mimic" and not arm26.free_root
    assert [k.smpl for k in arm26.smpl_map.keypoints] == ["R_Shoulder", "R_Elbow", "R_Wrist"]


@pytest.mark.parametrize("matrix", [[[1, 0, 0], [0, 1, 0]], [[-1, 0, 0], [0, 1, 0], [0, 0, 1]],
                                    [[2, 0, 0], [0, 1, 0], [0, 0, 1]], "eye"])
def test_bad_smpl_to_model_is_a_clear_error(tmp_path, monkeypatch, matrix):
    raw = json.loads((smpl_map_module.MAPS_DIR / "arm26.json").read_text())
    raw["smpl_to_model"] = matrix
    (tmp_path / "arm26.json").write_text(json.dumps(raw))
    monkeypatch.setattr(smpl_map_module, "MAPS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"arm26.json.*smpl_to_model.*3x3 rotation"):
        smpl_map_module.load_smpl_map("arm26")


def test_arm26_reach_targets_point_forward_at_the_peak(arm26):
    targets, scale, rest, names, pos = _targets(arm26, synthesize("reach", duration=3.0, seed=0))
    assert scale == 1.0
    np.testing.assert_allclose(targets[:, 0], np.broadcast_to(rest[0], targets[:, 0].shape))  # fixed shoulder
    hand = targets[:, 2] - targets[:, 0]
    assert hand[0, 2] < -0.45 and abs(hand[0, 0]) < 0.1  # arm hanging down at the start
    peak = np.argmax(hand[:, 0])
    assert hand[peak, 0] > 0.45 and abs(hand[peak, 2]) < 0.25  # reaching forward (+x) at the peak
    assert np.abs(hand[:, 1]).max() < 0.15  # a sagittal reach stays near the arm's plane


def test_arm26_cli_retargets_a_reach(tmp_path, capsys, arm26):
    write_synth(tmp_path / "in", kinds=("reach",), count=2, duration=3.0)
    out = tmp_path / "out"
    assert main(["retarget", str(tmp_path / "in"), "--model", "arm26", "--out", str(out)]) == 0
    assert "mean rmse_m" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aggregate"]["ok"] == 2
    for n in ("reach_0", "reach_1"):
        entry = summary["clips"][str(tmp_path / "in" / f"{n}.npz")]
        QA_SEEN[f"arm26/{n} (cli)"] = {k: entry[k] for k in SUMMARY_KEYS}
        # the out-of-plane part (the arm's ~10 deg abduction at rest) is left over: a few cm, not more
        assert entry["rmse_m"] < 0.06 and entry["joint_limit_violation_pct"] == 0.0
        clip = _check_motion_file(arm26, out / f"{n}.npz", 90)
        shoulder, elbow = np.degrees(clip.qpos[:, 0]), np.degrees(clip.qpos[:, 1])
        assert shoulder[0] < 15 and shoulder.max() > 70  # flexes forward from hanging down, and back
        assert shoulder[-1] < 45 and np.ptp(elbow) > 3  # the elbow straightens while reaching
    lib = MotionLibrary.from_dir(out, embodiment="arm26")
    assert lib.num_clips == 2 and lib.layout.site_names == ("shoulder_mimic", "elbow_mimic", "hand_mimic")


# ----------------------------------------------------------------- 7. nothing lost: inputs, outputs, summary

def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["same", "out inside input", "input inside out", "file into its folder"])
def test_cli_refuses_an_output_nested_with_the_input(tmp_path, case):
    """Fault: `mmimic retarget DIR --out DIR` replaced the AMASS inputs with motions and exited 0."""
    base = tmp_path / "data"
    src = base / "amass"
    write_synth(src, kinds=("reach",), count=2, duration=0.5)
    inp, out = {"same": (src, src), "out inside input": (src, src / "retargeted"),
                "input inside out": (src, base), "file into its folder": (src / "reach_0.npz", src)}[case]
    before = _snapshot(base)
    with pytest.raises(SystemExit) as exc:
        main(["retarget", str(inp), "--model", "arm26", "--out", str(out)])
    msg = str(exc.value.code)
    assert msg.startswith("mmimic retarget:") and str(inp) in msg and str(out) in msg, msg
    assert "choose" in msg
    assert _snapshot(base) == before and not (src / "retargeted").exists()


def test_cli_existing_files_at_output_paths_are_not_overwritten(tmp_path, capsys):
    """Fault: an unreadable or foreign file at an output path was 'redone' (overwritten). Now: an error for
    that clip, the file untouched, the batch goes on; a motion of another model is not reused either.
    Also: an implausible input frame rate is warned about in the output and in summary.json."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_synth(src, kinds=("reach",), count=2, duration=1.0)
    fast = synthesize("reach", duration=1.0, seed=2)
    fast["mocap_framerate"] = np.array(2000.0)
    save_npz(src / "reach_2.npz", fast)
    out.mkdir()
    shutil.copy(src / "reach_0.npz", out / "reach_0.npz")  # an AMASS file where an output goes
    T = 5
    save_motion(out / "reach_1.npz", MotionClip(
        qpos=np.zeros((T, 2), np.float32), qvel=np.zeros((T, 2), np.float32), fps=100.0, joint_names=["a", "b"],
        free_root=False, site_names=["s"], site_pos=np.zeros((T, 1, 3), np.float32),
        site_quat=np.tile(np.float32([1, 0, 0, 0]), (T, 1, 1)), embodiment="toy", qa={}))
    inputs, foreign = _snapshot(src), _snapshot(out)
    rc = main(["retarget", str(src), "--model", "arm26", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 1
    assert _snapshot(src) == inputs
    assert all(p.read_bytes() == b for p, b in foreign.items())  # neither file was touched
    clips = json.loads((out / "summary.json").read_text())["clips"]
    amass_err, toy_err = clips[str(src / "reach_0.npz")]["status"], clips[str(src / "reach_1.npz")]["status"]
    assert amass_err.startswith(f"error: output {out / 'reach_0.npz'} already exists and is not a motion file")
    assert "retargeted onto 'toy'" in toy_err and "not 'arm26'" in toy_err
    for err in (amass_err, toy_err):
        assert "not overwritten" in err and err in printed
    ok = clips[str(src / "reach_2.npz")]
    assert ok["status"] == "ok" and load_motion(out / "reach_2.npz").embodiment == "arm26"
    assert len(ok["warnings"]) == 1 and "2000 fps is implausible" in ok["warnings"][0]
    assert f"warning {src / 'reach_2.npz'}: {ok['warnings'][0]}" in printed


def test_cli_output_that_is_a_file_or_not_writable_is_a_message(tmp_path, monkeypatch):
    src = tmp_path / "in"
    write_synth(src, kinds=("reach",), count=1, duration=0.5)
    afile, locked = tmp_path / "afile", tmp_path / "locked"
    afile.write_text("keep me")
    locked.mkdir()
    refuse_writes_in(monkeypatch, locked)
    for out, parts in ((afile, ["is a file, not a directory"]), (afile / "sub", ["cannot create it"]),
                       (locked, ["not writable", "Permission denied"]),
                       (tmp_path / "clip.npz", ["got a path ending in .npz"])):
        with pytest.raises(SystemExit) as exc:
            main(["retarget", str(src), "--model", "arm26", "--out", str(out)])
        msg = str(exc.value.code)
        assert msg.startswith("mmimic retarget:") and str(out) in msg and all(p in msg for p in parts), msg
    assert afile.read_text() == "keep me" and list(locked.iterdir()) == [] and not (tmp_path / "clip.npz").exists()


def test_cli_bad_fps_model_dir_and_foreign_summary_are_messages(tmp_path):
    src = tmp_path / "in"
    write_synth(src, kinds=("reach",), count=1, duration=0.5)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"--fps\): expected a finite number > 0, got inf"):
        main(["retarget", str(src), "--model", "arm26", "--out", str(out), "--fps", "inf"])
    cfg = RetargetConfig()
    with pytest.raises(ValueError, match="finite"):
        retarget_dir(src, "arm26", out, fps=float("nan"), cfg=cfg, progress=False)
    assert cfg.fps is None  # the caller's config is not changed (it used to take the fps argument)
    with pytest.raises(SystemExit, match=r"SMPL model directory .*nowhere: no such file or directory"):
        main(["retarget", str(src), "--model", "arm26", "--out", str(out), "--smpl-model-dir",
              str(tmp_path / "nowhere")])
    assert not out.exists()
    out.mkdir()
    (out / "summary.json").write_text('{"my": "notes"}')
    with pytest.raises(SystemExit, match=r"summary\.json exists and is not a retarget summary; it is not overwritten"):
        main(["retarget", str(src), "--model", "arm26", "--out", str(out)])
    assert (out / "summary.json").read_text() == '{"my": "notes"}'
    assert [p.name for p in out.iterdir()] == ["summary.json"]


def test_summary_is_written_atomically_with_the_umask(tmp_path):
    """Fault: outputs were 0600 whatever the umask (the temp file's mode survived the rename)."""
    old = os.umask(0o022)
    try:
        path = write_summary(tmp_path, {"model": "x", "clips": {}, "aggregate": {}})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and json.loads(path.read_text())["model"] == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# Per-clip jobs swapped in for batch._retarget_one. They must be importable by the spawned workers (which
# get the parent's sys.path), so they live in a module written to tmp_path rather than in this file.
JOBS = '''
import os
import time
from pathlib import Path

from mmimic.motion import batch


def die_on_b(src, dst):
    """The worker dies (as if OOM-killed) on inputs named b_*; other clips are retargeted for real."""
    if Path(src).name.startswith("b_"):
        time.sleep(0.5)
        os._exit(3)
    return batch._retarget_one(src, dst)


def block(src, dst):
    """Report this worker's pid, then work for MMIMIC_TEST_SLEEP seconds."""
    Path(os.environ["MMIMIC_TEST_PIDS"], f"{os.getpid()}-{Path(src).stem}").touch()
    time.sleep(float(os.environ.get("MMIMIC_TEST_SLEEP", "600")))
    return {"status": "ok"}
'''


@pytest.fixture
def jobs_module(tmp_path, monkeypatch):
    folder = tmp_path / "jobs_module"
    folder.mkdir()
    (folder / "mmimic_test_jobs.py").write_text(JOBS)
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("mmimic_test_jobs", None)
    return importlib.import_module("mmimic_test_jobs"), folder


def test_a_dying_worker_still_leaves_a_summary(tmp_path, capsys, monkeypatch, jobs_module):
    """Fault: a killed worker (BrokenProcessPool) lost summary.json. Now the unfinished clips are errors,
    the finished outputs stay, the summary is written and the command fails with a message."""
    jobs, _ = jobs_module
    monkeypatch.setattr(batch, "_retarget_one", jobs.die_on_b)
    src, out = tmp_path / "in", tmp_path / "out"
    for name, seed in (("a_ok", 0), ("b_die", 1), ("c_later", 0)):
        save_npz(src / f"{name}.npz", synthesize("reach", duration=1.0, seed=seed))
    inputs = _snapshot(src)
    rc = main(["retarget", str(src), "--model", "arm26", "--out", str(out), "--jobs", "1"])
    captured = capsys.readouterr()
    assert rc == 1
    summary = json.loads((out / "summary.json").read_text())
    clips = summary["clips"]
    assert clips[str(src / "a_ok.npz")]["status"] == "ok"
    for name in ("b_die", "c_later"):
        assert "a retarget worker process died" in clips[str(src / f"{name}.npz")]["status"]
    assert summary["aggregate"]["errors"] == 2 and "2 clip(s) not retargeted" in summary["incomplete"]
    assert "not finished: a retarget worker process died" in captured.err
    assert "run the same command again" in captured.err
    assert load_motion(out / "a_ok.npz").embodiment == "arm26"  # the finished output is intact
    assert sorted(p.name for p in out.iterdir()) == ["a_ok.npz", "summary.json"]  # no partial or temp file
    assert _snapshot(src) == inputs


def _parent_script(tmp_path: Path, jobs_dir: Path, argv: list[str]) -> Path:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys

        if __name__ == "__main__":  # spawned workers import this file again
            sys.path.insert(0, {str(jobs_dir)!r})
            import mmimic_test_jobs
            from mmimic.motion import batch
            batch._retarget_one = mmimic_test_jobs.block
            from mmimic.cli import main
            sys.exit(main({argv!r}))
    """))
    return script


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's reaping is left


def _wait_for(cond, timeout: float, what: str, proc: subprocess.Popen | None = None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the parent exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker states from /proc")
def test_workers_exit_when_the_parent_is_killed(tmp_path, jobs_module):
    """Fault: retarget workers outlived a killed parent process (and went on using the CPUs)."""
    _, jobs_dir = jobs_module
    src, out, pids = tmp_path / "in", tmp_path / "out", tmp_path / "pids"
    pids.mkdir()
    for seed in range(4):
        save_npz(src / f"reach_{seed}.npz", synthesize("reach", duration=0.5, seed=seed))
    script = _parent_script(tmp_path, jobs_dir, ["retarget", str(src), "--model", "arm26", "--out", str(out),
                                                 "--jobs", "2"])
    parent = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "MMIMIC_TEST_PIDS": str(pids)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = _wait_for(lambda: len(list(pids.iterdir())) >= 2 and list(pids.iterdir()), 180, "2 busy workers",
                            parent)
        workers = {int(p.name.split("-")[0]) for p in started}
        assert len(workers) == 2 and parent.pid not in workers and all(_alive(w) for w in workers)
        parent.kill()  # SIGKILL: the parent gets no chance to stop its pool
        parent.wait(10)
        _wait_for(lambda: not any(_alive(w) for w in workers), 5, f"workers {sorted(workers)} to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
        for p in pids.iterdir():  # on failure, leave no sleeping worker behind
            if _alive(int(p.name.split("-")[0])):
                os.kill(int(p.name.split("-")[0]), signal.SIGKILL)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker states from /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_batch_and_writes_the_summary(tmp_path, jobs_module, signum):
    """Fault: on Ctrl-C the pool ran every queued clip before the parent died with a traceback and no
    summary (SIGTERM: no summary either). Now the parent stops the batch, running clips finish, the
    summary lists the rest as interrupted, and the command says so and exits 128 + signal."""
    _, jobs_dir = jobs_module
    src, out, pids = tmp_path / "in", tmp_path / "out", tmp_path / "pids"
    pids.mkdir()
    for seed in range(5):
        save_npz(src / f"reach_{seed}.npz", synthesize("reach", duration=0.5, seed=seed))
    script = _parent_script(tmp_path, jobs_dir, ["retarget", str(src), "--model", "arm26", "--out", str(out)])
    env = {**os.environ, "MMIMIC_TEST_PIDS": str(pids), "MMIMIC_TEST_SLEEP": "2"}
    # a shell's background job (nohup ... &) starts with SIGINT ignored, and Python keeps it ignored:
    # the parent gets Ctrl-C's default, as in a terminal, wherever the suite runs
    parent = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        first = _wait_for(lambda: list(pids.iterdir()), 180, "the first clip to start", parent)
        worker = int(first[0].name.split("-")[0])
        parent.send_signal(signum)
        _, err = parent.communicate(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)  # its workers then exit by themselves (see the test above)
    assert parent.returncode == 128 + signum, err
    assert f"mmimic retarget: interrupted; finished clips are kept and {out / 'summary.json'} lists" in err
    assert "run the same command again" in err
    summary = json.loads((out / "summary.json").read_text())
    statuses = [e["status"] for e in summary["clips"].values()]
    assert len(statuses) == 5 and summary["incomplete"].startswith("interrupted")
    assert statuses.count("ok") >= 1 and sum(s.startswith("error: interrupted") for s in statuses) >= 2
    assert statuses.count("ok") == len(list(pids.iterdir()))  # the clips that started were let finish
    _wait_for(lambda: not _alive(worker), 5, "the worker to exit")


def teardown_module(module):
    if QA_SEEN:
        print("\nretarget QA seen:")
        for name, qa in sorted(QA_SEEN.items()):
            print(f"  {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in qa.items()))

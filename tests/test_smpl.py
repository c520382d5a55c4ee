"""AMASS reading and SMPL forward kinematics: validation errors, the built-in skeleton, and the smplx path.

The smplx path is tested for real: the test writes tiny body-model files in the exact format smplx
0.1.28 loads (one vertex per joint, placed at the built-in skeleton's rest joints, and an identity
joint regressor), so smplx's own linear blend skinning must reproduce the built-in FK.
"""

from __future__ import annotations

import os
import pickle
import re
import shlex
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mmimic.math import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quat, quat_rotate, quat_to_matrix
from mmimic.motion.motion_file import MotionDataWarning
from mmimic.motion.smpl import (
    BODY_JOINT_NAMES, BodyModelError, MotionFileError, builtin_skeleton, forward_kinematics, load_amass, smpl_joints,
)

J = {name: i for i, name in enumerate(BODY_JOINT_NAMES)}
RX90 = np.array([np.pi / 2, 0.0, 0.0])  # y-up body -> z-up world


def amass_fields(T=12, width=156, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    poses = rng.normal(scale=0.3, size=(T, width))
    poses[:, :3] = RX90 + rng.normal(scale=0.2, size=(T, 3))
    trans = np.cumsum(rng.normal(scale=0.02, size=(T, 3)), axis=0) + [0.3, -0.2, 0.95]
    return dict(poses=poses, trans=trans, betas=np.zeros(16), gender=np.array("neutral"),
                mocap_framerate=np.array(60.0))


def write_npz(path: Path, **fields) -> Path:
    np.savez(path, **fields)
    return path


# ------------------------------------------------------------------------------------------- helpers


def test_rotation_helpers_round_trip():
    g = torch.Generator().manual_seed(3)
    aa = torch.randn(200, 3, generator=g, dtype=torch.float64) * 1.2
    aa = torch.cat([aa, torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[np.pi, 0, 0]], dtype=torch.float64)])
    R = axis_angle_to_matrix(aa)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(R @ R.transpose(-1, -2), eye.expand_as(R), atol=1e-12)
    q = matrix_to_quat(R)
    assert torch.allclose(quat_to_matrix(q), R, atol=1e-12) and (q[:, 0] >= 0).all()
    assert torch.allclose(axis_angle_to_matrix(matrix_to_axis_angle(R)), R, atol=1e-12)
    v = torch.randn(R.shape[0], 3, generator=g, dtype=torch.float64)
    assert torch.allclose(quat_rotate(q, v), (R @ v[..., None])[..., 0], atol=1e-12)
    # +90 deg about x turns SMPL's up (y) into the world's up (z)
    up = axis_angle_to_matrix(torch.tensor(RX90)) @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert torch.allclose(up, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-12)


def test_builtin_skeleton_is_packaged_with_provenance():
    sk = builtin_skeleton()
    assert len(sk.joint_names) == 24 and sk.joint_names[0] == "Pelvis" and sk.joint_names[21] == "R_Wrist"
    assert "PHC" in sk.source and "betas = 0" in sk.description
    rest = sk.rest_joints
    assert rest[J["Head"], 1] > rest[J["Pelvis"], 1] > rest[J["L_Ankle"], 1]  # y is up
    assert rest[J["L_Shoulder"], 0] > 0 > rest[J["R_Shoulder"], 0]  # x is body-left
    assert rest[J["L_Foot"], 2] > rest[J["L_Ankle"], 2]  # z is forward


# ------------------------------------------------------------------------------------------ load_amass


def test_load_amass_reads_all_layouts(tmp_path):
    for width, layout in ((72, "smpl"), (156, "smplh"), (165, "smplx")):
        clip = load_amass(write_npz(tmp_path / f"c{width}.npz", **amass_fields(width=width)))
        assert clip.layout == layout and clip.num_frames == 12 and clip.fps == 60.0 and clip.gender == "neutral"
        assert clip.body_pose.shape == (12, 21, 3) and clip.root_orient.shape == (12, 3)
        np.testing.assert_array_equal(clip.body_pose[:, 0], clip.poses[:, 3:6])


def test_mocap_frame_rate_spelling_and_gender_forms(tmp_path):
    f = amass_fields(width=165)
    f["mocap_frame_rate"] = f.pop("mocap_framerate")
    for raw, want in ((np.array(b"female"), "female"), (np.array(["Male "]), "male"), (np.str_("neutral"), "neutral")):
        clip = load_amass(write_npz(tmp_path / "x.npz", **{**f, "gender": raw}))
        assert clip.fps == 60.0 and clip.gender == want
    # a gender stored as a pickled object array (seen in some releases) is still read, str or bytes,
    # whatever the pickle protocol (Python 2 era files use 0-2), through the restricted unpickler
    for value, proto in (("female", 4), (b"male", 4), ("female", 2), (b"male", 0), ("Male", 1)):
        path = tmp_path / f"o{proto}.npz"
        arr = np.array(value, dtype=object)
        with zipfile.ZipFile(path, "w") as z:  # np.save pickles with protocol 3; write the member by hand
            with z.open("gender.npy", "w") as fh:
                np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(arr))
                pickle.dump(arr, fh, protocol=proto)
            for key, val in ((k, v) for k, v in f.items() if k != "gender"):
                with z.open(f"{key}.npy", "w") as fh:
                    np.lib.format.write_array(fh, np.asarray(val))
        clip = load_amass(path)
        assert clip.gender == (value.decode() if isinstance(value, bytes) else value).lower(), (value, proto)


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``: what a crafted file can do to plain
    ``pickle.load`` / ``np.load(allow_pickle=True)``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def test_crafted_gender_pickle_does_not_run_and_reads_neutral(tmp_path):
    """Fault: a crafted AMASS file ran code (gender re-read with allow_pickle=True)."""
    # the crafted file really is an exploit for an unrestricted reader
    proof = tmp_path / "proof"
    np.savez(tmp_path / "proof.npz", gender=np.array(_Payload(proof), dtype=object))
    with np.load(tmp_path / "proof.npz", allow_pickle=True) as z:
        z["gender"]
    assert proof.exists()
    marker = tmp_path / "pwned"
    path = write_npz(tmp_path / "crafted.npz", **{**amass_fields(), "gender": np.array(_Payload(marker), dtype=object)})
    before = path.read_bytes()
    with pytest.warns(MotionDataWarning, match=re.escape(str(path)) + r".*'gender'.*posix.system.*using neutral"):
        clip = load_amass(path)
    assert not marker.exists()  # the payload did not run
    assert clip.gender == "neutral" and clip.num_frames == 12  # the motion itself is still usable
    assert path.read_bytes() == before
    # a payload hidden inside a legit-looking list of strings is refused as well
    listed = write_npz(tmp_path / "listed.npz", **{**amass_fields(), "gender": np.array(["female", _Payload(marker)],
                                                                                          dtype=object)})
    with pytest.warns(MotionDataWarning, match="listed.npz"):
        assert load_amass(listed).gender == "neutral"
    assert not marker.exists()


@pytest.mark.parametrize("fps", [1e6, 5.0, 2000.0])
def test_implausible_frame_rate_warns_with_file_and_value(tmp_path, fps):
    path = write_npz(tmp_path / "odd.npz", **{**amass_fields(), "mocap_framerate": np.array(fps)})
    with pytest.warns(MotionDataWarning, match=re.escape(f"{path}: field 'mocap_framerate': {fps:g} fps is "
                                                         "implausible")):
        clip = load_amass(path)
    assert clip.fps == fps
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_amass(write_npz(tmp_path / "ok.npz", **{**amass_fields(), "mocap_framerate": np.array(120.0)}))


BROKEN = {
    "missing key": (lambda f: f.pop("trans"), "'trans'"),
    "missing fps": (lambda f: f.pop("mocap_framerate"), "mocap_framerate"),
    "poses width": (lambda f: f.update(poses=np.zeros((10, 50))), "field 'poses': expected shape (T, 72|156|165), got (10, 50)"),
    "poses 1-D": (lambda f: f.update(poses=np.zeros(156)), "field 'poses'"),
    "trans frames": (lambda f: f.update(trans=np.zeros((11, 3))), "field 'trans': expected shape (T, 3) with T = 12"),
    "betas shape": (lambda f: f.update(betas=np.zeros((3, 16))), "field 'betas'"),
    "poses NaN": (lambda f: f["poses"].__setitem__((4, 7), np.nan), "field 'poses': expected finite values, got nan at index (4, 7)"),
    "trans inf": (lambda f: f["trans"].__setitem__((2, 0), np.inf), "field 'trans': expected finite values"),
    "betas NaN": (lambda f: f["betas"].__setitem__(3, np.nan), "field 'betas': expected finite values"),
    "fps zero": (lambda f: f.update(mocap_framerate=np.array(0.0)), "field 'mocap_framerate': expected a finite frame rate > 0"),
    "fps nan": (lambda f: f.update(mocap_framerate=np.array(np.nan)), "field 'mocap_framerate'"),
    "fps negative": (lambda f: f.update(mocap_framerate=np.array(-30.0)), "expected a finite frame rate > 0, got -30"),
    "fps inf": (lambda f: f.update(mocap_framerate=np.array(np.inf)), "expected a finite frame rate > 0, got inf"),
    "zero frames": (lambda f: f.update(poses=np.zeros((0, 156)), trans=np.zeros((0, 3))), "expected at least one frame"),
    "gender unknown": (lambda f: f.update(gender=np.array("robot")), "field 'gender': expected neutral, male or female"),
    "poses text": (lambda f: f.update(poses=np.array([["a"] * 156])), "field 'poses': expected a numeric array"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_load_amass_names_file_and_field(tmp_path, case):
    f = amass_fields()
    edit, message = BROKEN[case]
    edit(f)
    path = write_npz(tmp_path / "walk.npz", **f)
    with pytest.raises(MotionFileError) as exc:
        load_amass(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_load_amass_field_claiming_a_huge_shape_is_a_file_error(tmp_path):
    """A damaged or crafted header (10^13 frames) raised a bare MemoryError instead of naming the file."""
    path = tmp_path / "huge.npz"
    fields = {k: v for k, v in amass_fields().items() if k != "poses"}
    with zipfile.ZipFile(path, "w") as z:
        for key, val in fields.items():
            with z.open(f"{key}.npy", "w") as fh:
                np.lib.format.write_array(fh, np.asarray(val))
        with z.open("poses.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (10**13, 156)})
            fh.write(b"\0" * 64)
    with pytest.raises(MotionFileError, match=r"huge\.npz: cannot read a field: MemoryError"):
        load_amass(path)


def test_load_amass_on_a_retargeted_motion_file_says_so(tmp_path):
    """A retarget output given back as input (e.g. an output directory nested in the input)."""
    path = write_npz(tmp_path / "motion.npz", qpos=np.zeros((2, 3)), qvel=np.zeros((2, 3)),
                     site_pos=np.zeros((2, 1, 3)), embodiment="arm26", fps=100.0)
    with pytest.raises(MotionFileError, match=r"motion\.npz: missing field.*retargeted motion file .*not an AMASS"):
        load_amass(path)


def test_load_amass_not_a_zip_or_missing(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    with pytest.raises(MotionFileError, match="notes.npz: expected an AMASS .npz"):
        load_amass(text)
    with pytest.raises(MotionFileError, match="no such file"):
        load_amass(tmp_path / "absent.npz")
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("poses.npy", b"garbage")
    with pytest.raises(MotionFileError, match="broken.npz"):
        load_amass(broken)


# ------------------------------------------------------------------------------------ built-in FK


def test_builtin_fk_follows_smpl_conventions(tmp_path):
    T = 3
    poses = np.zeros((T, 156))
    poses[:, :3] = RX90
    trans = np.array([[1.0, 2.0, 3.0]] * T)
    clip = load_amass(write_npz(tmp_path / "rest.npz", **{**amass_fields(T), "poses": poses, "trans": trans}))
    out = smpl_joints(clip)
    assert out.positions.shape == (T, 22, 3) and out.rotations.shape == (T, 22, 4)
    assert "built-in" in out.source and "betas ignored" in out.source and out.fps == 60.0
    rest = builtin_skeleton().rest_joints
    # the rest pelvis location is added without rotation; the rest of the body is rotated about it
    np.testing.assert_allclose(out.positions[0, 0].numpy(), trans[0] + rest[0], atol=1e-12)
    R = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)  # Rx(90)
    expect = trans[0] + rest[0] + (rest[:22] - rest[0]) @ R.T
    np.testing.assert_allclose(out.positions[0].numpy(), expect, atol=1e-12)
    head, pelvis = out.positions[0, J["Head"]], out.positions[0, J["Pelvis"]]
    assert head[2] - pelvis[2] > 0.5  # upright in the z-up world
    q = np.array([np.cos(np.pi / 4), np.sin(np.pi / 4), 0, 0])  # every joint's global rotation is Rx(90)
    np.testing.assert_allclose(out.rotations[0].numpy(), np.tile(q, (22, 1)), atol=1e-12)


def test_builtin_fk_chain_rule():
    g = torch.Generator().manual_seed(0)
    T = 5
    root, body = torch.randn(T, 3, generator=g, dtype=torch.float64), torch.randn(T, 21, 3, generator=g, dtype=torch.float64)
    trans = torch.randn(T, 3, generator=g, dtype=torch.float64)
    rest = torch.as_tensor(builtin_skeleton().rest_joints[:22])
    pos, rot = forward_kinematics(root, body, trans, rest)
    knee, ankle = J["L_Knee"], J["L_Ankle"]
    np.testing.assert_allclose(rot[:, ankle].numpy(), (rot[:, knee] @ axis_angle_to_matrix(body[:, ankle - 1])).numpy(), atol=1e-12)
    np.testing.assert_allclose(pos[:, ankle].numpy(), (pos[:, knee] + rot[:, knee] @ (rest[ankle] - rest[knee])).numpy(), atol=1e-12)
    # bone lengths are preserved
    np.testing.assert_allclose((pos[:, ankle] - pos[:, knee]).norm(dim=-1).numpy(), float((rest[ankle] - rest[knee]).norm()), atol=1e-12)


# ------------------------------------------------------------------------- smplx with synthetic models

SMPLH_PARENTS = list(builtin_skeleton().parents[:22]) + [
    p for wrist, base in ((20, 22), (21, 37)) for f in range(5) for p in (wrist, base + 3 * f, base + 3 * f + 1)]


def fake_model(layout: str, shape_scale: float = 0.0, seed: int = 0) -> dict:
    """Plain-numpy body model smplx can load: one vertex per joint at the built-in skeleton's rest joints."""
    rng = np.random.default_rng(seed)
    rest = builtin_skeleton().rest_joints
    fingers = [rest[20 if i < 15 else 21] + [0.03 * (1 if i < 15 else -1) * (1 + i % 3), 0.0, 0.01 * (i % 5)]
               for i in range(30)]
    if layout == "smpl":
        parents, joints = list(builtin_skeleton().parents), rest
    elif layout == "smplh":  # 22 body joints + 2 x 15 finger joints, 3 per finger, chained from the wrists
        parents, joints = SMPLH_PARENTS, np.concatenate([rest[:22], np.array(fingers)])
    else:  # SMPL-X: body, jaw and two eyes (children of the head), then the fingers
        parents = SMPLH_PARENTS[:22] + [15, 15, 15] + [p + 3 if p >= 22 else p for p in SMPLH_PARENTS[22:]]
        face = rest[15] + np.array([[0.0, -0.03, 0.05], [0.03, 0.03, 0.08], [-0.03, 0.03, 0.08]])
        joints = np.concatenate([rest[:22], face, np.array(fingers)])
    nj = len(parents)
    kintree = np.stack([np.array([4294967295] + parents[1:], dtype=np.int64), np.arange(nj)])
    data = dict(v_template=joints.astype(np.float64), J_regressor=np.eye(nj), weights=np.eye(nj),
                shapedirs=rng.normal(scale=shape_scale, size=(nj, 3, 16)),
                posedirs=rng.normal(scale=0.01, size=(nj, 3, (nj - 1) * 9)),
                kintree_table=kintree, f=np.array([[0, 1, 2], [3, 4, 5]], dtype=np.int64))
    if layout == "smplx":  # 10 shape + 10 expression directions; one facial landmark
        data.update(shapedirs=rng.normal(scale=shape_scale, size=(nj, 3, 20)), lmk_faces_idx=np.array([0]),
                    lmk_bary_coords=np.array([[1.0, 0.0, 0.0]]))
    if layout in ("smplh", "smplx"):
        data.update(hands_componentsl=np.eye(45), hands_componentsr=np.eye(45),
                    hands_meanl=rng.normal(size=45), hands_meanr=rng.normal(size=45))
    return data


def moving_clip(tmp_path, width, T=9):
    f = amass_fields(T=T, width=width, seed=7)
    f["poses"][:, 3:66] *= 2.0  # large body rotations
    return load_amass(write_npz(tmp_path / f"motion{width}.npz", **f))


def test_smplx_smplh_npz_matches_builtin_fk(tmp_path):
    models = tmp_path / "models" / "smplh"
    models.mkdir(parents=True)
    np.savez(models / "SMPLH_NEUTRAL.npz", **fake_model("smplh"))
    clip = moving_clip(tmp_path, 156)
    ours, theirs = smpl_joints(clip), smpl_joints(clip, model_dir=tmp_path / "models")
    assert "SMPLH_NEUTRAL.npz" in theirs.source and "smplx SMPLH" in theirs.source
    np.testing.assert_allclose(theirs.positions.numpy(), ours.positions.numpy(), atol=1e-5)
    np.testing.assert_allclose(theirs.rotations.numpy(), ours.rotations.numpy(), atol=1e-9)
    np.testing.assert_allclose(theirs.rest_joints.numpy(), ours.rest_joints.numpy(), atol=1e-9)


def test_smplx_smpl_pkl_matches_builtin_fk_and_uses_betas(tmp_path):
    model = fake_model("smpl", shape_scale=0.02, seed=1)
    with open(tmp_path / "SMPL_MALE.pkl", "wb") as fh:
        pickle.dump(model, fh)
    f = amass_fields(T=7, width=72, seed=3)
    f["betas"], f["gender"] = np.linspace(-1.0, 1.0, 10), np.array("male")
    clip = load_amass(write_npz(tmp_path / "m.npz", **f))
    out = smpl_joints(clip, model_dir=tmp_path)
    # identity regressor: rest joint j = v_template[j] + shapedirs[j] @ betas (first 10 shape directions)
    shaped = model["v_template"] + model["shapedirs"][:, :, :10] @ f["betas"]
    pos, _ = forward_kinematics(torch.as_tensor(clip.root_orient), torch.as_tensor(clip.body_pose),
                                torch.as_tensor(clip.trans), torch.as_tensor(shaped[:22]))
    np.testing.assert_allclose(out.positions.numpy(), pos.numpy(), atol=1e-5)
    assert not np.allclose(out.positions.numpy(), smpl_joints(clip).positions.numpy(), atol=1e-3)


def test_smplx_smplx_layout_matches_builtin_fk(tmp_path, monkeypatch):
    import smplx.body_models

    # SMPL-X picks extra keypoints from fixed vertex ids of the real 10475-vertex mesh: point them at vertex 0
    tiny = {k: 0 for k in smplx.body_models.VERTEX_IDS["smplx"]}
    monkeypatch.setitem(smplx.body_models.VERTEX_IDS, "smplx", tiny)
    import mmimic.motion.smpl as smpl

    monkeypatch.setattr(smpl, "CHUNK", 4)
    (tmp_path / "smplx").mkdir()
    np.savez(tmp_path / "smplx" / "SMPLX_FEMALE.npz", **fake_model("smplx"))
    f = amass_fields(T=6, width=165, seed=5)
    f["gender"], f["mocap_frame_rate"] = np.array("female"), f.pop("mocap_framerate")
    clip = load_amass(write_npz(tmp_path / "x.npz", **f))
    out = smpl_joints(clip, model_dir=tmp_path)
    assert "SMPLX_FEMALE.npz" in out.source
    np.testing.assert_allclose(out.positions.numpy(), smpl_joints(clip).positions.numpy(), atol=1e-5)


def test_smplx_chunks_long_clips(tmp_path, monkeypatch):
    import mmimic.motion.smpl as smpl

    monkeypatch.setattr(smpl, "CHUNK", 4)  # 9 frames: chunks of 4, 4 and a padded 1
    np.savez(tmp_path / "SMPLH_NEUTRAL.npz", **fake_model("smplh"))
    clip = moving_clip(tmp_path, 156)
    clip.gender = "female"  # no female file: the neutral one is used, and the source says so
    out = smpl_joints(clip, model_dir=tmp_path)
    assert "no female model so neutral" in out.source
    np.testing.assert_allclose(out.positions.numpy(), smpl_joints(clip).positions.numpy(), atol=1e-5)


def test_smplx_missing_or_broken_model_files(tmp_path):
    clip = moving_clip(tmp_path, 156, T=2)
    with pytest.raises(BodyModelError, match=r"no SMPLH body model.*SMPLH_NEUTRAL\.pkl.*SMPLH_NEUTRAL\.npz"):
        smpl_joints(clip, model_dir=tmp_path)
    bad = fake_model("smplh")
    del bad["J_regressor"]
    np.savez(tmp_path / "SMPLH_NEUTRAL.npz", **bad)
    with pytest.raises(BodyModelError, match="SMPLH_NEUTRAL.npz: not a SMPLH body model: missing J_regressor"):
        smpl_joints(clip, model_dir=tmp_path)
    (tmp_path / "SMPLH_NEUTRAL.npz").write_text("junk")
    with pytest.raises(BodyModelError, match="cannot read the body model"):
        smpl_joints(clip, model_dir=tmp_path)


def test_crafted_body_model_files_are_refused_without_running(tmp_path, monkeypatch):
    """Fault: SMPL model files (.pkl, and object fields of .npz) were unpickled without restriction, and
    SMPL-X files were handed to smplx, which does the same."""
    import smplx.body_models

    monkeypatch.setitem(smplx.body_models.VERTEX_IDS, "smplx", {k: 0 for k in smplx.body_models.VERTEX_IDS["smplx"]})
    marker = tmp_path / "pwned"
    clip = moving_clip(tmp_path, 156, T=2)
    cases = []
    pkl = tmp_path / "pkl" / "SMPLH_NEUTRAL.pkl"
    pkl.parent.mkdir()
    with open(pkl, "wb") as fh:
        pickle.dump({**fake_model("smplh"), "extra": _Payload(marker)}, fh)
    cases.append((pkl, clip))
    npz = tmp_path / "npz" / "SMPLH_NEUTRAL.npz"
    npz.parent.mkdir()
    np.savez(npz, **fake_model("smplh"), extra=np.array(_Payload(marker), dtype=object))
    cases.append((npz, clip))
    sx = tmp_path / "sx" / "SMPLX_NEUTRAL.npz"
    sx.parent.mkdir()
    np.savez(sx, **fake_model("smplx"), joint2num=np.array(_Payload(marker), dtype=object))
    f = amass_fields(T=2, width=165)
    cases.append((sx, load_amass(write_npz(tmp_path / "x.npz", **f))))
    for path, c in cases:
        before = path.read_bytes()
        with pytest.raises(BodyModelError) as exc:
            smpl_joints(c, model_dir=path.parent)
        msg = str(exc.value)
        assert str(path) in msg and "refused" in msg and "posix.system" in msg and "could run code" in msg, msg
        assert not marker.exists(), path
        assert path.read_bytes() == before
    # plain data in object fields (SMPL-X files store dicts such as joint2num) is still fine
    np.savez(sx, **fake_model("smplx"), joint2num=np.array({"pelvis": 0}, dtype=object))
    out = smpl_joints(cases[2][1], model_dir=sx.parent)
    assert "SMPLX_NEUTRAL.npz" in out.source

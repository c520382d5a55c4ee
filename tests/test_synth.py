"""Synthetic AMASS-format motions: loadable, upright, grounded, plausible, deterministic; the CLI writes them."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import refuse_writes_in
from mmimic.cli import main
from mmimic.math import axis_angle_to_matrix
from mmimic.motion.smpl import BODY_JOINT_NAMES, load_amass, smpl_joints
from mmimic.motion.synth import (
    FOOT_JOINTS, KINDS, MAX_ANGLE_DEG, ensure_demo_motions, save_npz, synthesize, write_synth,
)

J = {name: i for i, name in enumerate(BODY_JOINT_NAMES)}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Every kind, two seeds, written and read back through load_amass; with built-in FK joints."""
    out = tmp_path_factory.mktemp("synth")
    paths = write_synth(out, KINDS, count=2, seed=0, duration=4.0)
    return {p.stem: (load_amass(p), smpl_joints(load_amass(p))) for p in paths}


def test_files_are_amass_smplh_and_say_they_are_synthetic(clips):
    for name, (clip, _) in clips.items():
        assert clip.layout == "smplh" and clip.poses.shape == (120, 156) and clip.fps == 30.0
        assert clip.gender == "neutral" and np.all(clip.betas == 0) and clip.betas.shape == (16,)
        assert np.all(clip.poses[:, 66:] == 0)  # flat hands
        with np.load(clip.path) as z:
            kind, seed = name.rsplit("_", 1)
            assert str(z["source"]) == f"mmimic synth {kind} seed {seed}"
            assert not {"marker_data", "dmpls"} & set(z.files)


def test_upright_and_facing_plus_x(clips):
    for name, (_, sj) in clips.items():
        p = sj.positions.numpy()
        assert (p[:, J["Head"], 2] - p[:, J["Pelvis"], 2]).min() > 0.4, name
        assert (p[:, J["L_Hip"], 1] - p[:, J["R_Hip"], 1]).min() > 0.08, name  # left is +y, so facing +x


def test_feet_on_the_floor(clips):
    for name, (_, sj) in clips.items():
        feet = sj.positions.numpy()[:, FOOT_JOINTS, 2]
        lowest = feet.min(axis=1)
        assert -0.02 <= lowest.min() and lowest.max() <= 0.15, name  # every frame: some foot joint near the floor


def test_standing_motions_keep_feet_planted(clips):
    for name in ("squat_0", "reach_1", "bimanual_lift_0"):
        p = clips[name][1].positions.numpy()[:, FOOT_JOINTS]
        assert np.abs(p - p[:1]).max() < 0.03, name


def test_walk_moves_forward_with_a_gait_cycle(clips):
    for seed in (0, 1):
        p = clips[f"walk_{seed}"][1].positions.numpy()
        t2 = 60  # 2 s at 30 fps
        assert p[t2, 0, 0] - p[0, 0, 0] > 0.5
        speed = (p[-1, 0, 0] - p[0, 0, 0]) / (len(p) - 1) * 30
        assert 0.9 < speed < 1.5
        assert abs(p[-1, 0, 1] - p[0, 0, 1]) < 0.2  # straight ahead
        swing = p[:, [J["L_Ankle"], J["R_Ankle"]], 2].max(axis=0) - p[:, [J["L_Ankle"], J["R_Ankle"]], 2].min(axis=0)
        assert (swing > 0.08).all()  # both feet lift off
        bob = np.ptp(p[:, 0, 2])
        assert 0.005 < bob < 0.08


def test_squat_lowers_the_pelvis(clips):
    p = clips["squat_0"][1].positions.numpy()
    assert np.ptp(p[:, 0, 2]) > 0.2


def test_joint_angles_plausible(clips):
    for name, (clip, sj) in clips.items():
        body = clip.body_pose  # (T, 21, 3), joints 1..21
        assert np.isfinite(clip.poses).all() and np.isfinite(clip.trans).all()
        angles = np.degrees(np.linalg.norm(body, axis=-1)).max(axis=0)
        for j, a in enumerate(angles, start=1):
            group = BODY_JOINT_NAMES[j].split("_")[-1].rstrip("123")
            assert a <= MAX_ANGLE_DEG[group], (name, BODY_JOINT_NAMES[j], a)
        for side in "LR":  # hinges bend the right way: no hyperextended knees or elbows
            knee, elbow = body[:, J[f"{side}_Knee"] - 1], body[:, J[f"{side}_Elbow"] - 1]
            assert knee[:, 0].min() > np.radians(-5), name
            assert (elbow[:, 1] * (1 if side == "R" else -1)).min() > np.radians(-5), name
        # the pelvis stays within 25 deg of upright: its body up-axis (y) against the world's z
        up = axis_angle_to_matrix(torch.as_tensor(clip.root_orient))[:, :, 1]
        assert up[:, 2].min() > np.cos(np.radians(MAX_ANGLE_DEG["Pelvis"])), name


def test_smooth_no_jumps(clips):
    for name, (clip, sj) in clips.items():
        R = axis_angle_to_matrix(torch.as_tensor(clip.poses[:, :66].reshape(-1, 22, 3)))
        rel = R[:-1].transpose(-1, -2) @ R[1:]  # frame-to-frame rotation of every joint
        cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
        assert torch.arccos(cos).max() < 0.3, name  # < 9 rad/s at 30 fps
        step = np.linalg.norm(np.diff(sj.positions.numpy(), axis=0), axis=-1)
        assert step.max() < 0.2, name  # no joint faster than 6 m/s (a swinging foot peaks near 4)


def test_seeded_and_deterministic():
    a, b, c = synthesize("walk", 2.0, 30.0, 3), synthesize("walk", 2.0, 30.0, 3), synthesize("walk", 2.0, 30.0, 4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["poses"], c["poses"])
    assert synthesize("wave", 1.0, 50.0, 0)["poses"].shape == (50, 156)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown motion kind 'jog'"):
        synthesize("jog")
    with pytest.raises(ValueError, match="duration and fps must be > 0"):
        synthesize("walk", fps=0.0)


def test_ensure_demo_motions(tmp_path):
    demo = tmp_path / "demo"
    paths = ensure_demo_motions(demo, count=1)
    assert sorted(p.stem for p in paths) == sorted(f"{k}_0" for k in KINDS)
    assert sum(p.stat().st_size for p in paths) < 1_000_000
    stamp = {p: p.stat().st_mtime_ns for p in paths}
    assert ensure_demo_motions(demo, count=1) == sorted(paths)  # an existing set is left alone
    assert all(p.stat().st_mtime_ns == stamp[p] for p in paths)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    """Was: a plain np.savez passed this test. Now the write fails halfway: the old file stays whole, the
    partial bytes never reach the final path, no temp file is left; and files follow the umask."""
    path = tmp_path / "a.npz"
    old_mask = os.umask(0o022)
    try:
        save_npz(path, synthesize("reach", 0.5))
    finally:
        os.umask(old_mask)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # was 0600 (mkstemp's mode)
    before = path.read_bytes()
    real = np.savez_compressed
    seen = []

    def half_then_die(f, **arrays):
        buf = io.BytesIO()
        real(buf, **arrays)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        seen.extend(p.name for p in tmp_path.iterdir())
        assert path.read_bytes() == before  # mid-write, the final path still holds the old file
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write

    monkeypatch.setattr(np, "savez_compressed", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_npz(path, synthesize("wave", 0.5))
    assert len(seen) == 2 and any(n.startswith(".a.npz.") and n.endswith(".tmp") for n in seen)  # hidden, not *.npz
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"] and path.read_bytes() == before
    assert str(np.load(path)["source"]) == "mmimic synth reach seed 0"


def test_ensure_demo_motions_completes_an_interrupted_set(tmp_path):
    """Fault: any .npz in the folder counted as the whole demo set, so a set cut short stayed short."""
    demo = tmp_path / "demo"
    write_synth(demo, ("walk",), 1)
    (demo / "notes.npz").write_bytes(b"a user file")
    stamp = (demo / "walk_0.npz").stat().st_mtime_ns
    paths = ensure_demo_motions(demo, count=1)
    assert [p.name for p in paths] == sorted(f"{k}_0.npz" for k in KINDS)
    assert all(p.is_file() for p in paths) and (demo / "walk_0.npz").stat().st_mtime_ns == stamp
    assert (demo / "notes.npz").read_bytes() == b"a user file"


def test_cli_synth_does_not_overwrite_other_files(tmp_path, capsys):
    """An AMASS (or any) file named like an output is not replaced; nothing is written at all."""
    out = tmp_path / "clips"
    out.mkdir()
    amass = out / "walk_0.npz"
    np.savez(amass, poses=np.zeros((2, 156)), trans=np.zeros((2, 3)), betas=np.zeros(16), gender="female",
             mocap_framerate=120.0)
    before = amass.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["motion", "synth", "--out", str(out), "--kinds", "walk,reach", "--duration", "0.5"])
    msg = str(exc.value.code)
    assert msg.startswith("mmimic motion synth:") and str(amass) in msg and "not overwritten" in msg
    assert amass.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["walk_0.npz"]
    # our own clips are rewritten (same seed, same clip)
    assert main(["motion", "synth", "--out", str(out), "--kinds", "reach", "--duration", "0.5"]) == 0
    assert main(["motion", "synth", "--out", str(out), "--kinds", "reach", "--duration", "0.5"]) == 0
    assert amass.read_bytes() == before


def test_cli_synth_bad_out_and_values_are_messages(tmp_path, monkeypatch):
    """--out that is a file, or not writable, and --fps inf / a huge --duration: one line, no traceback."""
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    locked = tmp_path / "locked"
    locked.mkdir()
    refuse_writes_in(monkeypatch, locked)
    cases = [(["--out", str(afile)], [str(afile), "is a file, not a directory"]),
             (["--out", str(afile / "sub")], [str(afile / "sub"), "cannot create it"]),
             (["--out", str(locked)], [str(locked), "not writable", "Permission denied"]),
             (["--out", str(tmp_path / "x"), "--fps", "inf"], ["fps must be > 0 (and finite)", "inf"]),
             (["--out", str(tmp_path / "x"), "--duration", "1e7"], ["at most 100,000", "shorter duration"])]
    for args, parts in cases:
        with pytest.raises(SystemExit) as exc:
            main(["motion", "synth", "--kinds", "walk", *args])
        msg = str(exc.value.code)
        assert msg.startswith("mmimic motion synth:") and all(p in msg for p in parts), (args, msg)
    assert afile.read_text() == "keep me" and list(locked.iterdir()) == [] and not (tmp_path / "x").exists()


def test_cli_motion_synth(tmp_path, capsys):
    out = tmp_path / "clips"
    assert main(["motion", "synth", "--out", str(out), "--kinds", "walk,squat", "--count", "2", "--seed", "7",
                 "--fps", "20", "--duration", "1.5"]) == 0
    text = capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["squat_7.npz", "squat_8.npz", "walk_7.npz", "walk_8.npz"]
    assert all(str(out / n) in text for n in names) and "30 frames" in text
    assert load_amass(out / "walk_8.npz").fps == 20.0


def test_cli_motion_help_and_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["motion", "synth", "--help"])
    assert exc.value.code == 0 and "--duration" in capsys.readouterr().out
    assert main(["motion"]) == 2 and "synth" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["motion", "synth", "--out", "x", "--kinds", "walk,jog"])
    assert exc.value.code == 2 and "jog" in capsys.readouterr().err

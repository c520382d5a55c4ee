"""Gait validation (``mmimic gait``) and EMG comparison: known answers.

The walks are the project's own synthesized walks retargeted onto the full body, whose heel-strike
times are known from the synthesizer (``walk_heel_strikes``); the EMG test builds a rollout whose
activations follow the human envelopes in time, so the comparison must find them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import replay_reference
from mmimic.cli import main
from mmimic.eval import emg as emg_mod
from mmimic.eval import gait
from mmimic.motion.batch import retarget_dir
from mmimic.motion.motion_file import load_motion, save_motion
from mmimic.motion.synth import save_npz, synthesize, walk_heel_strikes

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def walks(tmp_path_factory):
    """Two synthesized 4 s walks (seeds 0, 1) retargeted onto the full body (fingers welded, as training has it)."""
    root = tmp_path_factory.mktemp("walks")
    for seed in SEEDS:
        save_npz(root / "amass" / f"walk_{seed}.npz", synthesize("walk", 4.0, 30.0, seed))
    summary = retarget_dir(root / "amass", "myofullbody", root / "motions", progress=False, remove_fingers=True)
    assert summary["aggregate"]["errors"] == 0
    return root / "motions"


def test_a_curve_against_itself_gives_r_one_and_a_phase_shifted_copy_less():
    knee = gait.kinematic_norms()["knee_flexion"][0]
    assert gait.pearson_r(knee, knee) == pytest.approx(1.0, abs=1e-12)
    assert gait.rmse(knee, knee) == 0.0
    shifted = [gait.pearson_r(knee, np.roll(knee[:-1], k)[np.r_[0:100, 0]]) for k in (5, 10, 20)]
    assert shifted[0] < 0.99 and shifted[0] > shifted[1] > shifted[2]
    assert gait.pearson_r(knee, 2.0 * knee + 7.0) == pytest.approx(1.0)  # r ignores gain and offset ...
    assert gait.rmse(knee, knee + 3.0) == pytest.approx(3.0)  # ... RMSE does not


def test_cycles_are_resampled_to_101_points_and_outlier_strides_dropped():
    fps, period = 100.0, 1.0
    t = np.arange(500) / fps
    signal = np.sin(2 * np.pi * t / period)[:, None]
    strikes = np.array([0.25, 1.25, 2.25, 3.25])
    cycles, durations = gait.cut_cycles(signal, strikes, fps)
    assert cycles.shape == (3, 101, 1)
    np.testing.assert_allclose(durations, 1.0)
    expected = np.sin(2 * np.pi * (0.25 + gait.POINTS / 100.0))
    for c in cycles:
        np.testing.assert_allclose(c[:, 0], expected, atol=2e-3)  # linear interpolation between frames
    d = np.array([1.0, 1.02, 0.98, 1.01, 0.99, 1.0, 1.03, 0.97, 1.0, 2.1])  # a missed strike: a double stride
    keep = gait.keep_typical(d)
    assert not keep[-1] and keep[:-1].all()
    assert gait.keep_typical(np.array([1.0, 3.0])).all()  # too few to judge


def test_contact_flicker_is_merged_before_onsets():
    fps = 100.0
    contact = np.zeros(300, dtype=bool)
    contact[50:110] = True
    contact[80:82] = False  # 20 ms of flicker inside a stance
    contact[160:163] = True  # a 30 ms touch in swing
    contact[200:260] = True
    np.testing.assert_allclose(gait.heel_strikes_contact(contact, fps), [0.5, 2.0])
    contact[0:20] = True  # a walk that starts in stance: no strike at frame 0
    np.testing.assert_allclose(gait.heel_strikes_contact(contact, fps), [0.5, 2.0])


@pytest.mark.parametrize("seed", SEEDS)
def test_heel_strikes_of_a_synthesized_walk_are_its_known_ones(walks, seed):
    trial = gait.load_trial(walks / f"walk_{seed}.npz")
    kin = gait.kinematics(trial, with_contact=False)
    found, method = gait.heel_strikes(trial, kin)
    assert method == "calcaneus"
    known = walk_heel_strikes(seed, 4.0)
    end = trial.qpos.shape[0] / trial.fps
    for side in gait.SIDES:
        # every strike found is a known one (within 4 % of the stride) ...
        nearest = np.abs(found[side][:, None] - known[side][None]).min(axis=1)
        assert (nearest < 0.04).all(), (side, found[side], known[side])
        # ... and every known one is found, except within 0.1 s of the ends (no onset to see there)
        inner = known[side][(known[side] > 0.1) & (known[side] < end - 0.1)]
        assert (np.abs(inner[:, None] - found[side][None]).min(axis=1) < 0.04).all(), (side, found[side], inner)
        np.testing.assert_allclose(np.diff(found[side]), np.diff(known[side]).mean(), atol=0.04)


def test_the_retargeted_demo_walk_is_human_like(walks, tmp_path):
    result = gait.run_gait([walks], tmp_path)
    assert result["mean_r"] >= 0.8, result["joints"]  # the bar for the synthesized walk
    assert result["joints"]["hip_flexion"]["r"] > 0.95 and result["joints"]["knee_flexion"]["r"] > 0.9
    assert result["cycles"]["right"] >= 4 and result["cycles"]["left"] >= 4
    assert 0.9 < result["stride_time_s"]["mean"] < 1.1  # cadence 0.95-1.02 cycles/s
    saved = json.loads((tmp_path / "gait.json").read_text())
    assert saved["mean_r"] == pytest.approx(result["mean_r"])
    assert set(saved["joints"]["knee_flexion"]) >= {"r", "rmse_deg", "right", "left"}
    assert (tmp_path / "gait.png").stat().st_size > 10_000
    assert not (tmp_path / "emg.json").exists()  # motions have no activations


def _write_rollout(src: Path, dst: Path, act_of) -> Path:
    """``src`` motion + activations ``act_of(trial, muscle_names) -> (T, nu)`` as a rollout file."""
    clip, trial = load_motion(src), gait.load_trial(src)
    m = gait.model_for(trial)
    muscles = [m.actuator(i).name for i in range(m.nu)]
    act = act_of(trial, muscles)
    return save_motion(dst, clip, extra={"act": act.astype(np.float32), "muscle_names": np.asarray(muscles)})


def test_emg_comparison_finds_activations_that_follow_the_human_envelopes(walks, tmp_path):
    norms = emg_mod.emg_norms()

    def act_of(trial, muscles):
        kin = gait.kinematics(trial, with_contact=False)
        strikes, _ = gait.heel_strikes(trial, kin)
        t = np.arange(trial.qpos.shape[0]) / trial.fps
        act = np.full((len(t), len(muscles)), 0.01)
        for side, s in gait.SIDES.items():
            hs = strikes[side]
            phase = np.interp(t, hs, np.arange(len(hs)), left=np.nan, right=np.nan)  # strides since the 1st strike
            pct = 100.0 * np.mod(np.nan_to_num(phase), 1.0)
            for channel, heads in emg_mod.CHANNELS.items():
                for h in heads:
                    act[:, muscles.index(f"{h}_{s}")] = 0.6 * np.interp(pct, gait.POINTS, norms[channel][0])
        return act

    rollout = _write_rollout(walks / "walk_0.npz", tmp_path / "in" / "walk_0.npz", act_of)
    result = gait.run_gait([rollout], tmp_path / "out", method="calcaneus")
    e = json.loads((tmp_path / "out" / "emg.json").read_text())
    assert set(e["muscles"]) == set(emg_mod.CHANNELS)
    for name, m in e["muscles"].items():
        assert m["r"] > 0.97, (name, m["r"])
        assert m["on_off_agreement"] > 0.9
    assert result["emg"]["mean_r"] > 0.97
    assert (tmp_path / "out" / "emg.png").stat().st_size > 10_000
    # constant activations carry no timing: no correlation to find
    flat = _write_rollout(walks / "walk_0.npz", tmp_path / "in2" / "walk_0.npz",
                          lambda trial, m: 0.2 + 0.01 * np.random.default_rng(0).standard_normal((len(trial.qpos), len(m))))
    noise = gait.run_gait([flat], tmp_path / "out2", method="calcaneus")
    assert abs(noise["emg"]["mean_r"]) < 0.5


def test_eval_records_walking_rollouts_and_a_replayed_reference_keeps_the_reference_gait(walks, tmp_path,
                                                                                         monkeypatch):
    """The rollout path end to end: eval's env, a player that replays the reference exactly, the recorder,
    the gait summary of the rollouts = the gait of the motions themselves."""
    import torch

    from mmimic.config import load_config
    from mmimic.eval.play import eval_env, gait_summary, play_clips
    from mmimic.eval.rollout import RolloutRecorder
    from mmimic.rl.trainer import TrainConfig

    cfg = load_config(TrainConfig, "experiments/fullbody.yaml", [
        f"env.motions={walks}", "env.device=cpu", "env.backend=mujoco", "env.task.refresh_kinematics=true"])
    env = eval_env(cfg, walks, device="cpu", max_site_error=0.0)
    monkeypatch.setattr(env.sim, "step", replay_reference(env))
    names = env.task.library.names
    assert gait.walking_clips(names) == [0, 1] and gait.has_legs(env.embodiment.model)
    recorder = RolloutRecorder(env, [1], tmp_path / "rollouts")  # the second clip only
    play_clips(env, lambda td: torch.zeros(env.num_envs, env.sim.nu), on_step=recorder)
    recorder.finish()
    assert list(recorder.written) == [names[1]]
    rollout, motion = load_motion(recorder.written[names[1]]), load_motion(walks / f"{names[1]}.npz")
    n = rollout.num_frames
    assert rollout.fps == pytest.approx(motion.fps) and abs(n - motion.num_frames) <= 1
    np.testing.assert_allclose(rollout.qpos, motion.qpos[:n], atol=1e-4)  # the reset state, then every step (float32 clip times)
    trial = gait.load_trial(recorder.written[names[1]])
    assert trial.is_rollout and trial.act.shape == (n, env.sim.nu) and trial.muscle_names == env.embodiment.muscle_names
    summary = gait_summary(list(recorder.written.values()), tmp_path / "gait")
    reference = gait.analyze_gait([walks / f"{names[1]}.npz"])[0]
    assert summary["mean_r"] == pytest.approx(reference["mean_r"], abs=0.01)
    assert "emg_mean_r" in summary and (tmp_path / "gait" / "emg.json").is_file()
    # a rollout too short for a stride is reported, not raised
    short = gait_summary([tmp_path / "rollouts" / "missing.npz"], tmp_path / "gait2")
    assert "no such file" in short["error"]


def test_on_off_agreement_counts_matching_phases():
    a = np.r_[np.ones(50), np.zeros(51)]
    assert emg_mod.on_off_agreement(a, a) == 1.0
    assert emg_mod.on_off_agreement(a, 1.0 - a) == 0.0
    assert emg_mod.on_off_agreement(a, np.roll(a, 10)) == pytest.approx(81 / 101)


def test_cli_gait_reports_and_skips_what_is_not_a_walk(walks, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(walks / "walk_0.npz", mixed)
    clip = load_motion(walks / "walk_1.npz")
    clip.qpos = clip.qpos.copy()
    clip.qpos[:, 2] += 0.5  # floating half a metre above the floor
    save_motion(mixed / "floating.npz", clip)
    assert main(["gait", str(mixed), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "mean r" in out and "floating.npz: no foot contact" in out
    saved = json.loads((tmp_path / "out" / "gait.json").read_text())
    assert list(saved["skipped"]) == [str(mixed / "floating.npz")]
    assert len(saved["inputs"]) == 1
    with pytest.raises(SystemExit, match="no foot contact"):
        main(["gait", str(mixed / "floating.npz"), "--out", str(tmp_path / "out2")])
    with pytest.raises(SystemExit, match="no such file or folder"):
        main(["gait", str(tmp_path / "nothing"), "--out", str(tmp_path / "out3")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no .npz"):
        main(["gait", str(empty), "--out", str(tmp_path / "out4")])
    with pytest.raises(SystemExit, match="too few heel strikes"):  # a motion with no contact for the contact rule
        main(["gait", str(walks / "walk_0.npz"), "--heel-strikes", "contact", "--out", str(tmp_path / "out5")])


def test_gait_of_a_model_without_legs_is_a_clear_error(tmp_path):
    from mmimic.motion.demo import ensure_demo_library

    arm = ensure_demo_library("arm26", tmp_path, log=lambda *_: None)
    with pytest.raises(SystemExit, match="no leg joints"):
        main(["gait", str(next(arm.glob("*.npz"))), "--out", str(tmp_path / "out")])


def test_norm_tables_carry_their_attribution():
    kin = (REPO / "mmimic/eval/norms/gait_kinematics.csv").read_text()
    assert "Fukuchi" in kin and "CC BY 4.0" in kin and "derived by mmimic" in kin
    emg = (REPO / "mmimic/eval/norms/emg_envelopes.csv").read_text()
    assert "Falisse" in emg and "MIT License" in emg and "Apache License 2.0" in emg
    means = gait.kinematic_norms()
    assert 55 < means["knee_flexion"][0].max() < 70  # the swing peak of the human knee (~63 deg)
    assert np.argmax(means["knee_flexion"][0]) in range(68, 78)


RAW = REPO.parent / "shared" / "data" / "gait"


@pytest.mark.skipif(not RAW.is_dir(), reason="the raw gait data (../shared/data/gait) is not beside this checkout")
def test_norm_tables_regenerate_from_the_raw_data():
    pytest.importorskip("scipy")
    out = subprocess.run([sys.executable, str(REPO / "scripts/derive_gait_norms.py"), "--check", "--data", str(RAW)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr

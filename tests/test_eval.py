"""mmimic eval: metrics with known answers (a player that replays the reference exactly scores 0, a known
joint offset gives its RMSE), the held-out demo split, the report files and the CLI's errors."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from mmimic.cli import main
from mmimic.config import load_config
from mmimic.eval.play import eval_env, play_clips, summarize
from mmimic.motion.demo import ensure_demo_library
from mmimic.motion.motion_file import load_motion
from mmimic.rl.checkpoint import list_checkpoints
from mmimic.rl.trainer import Trainer, TrainConfig
from helpers import replay_reference


@pytest.fixture(scope="module")
def arm_motions(tmp_path_factory):
    return ensure_demo_library("arm26", tmp_path_factory.mktemp("data"), log=lambda *_: None)


def _config(motions, out_dir, *overrides) -> TrainConfig:
    return load_config(TrainConfig, "experiments/smoke.yaml", [
        f"env.motions={motions}", f"out_dir={out_dir}", "env.device=cpu", "env.num_envs=4", "ppo.rollout_steps=4",
        "ppo.minibatches=1", "iterations=1", *overrides])


@pytest.mark.parametrize("offset", [0.0, 0.1])
def test_metrics_are_zero_on_the_reference_and_grow_with_a_known_offset(arm_motions, tmp_path, monkeypatch, offset):
    cfg = _config(arm_motions, tmp_path, "env.task.refresh_kinematics=true")
    env = eval_env(cfg, arm_motions, device="cpu", max_site_error=0.0)
    monkeypatch.setattr(env.sim, "step", replay_reference(env, offset))
    assert env.num_envs == 3  # one world per episode by default
    episodes = play_clips(env, lambda td: torch.zeros(3, 6))
    result = summarize(episodes, env.task.library.names)
    agg = result["aggregate"]
    assert agg["episodes"] == 3 and agg["early_termination_rate"] == 0 and agg["frame_coverage"] == 1.0
    # RMSE over 2 joints, one of them off by `offset` at every step
    assert agg["joint_pos_error_rad"] == pytest.approx(offset / math.sqrt(2), abs=1e-6)
    if offset == 0:
        assert agg["site_rel_error_m"] < 1e-3 and agg["site_abs_error_m"] < 1e-3  # (sites interpolated)
    else:
        assert agg["site_rel_error_m"] > 0.01 and agg["site_abs_error_m"] > 0.01
    assert "root_pos_error_m" not in agg  # fixed root


def test_rollouts_record_the_played_states_and_skip_a_world_that_blew_up(arm_motions, tmp_path, monkeypatch):
    from mmimic.eval.rollout import RolloutRecorder

    cfg = _config(arm_motions, tmp_path, "env.task.refresh_kinematics=true")
    env = eval_env(cfg, arm_motions, device="cpu", max_site_error=0.0)
    monkeypatch.setattr(env.sim, "step", replay_reference(env))
    recorder = RolloutRecorder(env, [0, 2], tmp_path / "rollouts")
    play_clips(env, lambda td: torch.zeros(3, 6), on_step=recorder)
    recorder._frames[2][5]["qpos"][:] = float("nan")  # clip 2's world blew up at step 5
    with pytest.warns(UserWarning, match="rollout of reach_2 not written: .*qpos"):
        recorder.finish()
    assert list(recorder.written) == ["reach_0"] and list(recorder.failed) == ["reach_2"]
    rollout, motion = load_motion(recorder.written["reach_0"]), load_motion(arm_motions / "reach_0.npz")
    assert abs(rollout.num_frames - motion.num_frames) <= 1
    torch.testing.assert_close(torch.as_tensor(rollout.qpos), torch.as_tensor(motion.qpos[:rollout.num_frames]),
                               atol=1e-4, rtol=0)


def test_the_held_out_demo_split_is_other_clips(arm_motions):
    test = ensure_demo_library("arm26", arm_motions.parent.parent, log=lambda *_: None, split="test")
    train_names = sorted(p.name for p in arm_motions.glob("*.npz"))
    test_names = sorted(p.name for p in test.glob("*.npz"))
    assert len(test_names) == len(train_names) == 3 and not set(test_names) & set(train_names)
    a, b = load_motion(arm_motions / train_names[0]), load_motion(test / test_names[0])
    assert a.qpos.shape[1] == b.qpos.shape[1] and not (a.qpos.shape == b.qpos.shape and (a.qpos == b.qpos).all())
    with pytest.raises(ValueError, match="split must be one of"):
        ensure_demo_library("arm26", arm_motions.parent.parent, split="validation")


def test_cli_eval_writes_metrics_and_reports_bad_input(arm_motions, tmp_path, capsys):
    trainer = Trainer(_config(arm_motions, tmp_path / "runs"), log=lambda *_: None)
    trainer.train()
    out = tmp_path / "eval"
    assert main(["eval", str(trainer.run_dir), "--motions", str(arm_motions), "--out", str(out),
                 "--episodes-per-clip", "2", "--stochastic"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert set(result["clips"]) == {"reach_0", "reach_1", "reach_2"} and result["aggregate"]["episodes"] == 6
    assert result["policy"] == "stochastic" and result["iteration"] == 1
    for key in ("joint_pos_error_rad", "site_rel_error_m", "site_abs_error_m", "early_termination_rate",
                "frame_coverage", "mean_activation"):
        assert 0 <= result["aggregate"][key] < 10, key
    rows = list(csv.reader((out / "metrics.csv").open()))
    assert rows[0][:3] == ["clip", "episodes", "joint_pos_error_rad"] and [r[0] for r in rows[1:]][-1] == "aggregate"
    assert "aggregate" in capsys.readouterr().out
    # an empty motions directory; a missing split list; motions of another model
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="mmimic eval: .*empty"):
        main(["eval", str(trainer.run_dir), "--motions", str(empty)])
    with pytest.raises(SystemExit, match="--split test: .*test.txt does not exist"):
        main(["eval", str(trainer.run_dir), "--motions", str(arm_motions), "--split", "test"])
    state = torch.load(list_checkpoints(trainer.run_dir)[-1], weights_only=True)
    state["config"] = state["config"].replace("model: arm26", "model: bimanual")
    other = tmp_path / "other" / "checkpoints" / "ckpt_00000001.pt"
    other.parent.mkdir(parents=True)
    torch.save(state, other)
    with pytest.raises(SystemExit, match=r"mmimic eval: .*embodiment 'arm26' \(expected 'bimanual'\)"), \
            pytest.warns(UserWarning, match="skipping"):
        main(["eval", str(other), "--motions", str(arm_motions)])
    with pytest.raises(SystemExit, match="mmimic eval: .*nowhere: no such"):
        main(["eval", str(tmp_path / "nowhere")])


def test_training_evaluates_every_k_iterations_and_logs_eval(arm_motions, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lines = []
    trainer = Trainer(_config(arm_motions, tmp_path, "iterations=2", "eval_every=1", f"eval_motions={arm_motions}"),
                      log=lines.append)
    trainer.train()
    assert sum(line.startswith("eval at iteration") for line in lines) == 2
    acc = EventAccumulator(str(trainer.run_dir))
    acc.Reload()
    assert len(acc.Scalars("eval/site_rel_error_m")) == 2 and "eval/frame_coverage" in acc.Tags()["scalars"]

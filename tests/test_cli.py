"""The ``mmimic`` command: bench writes its table and JSON, posture writes TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmimic.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "bench" in out and "posture" in out


def test_bench_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", "arm26", "--device", "cpu", "--backend", "warp,mujoco", "--threads", "2",
                 "--num-envs", "2,3", "--steps", "3", "--warmup", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "env/raw" in text and f"wrote {out}" in text and "mujoco / warp at 3 worlds" in text
    result = json.loads(out.read_text())
    assert [(r["backend"], r["num_envs"]) for r in result["rows"]] == [("warp", 2), ("warp", 3), ("mujoco", 2),
                                                                         ("mujoco", 3)]
    for row in result["rows"]:
        assert row["raw_physics_steps_per_s"] == pytest.approx(5 * row["raw_control_steps_per_s"])
        assert row["env_over_raw"] == pytest.approx(row["env_steps_per_s"] / row["raw_control_steps_per_s"])
        assert row["env_steps_per_s"] > 0 and row["cuda_graph"] is False
    env = {(r["backend"], r["num_envs"]): r["env_steps_per_s"] for r in result["rows"]}
    assert result["mujoco_over_warp_env"]["3"] == pytest.approx(env["mujoco", 3] / env["warp", 3])
    assert result["backends"] == ["warp", "mujoco"] and result["sim_threads"] == 2
    assert result["device"].startswith("cpu") and result["versions"]["mujoco-warp"] == "4.0.0"
    assert "--num-envs 2,3" in result["command"]


def test_bench_rejects_unknown_backend(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--model", "arm26", "--backend", "warp,physx"])
    assert "unknown backend(s) physx; known: auto, warp, mujoco" in capsys.readouterr().err


def test_bench_rejects_unknown_model(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--model", "octopus"])
    assert "known: arm26, bimanual, myofullbody" in capsys.readouterr().err


def test_posture_run_logs_tensorboard(tmp_path, capsys):
    assert main(["posture", "--config", str(REPO / "experiments" / "posture.yaml"), "--device", "cpu",
                 "--num-envs", "3", "--steps", "12", "--out", str(tmp_path), "log_every=4",
                 "env.task.max_episode_steps=5"]) == 0
    assert "Nothing is learned" in capsys.readouterr().out
    (run_dir,) = list(tmp_path.glob("posture-arm26-*"))
    assert "max_episode_steps: 5" in (run_dir / "config.yaml").read_text()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("posture/reward_mean", "posture/episode_length_mean", "posture/early_termination_rate",
                "posture/env_steps_per_s", "posture/mean_muscle_activation"):
        assert tag in tags
    assert [e.step for e in events.Scalars("posture/reward_mean")] == [12, 24, 36]
    # episodes truncate after 5 steps: 12 steps of 3 worlds end 2 episodes each
    assert events.Scalars("posture/episode_length_mean")[-1].value == pytest.approx(5.0)


def test_posture_rejects_bad_override(tmp_path):
    with pytest.raises(SystemExit, match="bad configuration"):
        main(["posture", "--out", str(tmp_path), "env.no_such_key=1"])


def test_bench_train_compares_training_loop_with_env(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # demo motions are made under ./data
    out = tmp_path / "train.json"
    assert main(["bench", "--train", "--model", "arm26", "--device", "cpu", "--num-envs", "8", "--steps", "1",
                 "--warmup", "0", "--out", str(out)]) == 0
    assert "train/env" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["rows"]
    assert row["num_envs"] == 8 and row["env_steps_per_s"] > 0 and row["train_steps_per_s"] > 0
    assert row["train_over_env"] == pytest.approx(row["train_steps_per_s"] / row["env_steps_per_s"])

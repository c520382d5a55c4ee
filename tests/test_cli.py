"""The ``mmimic`` command: bench writes its table and JSON, posture writes TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmimic.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "bench" in out and "posture" in out


class _Clock:
    """A stand-in for the ``time`` module of ``mmimic.bench.throughput``: ``perf_counter`` returns the
    scripted readings in order (and fails on a call the script did not plan for)."""

    def __init__(self, readings):
        self.readings = list(readings)
        self.calls = 0

    def perf_counter(self) -> float:
        assert self.calls < len(self.readings), "the bench read the clock more often than scripted"
        self.calls += 1
        return self.readings[self.calls - 1]


def _timed(per_step_seconds, steps):
    """Clock readings for timed loops of ``steps`` steps taking these seconds per step, one after another."""
    readings, now = [], 0.0
    for dt in per_step_seconds:
        readings += [now, now + dt * steps]
        now += dt * steps + 1.0
    return readings


def test_bench_writes_table_and_json(tmp_path, capsys, monkeypatch):
    from mmimic.bench import throughput

    # The bench times each point with perf_counter: raw simulator, then MuscleEnv, per (backend, worlds).
    # A scripted clock makes every rate known in advance: seconds per control step (raw, env) of
    # warp at 2 and 3 worlds, then mujoco at 2 and 3 worlds.
    per_step = {("warp", 2): (0.01, 0.02), ("warp", 3): (0.01, 0.03),
                ("mujoco", 2): (0.004, 0.005), ("mujoco", 3): (0.002, 0.0025)}
    clock = _Clock(_timed([dt for pair in per_step.values() for dt in pair], steps=3))
    monkeypatch.setattr(throughput, "time", clock)
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", "arm26", "--device", "cpu", "--backend", "warp,mujoco", "--threads", "2",
                 "--num-envs", "2,3", "--steps", "3", "--warmup", "1", "--out", str(out)]) == 0
    assert clock.calls == len(clock.readings)  # every timed loop read the clock twice, as scripted
    text = capsys.readouterr().out
    assert "env/raw" in text and f"wrote {out}" in text
    result = json.loads(out.read_text())
    assert [(r["backend"], r["num_envs"]) for r in result["rows"]] == list(per_step)
    assert result["substeps"] == 5  # arm26: 5 physics steps of 2 ms per control step
    # known seconds per step -> known rates (worlds / s, x5 substeps for physics steps, raw_dt / env_dt)
    expected = {("warp", 2): (1000.0, 200.0, 100.0, 0.5), ("warp", 3): (1500.0, 300.0, 100.0, 1 / 3),
                ("mujoco", 2): (2500.0, 500.0, 400.0, 0.8), ("mujoco", 3): (7500.0, 1500.0, 1200.0, 0.8)}
    for row in result["rows"]:
        physics, control, env_rate, ratio = expected[row["backend"], row["num_envs"]]
        assert row["raw_physics_steps_per_s"] == pytest.approx(physics), row
        assert row["raw_control_steps_per_s"] == pytest.approx(control), row
        assert row["env_steps_per_s"] == pytest.approx(env_rate), row
        assert row["env_over_raw"] == pytest.approx(ratio), row
        assert row["cuda_graph"] is False
    # mujoco env steps/s over warp's, per world count: 400 / 100 and 1200 / 100
    assert result["mujoco_over_warp_env"] == pytest.approx({"2": 4.0, "3": 12.0})
    assert "mujoco / warp at 2 worlds: 4.0x" in text and "mujoco / warp at 3 worlds: 12.0x" in text
    assert "mujoco env/raw: 0.800" in text  # the worst mujoco row
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
    from mmimic.bench import throughput

    monkeypatch.chdir(tmp_path)  # demo motions are made under ./data
    # scripted clock: the env-only loop takes 2 s, the training loop 4 s, for the same 1 x 4 steps of 8 envs
    clock = _Clock([0.0, 2.0, 10.0, 14.0])
    monkeypatch.setattr(throughput, "time", clock)
    out = tmp_path / "train.json"
    assert main(["bench", "--train", "--model", "arm26", "--device", "cpu", "--num-envs", "8", "--steps", "1",
                 "--warmup", "0", "--out", str(out), "ppo.rollout_steps=4"]) == 0
    assert clock.calls == 4
    text = capsys.readouterr().out
    assert "train/env: 0.500" in text
    (row,) = json.loads(out.read_text())["rows"]
    assert row["num_envs"] == 8 and row["rollout_steps"] == 4
    assert row["env_steps_per_s"] == pytest.approx(8 * 4 / 2.0)  # 16 env steps/s
    assert row["train_steps_per_s"] == pytest.approx(8 * 4 / 4.0)  # 8 steps/s
    assert row["train_over_env"] == pytest.approx(0.5)


def test_posture_faults_are_one_line_messages(tmp_path):
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("keep me")
    with pytest.raises(SystemExit, match="mmimic posture: .*Not a directory"):
        main(["posture", "--config", "experiments/posture.yaml", "--out", str(not_a_folder), "--steps", "2",
              "--num-envs", "2"])
    assert not_a_folder.read_text() == "keep me"
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="mmimic posture: device 'cuda': torch sees no CUDA device"):
            main(["posture", "env.device=cuda"])

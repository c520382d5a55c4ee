"""The training program: run folder, TensorBoard tags, checkpoints, resume, fine-tune, adversarial modes."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmimic.cli import main
from mmimic.config import load_config
from mmimic.motion.demo import ensure_demo_library
from mmimic.rl import Learner, collect
from mmimic.rl.checkpoint import checkpoint_iteration, list_checkpoints, read_checkpoint, save_checkpoint
from mmimic.rl.trainer import Trainer, TrainConfig, finetune_config, upgrade_checkpoint


@pytest.fixture(scope="module")
def arm_motions(tmp_path_factory):
    return ensure_demo_library("arm26", tmp_path_factory.mktemp("data"), log=lambda *_: None)


def small_config(motions, out_dir, *overrides) -> TrainConfig:
    return load_config(TrainConfig, "experiments/smoke.yaml", [
        f"env.motions={motions}", f"out_dir={out_dir}", "env.device=cpu", "env.num_envs=8",
        "ppo.rollout_steps=8", "ppo.minibatches=2", "ppo.epochs=2", "iterations=3", "checkpoint_every=2",
        "keep_checkpoints=2", "log_every=1", "env.task.max_episode_steps=10", *overrides])


def scalars(run_dir) -> dict:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_demo_library_is_made_once(arm_motions):
    clips = sorted(arm_motions.glob("*.npz"))
    assert len(clips) == 3 and (arm_motions / "summary.json").is_file()
    mtimes = [p.stat().st_mtime_ns for p in clips]
    assert ensure_demo_library("arm26", arm_motions.parent.parent, log=lambda *_: None) == arm_motions
    assert [p.stat().st_mtime_ns for p in clips] == mtimes


def test_run_writes_config_events_checkpoints(arm_motions, tmp_path):
    lines = []
    trainer = Trainer(small_config(arm_motions, tmp_path), log=lines.append)
    last = trainer.train()
    run = trainer.run_dir
    assert (run / "config.yaml").read_text().count("num_envs: 8") == 1
    assert [p.name for p in list_checkpoints(run)] == ["ckpt_00000002.pt", "ckpt_00000003.pt"]  # last 2 kept
    tags = scalars(run)
    for tag in ("reward/mean", "reward_terms/site_pos", "reward_terms/effort", "tracking_errors/site_rel",
                "tracking_errors/joint_pos", "episode/episode_length", "episode/terminated_fraction",
                "speed/env_steps_per_s", "speed/train_steps_per_s", "ppo/policy_loss", "ppo/value_loss",
                "ppo/approx_kl", "ppo/entropy", "ppo/action_std", "ppo/lr", "muscle/mean_activation"):
        assert tag in tags, tag
    assert len(tags["reward/mean"]) == 3
    assert any(line.startswith("it 3/3") and "sps" in line and "eta" in line for line in lines)
    assert 0 < last["speed/train_steps_per_s"] <= last["speed/env_steps_per_s"] * 1.5


def _weights(trainer) -> dict:
    return trainer.learner.state_dict()["model"]


@pytest.mark.parametrize("mode", ["none", "amp"])
def test_resume_is_exact_two_plus_two_equals_four(arm_motions, tmp_path, mode):
    """2 iterations + resume + 2 more end bit for bit where 4 uninterrupted iterations end: weights,
    optimizer, env state (simulator, episodes in flight), counters."""
    extra = [f"adversarial.mode={mode}", "adversarial.hidden=[32]", "adversarial.minibatch_size=64"]
    whole = Trainer(small_config(arm_motions, tmp_path / "a", "iterations=4", *extra), log=lambda *_: None)
    whole.train()
    first = Trainer(small_config(arm_motions, tmp_path / "b", "iterations=2", *extra), log=lambda *_: None)
    first.train()
    state, _ = read_checkpoint(first.run_dir)
    assert state["iteration"] == 2 and state["env_steps"] == 2 * 8 * 8
    resumed = Trainer(small_config(arm_motions, tmp_path / "b", "iterations=4", f"resume={first.run_dir}", *extra),
                      log=lambda *_: None)
    assert resumed.run_dir == first.run_dir and resumed.iteration == 2
    resumed.train()
    assert resumed.iteration == 4 and read_checkpoint(first.run_dir)[0]["env_steps"] == 4 * 8 * 8
    for key, value in _weights(whole).items():
        assert torch.equal(_weights(resumed)[key], value), key
    assert torch.equal(resumed.env.sim.qpos, whole.env.sim.qpos)
    assert torch.equal(resumed.env.task.ref_time, whole.env.task.ref_time)
    assert torch.equal(resumed.td["observation"], whole.td["observation"])
    if mode == "amp":
        for key, value in whole.shaper.discriminator.state_dict().items():
            assert torch.equal(resumed.shaper.discriminator.state_dict()[key], value), key


def test_resuming_an_older_checkpoint_starts_a_branch_and_keeps_the_abandoned_one(arm_motions, tmp_path):
    run = Trainer(small_config(arm_motions, tmp_path, "iterations=4", "checkpoint_every=1", "keep_checkpoints=5"),
                  log=lambda *_: None)
    run.train()
    ckpts = list_checkpoints(run.run_dir)
    assert [checkpoint_iteration(p) for p in ckpts] == [1, 2, 3, 4]
    abandoned_bytes = ckpts[-1].read_bytes()
    lines = []
    branch = Trainer(small_config(arm_motions, tmp_path, "iterations=3", "checkpoint_every=1", "keep_checkpoints=5",
                                  f"resume={ckpts[1]}"), log=lines.append)
    assert any("moved to" in line for line in lines)
    branch.train()  # iteration 3 of the new branch
    assert [checkpoint_iteration(p) for p in list_checkpoints(run.run_dir)] == [1, 2, 3]
    moved = list((run.run_dir / "checkpoints").glob("abandoned-*/ckpt_00000004.pt"))
    assert len(moved) == 1 and moved[0].read_bytes() == abandoned_bytes  # nothing lost
    # a later resume of the run continues the new branch, not the abandoned iteration 4
    again = Trainer(small_config(arm_motions, tmp_path, "iterations=5", f"resume={run.run_dir}"),
                    log=lambda *_: None)
    assert again.iteration == 3
    for key, value in _weights(branch).items():
        assert torch.equal(_weights(again)[key], value)


def test_unreadable_newest_checkpoint_falls_back_with_a_warning(arm_motions, tmp_path):
    run = Trainer(small_config(arm_motions, tmp_path, "iterations=2", "checkpoint_every=1"), log=lambda *_: None)
    run.train()
    newest = list_checkpoints(run.run_dir)[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.warns(UserWarning, match="could not be read.*using .*ckpt_00000001.pt"):
        state, path = read_checkpoint(run.run_dir)
    assert state["iteration"] == 1 and path.name == "ckpt_00000001.pt"
    with pytest.raises(RuntimeError, match="ckpt_00000002.pt: cannot read checkpoint"):
        read_checkpoint(newest)  # a file named explicitly: no silent substitute


def test_a_crafted_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "ckpt_00000001.pt"
    torch.save({"iteration": 1, "config": "", "learner": Payload()}, path)
    with pytest.raises(RuntimeError, match="ckpt_00000001.pt: cannot read checkpoint"):
        read_checkpoint(path)
    assert not marker.exists()


def test_an_interrupted_checkpoint_write_leaves_the_old_ones_whole(arm_motions, tmp_path, monkeypatch):
    run = Trainer(small_config(arm_motions, tmp_path, "iterations=1"), log=lambda *_: None)
    run.train()
    old = list_checkpoints(run.run_dir)
    old_bytes = [p.read_bytes() for p in old]

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(run.run_dir, 2, run.state())
    monkeypatch.undo()
    assert list_checkpoints(run.run_dir) == old and [p.read_bytes() for p in old] == old_bytes
    assert read_checkpoint(run.run_dir)[0]["iteration"] == 1


@pytest.mark.parametrize("override, message", [
    ("log_every=0", "log_every must be an integer >= 1, got 0"),
    ("checkpoint_every=0", "checkpoint_every must be an integer >= 1"),
    ("time_limit_min=-1", "time_limit_min must be >= 0"),
    ("ppo.epochs=0", "epochs must be >= 1"),
])
def test_numeric_options_are_checked_when_the_config_loads(arm_motions, tmp_path, override, message, capsys):
    with pytest.raises(ValueError, match=message):
        small_config(arm_motions, tmp_path, override).validate()
    with pytest.raises(SystemExit, match=f"mmimic train: bad configuration: .*{message}"):
        main(["train", "--config", "experiments/smoke.yaml", f"env.motions={arm_motions}", f"out_dir={tmp_path}",
              override])
    assert not (tmp_path / "checkpoints").exists()


def test_cli_train_faults_are_one_line_messages(arm_motions, tmp_path):
    with pytest.raises(SystemExit, match="--resume .*nowhere: no such run directory or checkpoint file"):
        main(["train", "--resume", str(tmp_path / "nowhere")])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="torch sees no CUDA device"):
            main(["train", "--config", "experiments/smoke.yaml", f"env.motions={arm_motions}", "env.device=cuda"])
    with pytest.raises(SystemExit, match="init_from: .*nothing-here: no such"):
        main(["train", "--config", "experiments/finetune.yaml", f"init_from={tmp_path / 'nothing-here'}"])


def test_finetune_takes_the_model_and_network_from_the_checkpoint(arm_motions, tmp_path):
    """`make finetune CKPT=<an arm26 run>` with experiments/finetune.yaml (bimanual): the model, observation
    options and network sizes come from the checkpoint's run, unless given on the command line."""
    base = Trainer(small_config(arm_motions, tmp_path, "iterations=1"), log=lambda *_: None)
    base.train()
    overrides = [f"init_from={base.run_dir}", f"env.motions={arm_motions}", "env.device=cpu", "env.num_envs=4",
                 "iterations=1", f"out_dir={tmp_path}"]
    cfg = finetune_config(load_config(TrainConfig, "experiments/finetune.yaml", overrides), overrides,
                          log=lambda *_: None)
    assert cfg.env.model == "arm26" and cfg.ppo.network.actor_hidden == base.cfg.ppo.network.actor_hidden
    tuned = Trainer(cfg, log=lambda *_: None)
    for key, value in _weights(base).items():
        if key != "actor.log_std":  # finetune.yaml restarts exploration (reset_log_std)
            assert torch.equal(_weights(tuned)[key], value), key
    given = [*overrides, "ppo.network.actor_hidden=[64]"]
    cfg = finetune_config(load_config(TrainConfig, "experiments/finetune.yaml", given), given, log=lambda *_: None)
    assert cfg.ppo.network.actor_hidden == [64]  # the user's word wins (and then fails to fit, clearly)
    with pytest.raises(RuntimeError, match="do not fit"):
        Trainer(cfg, log=lambda *_: None)


def test_resume_through_the_installed_script(arm_motions, tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("mmimic") or str(Path(sys.executable).parent / "mmimic")
    common = [f"env.motions={arm_motions}", "env.num_envs=4", "ppo.rollout_steps=4", "ppo.minibatches=1",
              "log_every=1"]
    done = subprocess.run([exe, "train", "--config", "experiments/smoke.yaml", "--device", "cpu",
                           f"out_dir={tmp_path}", "iterations=1", *common], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    done = subprocess.run([exe, "train", "--resume", str(run_dir), "iterations=2"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stdout and "at iteration 1" in done.stdout and "it 2/2" in done.stdout
    assert read_checkpoint(run_dir)[0]["iteration"] == 2


def test_finetune_takes_weights_and_resets_std(arm_motions, tmp_path):
    base = Trainer(small_config(arm_motions, tmp_path, "iterations=1"), log=lambda *_: None)
    base.train()
    tuned = Trainer(small_config(arm_motions, tmp_path, "iterations=1", f"init_from={base.run_dir}",
                                 "reset_log_std=-2.0", "name=ft"), log=lambda *_: None)
    assert tuned.run_dir != base.run_dir and tuned.iteration == 0
    torch.testing.assert_close(tuned.learner.actor_normalizer.mean, base.learner.actor_normalizer.mean)
    assert torch.allclose(tuned.learner.actor.log_std, torch.full_like(tuned.learner.actor.log_std, -2.0))


def test_finetune_from_an_incompatible_checkpoint_is_a_clear_error(arm_motions, tmp_path):
    base = Trainer(small_config(arm_motions, tmp_path, "iterations=1"), log=lambda *_: None)
    base.train()
    with pytest.raises(RuntimeError, match="do not fit"):
        Trainer(small_config(arm_motions, tmp_path, f"init_from={base.run_dir}", "env.task.lookahead_frames=5"),
                log=lambda *_: None)


@pytest.mark.parametrize("mode", ["amp", "error"])
def test_adversarial_modes_log_discriminator_stats(arm_motions, tmp_path, mode):
    cfg = small_config(arm_motions, tmp_path, f"adversarial.mode={mode}", "adversarial.minibatch_size=64",
                       "adversarial.hidden=[64,64]", "iterations=2")
    trainer = Trainer(cfg, log=lambda *_: None)
    last = trainer.train()
    for key in ("adversarial/loss", "adversarial/accuracy_real", "adversarial/logits_fake", "adversarial/reward"):
        assert key in last and last[key] == last[key], key  # present and not NaN
    assert 0.0 <= last["adversarial/reward"] <= 1.0
    assert "adversarial/loss" in scalars(trainer.run_dir)
    assert read_checkpoint(trainer.run_dir)[0]["shaper"] is not None


def test_cli_train_and_bad_config(arm_motions, tmp_path, capsys):
    assert main(["train", "--config", "experiments/smoke.yaml", "--device", "cpu", "--backend", "mujoco",
                 f"env.motions={arm_motions}", f"out_dir={tmp_path}", "env.num_envs=4", "ppo.rollout_steps=4",
                 "ppo.minibatches=1", "iterations=1"]) == 0
    out = capsys.readouterr().out
    assert "done: 1 iterations" in out and "TensorBoard" in out
    assert "MujocoSim('arm26'" in out and " m  joint-err " in out  # backend and tracking error shown
    with pytest.raises(SystemExit, match="bad configuration"):
        main(["train", "--config", "experiments/smoke.yaml", "ppo.no_such_option=1"])
    with pytest.raises(SystemExit, match="no such file"):
        main(["train", "--config", "experiments/smoke.yaml", "--device", "cpu", "env.motions=/nonexistent"])


def test_curve_records_json_and_png_of_a_run(arm_motions, tmp_path, capsys):
    import json

    trainer = Trainer(small_config(arm_motions, tmp_path, "iterations=4"), log=lambda *_: None)
    trainer.train()
    out = tmp_path / "results" / "learning-arm26"
    assert main(["curve", str(trainer.run_dir), "--out", str(out), "--run-command", "mmimic train X",
                 "--note", "test"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["command"] == "mmimic train X" and "num_envs: 8" in result["config_yaml"]
    site = result["curves"]["site_rel_error_m"]
    assert site["env_steps"] == [64, 128, 192, 256] and len(site["value"]) == 4 == len(site["wall_s"])
    assert site["value"] == pytest.approx(scalars(trainer.run_dir)["tracking_errors/site_rel"])
    for key in ("joint_pos_error_rad", "episode_length", "early_termination_rate"):
        assert key in result["curves"]
    summary = result["summary"]
    assert summary["env_steps"] == 256 and summary["site_rel_error_m"]["end"] == pytest.approx(
        sum(site["value"]) / 4)
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no TensorBoard event files"):
        main(["curve", str(tmp_path / "nothing-here")])


@pytest.mark.parametrize("name,envs", [("bimanual", 64), ("fullbody", 32), ("finetune", 64), ("smoke", 64)])
def test_experiment_configs_load_and_size_themselves_for_this_cpu(name, envs, monkeypatch):
    from mmimic.envs.muscle_env import resolve_env_config

    cfg = load_config(TrainConfig, f"experiments/{name}.yaml", ["env.sim_threads=2"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # what `auto` means on a CPU machine
    env = resolve_env_config(cfg.env)
    assert env.device == "cpu" and env.num_envs == envs
    assert env.backend in ("auto", "mujoco")  # auto: the C engine on this device


# ---------------------------------------------------------------------------------- structure
@pytest.mark.parametrize("mode", ["none", "amp", "error"])
def test_a_world_that_blew_up_scores_zero_in_every_mode(arm_motions, tmp_path, mode):
    """In error mode a blown-up world's zeroed errors are exactly the discriminator's "real" sample: without
    the shaper's mask it would earn the maximum adversarial reward (a policy could learn to blow up)."""
    trainer = Trainer(small_config(arm_motions, tmp_path, f"adversarial.mode={mode}", "adversarial.hidden=[32]",
                                   "adversarial.minibatch_size=64"), log=lambda *_: None)
    env = trainer.env
    env.sim.qvel[1, 0] = float("nan")  # world 1 blows up in the first step
    next_keys = trainer.shaper.next_keys if trainer.shaper else ()
    rollout, _ = collect(env, trainer.learner, 2, trainer.td, next_keys=next_keys)
    assert rollout["unstable"][:, 0].tolist() == [i == 1 for i in range(8)]
    if trainer.shaper is not None:
        trainer.shaper.shape(rollout)
        d_reward = trainer.shaper.discriminator.reward(trainer.shaper.features(rollout))
        assert d_reward[1, 0] > 0  # the discriminator does score it ...
    assert rollout["reward"][1, 0] == 0  # ... but the reward is 0
    assert (rollout["reward"][[0, 2, 3], 0] != 0).all()


class CountingLearner:
    """A minimal Learner (uniform random actions): the trainer must need nothing more."""

    name = "counting"
    obs_keys = ("observation",)
    steps_per_update = 3

    def __init__(self, action_dim: int):
        self.action_dim, self.observed, self.updates = action_dim, [], 0

    def act(self, td, deterministic=False):
        return TensorDict({"action": torch.rand(td.batch_size[0], self.action_dim) * 2 - 1}, batch_size=td.batch_size)

    def observe(self, rollout):
        self.observed.append(tuple(rollout.batch_size))

    def update(self):
        self.updates += 1
        return {"updates": float(self.updates)}

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state, load_optimizer=True):
        self.updates = state["updates"]


def test_the_trainer_needs_only_the_learner_interface(arm_motions, tmp_path):
    trainer = Trainer(small_config(arm_motions, tmp_path), log=lambda *_: None)
    assert isinstance(trainer.learner, Learner)
    trainer.learner = CountingLearner(trainer.env.action_spec.shape[-1])
    assert isinstance(trainer.learner, Learner)
    stats = trainer.train_iteration()
    assert trainer.learner.observed == [(8, 3)] and stats["counting/updates"] == 1.0
    assert trainer.env_steps == 8 * 3 and trainer.state()["learner"] == {"updates": 1}


def test_checkpoints_of_the_earlier_layout_still_load(arm_motions, tmp_path):
    first = Trainer(small_config(arm_motions, tmp_path, "iterations=1"), log=lambda *_: None)
    first.train()
    state = first.state()
    learner = state.pop("learner")
    old = {**state, "agent": learner["model"], "optimizer": learner["optimizer"],
           "num_updates": learner["num_updates"], "adversarial": state.pop("shaper")}
    path = tmp_path / "old.pt"
    torch.save(old, path)
    assert upgrade_checkpoint(old)["learner"]["num_updates"] == 1
    resumed = Trainer(small_config(arm_motions, tmp_path, "iterations=2", f"resume={path}"), log=lambda *_: None)
    assert resumed.iteration == 1 and resumed.learner.num_updates == 1
    for key, value in learner["model"].items():
        torch.testing.assert_close(resumed.learner.state_dict()["model"][key], value)


def test_env_docstring_examples_run(tmp_path, monkeypatch):
    """The ``Examples:`` blocks of MuscleEnv and MuscleImitationEnv are runnable as written."""
    import doctest

    from mmimic.envs import imitation_env, muscle_env

    monkeypatch.chdir(tmp_path)  # the imitation example makes its demo motions under ./data
    for module in (muscle_env, imitation_env):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted >= 4 and result.failed == 0, module.__name__


def test_sigterm_finishes_the_iteration_writes_a_checkpoint_and_resume_continues(arm_motions, tmp_path):
    """A cluster's pre-emption (SIGTERM) or Ctrl-C loses nothing: the iteration in flight is finished and
    checkpointed, and the exit code says which signal (128 + n)."""
    import shutil
    import signal
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("mmimic") or str(Path(sys.executable).parent / "mmimic")
    proc = subprocess.Popen([exe, "train", "--config", "experiments/smoke.yaml", "--device", "cpu",
                             f"out_dir={tmp_path}", f"env.motions={arm_motions}", "env.num_envs=4",
                             "ppo.rollout_steps=4", "ppo.minibatches=1", "log_every=1", "iterations=100000",
                             "checkpoint_every=100000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("it 2/"):
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=300) == 128 + signal.SIGTERM, out[-2000:]
    assert "SIGTERM: finishing iteration" in out and "continue with: mmimic train --resume" in out
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    state, _ = read_checkpoint(run_dir)
    last_logged = max(int(line.split()[1].split("/")[0]) for line in out.splitlines() if line.startswith("it "))
    assert state["iteration"] == last_logged >= 2


def test_resume_with_another_env_count_restores_the_learner_and_starts_fresh_episodes(arm_motions, tmp_path):
    first = Trainer(small_config(arm_motions, tmp_path, "iterations=1"), log=lambda *_: None)
    first.train()
    with pytest.warns(UserWarning, match="episodes in flight do not fit this env.*start afresh"):
        other = Trainer(small_config(arm_motions, tmp_path, "iterations=2", "env.num_envs=4",
                                     f"resume={first.run_dir}"), log=lambda *_: None)
    assert other.iteration == 1 and other.td.batch_size == torch.Size([4])
    for key, value in _weights(first).items():
        assert torch.equal(_weights(other)[key], value)
    other.train()
    assert other.iteration == 2

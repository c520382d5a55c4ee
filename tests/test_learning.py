"""Proof that it learns (slow, run by CI): train-smoke on CPU tracks synthesized reaches.

The measured curve this guards (150 iterations, 64 envs, ~3.7 min on 2 cores): relative site
error 0.054 -> 0.0055 m, joint error 0.22 -> 0.02 rad, episode length 72 -> 197, early
terminations 0.56 -> 0. The assertions ask for less than that (halving, a clear rise).
"""

from __future__ import annotations

import pytest
import torch

from mmimic.config import load_config
from mmimic.motion.demo import ensure_demo_library
from mmimic.rl.trainer import Trainer, TrainConfig

BIMANUAL_CI_ITERATIONS = 250  # x 64 envs x 16 steps: 256 k env steps, ~3 min on 2 cores (174 s)
# measured in the first 250 iterations of the hour run (same seed and settings):
BIMANUAL_CI_SITE_RATIO = 0.9  # 0.78 (0.113 -> 0.088 m)
BIMANUAL_CI_JOINT_RATIO = 0.9  # measured: 0.79 (0.276 -> 0.219 rad); reward 0.31 -> 0.40
BIMANUAL_CI_LENGTH_RATIO = 1.1  # measured: episode length 141 -> 185 steps (1.31x)


def _train(tmp_path, *overrides) -> list[dict]:
    motions = ensure_demo_library("arm26", tmp_path / "data", log=lambda *_: None)
    torch.manual_seed(0)
    cfg = load_config(TrainConfig, "experiments/smoke.yaml", [
        f"env.motions={motions}", f"out_dir={tmp_path / 'runs'}", "env.device=cpu", *overrides])
    trainer = Trainer(cfg, log=lambda *_: None)
    return [trainer.train_iteration() for _ in range(cfg.iterations)]


def _mean(history: list[dict], key: str, part: slice) -> float:
    values = [h[key] for h in history[part] if h.get(key) == h.get(key)]  # skip NaN (no episode ended)
    return sum(values) / len(values)


def _assert_learned(history: list[dict]) -> None:
    first, last = slice(0, 10), slice(-10, None)
    for key in ("tracking_errors/site_rel", "tracking_errors/joint_pos"):
        assert _mean(history, key, last) <= 0.5 * _mean(history, key, first), key
    assert _mean(history, "episode/episode_length", last) >= 1.5 * _mean(history, "episode/episode_length", first)
    assert _mean(history, "episode/terminated_fraction", last) < _mean(history, "episode/terminated_fraction", first)


@pytest.mark.slow
def test_smoke_training_learns_to_track(tmp_path):
    _assert_learned(_train(tmp_path))


@pytest.mark.slow
def test_smoke_training_with_amp_learns_and_discriminator_is_alive(tmp_path):
    history = _train(tmp_path, "adversarial.mode=amp", "adversarial.hidden=[128,128]",
                     "adversarial.minibatch_size=1024")
    _assert_learned(history)
    acc_fake = [h["adversarial/accuracy_fake"] for h in history[-20:]]
    logits_real = [h["adversarial/logits_real"] for h in history[-20:]]
    logits_fake = [h["adversarial/logits_fake"] for h in history[-20:]]
    rewards = [h["adversarial/reward"] for h in history[-20:]]
    # neither saturated (perfect separation, reward ~0) nor constant (no signal)
    assert 0.05 < sum(rewards) / len(rewards) < 0.95
    assert sum(acc_fake) / len(acc_fake) < 0.99
    assert sum(logits_real) / len(logits_real) > sum(logits_fake) / len(logits_fake)
    assert max(rewards) - min(rewards) > 1e-4


@pytest.mark.slow
def test_bimanual_learns_on_the_c_backend(tmp_path):
    """The 64-muscle bimanual model (fingers welded) on MuJoCo's C engine with experiments/bimanual.yaml,
    on the 18 demo clips: within a CI-sized budget the tracking errors fall, episodes lengthen and the
    reward rises. (The issue asked for a halved site error in 4 minutes; 256 k steps give 0.78x.)

    Seeded, with the settings of the hour-long run in benchmarks/results/learning-bimanual-cpu.json,
    whose first 250 iterations measured the figures above (rel-site error 0.113 -> 0.032 m by its end)."""
    motions = ensure_demo_library("bimanual", tmp_path / "data", remove_fingers=True, log=lambda *_: None)
    cfg = load_config(TrainConfig, "experiments/bimanual.yaml", [
        f"env.motions={motions}", f"out_dir={tmp_path / 'runs'}", "env.device=cpu", "env.backend=mujoco",
        "env.num_envs=64", f"iterations={BIMANUAL_CI_ITERATIONS}"])
    trainer = Trainer(cfg, log=lambda *_: None)
    assert trainer.env.sim.backend == "mujoco" and trainer.env.sim.nu == 64
    history = [trainer.train_iteration() for _ in range(cfg.iterations)]
    first, last = slice(2, 22), slice(-20, None)  # the first 2 iterations: episodes that just left the reference
    for key, most in (("tracking_errors/site_rel", BIMANUAL_CI_SITE_RATIO),
                      ("tracking_errors/joint_pos", BIMANUAL_CI_JOINT_RATIO)):
        assert _mean(history, key, last) <= most * _mean(history, key, first), key
    length = "episode/episode_length"
    assert _mean(history, length, last) >= BIMANUAL_CI_LENGTH_RATIO * _mean(history, length, first)
    assert _mean(history, "reward/mean", last) > _mean(history, "reward/mean", first)

"""Run MuscleEnv's posture task with a random-excitation policy and log it to TensorBoard.

This is ``make posture``: it exercises the whole simulated path (muscle model, simulator, TorchRL env, partial resets) and writes
real TensorBoard event files, but nothing learns. The random policy is the baseline a trained
policy must beat on this task.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from mmimic.config import load_config, to_yaml
from mmimic.envs import MuscleEnv, MuscleEnvConfig
from mmimic.envs.config import upgrade_env_yaml


@dataclass
class PostureRunConfig:
    """``experiments/posture.yaml``: the env, how long to run, where to write."""

    env: MuscleEnvConfig = field(default_factory=MuscleEnvConfig)  # the posture env and task
    steps: int = 300  # control steps
    out_dir: str = "runs"  # run folders are made here
    log_every: int = 10  # control steps between TensorBoard points (one host sync each)

    @staticmethod
    def upgrade_yaml(data, where: str):
        """Keys of an earlier layout -> today's, with a warning."""
        return upgrade_env_yaml(data, "posture", where)


def load_run_config(path: str | None, overrides: list[str]) -> PostureRunConfig:
    """Defaults, then the YAML file, then ``key=value`` overrides (dotted keys, e.g. env.num_envs=64)."""
    return load_config(PostureRunConfig, path, overrides)


def run_posture_demo(cfg: PostureRunConfig) -> dict:
    """Roll the posture task for ``cfg.steps`` control steps; returns a summary dict."""
    env = MuscleEnv(cfg.env)
    model, num_envs, device, steps, log_every = cfg.env.model, cfg.env.num_envs, cfg.env.device, cfg.steps, cfg.log_every
    run_dir = Path(cfg.out_dir) / f"posture-{model}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    writer = SummaryWriter(str(run_dir))
    td = env.reset()
    dev = env.device
    ep_len = torch.zeros(num_envs, device=dev)
    reward_sum = torch.zeros((), device=dev)
    ended = torch.zeros((), device=dev)
    failed = torch.zeros((), device=dev)
    len_sum = torch.zeros((), device=dev)
    t0 = time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc=f"posture task, random policy ({model}, {num_envs} envs, {device})",
               unit="step")
    summary = {}
    last_log = 0
    for step in bar:
        td["action"] = env.action_spec.rand()
        out, td = env.step_and_maybe_reset(td)
        nxt = out["next"]
        if step == 1:  # the first step compiles/loads kernels: time from after it
            t0 = time.perf_counter()
        ep_len += 1
        done = nxt["done"].squeeze(-1)
        reward_sum += nxt["reward"].mean()
        ended += done.sum()
        failed += nxt["terminated"].squeeze(-1).sum()
        len_sum += torch.where(done, ep_len, torch.zeros_like(ep_len)).sum()
        ep_len = torch.where(done, torch.zeros_like(ep_len), ep_len)
        if step % log_every == 0 or step == steps:  # one host sync per log interval
            sps = (step - 1) * num_envs / max(time.perf_counter() - t0, 1e-9)
            summary = {
                "reward_mean": float(reward_sum) / (step - last_log),
                "episodes_ended": int(ended),
                "early_termination_rate": float(failed) / max(float(ended), 1.0),
                "episode_length_mean": float(len_sum) / max(float(ended), 1.0),
                "env_steps_per_s": sps,
                "mean_muscle_activation": float(env.sim.act.mean()),
                "unstable_worlds": env.unstable_count,
            }
            for key, value in summary.items():
                writer.add_scalar(f"posture/{key}", value, step * num_envs)
            bar.set_postfix(reward=f"{summary['reward_mean']:.3f}", sps=f"{sps:,.0f}",
                            early_term=f"{summary['early_termination_rate']:.2f}")
            reward_sum.zero_()
            last_log = step
    writer.close()
    summary["run_dir"] = str(run_dir)
    return summary

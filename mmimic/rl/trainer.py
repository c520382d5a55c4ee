"""The training loop of ``mmimic train``: PPO (+ optional adversarial reward) on MuscleImitationEnv.

One iteration, in order (every step visible, CleanRL-style):
1. ``collect`` T steps of N envs with the current policy (rollout ``[N, T]`` on the device);
2. adversarial mode: train the discriminator on this rollout's features (AMP: policy transitions
   vs reference-motion transitions; error: tracking-error vectors vs zero), then rewrite the reward
   as ``w_task * tracking + w_adv * discriminator + penalties``;
3. PPO update (GAE that bootstraps truncated steps, clipped surrogate, value loss, epochs x
   minibatches); it then feeds the rollout to the observation normalizers (after the update, so
   the stored log-probs and the update see the same normalization);
4. log to TensorBoard and the progress line; checkpoint every ``checkpoint_every`` iterations.

Run folder: ``config.yaml`` (resolved), TensorBoard events, ``checkpoints/ckpt_<it>.pt`` (atomic,
last k kept). Resume restores model, optimizer, normalizers, discriminator, counters, per-clip
statistics and RNG states; fine-tuning (``init_from``) takes the weights and normalizers only.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from mmimic.config import to_yaml
from mmimic.envs import MuscleImitationEnv, MuscleImitationEnvConfig
from mmimic.envs.muscle_env import VEL_SCALE
from mmimic.rl.amp import AdversarialConfig, AdversarialReward, error_features, transition_features
from mmimic.rl.checkpoint import load_checkpoint, save_checkpoint
from mmimic.rl.ppo import PPO, PPOConfig
from mmimic.rl.rollout import EpisodeStats, collect

AMP_ENTRIES = ("joint_pos", "joint_vel")  # observation entries AMP compares (the reference has both)


@dataclass
class TrainConfig:
    """``experiments/*.yaml``. ``env.motions`` empty: the demo motions are made (synthesized and
    retargeted into ``demo_data_dir``) at first use."""

    name: str = "train"  # run folder prefix
    env: MuscleImitationEnvConfig = field(default_factory=MuscleImitationEnvConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    iterations: int = 500  # PPO updates
    time_limit_min: float = 0.0  # > 0: also stop (with a checkpoint) after this many minutes of training
    out_dir: str = "runs"
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    log_every: int = 1  # iterations between progress lines
    resume: str = ""  # run dir or checkpoint: continue that run (same folder)
    init_from: str = ""  # checkpoint to fine-tune from: weights and normalizers only
    reset_log_std: float | None = None  # fine-tuning: restart exploration at this log sigma
    demo_data_dir: str = "data"


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path | None = None, log=print):
        self.cfg, self.log = cfg, log
        if not cfg.env.motions:
            from mmimic.motion.demo import ensure_demo_library

            cfg.env.motions = str(ensure_demo_library(cfg.env.model, cfg.demo_data_dir, log=log,
                                                      remove_fingers=cfg.env.embodiment.remove_fingers))
        torch.manual_seed(cfg.env.seed)  # network init and action noise: a run is reproducible from its config
        self.env = MuscleImitationEnv(cfg.env)
        self.td = self.env.reset()  # the env's current TensorDict, carried from rollout to rollout
        env, dev = self.env, self.env.device
        obs_spec = env.observation_spec
        critic_dim = obs_spec[cfg.ppo.critic_obs_key].shape[-1]
        self.agent = PPO(obs_spec[cfg.ppo.actor_obs_key].shape[-1], env.action_spec.shape[-1], cfg.ppo, dev,
                         critic_obs_dim=critic_dim)
        self.adv = None
        if cfg.adversarial.mode != "none":
            dim = (2 * sum(obs_spec[k].shape[-1] for k in AMP_ENTRIES) if cfg.adversarial.mode == "amp"
                   else len(env.tracking_error_names))
            self.adv = AdversarialReward(dim, cfg.adversarial, dev)
        self.iteration, self.env_steps = 0, 0
        self.stats = EpisodeStats(env.num_envs, dev)
        weights = env.reward_weights()
        self.tracking_terms = [k for k, w in weights.items() if w > 0]
        self.penalty_terms = [k for k, w in weights.items() if w <= 0]
        if cfg.resume:
            self.run_dir = Path(run_dir or self._resume(cfg.resume))
        else:
            if cfg.init_from:
                self._init_from(cfg.init_from)
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            self.run_dir = Path(run_dir or Path(cfg.out_dir) / f"{cfg.name}-{cfg.env.model}-{stamp}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(to_yaml(cfg))
        self.writer = SummaryWriter(str(self.run_dir))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        env = self.env
        rng = {"torch": torch.get_rng_state(), "env": env.rng.get_state()}
        if env.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(env.device)
        return {"agent": self.agent.state_dict(), "optimizer": self.agent.optimizer.state_dict(),
                "num_updates": self.agent.num_updates, "adversarial": self.adv.checkpoint() if self.adv else None,
                "iteration": self.iteration, "env_steps": self.env_steps, "rng": rng,
                "clip_stats": {"episodes": env.clip_episodes, "failures": env.clip_failures},
                "config": to_yaml(self.cfg)}

    def _load_agent(self, state: dict, path: Path) -> None:
        try:
            self.agent.load_state_dict(state["agent"])
        except RuntimeError as exc:
            raise RuntimeError(f"{path}: the checkpoint's networks do not fit this env/config "
                               f"(model, observation options or network sizes differ): {exc}") from None

    def _resume(self, where: str) -> Path:
        """Restore everything from a checkpoint; returns its run folder."""
        state, path = load_checkpoint(where, self.env.device)
        self._load_agent(state, path)
        self.agent.optimizer.load_state_dict(state["optimizer"])
        self.agent.num_updates = state["num_updates"]
        if self.adv is not None and state.get("adversarial"):
            self.adv.load_checkpoint(state["adversarial"])
        self.iteration, self.env_steps = state["iteration"], state["env_steps"]
        torch.set_rng_state(state["rng"]["torch"])
        self.env.rng.set_state(state["rng"]["env"])
        if "cuda" in state["rng"] and self.env.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.env.device)
        stats = state["clip_stats"]
        if stats["episodes"].shape == self.env.clip_episodes.shape:
            self.env.clip_episodes.copy_(stats["episodes"])
            self.env.clip_failures.copy_(stats["failures"])
        self.log(f"resumed from {path} at iteration {self.iteration} ({self.env_steps:,} env steps)")
        return path.parent.parent

    def _init_from(self, where: str) -> None:
        state, path = load_checkpoint(where, self.env.device)
        self._load_agent(state, path)
        if self.cfg.reset_log_std is not None:
            self.agent.reset_log_std(self.cfg.reset_log_std)
        self.log(f"fine-tuning from {path} (weights and normalizers; fresh optimizer and counters)")

    # ------------------------------------------------------------------ one iteration
    def _expert_transitions(self, n: int) -> torch.Tensor:
        """AMP's real samples: ``[s, s']`` of reference motions, in the env's observation scaling."""
        env, lib = self.env, self.env.library
        ids, t = lib.sample(n, generator=None, truncate_end=env.embodiment.control_dt)
        parts = []
        for tt in (t, t + env.embodiment.control_dt):
            ref = lib.state(ids, tt)
            parts += [ref["qpos"][:, env.q0:], ref["qvel"][:, env.v0:] * VEL_SCALE]
        return torch.cat(parts, dim=-1)

    def _adversarial(self, rollout) -> dict:
        adv, cfg = self.adv, self.cfg.adversarial
        if cfg.mode == "amp":
            feats = transition_features(rollout, rollout.get("next"), AMP_ENTRIES)
            stats = adv.update(feats, self._expert_transitions(feats.shape[0] * feats.shape[1]))
        else:
            feats = error_features(rollout.get("tracking_errors"), self.env.tracking_error_names)
            stats = adv.update(feats)
        d_reward = adv.reward(feats)
        terms, weights = rollout.get("reward_terms"), self.env.reward_weights()
        tracking = sum(weights[k] * terms.get(k) for k in self.tracking_terms)
        penalties = sum((weights[k] * terms.get(k) for k in self.penalty_terms), torch.zeros_like(tracking))
        rollout.set("reward", adv.mix(tracking, d_reward) + penalties)
        stats["reward"] = float(d_reward.mean())
        return stats

    def train_iteration(self) -> dict:
        cfg, env, agent = self.cfg, self.env, self.agent
        t0 = time.perf_counter()
        keys = AMP_ENTRIES if self.adv is not None and cfg.adversarial.mode == "amp" else ()
        rollout, self.td = collect(env, agent, cfg.ppo.rollout_steps, self.td, next_keys=keys)
        self.stats.update(rollout)
        t_collect = time.perf_counter() - t0
        adv_stats = self._adversarial(rollout) if self.adv is not None else {}
        ppo_stats = agent.update(rollout)  # also feeds the rollout to the observation normalizers, after the update
        t_total = time.perf_counter() - t0
        n = env.num_envs * cfg.ppo.rollout_steps
        self.iteration += 1
        self.env_steps += n
        out = {f"ppo/{k}": v for k, v in ppo_stats.items()}
        out.update({f"adversarial/{k}": v for k, v in adv_stats.items()})
        means = {}
        for group in ("reward_terms", "tracking_errors"):
            if group in rollout.keys():
                sub = rollout.get(group)
                for k in sub.keys():
                    means[f"{group}/{k}"] = sub.get(k).mean()
        means["reward/mean"] = rollout.get("reward").mean()
        means["muscle/mean_activation"] = env.sim.act.mean()
        names = list(means)
        values = torch.stack([means[k].float() for k in names]).tolist()  # one host transfer
        out.update(dict(zip(names, values)))
        out.update({f"episode/{k}": v for k, v in self.stats.summary().items()})
        out["speed/env_steps_per_s"] = n / t_collect
        out["speed/train_steps_per_s"] = n / t_total
        out["speed/iteration_s"] = t_total
        out["sim/unstable_worlds_total"] = float(env.unstable_count)
        return out

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict:
        cfg = self.cfg
        start, last = self.iteration, {}
        t_start = time.perf_counter()
        limit = f", at most {cfg.time_limit_min:g} min" if cfg.time_limit_min > 0 else ""
        self.log(f"training {cfg.env.model} on {self.env.library.num_clips} clips, {self.env.num_envs} envs on "
                 f"{self.env.device} ({self.env.sim!r}), {cfg.iterations} iterations x {cfg.ppo.rollout_steps} "
                 f"steps{limit}; run dir {self.run_dir}")
        try:
            while self.iteration < cfg.iterations:
                if cfg.time_limit_min > 0 and time.perf_counter() - t_start >= 60.0 * cfg.time_limit_min:
                    self.log(f"time limit of {cfg.time_limit_min:g} min reached at iteration {self.iteration}")
                    break
                last = self.train_iteration()
                for k, v in last.items():
                    if isinstance(v, float) and math.isfinite(v):
                        self.writer.add_scalar(k, v, self.env_steps)
                done = self.iteration - start
                if self.iteration % cfg.log_every == 0 or self.iteration == cfg.iterations:
                    elapsed = time.perf_counter() - t_start
                    eta = elapsed / done * (cfg.iterations - self.iteration)
                    if cfg.time_limit_min > 0:
                        eta = min(eta, max(60.0 * cfg.time_limit_min - elapsed, 0.0))
                    self.log(progress_line(self.iteration, cfg.iterations, self.env_steps, last, eta))
                if self.iteration % cfg.checkpoint_every == 0:
                    save_checkpoint(self.run_dir, self.iteration, self.state(), cfg.keep_checkpoints)
        finally:
            if self.iteration > start:
                save_checkpoint(self.run_dir, self.iteration, self.state(), cfg.keep_checkpoints)
            self.writer.close()
        return last


def progress_line(it: int, total: int, steps: int, s: dict, eta_s: float) -> str:
    nan = float("nan")
    et = s.get("episode/terminated_fraction", nan)
    return (f"it {it}/{total}  steps {steps:,}  sps {s['speed/train_steps_per_s']:,.0f} "
            f"(env {s['speed/env_steps_per_s']:,.0f})  reward {s['reward/mean']:.3f}  "
            f"site-err {s.get('tracking_errors/site_rel', nan):.4f} m  joint-err "
            f"{s.get('tracking_errors/joint_pos', nan):.3f} rad  early-term {et:.2f}  "
            f"ep-len {s.get('episode/episode_length', nan):.0f}  eta {_dt.timedelta(seconds=int(eta_s))}")

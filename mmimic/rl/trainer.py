"""The training loop of ``mmimic train``: a ``Learner`` (PPO) (+ optional adversarial reward) on
MuscleImitationEnv.

One iteration, in order (every step visible, CleanRL-style):
1. ``collect`` T steps of N envs with the learner's policy (rollout ``[N, T]`` on the device);
2. adversarial mode: the shaper trains the discriminator on this rollout's features (AMP: policy
   transitions vs reference-motion transitions; error: tracking-error vectors vs zero), then
   rewrites the reward as ``w_task * env reward + w_adv * discriminator`` (0 where a world blew up);
3. ``learner.observe(rollout)``, ``learner.update()`` (PPO: GAE that bootstraps truncated steps,
   clipped surrogate, value loss, epochs x minibatches, then the observation normalizers learn);
4. log to TensorBoard and the progress line; checkpoint every ``checkpoint_every`` iterations.

Run folder: ``config.yaml`` (resolved), TensorBoard events, ``checkpoints/ckpt_<it>.pt`` (atomic,
last k kept). A checkpoint is the learner's and the shaper's ``state_dict`` plus the trainer's
counters, per-clip statistics and RNG states; resume restores all of it, fine-tuning (``init_from``)
the learner's weights and normalizers only.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from mmimic import keys
from mmimic.config import to_yaml
from mmimic.envs import MuscleImitationEnv, MuscleImitationEnvConfig
from mmimic.rl.amp import AdversarialConfig, AdversarialShaper
from mmimic.rl.checkpoint import read_checkpoint, save_checkpoint
from mmimic.rl.learner import Learner
from mmimic.rl.ppo import PPO, PPOConfig
from mmimic.rl.rollout import EpisodeStats, collect


@dataclass
class TrainConfig:
    """``experiments/*.yaml``. ``env.motions`` empty: the demo motions are made (synthesized and
    retargeted into ``demo_data_dir``) at first use."""

    name: str = "train"  # run folder prefix
    env: MuscleImitationEnvConfig = field(default_factory=MuscleImitationEnvConfig)  # the imitation env and task
    ppo: PPOConfig = field(default_factory=PPOConfig)  # the learner (PPO)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)  # optional discriminator reward
    iterations: int = 500  # PPO updates
    time_limit_min: float = 0.0  # > 0: also stop (with a checkpoint) after this many minutes of training
    out_dir: str = "runs"  # run folders are made here: <out_dir>/<name>-<model>-<date>
    checkpoint_every: int = 50  # iterations between checkpoints (one is also written at the end)
    keep_checkpoints: int = 3  # newest checkpoints kept in <run>/checkpoints
    log_every: int = 1  # iterations between progress lines
    resume: str = ""  # run dir or checkpoint: continue that run (same folder)
    init_from: str = ""  # checkpoint to fine-tune from: weights and normalizers only
    reset_log_std: float | None = None  # fine-tuning: restart exploration at this log sigma
    demo_data_dir: str = "data"  # where the demo motions are synthesized and retargeted (env.motions empty)


def upgrade_checkpoint(state: dict) -> dict:
    """Checkpoints written before the Learner interface (``agent``/``optimizer``/``num_updates`` at the top,
    ``adversarial``) -> the current layout (``learner``, ``shaper``)."""
    if "learner" in state or "agent" not in state:
        return state
    state = dict(state)
    state["learner"] = {"model": state.pop("agent"), "optimizer": state.pop("optimizer"),
                        "num_updates": state.pop("num_updates")}
    state["shaper"] = state.pop("adversarial", None)
    return state


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
        self.learner: Learner = PPO.for_env(env, cfg.ppo)
        self.shaper = None
        if cfg.adversarial.mode != "none":
            sizes = {k: obs_spec[k].shape[-1] for k in env.task.observations}
            self.shaper = AdversarialShaper(cfg.adversarial, env.task, sizes, dev)
        self.iteration, self.env_steps = 0, 0
        self.stats = EpisodeStats(env.num_envs, dev)
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
        """The checkpoint: the learner's and the shaper's states plus the trainer's counters."""
        env = self.env
        rng = {"torch": torch.get_rng_state(), "env": env.rng.get_state()}
        if env.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(env.device)
        return {"learner": self.learner.state_dict(),
                "shaper": self.shaper.state_dict() if self.shaper else None,
                "iteration": self.iteration, "env_steps": self.env_steps, "rng": rng,
                "clip_stats": {"episodes": env.task.clip_episodes, "failures": env.task.clip_failures},
                "config": to_yaml(self.cfg)}

    def _read(self, where: str) -> tuple[dict, Path]:
        state, path = read_checkpoint(where, self.env.device)
        state = upgrade_checkpoint(state)
        if "learner" not in state:
            raise RuntimeError(f"{path}: not an mmimic training checkpoint (no learner state)")
        return state, path

    def _load_learner(self, state: dict, path: Path, load_optimizer: bool) -> None:
        try:
            self.learner.load_state_dict(state["learner"], load_optimizer=load_optimizer)
        except RuntimeError as exc:
            raise RuntimeError(f"{path}: the checkpoint's networks do not fit this env/config "
                               f"(model, observation options or network sizes differ): {exc}") from None

    def _resume(self, where: str) -> Path:
        """Restore everything from a checkpoint; returns its run folder."""
        state, path = self._read(where)
        self._load_learner(state, path, load_optimizer=True)
        if self.shaper is not None and state.get("shaper"):
            self.shaper.load_state_dict(state["shaper"])
        self.iteration, self.env_steps = state["iteration"], state["env_steps"]
        torch.set_rng_state(state["rng"]["torch"])
        self.env.rng.set_state(state["rng"]["env"])
        if "cuda" in state["rng"] and self.env.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.env.device)
        stats, task = state["clip_stats"], self.env.task
        if stats["episodes"].shape == task.clip_episodes.shape:
            task.clip_episodes.copy_(stats["episodes"])
            task.clip_failures.copy_(stats["failures"])
        self.log(f"resumed from {path} at iteration {self.iteration} ({self.env_steps:,} env steps)")
        return path.parent.parent

    def _init_from(self, where: str) -> None:
        state, path = self._read(where)
        self._load_learner(state, path, load_optimizer=False)
        if self.cfg.reset_log_std is not None:
            self.learner.reset_log_std(self.cfg.reset_log_std)
        self.log(f"fine-tuning from {path} (weights and normalizers; fresh optimizer and counters)")

    # ------------------------------------------------------------------ one iteration
    def train_iteration(self) -> dict:
        env, learner, shaper = self.env, self.learner, self.shaper
        t0 = time.perf_counter()
        # 1. collect
        next_keys = shaper.next_keys if shaper is not None else ()
        rollout, self.td = collect(env, learner, learner.steps_per_update, self.td, next_keys=next_keys)
        self.stats.update(rollout)
        t_collect = time.perf_counter() - t0
        # 2. reward shaping, 3. learning
        shaper_stats = shaper.shape(rollout) if shaper is not None else {}
        learner.observe(rollout)
        learner_stats = learner.update()
        t_total = time.perf_counter() - t0
        # 4. statistics
        n = rollout.numel()
        self.iteration += 1
        self.env_steps += n
        out = {f"{learner.name}/{k}": v for k, v in learner_stats.items()}
        out.update({f"adversarial/{k}": v for k, v in shaper_stats.items()})
        means = {}
        for group in (keys.REWARD_TERMS, keys.TRACKING_ERRORS):
            if group in rollout.keys():
                sub = rollout.get(group)
                for k in sub.keys():
                    means[f"{group}/{k}"] = sub.get(k).mean()
        means["reward/mean"] = rollout.get(keys.REWARD).mean()
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
                 f"{self.env.device} ({self.env.sim!r}), {cfg.iterations} iterations x {self.learner.steps_per_update} "
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

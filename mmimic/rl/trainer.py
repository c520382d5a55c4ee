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

import copy
import datetime as _dt
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from torch.utils.tensorboard import SummaryWriter

from mmimic import keys
from mmimic.config import to_yaml
from mmimic.envs import MuscleImitationEnv, MuscleImitationEnvConfig
from mmimic.envs.config import upgrade_env_yaml
from mmimic.motion.motion_file import atomic_write
from mmimic.rl.amp import AdversarialConfig, AdversarialShaper
from mmimic.rl.checkpoint import abandon_later_checkpoints, list_checkpoints, read_checkpoint, save_checkpoint
from mmimic.rl.distributed import Dist, to_cpu
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
    eval_every: int = 0  # > 0: every this many iterations, play the eval clips to their end and log eval/*
    eval_motions: str = ""  # clips for eval_every (empty: the model's held-out demo clips, split test)
    video_every: int = 0  # > 0: every this many iterations, the first eval clip to <run>/videos/*.mp4 and TensorBoard

    @staticmethod
    def upgrade_yaml(data, where: str):
        """Keys of an earlier layout (a run's old ``config.yaml``) -> today's, with a warning."""
        return upgrade_env_yaml(data, "imitation", where)

    def validate(self) -> None:
        """Every numeric option in range (at load, not after the first iteration). Raises ValueError."""
        bad = []
        for name in ("eval_every", "video_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                bad.append(f"{name} must be an integer >= 0 (0: off), got {value!r}")
        for name in ("iterations", "checkpoint_every", "keep_checkpoints", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                bad.append(f"{name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.time_limit_min) and self.time_limit_min >= 0):
            bad.append(f"time_limit_min must be >= 0 (0: no limit), got {self.time_limit_min!r}")
        if self.reset_log_std is not None and not math.isfinite(self.reset_log_std):
            bad.append(f"reset_log_std must be finite, got {self.reset_log_std!r}")
        if self.resume and self.init_from:
            bad.append("resume and init_from exclude each other (resume continues a run, init_from starts one)")
        if bad:
            raise ValueError("TrainConfig: " + "; ".join(bad))
        self.ppo.validate()
        self.adversarial.validate()


# What fine-tuning takes from the checkpoint's own config unless the user overrides it: the model and
# everything that sizes the networks (another value would not fit the saved weights).
FINETUNE_INHERITED = ("env.model", "env.embodiment", "env.task.lookahead_frames", "env.task.lookahead_stride_s",
                      "env.task.goal_joint_pos", "env.task.history_steps", "env.task.critic_obs", "ppo.network",
                      "ppo.actor_obs_key", "ppo.critic_obs_key", "ppo.normalize_obs", "ppo.obs_clip")


def finetune_config(cfg: TrainConfig, overrides: list[str] | tuple[str, ...] = (), log=print) -> TrainConfig:
    """``cfg`` with ``FINETUNE_INHERITED`` taken from ``cfg.init_from``'s own config, except the keys the user
    set in ``overrides`` (``key=value``, as on the command line)."""
    if not cfg.init_from:
        return cfg
    state, path = read_checkpoint(cfg.init_from)
    saved = OmegaConf.create(state["config"])
    given = [o.split("=", 1)[0].strip() for o in overrides]
    merged = OmegaConf.structured(cfg)
    taken = []
    for key in FINETUNE_INHERITED:
        if any(g == key or g.startswith(key + ".") or key.startswith(g + ".") for g in given):
            continue
        value = OmegaConf.select(saved, key, default=None)
        if value is not None and OmegaConf.select(merged, key) != value:
            OmegaConf.update(merged, key, value, merge=OmegaConf.is_dict(value))  # nested configs: merged
            taken.append(key)
    if taken:
        log(f"fine-tuning: from {path}'s config: {', '.join(taken)}")
    return OmegaConf.to_object(merged)


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
    """``cfg`` -> env, learner (+ shaper), run folder; ``train()`` runs it. In a distributed run (``dist``: the
    process group, ``Dist.from_environment()`` under torchrun; see ``mmimic.rl.distributed``) each rank builds
    its own env (its share of ``env.num_envs``, seed ``env.seed + 1000 * rank``, device ``cuda:LOCAL_RANK``
    or the CPU), the learner stays identical on every rank, and rank 0 alone logs, writes TensorBoard and
    checkpoints (with every rank's episodes in flight, so that ``--resume`` continues each rank)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path | None = None, log=print, dist: Dist | None = None):
        self.cfg = cfg
        cfg.validate()
        self.dist = dist
        self.is_main = self.dist is None or self.dist.is_main
        self.log = log if self.is_main else (lambda *_: None)
        env_cfg = self._rank_env_config(cfg)
        if not cfg.env.motions:
            from mmimic.motion.demo import ensure_demo_library

            if not self.is_main:
                self.dist.barrier()  # rank 0 makes them first (no two ranks writing the same files)
            cfg.env.motions = env_cfg.motions = str(ensure_demo_library(
                cfg.env.model, cfg.demo_data_dir, log=self.log, remove_fingers=cfg.env.embodiment.remove_fingers))
            if self.dist is not None and self.is_main:
                self.dist.barrier()
        rank = self.dist.rank if self.dist is not None else 0
        torch.manual_seed(cfg.env.seed + rank)  # network init and action noise: a run is reproducible from its config
        self.env = MuscleImitationEnv(env_cfg)
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
        self._eval_env = None  # built at the first evaluation (eval_every)
        self._video_env = None  # one world, built at the first video (video_every)
        if cfg.video_every:  # a machine that cannot render says so now, not after hours of training
            from mmimic.eval.video import check_gl

            check_gl()
        if cfg.resume:
            self.run_dir = Path(run_dir or self._resume(cfg.resume))
        else:
            if cfg.init_from:
                self._init_from(cfg.init_from)
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            self.run_dir = Path(run_dir or Path(cfg.out_dir) / f"{cfg.name}-{cfg.env.model}-{stamp}")
        self.writer = None
        if self.dist is not None:
            self.run_dir = Path(self.dist.broadcast_object(str(self.run_dir)))  # rank 0's clock names it
            if not hasattr(self.learner, "distribute"):
                raise ValueError(f"learner {self.learner.name!r} has no distribute(dist): it cannot train in "
                                 "several processes")
            self.learner.distribute(self.dist)
            if self.shaper is not None:
                self.shaper.discriminator.distribute(self.dist)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.run_dir / "config.yaml", lambda f: f.write(to_yaml(cfg).encode()))
            self.writer = SummaryWriter(str(self.run_dir))

    def _rank_env_config(self, cfg: TrainConfig):
        """The env config of this process: the run's, or in a distributed run this rank's share of it."""
        if self.dist is None:
            return cfg.env
        d, env_cfg = self.dist, copy.deepcopy(cfg.env)
        env_cfg.device = d.run_device(str(cfg.env.device))
        env_cfg.seed = int(cfg.env.seed) + 1000 * d.rank
        if str(env_cfg.num_envs).isdigit():
            if int(env_cfg.num_envs) % d.world_size:
                raise ValueError(f"env.num_envs={env_cfg.num_envs} does not split over {d.world_size} processes; "
                                 f"give a multiple of {d.world_size}")
            env_cfg.num_envs = int(env_cfg.num_envs) // d.world_size
        if env_cfg.device == "cpu":  # the processes of a machine share its cores
            from mmimic.sim import available_threads

            share = max(1, available_threads() // d.local_world_size)
            if env_cfg.sim_threads is None:
                env_cfg.sim_threads = share
            torch.set_num_threads(share)
        return env_cfg

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """The checkpoint: the learner's and the shaper's states, the env's in-flight episodes (simulator,
        task buffers, the TensorDict carried between rollouts), the trainer's counters and RNG states:
        everything for a resumed run to continue bit for bit (on the CPU)."""
        env = self.env
        rng = {"torch": torch.get_rng_state()}
        if env.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(env.device)
        mine = {"rng": rng, "env": env.state_dict(), "td": self.td.to_dict(), "episode_stats": self.stats.state_dict()}
        state = {"learner": self.learner.state_dict(), "shaper": self.shaper.state_dict() if self.shaper else None,
                 "iteration": self.iteration, "env_steps": self.env_steps, **mine, "config": to_yaml(self.cfg)}
        if self.dist is not None:  # a collective: every rank calls state() at the same iteration
            ranks = self.dist.gather(to_cpu(mine) if not self.is_main else None)
            if not self.is_main:
                return {}
            state["world_size"] = self.dist.world_size
            state["ranks"] = ranks[1:]  # ranks 1.. : their own episodes in flight and RNG states
        return state

    def _save(self) -> None:
        """Checkpoint now (in a distributed run every rank calls it; rank 0 writes)."""
        state = self.state()
        if self.is_main:
            save_checkpoint(self.run_dir, self.iteration, state, self.cfg.keep_checkpoints)

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
        """Restore everything from a checkpoint; returns its run folder. Rank r > 0 of a distributed run takes
        its own episodes and RNG states from the checkpoint when it was written by as many ranks; else its
        episodes start afresh (the learner is restored either way)."""
        state, path = self._read(where)
        if self.dist is not None and not self.is_main:
            ranks = state.get("ranks") or []
            if state.get("world_size") == self.dist.world_size and len(ranks) == self.dist.world_size - 1:
                state = {**state, **ranks[self.dist.rank - 1]}
            else:
                state = {k: v for k, v in state.items() if k not in ("env", "td", "episode_stats")}
                state["rng"] = {}
        self._load_learner(state, path, load_optimizer=True)
        if self.shaper is not None and state.get("shaper"):
            self.shaper.load_state_dict(state["shaper"])
        self.iteration, self.env_steps = state["iteration"], state["env_steps"]
        env = self.env
        fits = "env" in state
        if fits:  # the in-flight episodes: the run continues exactly where it stopped
            try:
                env.load_state_dict(state["env"])
                self.td = TensorDict(state["td"], batch_size=env.batch_size, device=env.device)
                self.stats.load_state_dict(state["episode_stats"])
            except (ValueError, RuntimeError) as exc:  # another num_envs, motion set or model options
                fits = False
                warnings.warn(f"{path}: the run's episodes in flight do not fit this env ({exc}); the learner "
                              "is restored, the episodes start afresh (not an exact continuation)", stacklevel=2)
                self.td = env.reset()
        # written before exact resume: fresh episodes, clip statistics kept
        if not fits and "clip_stats" in state and "env" in state["rng"]:
            env.rng.set_state(state["rng"]["env"].cpu())
            stats = state["clip_stats"]
            if stats["episodes"].shape == env.task.clip_episodes.shape:
                env.task.clip_episodes.copy_(stats["episodes"])
                env.task.clip_failures.copy_(stats["failures"])
        # RNG states are CPU byte tensors whatever map_location did with them
        if "torch" in state["rng"]:
            torch.set_rng_state(state["rng"]["torch"].cpu())
        if "cuda" in state["rng"] and env.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), env.device)
        if self.dist is not None:
            self.dist.barrier()  # every rank has read the checkpoint before rank 0 moves later ones away
        moved = abandon_later_checkpoints(path) if self.is_main else None
        if moved is not None:
            self.log(f"resuming from an older checkpoint: the later ones of this run were moved to {moved}")
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
        # 4. statistics (a distributed run: steps of all ranks; means over the ranks)
        world = self.dist.world_size if self.dist is not None else 1
        n = rollout.numel() * world
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
        values = torch.stack([means[k].float() for k in names])
        if self.dist is not None:
            self.dist.average_([values])
        values = values.tolist()  # one host transfer
        out.update(dict(zip(names, values)))
        out.update({f"episode/{k}": v for k, v in self.stats.summary().items()})
        out["speed/env_steps_per_s"] = n / t_collect
        out["speed/train_steps_per_s"] = n / t_total
        out["speed/iteration_s"] = t_total
        out["sim/unstable_worlds_total"] = float(env.unstable_count)
        return out

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict:
        """Run to ``cfg.iterations`` (or ``time_limit_min``). SIGINT / SIGTERM (Ctrl-C, a cluster's
        pre-emption) finish the current iteration, write a checkpoint and stop (``self.stopped_by`` is the
        signal number); a second signal stops at once, keeping the last checkpoint. Any other exception
        during an iteration keeps the last checkpoint too: a half-done iteration is never saved."""
        cfg = self.cfg
        start, last = self.iteration, {}
        t_start = time.perf_counter()
        limit = f", at most {cfg.time_limit_min:g} min" if cfg.time_limit_min > 0 else ""
        self.log(f"training {cfg.env.model} on {self.env.library.num_clips} clips, {self.env.num_envs} envs on "
                 f"{self.env.device} ({self.env.sim!r}), {cfg.iterations} iterations x {self.learner.steps_per_update} "
                 f"steps{limit}; run dir {self.run_dir}")
        self.stopped_by = 0
        between_iterations = True
        previous = self._catch_stop_signals()
        try:
            while self.iteration < cfg.iterations:
                signalled = bool(self.stopped_by)
                out_of_time = cfg.time_limit_min > 0 and time.perf_counter() - t_start >= 60.0 * cfg.time_limit_min
                if self.dist is not None:  # all ranks stop after the same iteration: any signal, rank 0's clock
                    signalled, out_of_time = self.dist.any_of([signalled, out_of_time and self.is_main])
                if out_of_time and not signalled:
                    self.log(f"time limit of {cfg.time_limit_min:g} min reached at iteration {self.iteration}")
                if signalled or out_of_time:
                    break
                between_iterations = False
                last = self.train_iteration()
                between_iterations = True
                for k, v in last.items():
                    if self.writer is not None and isinstance(v, float) and math.isfinite(v):
                        self.writer.add_scalar(k, v, self.env_steps)
                done = self.iteration - start
                if self.iteration % cfg.log_every == 0 or self.iteration == cfg.iterations:
                    elapsed = time.perf_counter() - t_start
                    eta = elapsed / done * (cfg.iterations - self.iteration)
                    if cfg.time_limit_min > 0:
                        eta = min(eta, max(60.0 * cfg.time_limit_min - elapsed, 0.0))
                    self.log(progress_line(self.iteration, cfg.iterations, self.env_steps, last, eta))
                if self.iteration % cfg.checkpoint_every == 0:
                    self._save()
                if cfg.eval_every and self.iteration % cfg.eval_every == 0 and self.is_main:
                    self.evaluate()
                if cfg.video_every and self.iteration % cfg.video_every == 0:
                    self.record_video()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self.iteration > start and between_iterations:
                self._save()
            elif not between_iterations:
                saved = list_checkpoints(self.run_dir)
                self.log(f"stopped inside iteration {self.iteration + 1}: kept the last checkpoint "
                         f"({saved[-1].name if saved else 'none'}); the half-done iteration is not saved")
            if self.writer is not None:
                self.writer.close()
        if self.stopped_by:
            nproc = f" --nproc {self.dist.world_size}" if self.dist is not None else ""
            self.log(f"stopped by {signal.Signals(self.stopped_by).name} at iteration {self.iteration}, checkpoint "
                     f"written; continue with: mmimic train{nproc} --resume {self.run_dir}")
        return last

    def evaluate(self) -> dict:
        """Play the eval clips (``eval_motions``, default the held-out demo clips) from start to end with the
        mean action, as ``mmimic eval`` does, and log the aggregate under ``eval/`` in TensorBoard. Uses its
        own env and generator: training (and an exact resume) is not disturbed."""
        from mmimic.eval.play import eval_env, play_clips, summarize

        if self._eval_env is None:
            self._eval_env = eval_env(self.cfg, self._eval_motions(), str(self.env.device))
        learner = self.learner
        episodes = play_clips(self._eval_env, lambda td: learner.act(td, deterministic=True).get(keys.ACTION))
        agg = summarize(episodes, self._eval_env.task.library.names)["aggregate"]
        for k, v in agg.items():
            self.writer.add_scalar(f"eval/{k}", float(v), self.env_steps)
        self.log(f"eval at iteration {self.iteration}: rel-site {agg['site_rel_error_m']:.4f} m, joint "
                 f"{agg['joint_pos_error_rad']:.3f} rad, early-term {agg['early_termination_rate']:.2f}, coverage "
                 f"{agg['frame_coverage']:.2f} ({agg['clips']} eval clips)")
        return agg

    def _eval_motions(self) -> str:
        """``eval_motions``, or the model's held-out demo clips (made at first use)."""
        cfg = self.cfg
        if cfg.eval_motions:
            return cfg.eval_motions
        from mmimic.motion.demo import ensure_demo_library

        return str(ensure_demo_library(cfg.env.model, cfg.demo_data_dir, log=self.log, split="test",
                                       remove_fingers=cfg.env.embodiment.remove_fingers))

    VIDEO_SIZE = (320, 240)  # video_every: mp4 size; TensorBoard gets half of it

    def record_video(self) -> Path | None:
        """The first eval clip, played with the mean action in its own one-world env (training is not
        disturbed), to ``<run>/videos/iter_NNNNNN.mp4`` and to TensorBoard (``videos/eval``). A failure is
        logged and training goes on: the video is a view, not a result."""
        from mmimic.eval.play import eval_env
        from mmimic.eval.video import DEFAULT_FPS, add_tensorboard_video, frame_stride, record_clips

        path = self.run_dir / "videos" / f"iter_{self.iteration:06d}.mp4"
        learner, frames = self.learner, []
        try:
            if self._video_env is None:
                self._video_env = eval_env(self.cfg, self._eval_motions(), str(self.env.device), num_envs=1)
            act = lambda td: learner.act(td, deterministic=True).get(keys.ACTION)  # noqa: E731
            width, height = self.VIDEO_SIZE
            row = record_clips(self._video_env, act, path, clips=[0], width=width, height=height, fps=DEFAULT_FPS,
                               on_frame=lambda frame, _clip: frames.append(frame[::2, ::2].copy()))[0]
            dt = self._video_env.task.dt
            add_tensorboard_video(self.writer, "videos/eval", frames, 1.0 / (dt * frame_stride(dt, DEFAULT_FPS)),
                                  self.env_steps)
        except (OSError, RuntimeError, ValueError) as exc:
            self.log(f"video at iteration {self.iteration} failed (training goes on): {exc}")
            return None
        self.log(f"video at iteration {self.iteration}: {path} ({row['clip']}, {row['frames']} frames, site rel "
                 f"{row['site_rel_error_m']:.4f} m)")
        return path

    def _catch_stop_signals(self) -> dict:
        """SIGINT / SIGTERM -> stop after this iteration (main thread only); returns the old handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum, _frame):
            if self.stopped_by:
                raise KeyboardInterrupt  # second signal: now
            self.stopped_by = signum
            self.log(f"{signal.Signals(signum).name}: finishing iteration {self.iteration + 1}, then a checkpoint "
                     "(send it again to stop at once)")

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, stop)
        return previous


def progress_line(it: int, total: int, steps: int, s: dict, eta_s: float) -> str:
    nan = float("nan")
    et = s.get("episode/terminated_fraction", nan)
    return (f"it {it}/{total}  steps {steps:,}  sps {s['speed/train_steps_per_s']:,.0f} "
            f"(env {s['speed/env_steps_per_s']:,.0f})  reward {s['reward/mean']:.3f}  "
            f"site-err {s.get('tracking_errors/site_rel', nan):.4f} m  joint-err "
            f"{s.get('tracking_errors/joint_pos', nan):.3f} rad  early-term {et:.2f}  "
            f"ep-len {s.get('episode/episode_length', nan):.0f}  eta {_dt.timedelta(seconds=int(eta_s))}")

"""Evaluation: play every clip of a motion set from its start to its end with a trained policy (the mean
action by default), and measure the tracking (``mmimic.eval.metrics``).

``run_eval(where, ...)`` loads a run (or checkpoint), builds the imitation env from the run's own config
with the evaluation rules (clips from time 0, uniform sampling, no horizon, one termination rule: mean
root-relative site deviation > ``max_site_error``, or none), plays ``episodes_per_clip`` episodes of each
clip, ``num_envs`` at a time, and returns ``{"aggregate": ..., "clips": {name: ...}, ...}``.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import sys
from pathlib import Path

import torch
from torchrl.envs.utils import step_mdp

from mmimic import keys
from mmimic.config import load_config
from mmimic.envs import MuscleImitationEnv
from mmimic.envs.imitation_env import load_library
from mmimic.eval.gait import GaitError, has_legs, run_gait, walking_clips
from mmimic.eval.metrics import METRICS, ROOT_METRICS, EpisodeAccumulator
from mmimic.eval.rollout import RolloutRecorder
from mmimic.motion.motion_file import atomic_write
from mmimic.rl.checkpoint import read_checkpoint
from mmimic.rl.ppo import PPO
from mmimic.rl.trainer import TrainConfig, upgrade_checkpoint

DEFAULT_MAX_SITE_ERROR = 0.5  # m: the evaluation's termination rule (training's is stricter)


def load_run(where: str | Path, device: str = "cpu") -> tuple[TrainConfig, dict, Path]:
    """A run dir or checkpoint -> (its training config, the checkpoint state, the checkpoint path)."""
    state, path = read_checkpoint(where, device)
    state = upgrade_checkpoint(state)
    if "learner" not in state:
        raise RuntimeError(f"{path}: not an mmimic training checkpoint (no learner state)")
    return load_config(TrainConfig, text=state["config"], where=str(path)), state, path


def eval_env(cfg: TrainConfig, motions: str | Path, device: str, backend: str | None = None,
             max_site_error: float = DEFAULT_MAX_SITE_ERROR, num_envs: int | None = None,
             episodes_per_clip: int = 1) -> MuscleImitationEnv:
    """The run's env with the evaluation rules; ``max_site_error`` <= 0: play every clip to its end.
    ``num_envs`` default: one world per episode, at most 64 at a time."""
    library = load_library(motions, torch.device(device), cfg.env.model)  # loaded once, sized from it
    env_cfg = copy.deepcopy(cfg.env)
    env_cfg.motions, env_cfg.device = str(motions), device
    env_cfg.num_envs = int(num_envs) if num_envs else min(64, library.num_clips * int(episodes_per_clip))
    if backend:
        env_cfg.backend = backend
    task = env_cfg.task
    task.random_start, task.sampling, task.max_episode_steps = False, "uniform", 0
    task.max_site_error = max(float(max_site_error), 0.0)
    task.max_root_pos_error = task.max_root_rot_error = 0.0
    return MuscleImitationEnv(env_cfg, motions=library)


def clip_steps(env: MuscleImitationEnv) -> torch.Tensor:
    """(C,) control steps from a clip's start to its end (the step at which the env truncates it)."""
    task = env.task
    return torch.ceil((task.library.duration.double() - 1e-6) / task.dt).clamp_min(1).long()


@torch.no_grad()
def play_clips(env: MuscleImitationEnv, act, episodes_per_clip: int = 1, progress=None, clips=None,
               on_step=None) -> list[dict]:
    """Play each clip (``clips``: indices, default all) ``episodes_per_clip`` times from its start;
    ``act(td) -> action (N, nu)``. Returns one dict per episode: ``clip`` (index), ``episode``, and the
    ``METRICS`` that apply. ``on_step(chunk, state, playing, step)``, if given, sees the state after the
    reset (step 0) and after every step (``playing``: the worlds that played it), e.g. to draw frames."""
    task, n = env.task, env.num_envs
    lengths = clip_steps(env)
    clips = range(task.library.num_clips) if clips is None else clips
    jobs = [(int(c), e) for c in clips for e in range(int(episodes_per_clip))]
    acc = EpisodeAccumulator(n, env.body.free_root, env.device)
    episodes = []
    for first in range(0, len(jobs), n):
        chunk = jobs[first:first + n]
        ids = torch.tensor([c for c, _ in chunk] + [chunk[-1][0]] * (n - len(chunk)), device=env.device)
        td = env.reset(clip_id=ids)
        s = task.state(None)
        acc.start(s)
        playing = torch.arange(n, device=env.device) < len(chunk)
        if on_step is not None:
            on_step(chunk, s, playing, 0)
        terminated = torch.zeros(n, dtype=torch.bool, device=env.device)
        for step in range(1, int(lengths[ids[:len(chunk)].cpu()].max()) + 1):
            td.set(keys.ACTION, act(td))
            td = env.step(td)  # no automatic reset: a world that ended stays as it ended
            nxt = td.get(keys.NEXT)
            s = task.state(None)
            acc.add(s, playing)
            if on_step is not None:
                on_step(chunk, s, playing, step)
            terminated |= nxt.get(keys.TERMINATED).reshape(n) & playing
            playing &= ~nxt.get(keys.DONE).reshape(n)
            if not bool(playing.any()):  # one host read per step: fine for evaluation
                break
            td = step_mdp(td)
        values = acc.episode_metrics(lengths[ids], terminated)
        table = {k: v.tolist() for k, v in values.items()}
        for i, (c, e) in enumerate(chunk):
            episodes.append({"clip": c, "episode": e, **{k: table[k][i] for k in table}})
        if progress is not None:
            progress(len(episodes), len(jobs))
    return episodes


def summarize(episodes: list[dict], clip_names: list[str]) -> dict:
    """Per clip: the means over its episodes; aggregate: the means over clips (each clip counts once),
    ``early_termination_rate`` over all episodes, plus the counts."""
    names = [k for k in METRICS if k in episodes[0]]
    clips = {}
    for c, name in enumerate(clip_names):
        mine = [e for e in episodes if e["clip"] == c]
        if mine:
            clips[name] = {**{k: sum(e[k] for e in mine) / len(mine) for k in names}, "episodes": len(mine)}
    aggregate = {k: sum(v[k] for v in clips.values()) / len(clips) for k in names}
    aggregate["early_termination_rate"] = sum(e["early_termination_rate"] for e in episodes) / len(episodes)
    aggregate.update(clips=len(clips), episodes=len(episodes))
    return {"aggregate": aggregate, "clips": clips}


def policy(cfg: TrainConfig, state: dict, path: Path, env: MuscleImitationEnv, stochastic: bool = False):
    """The checkpoint's policy as ``act(td) -> action (N, nu)``: its mean action, or samples with
    ``stochastic`` (torch's generator seeded with 0 here, so that a rerun samples the same)."""
    learner = PPO.for_env(env, cfg.ppo)
    try:
        learner.load_state_dict(state["learner"], load_optimizer=False)
    except RuntimeError as exc:
        raise RuntimeError(f"{path}: the checkpoint's networks do not fit its own config's env ({exc})") from None
    learner.eval()
    torch.manual_seed(0)

    def act(td):
        return learner.act(td, deterministic=not stochastic).get(keys.ACTION)

    return act


def run_eval(where: str | Path, motions: str | Path, out_dir: str | Path | None = None, episodes_per_clip: int = 1,
             stochastic: bool = False, num_envs: int | None = None, backend: str | None = None, device: str = "cpu",
             max_site_error: float = DEFAULT_MAX_SITE_ERROR, command: str = "", progress=None,
             gait: bool = True) -> dict:
    """Evaluate a run (see the module docstring); writes ``OUT/metrics.json`` and ``OUT/metrics.csv``. With
    ``gait`` and an ``out_dir``, on a model with legs: the walking clips' first episodes are recorded as
    rollouts (``OUT/rollouts/``) and analysed against human gait data and EMG (``OUT/gait/``), summarised
    under ``gait`` in the result."""
    cfg, state, path = load_run(where, device)
    if int(episodes_per_clip) < 1:
        raise ValueError(f"episodes per clip must be >= 1, got {episodes_per_clip}")
    env = eval_env(cfg, motions, device, backend, max_site_error, num_envs, episodes_per_clip)
    act = policy(cfg, state, path, env, stochastic)
    walks = walking_clips(env.task.library.names) if gait and out_dir is not None and has_legs(env.embodiment.model) \
        else []
    recorder = RolloutRecorder(env, walks, Path(out_dir) / "rollouts", source=f"{path}, iteration {state['iteration']}") \
        if walks else None
    episodes = play_clips(env, act, episodes_per_clip, progress, on_step=recorder)
    if recorder is not None:
        recorder.finish()
    result = summarize(episodes, env.task.library.names)
    if recorder is not None:
        result["gait"] = gait_summary(list(recorder.written.values()), Path(out_dir) / "gait")
    result.update(checkpoint=str(path), iteration=int(state["iteration"]), motions=str(motions),
                  model=cfg.env.model, policy="stochastic" if stochastic else "mean action",
                  max_site_error=max(float(max_site_error), 0.0), episodes_per_clip=int(episodes_per_clip),
                  num_envs=env.num_envs, backend=repr(env.sim), command=command or " ".join(sys.argv))
    if out_dir is not None:
        write_report(result, out_dir)
    return result


def gait_summary(rollouts: list[Path], out_dir: Path) -> dict:
    """Gait and EMG analysis of the walking rollouts (``mmimic.eval.gait.run_gait``), in short for
    metrics.json; a policy that does not walk (falls, shuffles) gets ``error`` instead."""
    try:
        g = run_gait(rollouts, out_dir)
    except (GaitError, ValueError) as exc:
        return {"error": str(exc), "rollouts": [str(p) for p in rollouts]}
    out = {"mean_r": g["mean_r"], **{f"{j}_r": v["r"] for j, v in g["joints"].items()},
           "cycles": g["cycles"], "out": str(out_dir)}
    if "emg" in g:
        out["emg_mean_r"] = g["emg"]["mean_r"]
    return out


def write_report(result: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """``OUT/metrics.json`` (everything) and ``OUT/metrics.csv`` (one row per clip, then the aggregate)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = [k for k in METRICS if k in result["aggregate"]]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["clip", "episodes", *metrics])
    for name, row in result["clips"].items():
        writer.writerow([name, row["episodes"], *(f"{row[k]:.6g}" for k in metrics)])
    agg = result["aggregate"]
    writer.writerow(["aggregate", agg["episodes"], *(f"{agg[k]:.6g}" for k in metrics)])
    js = atomic_write(out / "metrics.json", lambda f: f.write((json.dumps(result, indent=2) + "\n").encode()))
    cs = atomic_write(out / "metrics.csv", lambda f: f.write(buf.getvalue().encode()))
    return js, cs


def format_table(result: dict) -> str:
    """The per-clip table and the aggregate, as printed by ``mmimic eval``."""
    agg = result["aggregate"]
    metrics = [k for k in METRICS if k in agg]
    short = {k: k.replace("_error", "").replace("early_termination_rate", "early_term").replace("frame_", "")
             for k in metrics}
    width = max(12, *(len(n) for n in result["clips"]))
    lines = [f"{'clip':<{width}}  " + "  ".join(f"{short[k]:>14}" for k in metrics)]
    for name, row in list(result["clips"].items()) + [("aggregate", agg)]:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row[k]:>14.4f}" for k in metrics))
    return "\n".join(lines)


__all__ = ["DEFAULT_MAX_SITE_ERROR", "ROOT_METRICS", "clip_steps", "eval_env", "format_table", "load_run",
           "play_clips", "policy", "run_eval", "summarize", "write_report"]


"""Throughput of the raw simulator against MuscleEnv, per backend, measured in one run so the ratios are fair.

Raw, warp: ``mujoco_warp.step`` on the same model and world count, the substep loop captured as a
CUDA graph on GPU (launched directly on CPU), nothing else. Raw, mujoco: the C backend's own thread
pool calling ``mujoco.mj_step`` in every world, nothing copied in or out. Env:
``MuscleEnv.step_and_reset`` (the collect loop's step) with random actions, i.e. action mapping, the same substeps,
instability check, observation, reward, termination and partial resets: what a collector calls.
All are timed after warm-up (kernel compilation, graph capture), with the device synchronized
before reading the clock.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mujoco_warp as mjw
import torch
import warp as wp

from mmimic.embodiments import Embodiment, load_embodiment
from mmimic.envs import MuscleEnv
from mmimic.sim import MujocoSim, WarpSim, available_threads, resolve_backend


@dataclass
class BenchRow:
    backend: str
    num_envs: int
    raw_physics_steps_per_s: float
    raw_control_steps_per_s: float
    env_steps_per_s: float
    env_over_raw: float
    cuda_graph: bool


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # on the CPU every warp launch and C call returns when done
        torch.cuda.synchronize(device)
        wp.synchronize_device(str(device))


def bench_raw(emb: Embodiment, num_envs: int, device: torch.device, steps: int, warmup: int,
              backend: str = "warp", threads: int | None = None) -> tuple[float, bool]:
    """Seconds per control step of the bare simulator of ``backend``, and whether a CUDA graph ran."""
    if backend == "mujoco":
        return bench_raw_mujoco(emb, num_envs, steps, warmup, threads), False
    return bench_raw_warp(emb, num_envs, device, steps, warmup)


def bench_raw_mujoco(emb: Embodiment, num_envs: int, steps: int, warmup: int, threads: int | None) -> float:
    """Seconds per control step of MujocoSim's pool stepping every world, with nothing around it."""
    sim = MujocoSim(emb, num_envs, threads=threads)
    sim.step(torch.rand(num_envs, sim.nu))  # muscles working, as under a policy
    for _ in range(warmup):
        sim.physics_only_step()
    t0 = time.perf_counter()
    for _ in range(steps):
        sim.physics_only_step()
    dt = (time.perf_counter() - t0) / steps
    sim.close()
    return dt


def bench_raw_warp(emb: Embodiment, num_envs: int, device: torch.device, steps: int, warmup: int) -> tuple[float, bool]:
    """Seconds per control step of bare mujoco_warp (substeps physics steps), and whether a graph ran.

    WarpSim only uploads the model and data (same buffer sizes as the env) and captures the graph;
    the timed loop calls ``wp.capture_launch`` / ``mujoco_warp.step`` directly, without WarpSim.
    """
    sim = WarpSim(emb, num_envs, device)
    sim.ctrl.uniform_(0.0, 1.0)  # muscles working, as under a policy
    m, d, graph = sim.m, sim.d, sim.graph
    wdev = sim.wp_device

    def substeps():
        for _ in range(emb.substeps):
            mjw.step(m, d)

    with wp.ScopedDevice(wdev):
        substeps()  # compile/load (CPU) or first launch
        run = (lambda: wp.capture_launch(graph)) if graph is not None else substeps
        for _ in range(warmup):
            run()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            run()
        _sync(device)
    return (time.perf_counter() - t0) / steps, graph is not None


def bench_env(model: str, num_envs: int, device: torch.device, steps: int, warmup: int, emb_options: dict,
              backend: str = "auto", threads: int | None = None) -> float:
    """Seconds per ``step_and_reset`` of MuscleEnv with random actions."""
    env = MuscleEnv(model, num_envs=num_envs, device=str(device), backend=backend, sim_threads=threads,
                    **emb_options)
    td = env.reset()
    bank = [env.action_spec.rand() for _ in range(8)]  # made ahead: we time the env, not the RNG
    for i in range(warmup):
        td["action"] = bank[i % len(bank)]
        _, td = env.step_and_reset(td)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        td["action"] = bank[i % len(bank)]
        _, td = env.step_and_reset(td)
    _sync(device)
    return (time.perf_counter() - t0) / steps


def run_bench(
    model: str,
    device: str,
    num_envs_list: list[int],
    steps: int,
    warmup: int,
    emb_options: dict | None = None,
    command: str = "",
    progress=None,
    backends: list[str] | tuple[str, ...] = ("auto",),
    threads: int | None = None,
) -> dict:
    """Run the sweep for each backend; returns a JSON-ready dict with the rows, device, versions, and
    (when warp and mujoco both ran) the mujoco/warp env speed ratio per world count."""
    emb_options = dict(emb_options or {})
    dev = torch.device(device)
    emb = load_embodiment(model, **emb_options)
    kinds = list(dict.fromkeys(resolve_backend(b, dev) for b in backends))
    rows = []
    for backend in kinds:
        for n in num_envs_list:
            if progress:
                progress(f"{model} on {device}, {backend}: {n} worlds, raw simulator")
            raw_dt, graph = bench_raw(emb, n, dev, steps, warmup, backend, threads)
            if progress:
                progress(f"{model} on {device}, {backend}: {n} worlds, MuscleEnv")
            env_dt = bench_env(model, n, dev, steps, warmup, emb_options, backend, threads)
            rows.append(BenchRow(
                backend=backend,
                num_envs=n,
                raw_physics_steps_per_s=n * emb.substeps / raw_dt,
                raw_control_steps_per_s=n / raw_dt,
                env_steps_per_s=n / env_dt,
                env_over_raw=raw_dt / env_dt,
                cuda_graph=graph,
            ))
    return {
        "model": model,
        "embodiment_options": emb_options,
        "nu": int(emb.model.nu),
        "nq": int(emb.model.nq),
        "substeps": emb.substeps,
        "timestep": float(emb.model.opt.timestep),
        "steps": steps,
        "warmup": warmup,
        "device": describe_device(dev),
        "versions": versions(),
        "command": command or " ".join(sys.argv),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "backends": kinds,
        "sim_threads": (threads or available_threads()) if "mujoco" in kinds else None,
        "rows": [asdict(r) for r in rows],
        "mujoco_over_warp_env": backend_ratios(rows, "env_steps_per_s"),
    }


def backend_ratios(rows: list, key: str) -> dict[str, float]:
    """{num_envs: mujoco row / warp row} of ``key``, for the world counts both backends ran."""
    get = (lambda r, k: r[k]) if rows and isinstance(rows[0], dict) else getattr
    by = {(get(r, "backend"), get(r, "num_envs")): get(r, key) for r in rows}
    return {str(n): by["mujoco", n] / by["warp", n] for (b, n) in by if b == "warp" and ("mujoco", n) in by}


def describe_device(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} ({dev})"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "mujoco", "mujoco-warp", "warp-lang", "torchrl", "tensordict", "musclemimic-models", "mmimic"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def format_table(result: dict) -> str:
    head = f"{result['model']} (nu={result['nu']}, substeps={result['substeps']} x {result['timestep']:g} s) on {result['device']}"
    lines = [head, f"{'backend':>8} {'worlds':>8} {'raw phys steps/s':>17} {'raw ctrl steps/s':>17} "
                   f"{'env steps/s':>12} {'env/raw':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['backend']:>8} {r['num_envs']:>8} {r['raw_physics_steps_per_s']:>17,.0f} "
                     f"{r['raw_control_steps_per_s']:>17,.0f} {r['env_steps_per_s']:>12,.0f} {r['env_over_raw']:>8.3f}")
    for n, ratio in result.get("mujoco_over_warp_env", {}).items():
        lines.append(f"env steps/s, mujoco / warp at {n} worlds: {ratio:.1f}x")
    return "\n".join(lines)


def write_json(result: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path


def run_train_bench(model: str, device: str, num_envs_list: list[int], iterations: int, warmup: int,
                    motions: str = "", data_dir: str = "data", command: str = "", progress=None,
                    backends: list[str] | tuple[str, ...] = ("auto",), config: str | None = None,
                    overrides: list[str] | tuple[str, ...] = (), dist=None) -> dict:
    """Training-loop steps/s (collect + discriminator-free PPO update) against env-only steps/s
    (``MuscleImitationEnv.step_and_reset`` with random actions), same env, same run.
    ``config``/``overrides``: an experiment YAML and key=value overrides (network sizes, PPO passes...);
    ``dist``: a distributed run's process group (``mmimic bench --train --nproc``: every rank runs this)."""
    from mmimic.config import load_config
    from mmimic.rl.trainer import Trainer, TrainConfig

    dev = torch.device(device)
    rows = []
    for backend, n in [(resolve_backend(b, dev), n) for b in dict.fromkeys(backends) for n in num_envs_list]:
        if progress:
            progress(f"{model} on {device}, {backend}: {n} envs, imitation env and training loop")
        base = [f"env.model={model}", f"env.num_envs={n}", f"env.device={device}", f"env.backend={backend}",
                f"demo_data_dir={data_dir}"]
        cfg = load_config(TrainConfig, config, base + ([f"env.motions={motions}"] if motions else []) + list(overrides))
        trainer = Trainer(cfg, run_dir=Path("/tmp") / f"mmimic-bench-train-{model}-{n}", log=lambda *_: None,
                          dist=dist)
        env = trainer.env
        td = env.reset()
        bank = [env.action_spec.rand() for _ in range(8)]
        steps = iterations * cfg.ppo.rollout_steps
        for i in range(warmup * cfg.ppo.rollout_steps + steps):
            if i == warmup * cfg.ppo.rollout_steps:
                _sync(dev)
                t0 = time.perf_counter()
            td["action"] = bank[i % len(bank)]
            _, td = env.step_and_reset(td)
        _sync(dev)
        world = trainer.dist.world_size if trainer.dist is not None else 1  # (torchrun: every rank runs this)
        env_sps = env.num_envs * world * steps / (time.perf_counter() - t0)
        trainer.td = env.reset()  # the env-only loop moved it on
        for _ in range(warmup):
            trainer.train_iteration()
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(iterations):
            trainer.train_iteration()
        _sync(dev)
        train_sps = n * steps / (time.perf_counter() - t0)
        if trainer.writer is not None:
            trainer.writer.close()
        rows.append({"backend": backend, "num_envs": n, "env_steps_per_s": env_sps, "train_steps_per_s": train_sps,
                     "train_over_env": train_sps / env_sps, "rollout_steps": cfg.ppo.rollout_steps})
    return {"kind": "train", "model": model, "config": config, "overrides": list(overrides),
            "iterations": iterations, "warmup": warmup,
            "device": describe_device(dev), "versions": versions(), "command": command or " ".join(sys.argv),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "rows": rows}


def format_train_table(result: dict) -> str:
    lines = [f"{result['model']} training loop vs env on {result['device']}",
             f"{'backend':>8} {'envs':>8} {'env steps/s':>12} {'train steps/s':>14} {'train/env':>10}"]
    for r in result["rows"]:
        lines.append(f"{r.get('backend', ''):>8} {r['num_envs']:>8} {r['env_steps_per_s']:>12,.0f} "
                     f"{r['train_steps_per_s']:>14,.0f} {r['train_over_env']:>10.3f}")
    return "\n".join(lines)

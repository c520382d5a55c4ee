"""``mmimic doctor``: the self-check a user runs first on a new machine (above all one with a GPU).

It reports the stack (driver, CUDA, torch, warp, mujoco, mujoco_warp versions; the devices torch and
warp see) and, per model and world count, builds the env the trainer uses and checks:

- ``build``: the simulator and ``MuscleEnv`` come up (and, on CUDA, whether the three CUDA graphs of
  ``WarpSim`` were captured: substeps, masked reset, kinematics; why not, if not);
- ``parity``: 20 control steps from the default state with random controls, on a few worlds, against
  C MuJoCo (``mujoco.mj_step``, float64) on the same controls: max |qpos| and |act| differences;
- ``nan``: unstable (NaN / runaway) world-steps and non-finite state entries in a short run of
  ``env.step_and_reset`` with random actions (the collect loop's env step), timed: env steps/s;
  memory used (device memory on CUDA, resident memory on the CPU);
- ``sync`` (CUDA): one env step under ``torch.cuda.set_sync_debug_mode("error")``: no torch host sync.
  (warp's own launches are not seen by that mode; without a step graph the solver's conditional loop is
  off, see ``WarpSim``.) On the CPU the path reads host memory by design: skipped;
- ``checkpoint`` (once, arm26 on the demo reaches): train 1 iteration, save, resume with the checkpoint
  read onto the device (``map_location``), compare weights, RNG states and simulator state, train 1 more.

Any exception in a model's run (a CUDA error 700 in mujoco_warp's step, for one) is caught and reported
with the model, the world count and the command to rerun it alone with ``CUDA_LAUNCH_BLOCKING=1`` (the
error then points at the kernel that failed); the other runs go on (after a CUDA error the context may be
unusable: rerun the models one by one). The result is a pass/fail table and a JSON to attach to bug
reports. The CUDA figures are unmeasured by this project (no GPU here); thresholds were set by review.
"""

from __future__ import annotations

import datetime as _dt
import gc
import platform
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mujoco
import numpy as np
import torch
import warp as wp

from mmimic.bench.throughput import describe_device, versions

PARITY_STEPS = 20
PARITY_WORLDS = 4
# max |qpos| and |act| difference to C MuJoCo after PARITY_STEPS control steps. The C backend is C MuJoCo
# (only its float32 views round); warp computes in float32 (on the CPU it stays within 1e-4 for 25 steps).
PARITY_TOL = {"mujoco": 1e-5, "warp": 1e-3}
STATUSES = ("pass", "fail", "skip", "info")


@dataclass
class Check:
    name: str
    status: str  # pass | fail | skip | info
    detail: str
    model: str = "-"
    num_envs: int | None = None
    values: dict = field(default_factory=dict)
    rerun: str | None = None  # the command to reproduce a failure alone


def rerun_command(device: str, model: str, num_envs: int, backend: str, cuda: bool) -> str:
    cmd = f"mmimic doctor --device {device} --models {model} --num-envs {num_envs} --backend {backend}"
    return f"CUDA_LAUNCH_BLOCKING=1 {cmd}" if cuda else cmd


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        wp.synchronize_device(str(device))


def _memory_mb(device: torch.device) -> float | None:
    """Device memory in use (CUDA: all of the device, as the driver reports it) or this process's resident
    memory (CPU), in MiB; None where unknown."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return (total - free) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ------------------------------------------------------------------------------------ the stack
def stack_report(device: torch.device) -> dict:
    """Versions and devices, as torch, warp and the driver see them."""
    from mmimic.sim.warp_sim import nvidia_driver_version

    drv = wp.get_cuda_driver_version()
    report = {
        "versions": {**versions(), "torch_cuda": torch.version.cuda or "none (CPU build)",
                     "warp_cuda_toolkit": ".".join(map(str, wp.get_cuda_toolkit_version())),
                     "cuda_driver_api": ".".join(map(str, drv)) if drv else "none",
                     "nvidia_driver": nvidia_driver_version() or "none"},
        "platform": platform.platform(),
        "device_name": describe_device(device),
        "torch_cuda_devices": [{"index": i, "name": torch.cuda.get_device_name(i),
                                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                               for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [],
        "warp_devices": [str(d) for d in wp.get_devices()],
    }
    if device.type == "cuda":
        report["warp_mempool"] = bool(wp.is_mempool_enabled(wp.get_device(str(device)))) \
            if wp.get_cuda_device_count() else None
        report["conditional_graphs"] = bool(wp.is_conditional_graph_supported())
    return report


def stack_checks(device: torch.device, report: dict) -> list[Check]:
    v = report["versions"]
    detail = (f"torch {v['torch']} (CUDA {v['torch_cuda']}), warp {v['warp-lang']} (toolkit {v['warp_cuda_toolkit']}, "
              f"driver API {v['cuda_driver_api']}, NVIDIA driver {v['nvidia_driver']}), mujoco {v['mujoco']}, "
              f"mujoco_warp {v['mujoco-warp']}")
    checks = [Check("stack", "info", detail)]
    if device.type == "cuda":
        from mmimic.sim.warp_sim import check_warp_sees_cuda

        try:
            check_warp_sees_cuda(device)
            checks.append(Check("warp_cuda", "pass", f"warp sees {wp.get_cuda_device_count()} CUDA device(s); "
                                f"memory pool {'on' if report.get('warp_mempool') else 'OFF (no CUDA graphs)'}; "
                                "conditional graph nodes "
                                f"{'yes' if report['conditional_graphs'] else 'no (CUDA < 12.4)'}"))
        except RuntimeError as exc:
            checks.append(Check("warp_cuda", "fail", str(exc)))
    return checks


# ------------------------------------------------------------------------------------ one model, one size
def _parity(env, backend: str, worlds: int, steps: int, seed: int = 0) -> Check:
    """The env's simulator from the default state against C MuJoCo, same random controls, ``worlds`` worlds."""
    sim, emb = env.sim, env.embodiment
    m = emb.model
    k = min(worlds, sim.num_worlds)
    sim.reset(torch.ones(sim.num_worlds, dtype=torch.bool, device=sim.device))
    datas = []
    for _ in range(k):
        d = mujoco.MjData(m)
        if m.nkey > 0:
            mujoco.mj_resetDataKeyframe(m, d, 0)
        mujoco.mj_forward(m, d)
        datas.append(d)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        ctrl = rng.uniform(0.0, 1.0, size=(sim.num_worlds, m.nu)).astype(np.float32)
        sim.step(torch.as_tensor(ctrl, device=sim.device))
        for w, d in enumerate(datas):
            d.ctrl[:] = ctrl[w]
            for _ in range(emb.substeps):
                mujoco.mj_step(m, d)
    _sync(sim.device)
    q = sim.qpos[:k].double().cpu().numpy()
    a = sim.act[:k].double().cpu().numpy()
    v = sim.qvel[:k].double().cpu().numpy()
    dq = float(np.abs(q - np.stack([d.qpos for d in datas])).max())
    da = float(np.abs(a - np.stack([d.act for d in datas])).max()) if m.na else 0.0
    dv = float(np.abs(v - np.stack([d.qvel for d in datas])).max())
    tol = PARITY_TOL[backend]
    ok = np.isfinite([dq, da, dv]).all() and dq <= tol and da <= tol
    return Check("parity", "pass" if ok else "fail",
                 f"{steps} steps x {k} worlds vs C MuJoCo: max |dqpos| {dq:.1e}, |dact| {da:.1e} (tol {tol:g}); "
                 f"|dqvel| {dv:.1e}", values={"max_abs_qpos": dq, "max_abs_act": da, "max_abs_qvel": dv, "tol": tol,
                                               "steps": steps, "worlds": k})


def _random_actions(env, g: torch.Generator) -> torch.Tensor:
    return torch.rand(env.num_envs, env.sim.nu, device=env.device, generator=g) * 2.0 - 1.0


def run_model(model: str, num_envs: int, device: torch.device, backend: str, steps: int, warmup: int,
              parity_steps: int = PARITY_STEPS, parity_worlds: int = PARITY_WORLDS) -> tuple[list[Check], dict]:
    """All checks of one model at one world count; an exception becomes a failed check (with the rerun)."""
    from mmimic.envs import MuscleEnv
    from mmimic.sim import resolve_backend

    kind = resolve_backend(backend, device)
    checks: list[Check] = []
    row: dict = {"model": model, "num_envs": num_envs, "backend": kind, "device": str(device)}
    mem0 = _memory_mb(device)
    env = None
    stage = "build"
    try:
        t0 = time.perf_counter()
        env = MuscleEnv(model, num_envs=num_envs, device=str(device), backend=kind, seed=0)
        _sync(device)
        row["build_s"] = round(time.perf_counter() - t0, 2)
        sim = env.sim
        graphs = [n for n, g in (("step", getattr(sim, "graph", None)), ("reset", getattr(sim, "reset_graph", None)),
                                 ("kinematics", getattr(sim, "kinematics_graph", None))) if g is not None]
        row["cuda_graphs"] = graphs
        checks.append(Check("build", "pass", f"{row['build_s']} s: {sim!r}", model, num_envs))
        if device.type == "cuda" and kind == "warp":
            err = getattr(sim, "capture_error", None)
            checks.append(Check("cuda_graph", "pass" if len(graphs) == 3 else "fail",
                                f"captured: {', '.join(graphs) or 'none'}" + (f"; failed: {err}" if err else ""),
                                model, num_envs, {"captured": graphs, "error": err}))
        else:
            checks.append(Check("cuda_graph", "skip", f"no CUDA graphs on {device.type} ({kind} backend)",
                                model, num_envs))
        stage = "parity"
        parity = _parity(env, kind, parity_worlds, parity_steps)
        parity.model, parity.num_envs = model, num_envs
        checks.append(parity)
        row["parity"] = parity.values
        stage = "run"
        g = torch.Generator(device=device).manual_seed(0)
        env.sim.unstable_count.zero_()
        td = env.reset()
        for _ in range(warmup):
            _, td = env.step_and_reset(td.set("action", _random_actions(env, g)))
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            _, td = env.step_and_reset(td.set("action", _random_actions(env, g)))
        _sync(device)
        dt = time.perf_counter() - t0
        row["env_steps_per_s"] = round(num_envs * steps / dt, 1)
        mem1 = _memory_mb(device)
        row["memory_mb"] = round(mem1 - mem0, 1) if mem0 is not None and mem1 is not None else None
        unstable = int(env.sim.unstable_count)
        nonfinite = int(sum((~torch.isfinite(t)).sum() for t in (env.sim.qpos, env.sim.qvel, env.sim.act)))
        nonfinite_obs = int((~torch.isfinite(td["observation"])).sum())
        row.update(unstable_world_steps=unstable, nonfinite_state=nonfinite, nonfinite_obs=nonfinite_obs)
        checks.append(Check("nan", "pass" if unstable == nonfinite == nonfinite_obs == 0 else "fail",
                            f"{warmup + steps} random-action steps: {unstable} unstable world-steps, {nonfinite} "
                            f"non-finite state entries, {nonfinite_obs} in the observation", model, num_envs,
                            {"unstable_world_steps": unstable, "nonfinite_state": nonfinite}))
        mem = "?" if row["memory_mb"] is None else f"{row['memory_mb']:,.0f} MiB"
        checks.append(Check("speed", "info", f"{row['env_steps_per_s']:,.0f} env steps/s ({steps} steps timed after "
                            f"{warmup}); memory used {mem} ({'device' if device.type == 'cuda' else 'resident'})",
                            model, num_envs,
                            {"env_steps_per_s": row["env_steps_per_s"], "memory_mb": row["memory_mb"]}))
        stage = "sync"
        if device.type == "cuda":
            checks.append(_sync_check(env, td, g, model, num_envs))
        else:
            checks.append(Check("sync", "skip", "on the CPU there is no device to wait for (host syncs are a GPU "
                                "matter)", model, num_envs))
    except Exception as exc:  # noqa: BLE001 - a model's failure is a result, not the end of the doctor
        cuda = device.type == "cuda" or "cuda" in str(exc).lower()
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        checks.append(Check(stage, "fail",
                            f"{type(exc).__name__} during {stage}: {msg}", model, num_envs,
                            {"traceback": traceback.format_exc(limit=8)},
                            rerun=rerun_command(str(device), model, num_envs, backend, cuda)))
        row["error"] = f"{type(exc).__name__}: {msg}"
    finally:
        del env
        gc.collect()
        if device.type == "cuda":
            try:
                torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - after a CUDA error even this may fail
                pass
    return checks, row


def _sync_check(env, td, g: torch.Generator, model: str, num_envs: int) -> Check:
    action = _random_actions(env, g)
    torch.cuda.synchronize(env.device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        env.step_and_reset(td.set("action", action))
    except RuntimeError as exc:
        return Check("sync", "fail", f"a host sync in one env step: {str(exc).splitlines()[0]}", model, num_envs)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return Check("sync", "pass", 'one env step (step + masked reset) under torch.cuda.set_sync_debug_mode("error")',
                 model, num_envs)


# ------------------------------------------------------------------------------------ checkpoint round trip
def checkpoint_round_trip(device: torch.device, backend: str, workdir: Path, num_envs: int = 16,
                          progress=None) -> list[Check]:
    """Train arm26 1 iteration, checkpoint, resume onto ``device`` and compare, train 1 more; on CUDA also
    one collect step of the imitation env and its policy under the sync debug mode."""
    from mmimic.config import load_config
    from mmimic.motion.demo import ensure_demo_library
    from mmimic.rl import collect
    from mmimic.rl.checkpoint import read_checkpoint
    from mmimic.rl.trainer import Trainer, TrainConfig

    checks: list[Check] = []
    try:
        motions = ensure_demo_library("arm26", workdir / "data", jobs=1, log=progress or (lambda *_: None))

        def config(*more):
            return load_config(TrainConfig, None, [
                f"env.motions={motions}", f"out_dir={workdir / 'runs'}", f"env.device={device}",
                f"env.backend={backend}", "env.model=arm26", f"env.num_envs={num_envs}", "env.seed=0",
                "ppo.rollout_steps=8", "ppo.minibatches=2", "ppo.epochs=1", "ppo.network.actor_hidden=[32,32]",
                "ppo.network.critic_hidden=[32,32]", "checkpoint_every=1", "log_every=1", "eval_every=0", *more])

        first = Trainer(config("iterations=1"), log=lambda *_: None)
        first.train()
        state, path = read_checkpoint(first.run_dir, device)
        resumed = Trainer(config("iterations=2", f"resume={first.run_dir}"), log=lambda *_: None)
        problems = []
        if resumed.iteration != 1:
            problems.append(f"iteration {resumed.iteration}, expected 1")
        for k, v in first.learner.state_dict()["model"].items():
            if not torch.equal(resumed.learner.state_dict()["model"][k].cpu(), v.cpu()):
                problems.append(f"weight {k} differs")
                break
        if not torch.equal(torch.get_rng_state(), state["rng"]["torch"].cpu()):
            problems.append("torch RNG state differs")
        if device.type == "cuda" and not torch.equal(torch.cuda.get_rng_state(device), state["rng"]["cuda"].cpu()):
            problems.append("CUDA RNG state differs")
        if not torch.equal(resumed.env.rng.get_state(), first.env.rng.get_state()):
            problems.append("env generator state differs")
        if not torch.equal(resumed.env.sim.qpos.cpu(), first.env.sim.qpos.cpu()):
            problems.append("simulator state differs")
        resumed.train()
        if resumed.iteration != 2:
            problems.append(f"the resumed run stopped at iteration {resumed.iteration}, expected 2")
        checks.append(Check("checkpoint", "fail" if problems else "pass",
                            "; ".join(problems) if problems else
                            f"train 1 it -> save -> resume (read onto {device}) -> weights, RNG states, simulator "
                            f"state equal -> 1 more it ({path.stat().st_size / 1024:.0f} KiB)",
                            "arm26", num_envs))
        if device.type == "cuda":
            env, learner = resumed.env, resumed.learner
            _, td = collect(env, learner, 2, resumed.td)  # warm
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode("error")
            try:
                collect(env, learner, 1, td)
                checks.append(Check("sync_collect", "pass", "one collect step (policy + imitation env step + masked "
                                    'reset) under torch.cuda.set_sync_debug_mode("error")', "arm26", num_envs))
            except RuntimeError as exc:
                checks.append(Check("sync_collect", "fail", f"a host sync in a collect step: "
                                    f"{str(exc).splitlines()[0]}", "arm26", num_envs))
            finally:
                torch.cuda.set_sync_debug_mode(0)
    except Exception as exc:  # noqa: BLE001
        cuda = device.type == "cuda" or "cuda" in str(exc).lower()
        checks.append(Check("checkpoint", "fail", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}",
                            "arm26", num_envs, {"traceback": traceback.format_exc(limit=8)},
                            rerun=rerun_command(str(device), "arm26", num_envs, backend, cuda)))
    return checks


# ------------------------------------------------------------------------------------ the whole doctor
def run_doctor(device: str, models: list[str], num_envs: list[int], backend: str = "auto",
               steps: int | None = None, warmup: int | None = None, checkpoint: bool = True,
               command: str = "", progress=None) -> dict:
    """Every check; returns the JSON-ready result (``ok``: no check failed)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    cuda = dev.type == "cuda"
    steps = steps or (100 if cuda else 20)
    warmup = warmup if warmup is not None else (10 if cuda else 2)
    say = progress or (lambda *_: None)
    t_start = time.perf_counter()
    report = stack_report(dev)
    checks = stack_checks(dev, report)
    runs, to_run = [], list(models)
    from mmimic.sim import resolve_backend

    if any(c.name == "warp_cuda" and c.status == "fail" for c in checks) and resolve_backend(backend, dev) == "warp":
        # every run would fail the same way: say it once (the warp_cuda check above has the reason and the fix)
        checks.append(Check("runs", "skip", "no model run: warp cannot use this CUDA device (see warp_cuda)"))
        to_run, checkpoint = [], False
    for model in to_run:
        for n in num_envs:
            say(f"{model}, {n} worlds on {dev} ...")
            c, row = run_model(model, n, dev, backend, steps, warmup)
            checks += c
            runs.append(row)
    if checkpoint:
        say("checkpoint round trip (arm26, demo reaches) ...")
        workdir = Path(tempfile.mkdtemp(prefix="mmimic-doctor-"))
        try:
            checks += checkpoint_round_trip(dev, backend, workdir, progress=lambda msg: say(f"  {msg}"))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = [c for c in checks if c.status == "fail"]
    return {"mmimic_doctor": 1, **report, "ok": not failed, "failed": len(failed), "device": str(dev),
            "models": models, "num_envs": num_envs, "backend": backend, "steps": steps, "warmup": warmup,
            "seconds": round(time.perf_counter() - t_start, 1), "command": command,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "runs": runs, "checks": [asdict(c) for c in checks]}


def format_table(result: dict, width: int = 100) -> str:
    """The versions, the pass/fail table (details cut to ``width``), then each failure's rerun command."""
    v = result["versions"]
    lines = [f"device: {result['device_name']}; torch devices: "
             f"{', '.join(d['name'] for d in result['torch_cuda_devices']) or 'none'}; warp devices: "
             f"{', '.join(result['warp_devices'])}",
             f"versions: NVIDIA driver {v['nvidia_driver']}, CUDA driver API {v['cuda_driver_api']}, "
             f"torch {v['torch']} (CUDA {v['torch_cuda']}), warp {v['warp-lang']} (toolkit {v['warp_cuda_toolkit']}), "
             f"mujoco {v['mujoco']}, "
             f"mujoco_warp {v['mujoco-warp']}, torchrl {v['torchrl']}", ""]
    rows = [("check", "model", "worlds", "status", "detail")]
    for c in result["checks"]:
        if c["name"] == "stack":
            continue  # printed above
        rows.append((c["name"], c["model"], "-" if c["num_envs"] is None else str(c["num_envs"]),
                     c["status"].upper(), c["detail"]))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    table = []
    for r in rows:
        detail = r[4] if len(r[4]) <= width else r[4][:width - 3] + "..."
        table.append(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]:<{w[3]}}  {detail}".rstrip())
    table.insert(1, "-" * max(map(len, table)))
    lines += table
    for c in result["checks"]:
        if c["status"] == "fail" and c.get("rerun"):
            lines.append(f"{c['model']} at {c['num_envs']} worlds failed ({c['name']}); rerun it alone: {c['rerun']}")
    verdict = "all checks passed" if result["ok"] else f"{result['failed']} check(s) FAILED"
    lines.append(f"{verdict} in {result['seconds']} s on {result['device']}")
    return "\n".join(lines)


__all__ = ["Check", "PARITY_TOL", "checkpoint_round_trip", "format_table", "run_doctor", "run_model",
           "stack_report"]

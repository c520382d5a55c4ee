"""``mmimic retarget``: many AMASS files onto one embodiment, resumable, with a QA summary.

A bad input file is reported and skipped (status ``error: ...`` in the summary); an output that
already exists is not redone (its stored QA is reused), so an interrupted run resumes. Workers are
fresh (spawned) processes, each loading the model once and limited to one BLAS/torch thread: the
IK is serial per clip, and with threads per worker N jobs on N cores thrash (measured: 0.24 s
per frame instead of 0.005 with 2 jobs on 2 cores). So ``seconds_per_frame`` is one core's time.

What is never lost or clobbered:

- inputs: an output directory equal to the input, inside it or containing it is refused (outputs
  would overwrite inputs, or be read as inputs by the next run); a single input file is never an output;
- files that are not ours: an existing file at an output path is reused only if it is a motion file
  retargeted onto the same model at the same rate; anything else is an error for that clip and is left
  as it is. A ``summary.json`` that is not a retarget summary is not replaced (the run is refused);
- the summary: ``summary.json`` is written even when a worker process dies (the clips it had not
  finished are errors) and on Ctrl-C (the unfinished clips are errors; finished ones are kept);
- workers: they ignore Ctrl-C (the parent stops the batch) and exit when the parent process dies
  (Linux parent-death signal, plus a parent-pid watchdog everywhere), removing their temp files.
"""

from __future__ import annotations

import ctypes
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmimic.embodiments import EmbodimentConfig, load_embodiment
from mmimic.motion import motion_file
from mmimic.motion.motion_file import (MotionDataWarning, MotionFileError, OutputPathError, atomic_write,
                                       load_motion, prepare_output_dir, save_motion)
from mmimic.motion.retarget import IKSolver, RetargetConfig, retarget_joints
from mmimic.motion.smpl import PLAUSIBLE_FPS, load_amass, smpl_joints

SUMMARY_KEYS = ("rmse_m", "joint_limit_violation_pct", "tendon_jump_pct", "floor_penetration_m", "seconds_per_frame")
SUMMARY_NAME = "summary.json"
PARENT_POLL_S = 0.5  # how often a worker checks that its parent is alive (the portable fallback)
WORKER_DIED = "a retarget worker process died (killed, out of memory or crashed)"

_worker: dict = {}


class RetargetInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped a batch: ``signum``, and ``summary_path`` once it is written."""

    def __init__(self, signum: int = signal.SIGINT, summary_path: Path | None = None):
        super().__init__(signum, summary_path)
        self.signum, self.summary_path = int(signum), summary_path


def find_inputs(root: Path) -> list[Path]:
    """The AMASS files under ``root`` (a file, or a directory searched recursively), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or directory")
    return sorted(p for p in root.rglob("*.npz") if p.is_file())


def output_path(src: Path, root: Path, out_dir: Path) -> Path:
    rel = src.name if Path(root).is_file() else src.relative_to(root)
    return Path(out_dir) / rel


def check_output_location(root: Path, out_dir: Path) -> None:
    """OutputPathError unless ``out_dir`` can hold the outputs of ``root`` without touching an input."""
    root, out_dir = Path(root), Path(out_dir)
    r, o = root.resolve(), out_dir.resolve()
    if out_dir.suffix == ".npz" and not out_dir.is_dir():
        raise OutputPathError(f"output {out_dir}: expected an output directory (one motion file per input "
                              "and summary.json are written in it), got a path ending in .npz")
    if root.is_file():
        if o == r or o / r.name == r:
            raise OutputPathError(f"output directory {out_dir} would overwrite the input file {root} "
                                  f"({out_dir / root.name}); choose another output directory")
        return
    if o == r:
        raise OutputPathError(f"output directory {out_dir} is the input directory {root}: the outputs would "
                              "overwrite the inputs; choose an output directory outside the input")
    if r in o.parents:
        raise OutputPathError(f"output directory {out_dir} is inside the input directory {root}: the outputs "
                              "would be read as inputs by the next run; choose an output directory outside it")
    if o in r.parents:
        raise OutputPathError(f"input directory {root} is inside the output directory {out_dir}: outputs could "
                              "overwrite inputs, and a run on the output directory would read the inputs; choose "
                              "an output directory that neither contains nor is inside the input")


def _check_old_summary(out_dir: Path) -> None:
    """A summary.json there must be a retarget summary (which this run replaces), else nothing is done."""
    path = out_dir / SUMMARY_NAME
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
        ours = isinstance(old, dict) and {"model", "clips", "aggregate"} <= set(old)
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise OutputPathError(f"output directory {out_dir}: {path} exists and is not a retarget summary; it is "
                              "not overwritten: move it away or choose another output directory")


def write_summary(out_dir: str | os.PathLike, summary: dict) -> Path:
    """``out_dir/summary.json``, atomically (a unique temp file, so concurrent runs cannot mix files)."""
    text = (json.dumps(summary, indent=2) + "\n").encode()
    return atomic_write(Path(out_dir) / SUMMARY_NAME, lambda f: f.write(text))


_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


# ----------------------------------------------------------------------------------------------- workers

def _exit_now(*_args) -> None:
    """Leave at once (parent gone, or SIGTERM): remove this process's half-written temp files first."""
    for tmp in list(motion_file.TEMP_FILES):
        try:
            os.unlink(tmp)
        except OSError:
            pass
    os._exit(1)


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker exit when ``parent_pid`` dies, even if it is SIGKILLed (no chance to clean up).

    Linux: PR_SET_PDEATHSIG delivers SIGTERM when the parent dies (the worker is spawned from the
    thread that runs retarget_dir, which outlives the pool). Everywhere: a daemon thread polls
    os.getppid(), which changes when the parent dies and the worker is re-parented.
    """
    signal.signal(signal.SIGTERM, _exit_now)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # already gone before the signal was armed
        _exit_now()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                _exit_now()

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init_worker(emb_cfg: EmbodimentConfig, cfg: RetargetConfig, smpl_model_dir: str | None,
                 parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    import torch

    torch.set_num_threads(1)
    emb = load_embodiment(emb_cfg)
    _worker.update(emb=emb, cfg=cfg, solver=IKSolver(emb, cfg), smpl_model_dir=smpl_model_dir)


def _retarget_one(src: str, dst: str) -> dict:
    """Retarget one file; never raises: errors come back as the entry's status, data warnings in 'warnings'."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MotionDataWarning)
        try:
            t0 = time.perf_counter()
            clip = load_amass(src)
            joints = smpl_joints(clip, model_dir=_worker["smpl_model_dir"])
            result = retarget_joints(_worker["emb"], list(joints.joint_names), np.asarray(joints.positions),
                                     np.asarray(joints.rotations), float(joints.fps), source=str(src),
                                     cfg=_worker["cfg"], solver=_worker["solver"])
            result.qa["body_model"] = joints.source
            result.clip.qa = result.qa
            save_motion(dst, result.clip)
            entry = {**{k: result.qa[k] for k in SUMMARY_KEYS}, "status": "ok", "frames": result.qa["frames"],
                     "body_model": joints.source, "wall_seconds": time.perf_counter() - t0}
        except Exception as exc:  # noqa: BLE001 - one broken motion is reported, the batch goes on
            entry = {"status": f"error: {exc}"}
    ours = [str(w.message) for w in caught if issubclass(w.category, MotionDataWarning)]
    for w in caught:  # anything else (library deprecations, ...) is shown as usual
        if not issubclass(w.category, MotionDataWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if ours:
        entry["warnings"] = ours
    return entry


# ------------------------------------------------------------------------------------------------ driver

def _existing_entry(dst: Path, model: str, joint_names: list[str], fps_out: float) -> dict:
    """Summary entry for an output path that exists: reuse it if it is this run's kind of motion file,
    else an error (it is never overwritten)."""
    keep = "it was not overwritten: move it away or choose another output directory"
    try:
        clip = load_motion(dst)
    except MotionFileError as exc:
        return {"status": f"error: output {dst} already exists and is not a motion file written by mmimic "
                          f"retarget ({exc}); {keep}"}
    if clip.embodiment != model or clip.joint_names != joint_names:
        return {"status": f"error: output {dst} already exists, retargeted onto {clip.embodiment!r} with "
                          f"{len(clip.joint_names)} joints, not {model!r} with {len(joint_names)} (another model "
                          f"or --no-fingers setting); {keep}"}
    if not math.isclose(clip.fps, fps_out, rel_tol=1e-6):
        return {"status": f"error: output {dst} already exists at {clip.fps:g} fps, not the {fps_out:g} fps "
                          f"asked for; {keep}"}
    qa = clip.qa
    return {**{k: qa.get(k) for k in SUMMARY_KEYS}, "status": "exists", "frames": qa.get("frames")}


def retarget_dir(inputs: str | Path, model: str, out_dir: str | Path, smpl_model_dir: str | None = None,
                 jobs: int = 1, fps: float | None = None, remove_fingers: bool = False,
                 cfg: RetargetConfig | None = None, progress: bool = True) -> dict:
    """Retarget every AMASS file under ``inputs``; writes motions and ``out_dir/summary.json``.

    Raises FileNotFoundError / ValueError (OutputPathError for the output location) before any work
    when the run cannot go ahead. On Ctrl-C or SIGTERM while clips are being retargeted, the running
    clips finish, the summary is written (unfinished clips are errors) and RetargetInterrupted (a
    KeyboardInterrupt) is raised. ``summary['incomplete']`` says why clips were left
    unfinished (a worker died, or interrupted), else None.
    """
    cfg = replace(cfg) if cfg is not None else RetargetConfig()  # the caller's config is not changed
    if fps is not None:
        cfg.fps = fps
    if cfg.fps is not None:
        try:
            ok = math.isfinite(float(cfg.fps)) and float(cfg.fps) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"output frame rate (--fps): expected a finite number > 0, got {cfg.fps!r}")
        cfg.fps = float(cfg.fps)
    root = Path(inputs)
    files = find_inputs(root)
    if not files:
        raise FileNotFoundError(f"{root}: no .npz files found")
    out_dir = Path(out_dir)
    check_output_location(root, out_dir)
    if smpl_model_dir is not None and not Path(smpl_model_dir).exists():
        raise FileNotFoundError(f"SMPL model directory {smpl_model_dir}: no such file or directory")
    emb_cfg = EmbodimentConfig(name=model, remove_fingers=remove_fingers)
    emb = load_embodiment(emb_cfg)
    if emb.smpl_map is None:  # fail early on a bad model name, or one without a map
        raise ValueError(f"embodiment {model!r} has no SMPL map: cannot retarget onto it")
    fps_out = float(cfg.fps or 1.0 / emb.control_dt)
    if not PLAUSIBLE_FPS[0] <= fps_out <= PLAUSIBLE_FPS[1]:
        warnings.warn(f"output frame rate {fps_out:g} fps is outside {PLAUSIBLE_FPS[0]:g}-{PLAUSIBLE_FPS[1]:g}: "
                      "is that meant?", MotionDataWarning, stacklevel=2)
    prepare_output_dir(out_dir)
    _check_old_summary(out_dir)
    entries: dict[str, dict] = {}
    todo = []
    for src in files:
        dst = output_path(src, root, out_dir)
        if dst.exists():
            entries[str(src)] = _existing_entry(dst, model, emb.joint_names, fps_out)
            if entries[str(src)]["status"].startswith("error"):
                tqdm.write(f"skipped {src}: {entries[str(src)]['status']}")
            continue
        todo.append((src, dst))
    bar = tqdm(total=len(todo), desc=f"retarget -> {model}", unit="clip", disable=not progress)
    incomplete = None
    interrupted = False
    received = [signal.SIGINT]

    def on_term(signum, _frame):  # SIGTERM stops the batch as Ctrl-C does (the summary is written)
        received[0] = signum
        raise KeyboardInterrupt

    if todo:
        saved = {k: os.environ.get(k) for k in _ONE_THREAD}
        os.environ.update(_ONE_THREAD)  # read by numpy's BLAS when the spawned worker imports it
        futures: dict = {}
        old_term = (signal.signal(signal.SIGTERM, on_term)
                    if threading.current_thread() is threading.main_thread() else None)
        pool = ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo))), initializer=_init_worker,
                                   initargs=(emb_cfg, cfg, smpl_model_dir, os.getpid()),
                                   mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {pool.submit(_retarget_one, str(s), str(d)): s for s, d in todo}
            for fut in as_completed(futures):
                entries[str(futures[fut])] = _result(fut)
                _report(bar, futures[fut], entries[str(futures[fut])])
        except KeyboardInterrupt:
            interrupted = True
            for fut in futures:
                fut.cancel()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # running clips finish (their writes are atomic)
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k)
                else:
                    os.environ[k] = v
        for fut, src in futures.items():  # finished while shutting down
            if str(src) not in entries and fut.done() and not fut.cancelled():
                entries[str(src)] = _result(fut)
        died = sum(WORKER_DIED in e["status"] for e in entries.values())
        left = [s for s, _ in todo if str(s) not in entries]
        for src in left:
            entries[str(src)] = {"status": "error: interrupted before this clip was retargeted; run the same "
                                           "command again to resume"}
        if interrupted:
            incomplete = f"interrupted: {len(left)} clip(s) not retargeted"
        elif died:
            incomplete = (f"{WORKER_DIED}: {died} clip(s) not retargeted (the clip it was working on and those "
                          "still queued); run the same command again to retry them")
    bar.close()
    summary = {"model": model, "remove_fingers": remove_fingers, "inputs": str(root), "retarget_config": asdict(cfg),
               "incomplete": incomplete, "clips": dict(sorted(entries.items())), "aggregate": aggregate(entries)}
    path = write_summary(out_dir, summary)
    if interrupted:
        raise RetargetInterrupted(received[0], path)
    return summary


def _result(fut) -> dict:
    try:
        return fut.result()
    except BrokenProcessPool as exc:
        return {"status": f"error: {WORKER_DIED} before this clip was finished ({exc}); not retried"}
    except Exception as exc:  # noqa: BLE001 - e.g. an argument that cannot be sent to the worker
        return {"status": f"error: {type(exc).__name__}: {exc}"}


def _report(bar, src: Path, entry: dict) -> None:
    for w in entry.get("warnings", ()):
        tqdm.write(f"warning {src}: {w}")
    if not entry["status"].startswith("ok"):
        tqdm.write(f"skipped {src}: {entry['status']}")
    bar.update(1)


def aggregate(entries: dict[str, dict]) -> dict:
    """Means over the clips that have metrics (frame-weighted for seconds_per_frame), and counts."""
    good = [e for e in entries.values() if e["status"] in ("ok", "exists") and e.get("rmse_m") is not None]
    out = {"clips": len(entries), "ok": sum(e["status"] == "ok" for e in entries.values()),
           "existing": sum(e["status"] == "exists" for e in entries.values()),
           "errors": sum(e["status"].startswith("error") for e in entries.values())}
    for key in SUMMARY_KEYS:
        vals = [e[key] for e in good if e.get(key) is not None]
        out[key] = float(np.mean(vals)) if vals else None
    out["max_rmse_m"] = max((e["rmse_m"] for e in good), default=None)
    return out

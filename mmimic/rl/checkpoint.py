"""Checkpoint files: written atomically and durably (temp file, fsync, rename, fsync of the folder), the
last k kept, found again by run dir, read without executing code (``torch.load(weights_only=True)``:
tensors, numbers, strings and containers only; a crafted file cannot run anything).

A run folder holds one line of checkpoints. Resuming from an older one starts a new branch: the later
ones are moved to ``checkpoints/abandoned-<stamp>/`` (kept, but never picked by a later ``--resume``).
Reading a run dir whose newest checkpoint is unreadable (e.g. a disk filled up mid-write on another
machine) falls back to the newest readable one, with a warning.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import warnings
from pathlib import Path

import torch

from mmimic.motion.motion_file import atomic_write

PATTERN = re.compile(r"^ckpt_(\d+)\.pt$")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported here (e.g. some network file systems): the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run_dir: str | Path, iteration: int, state: dict, keep: int = 3) -> Path:
    """Write ``run_dir/checkpoints/ckpt_<iteration>.pt`` atomically; delete all but the newest ``keep``.

    A crash or kill at any point leaves the previous checkpoints whole.
    """
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{iteration:08d}.pt"
    atomic_write(path, lambda f: torch.save(state, f))  # temp file, fsync, rename: whole or not at all
    _fsync_dir(folder)  # the rename is on disk too
    for old in list_checkpoints(run_dir)[:-max(int(keep), 1)]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if PATTERN.match(p.name)), key=lambda p: int(PATTERN.match(p.name)[1]))


def checkpoint_iteration(path: str | Path) -> int:
    match = PATTERN.match(Path(path).name)
    return int(match[1]) if match else -1


def _load(path: Path, device) -> dict:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - name the file and the cause
        raise RuntimeError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") \
            from None
    if not isinstance(state, dict) or any(k not in state for k in ("iteration", "config")):
        raise RuntimeError(f"{path}: not an mmimic checkpoint (expected a dict with 'iteration' and 'config')")
    return state


def read_checkpoint(where: str | Path, device: torch.device | str = "cpu") -> tuple[dict, Path]:
    """A checkpoint file, or a run directory's newest readable checkpoint -> ``(state, path)``.

    Errors name the path: a missing path, a folder without checkpoints, an unreadable file. A run dir
    whose newest checkpoints cannot be read falls back to an older one, with a warning.
    """
    where = Path(where)
    if where.is_file():
        return _load(where, device), where
    if not where.exists():
        raise FileNotFoundError(f"{where}: no such checkpoint file or run directory")
    found = list_checkpoints(where)
    if not found:
        raise FileNotFoundError(f"{where}: not a checkpoint file, and no checkpoints/ckpt_*.pt in it")
    errors = []
    for path in reversed(found):
        try:
            state = _load(path, device)
        except RuntimeError as exc:
            errors.append(str(exc))
            continue
        if errors:
            warnings.warn(f"{len(errors)} newer checkpoint(s) could not be read ({'; '.join(errors)}); using "
                          f"{path}", stacklevel=2)
        return state, path
    raise RuntimeError(f"{where}: none of its {len(found)} checkpoints can be read: " + "; ".join(errors))


def abandon_later_checkpoints(path: str | Path) -> Path | None:
    """Resuming from ``path``: move the same run's later checkpoints to ``checkpoints/abandoned-<stamp>/``
    (so that a later resume of the run continues this branch). Returns that folder, or None."""
    path = Path(path)
    later = [p for p in list_checkpoints(path.parent.parent) if checkpoint_iteration(p) > checkpoint_iteration(path)]
    if not later:
        return None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target = path.parent / f"abandoned-{stamp}"
    target.mkdir()
    for p in later:
        os.replace(p, target / p.name)
    _fsync_dir(path.parent)
    return target

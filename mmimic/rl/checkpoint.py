"""Checkpoints: written atomically (temp file + rename), the last k kept, found again by run dir."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

PATTERN = re.compile(r"^ckpt_(\d+)\.pt$")


def save_checkpoint(run_dir: str | Path, iteration: int, state: dict, keep: int = 3) -> Path:
    """Write ``run_dir/checkpoints/ckpt_<iteration>.pt`` atomically; delete all but the newest ``keep``."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{iteration:08d}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash leaves the old checkpoints and at worst a stray .tmp
    for old in list_checkpoints(run_dir)[:-max(int(keep), 1)]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if PATTERN.match(p.name)), key=lambda p: int(PATTERN.match(p.name)[1]))


def resolve_checkpoint(where: str | Path) -> Path:
    """A checkpoint file, or a run directory (its newest checkpoint)."""
    where = Path(where)
    if where.is_file():
        return where
    found = list_checkpoints(where)
    if not found:
        raise FileNotFoundError(f"{where}: not a checkpoint file, and no checkpoints/ckpt_*.pt in it")
    return found[-1]


def read_checkpoint(where: str | Path, device: torch.device | str = "cpu") -> tuple[dict, Path]:
    path = resolve_checkpoint(where)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - name the file
        raise RuntimeError(f"{path}: cannot read checkpoint ({exc})") from None
    for key in ("iteration", "config"):
        if key not in state:
            raise RuntimeError(f"{path}: not an mmimic checkpoint (missing {key!r})")
    return state, path

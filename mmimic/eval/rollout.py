"""Rollouts: the states a policy went through, written in the motion file format so that everything that
reads motions (``mmimic gait``, the motion library, a viewer) reads them too.

A rollout file is a motion file (``qpos``, ``qvel``, mimic sites; one frame per control step, from the
reset to the episode's end) plus ``act`` (frames, muscles): the muscle activations, and ``muscle_names``.
``RolloutRecorder`` is an ``on_step`` hook of ``play_clips``; it copies the recorded worlds' states to the
host (evaluation only, never in training's hot loop).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from mmimic.motion.motion_file import MotionClip, MotionFileError, save_motion


class RolloutRecorder:
    """Records the first episode of each clip in ``clips`` (indices) and writes ``OUT/<clip name>.npz``:
    ``play_clips(..., on_step=recorder)``, then ``recorder.finish()`` for the last chunk."""

    def __init__(self, env, clips, out_dir: str | Path, source: str = ""):
        self.env, self.clips, self.out = env, set(int(c) for c in clips), Path(out_dir)
        self.source = source
        self.written: dict[str, Path] = {}
        self.failed: dict[str, str] = {}  # clip name -> why its rollout was not written (a world that blew up)
        self._frames: dict[int, list[dict[str, np.ndarray]]] = {}
        self._jobs: list[tuple[int, int]] = []

    def __call__(self, jobs: list[tuple[int, int]], state, playing: torch.Tensor, step: int) -> None:
        """``play_clips``' hook: step 0 begins a chunk (the previous one is written), later steps add frames."""
        if step == 0:
            self.finish()
            self.start(jobs, state)
        else:
            self.add(state, playing)

    def start(self, jobs: list[tuple[int, int]], state) -> None:
        """A chunk of episodes begins: ``jobs[w]`` = (clip, episode) of world w; ``state``: after the reset."""
        self._jobs = jobs
        self._frames = {w: [] for w, (c, e) in enumerate(jobs) if c in self.clips and e == 0}
        self._add(state, None)

    def add(self, state, playing: torch.Tensor) -> None:
        """After a step: a frame for each recorded world still ``playing``."""
        if self._frames:
            self._add(state, playing)

    def _add(self, s, playing) -> None:
        worlds = list(self._frames)
        if playing is not None:
            alive = playing[worlds].cpu().tolist()
            worlds = [w for w, a in zip(worlds, alive) if a]
        if not worlds:
            return
        idx = torch.tensor(worlds, device=s.sim.qpos.device)
        views = {"qpos": s.sim.qpos, "qvel": s.sim.qvel, "act": s.sim.act, "site_pos": s.site_pos,
                 "site_quat": s.site_quat}
        host = {k: v[idx].detach().to("cpu", torch.float64).numpy() for k, v in views.items()}
        for j, w in enumerate(worlds):
            self._frames[w].append({k: v[j] for k, v in host.items()})

    def finish(self) -> None:
        """The chunk's episodes are over: write each recorded one (nothing to do before the first chunk)."""
        task, emb = self.env.task, self.env.embodiment
        layout = task.library.layout
        for w, frames in self._frames.items():
            clip = self._jobs[w][0]
            name = task.library.names[clip]
            stack = {k: np.stack([f[k] for f in frames]) for k in frames[0]}
            motion = MotionClip(
                qpos=stack["qpos"], qvel=stack["qvel"], fps=1.0 / task.dt, joint_names=list(layout.joint_names),
                free_root=layout.free_root, site_names=list(layout.site_names), site_pos=stack["site_pos"],
                site_quat=stack["site_quat"], embodiment=layout.embodiment,
                source=f"mmimic eval rollout of {name}" + (f" ({self.source})" if self.source else ""))
            try:
                self.written[name] = save_motion(
                    self.out / f"{name}.npz", motion,
                    extra={"act": stack["act"].astype(np.float32),
                           "muscle_names": np.asarray(emb.muscle_names, dtype=str)})
            except MotionFileError as exc:  # e.g. NaN states of a world that blew up: reported, eval goes on
                self.failed[name] = str(exc)
                warnings.warn(f"rollout of {name} not written: {exc}", stacklevel=2)
        self._frames = {}


__all__ = ["RolloutRecorder"]

"""All motion clips as packed tensors on the device: sampling, interpolation and lookahead for the env.

Every frame of every clip is concatenated into one tensor per field (``qpos`` (F, nq), ``qvel``
(F, nv), ``site_pos`` (F, S, 3), ``site_quat`` (F, S, 4)); clip ``c`` occupies rows
``start[c] : start[c] + length[c]``. A query (clip id, time in seconds) becomes a float frame index
``time * fps[c]``, clamped to the clip, and the two neighbouring rows are blended: linearly, and by
slerp for quaternions (the free root's ``qpos[3:7]`` and the site orientations). Everything is
gathers and elementwise math on the device, so ``sample``/``state``/``future`` run inside the env
step with no host synchronisation and no Python loop over envs.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from mmimic.math import quat_slerp
from mmimic.motion.motion_file import MotionClip, MotionFileError, load_motion, validate_clip

ClipSource = MotionClip | str | os.PathLike


@dataclass(frozen=True)
class MotionLayout:
    """What every clip of one library must share, so that rows of the packed tensors line up."""

    nq: int
    nv: int
    joint_names: tuple[str, ...]
    site_names: tuple[str, ...]
    free_root: bool
    embodiment: str

    @classmethod
    def of(cls, clip: MotionClip) -> "MotionLayout":
        return cls(clip.qpos.shape[1], clip.qvel.shape[1], tuple(clip.joint_names), tuple(clip.site_names),
                   bool(clip.free_root), clip.embodiment)

    def difference(self, other: "MotionLayout") -> str:
        """'' when equal, else a short human description of what differs."""
        out = []
        for f in ("nq", "nv", "free_root", "embodiment"):
            a, b = getattr(self, f), getattr(other, f)
            if a != b:
                out.append(f"{f} {b!r} (library: {a!r})")
        for f in ("joint_names", "site_names"):
            a, b = getattr(self, f), getattr(other, f)
            if a != b:
                first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                out.append(f"{f} differ (clip has {len(b)}, library {len(a)}; "
                           f"first difference at index {first})")
        return "; ".join(out)


class MotionLibrary:
    """Many clips of one embodiment, packed on ``device``.

    ``clips``: motion files and/or MotionClip objects; or one path (str or PathLike): a directory
    (its ``*.npz``, recursively), a list file, or one ``.npz`` (see :meth:`paths_of`). A clip that
    cannot be read, or whose layout
    (nq, nv, joint and site names, free root, embodiment) differs from the library's, is warned
    about and listed in ``self.skipped`` as (path or name, reason); the rest load. The layout is
    ``layout`` if given (e.g. a training library's, for its test set), else the first clip that loads
    (with ``embodiment`` checked if given). Loading nothing is an error.
    """

    def __init__(self, clips: Iterable[ClipSource], device: str | torch.device = "cpu",
                 embodiment: str | None = None, *, layout: MotionLayout | None = None,
                 skipped: Sequence[tuple[str, str]] = ()):
        t0 = time.perf_counter()
        self.device = torch.device(device)
        self.skipped: list[tuple[str, str]] = list(skipped)  # (path or clip name, reason)
        self.layout = layout
        loaded: list[MotionClip] = []
        self.paths: list[str] = []
        if isinstance(clips, (str, os.PathLike)):  # one path, not an iterable of one-letter paths
            paths, missing = self.paths_of(clips)
            for p, reason in missing:
                self._skip(p, reason)
            clips = paths
        elif isinstance(clips, MotionClip):
            clips = [clips]
        elif isinstance(clips, bytes):
            raise TypeError("MotionLibrary: clips: expected motion file paths, MotionClips or one path as str "
                            f"or PathLike, got bytes {clips[:60]!r}")
        items = list(clips)
        for item in items:
            label = (item.name or "<clip>") if isinstance(item, MotionClip) else str(item)
            try:
                if isinstance(item, MotionClip):
                    validate_clip(item, label)
                    clip = item
                else:
                    clip = load_motion(item)
            except MotionFileError as e:
                self._skip(label, str(e))
                continue
            reason = self._check_layout(clip, embodiment)
            if reason:
                self._skip(label, f"layout differs from the library: {reason}")
                continue
            loaded.append(clip)
            self.paths.append(label)
        if not loaded:
            reasons = "; ".join(f"{p}: {r}" for p, r in self.skipped[:3])
            raise ValueError(f"MotionLibrary: no clip loaded ({len(items)} given, "
                             f"{len(self.skipped)} skipped)"
                             + (f": {reasons}" if reasons else ""))
        self._pack(loaded)
        self.load_seconds = time.perf_counter() - t0

    def _skip(self, label: str, reason: str) -> None:
        warnings.warn(f"MotionLibrary: skipping {label}: {reason}", stacklevel=3)
        self.skipped.append((label, reason))

    def _check_layout(self, clip: MotionClip, embodiment: str | None) -> str:
        if embodiment is not None and clip.embodiment != embodiment:
            return f"embodiment {clip.embodiment!r} (expected {embodiment!r})"
        mine = MotionLayout.of(clip)
        if self.layout is None:
            self.layout = mine
            return ""
        return self.layout.difference(mine)

    def _pack(self, clips: list[MotionClip]) -> None:
        """Concatenate on the host, then one copy per field to the device."""
        dev, f32 = self.device, np.float32
        lengths = np.array([c.num_frames for c in clips], dtype=np.int64)
        fps = np.array([c.fps for c in clips], dtype=np.float64)
        self.names = [c.name or f"clip{i}" for i, c in enumerate(clips)]

        def packed(field: str) -> torch.Tensor:
            host = np.concatenate([getattr(c, field) for c in clips]).astype(f32, copy=False)
            return torch.from_numpy(host).to(dev)

        self.qpos, self.qvel = packed("qpos"), packed("qvel")  # (F, nq), (F, nv)
        self.site_pos, self.site_quat = packed("site_pos"), packed("site_quat")  # (F, S, 3), (F, S, 4)
        self.start = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]])).to(dev)  # (C,) long
        self.length = torch.from_numpy(lengths).to(dev)  # (C,) frames
        self.fps = torch.from_numpy(fps.astype(f32)).to(dev)  # (C,)
        self.duration = torch.from_numpy(((lengths - 1) / fps).astype(f32)).to(dev)  # (C,) seconds
        self.total_seconds = float(((lengths - 1) / fps).sum())
        self.set_weights(None)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_dir(cls, directory: str | os.PathLike, pattern: str = "**/*.npz", **kwargs) -> "MotionLibrary":
        """Every file under ``directory`` matching ``pattern`` (recursive by default), in sorted order."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"MotionLibrary.from_dir: {directory}: not a directory")
        paths = sorted(directory.glob(pattern))
        if not paths:
            raise ValueError(f"MotionLibrary.from_dir: {directory}: no files match {pattern!r}")
        return cls(paths, **kwargs)

    @classmethod
    def paths_of(cls, source: str | os.PathLike) -> tuple[list[Path], list[tuple[str, str]]]:
        """One path -> (motion files, [(path, reason)] for listed files that are missing): a directory
        gives its ``*.npz`` (recursive, sorted), a ``.npz`` file itself, any other file is a list file
        (:meth:`read_list`). FileNotFoundError for a missing path, ValueError for an empty one."""
        if not str(source).strip():
            raise ValueError("MotionLibrary: the motions path is empty; give a directory of motion files, "
                             "a list file, or one .npz")
        path = Path(source)
        if path.is_dir():
            paths = sorted(p for p in path.glob("**/*.npz") if p.is_file())
            if not paths:
                raise ValueError(f"MotionLibrary: {path}: no .npz motion files in this directory")
            return paths, []
        if not path.is_file():
            raise FileNotFoundError(f"MotionLibrary: motions {path}: no such file or directory")
        if path.suffix == ".npz":
            return [path], []
        return cls.read_list(path)

    @classmethod
    def from_path(cls, source: str | os.PathLike, **kwargs) -> "MotionLibrary":
        """A directory (recursive ``*.npz``), one ``.npz``, or a list file -> MotionLibrary (the rules of
        ``mmimic.envs.imitation_env.load_library``; missing listed files are reported and skipped)."""
        return cls(source, **kwargs)

    @staticmethod
    def read_list(list_file: str | os.PathLike, root: str | os.PathLike | None = None
                  ) -> tuple[list[Path], list[tuple[str, str]]]:
        """A list file -> (existing paths, [(path, reason)] for missing ones).

        One path per line, relative to ``root`` (default: the list file's folder); '#' starts a comment.
        """
        list_file = Path(list_file)
        if not list_file.is_file():
            raise ValueError(f"MotionLibrary: list file {list_file}: no such file")
        root = Path(root) if root is not None else list_file.parent
        try:
            text = list_file.read_text(encoding="utf-8-sig")  # a BOM is not part of the 1st path
        except UnicodeDecodeError:
            raise ValueError(f"MotionLibrary: list file {list_file}: not a text file (expected one motion file "
                             "path per line; a motion file itself must end in .npz)") from None
        found, missing = [], []
        for lineno, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            path = root / entry
            if path.is_file():
                found.append(path)
            else:
                what = "a directory, not a motion file" if path.is_dir() else "no such file"
                missing.append((str(path), f"listed in {list_file}:{lineno} but {what}"))
        return found, missing

    @classmethod
    def from_list(cls, list_file: str | os.PathLike, root: str | os.PathLike | None = None,
                  **kwargs) -> "MotionLibrary":
        """The clips named in ``list_file`` (see :meth:`read_list`); missing ones are reported and skipped."""
        paths, missing = cls.read_list(list_file, root)
        for p, reason in missing:
            warnings.warn(f"MotionLibrary: skipping {p}: {reason}", stacklevel=2)
        return cls(paths, skipped=list(kwargs.pop("skipped", ())) + missing, **kwargs)

    @classmethod
    def split(cls, train_list: str | os.PathLike, test_list: str | os.PathLike,
              root: str | os.PathLike | None = None, **kwargs) -> tuple["MotionLibrary", "MotionLibrary"]:
        """(train, test) libraries from two list files; the test set must match the train layout.

        A clip named in both lists is a leak between train and test: it is warned about (and kept).
        """
        train_paths, _ = cls.read_list(train_list, root)
        test_paths, _ = cls.read_list(test_list, root)
        both = {p.resolve() for p in train_paths} & {p.resolve() for p in test_paths}
        if both:
            warnings.warn(f"MotionLibrary.split: {len(both)} clip(s) in both {train_list} and {test_list}, "
                          f"e.g. {sorted(both)[0]}", stacklevel=2)
        train = cls.from_list(train_list, root, **kwargs)
        test = cls.from_list(test_list, root, layout=train.layout, **kwargs)
        return train, test

    # ------------------------------------------------------------------ sizes and reports
    def sampling_state(self) -> dict[str, torch.Tensor]:
        """The sampling distribution as it is (weights and the cumulative table sampling inverts), for an
        exact resume: recomputing the table from the float32 weights could move its last bits."""
        return {"weights": self.weights.clone(), "cdf": self._cdf.clone()}

    def load_sampling_state(self, state: dict[str, torch.Tensor]) -> None:
        if tuple(state["weights"].shape) != (self.num_clips,):
            raise ValueError(f"MotionLibrary: sampling state for {tuple(state['weights'].shape)[0]} clips, "
                             f"this library has {self.num_clips}")
        self.weights, self._cdf = state["weights"].to(self.device), state["cdf"].to(self.device)

    @property
    def num_clips(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return self.num_clips

    @property
    def num_frames(self) -> int:
        return int(self.qpos.shape[0])

    def memory_bytes(self) -> int:
        """Bytes of all tensors this library holds on its device."""
        tensors = [v for v in vars(self).values() if isinstance(v, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)

    def summary(self) -> str:
        s = (f"MotionLibrary: {self.num_clips} clips, {self.num_frames} frames, "
             f"{self.total_seconds / 3600:.3f} h, {self.memory_bytes() / 2**20:.1f} MB on {self.device}")
        if self.skipped:
            s += f" ({len(self.skipped)} skipped)"
        return s

    def __repr__(self) -> str:
        return self.summary()

    # ------------------------------------------------------------------ sampling
    def set_weights(self, weights: Sequence[float] | np.ndarray | torch.Tensor | None) -> None:
        """Per-clip sampling weights (C,), nonnegative, renormalised; None = uniform over clips.

        Sampling inverts the cumulative distribution with searchsorted, so nothing reads back to the
        host (torch.multinomial's input check does on some paths, e.g. when one sample is drawn).
        """
        C = self.num_clips
        if weights is None:
            w = np.ones(C)
        else:
            w = (weights.detach().cpu().double().numpy() if isinstance(weights, torch.Tensor)
                 else np.asarray(weights, dtype=np.float64))
            if w.shape != (C,):
                raise ValueError(f"MotionLibrary.set_weights: expected shape ({C},) (one per clip), "
                                 f"got {w.shape}")
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError("MotionLibrary.set_weights: weights must be finite and >= 0")
            if w.sum() <= 0:
                raise ValueError("MotionLibrary.set_weights: weights sum to 0; a clip needs weight > 0")
        self.weights = torch.from_numpy((w / w.sum()).astype(np.float32)).to(self.device)
        cdf = np.cumsum(w / w.sum())
        cdf[-1] = 1.0
        self._cdf = torch.from_numpy(cdf.astype(np.float32)).to(self.device)

    def sample(self, n: int, generator: torch.Generator | None = None, truncate_end: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """n (clip id, time) pairs: ids (n,) long by the weights, times (n,) float uniform in [0, duration).

        ``truncate_end`` seconds are left out at each clip's end (so a lookahead stays inside the
        clip); a clip shorter than that gives time 0. ``generator`` must live on the library's device.
        """
        u = torch.rand(n, device=self.device, generator=generator)
        ids = torch.searchsorted(self._cdf, u, right=True).clamp_(max=self.num_clips - 1)
        span = (self.duration[ids] - truncate_end).clamp_min(0.0)
        times = torch.rand(n, device=self.device, generator=generator) * span
        return ids, times

    # ------------------------------------------------------------------ interpolation
    def state(self, clip_ids: torch.Tensor, times: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reference state at ``times`` (seconds) of ``clip_ids``; any matching batch shape B.

        Returns qpos (B, nq), qvel (B, nv), site_pos (B, S, 3), site_quat (B, S, 4). Times outside
        [0, duration] are clamped to the clip's first/last frame.
        """
        clip_ids = clip_ids.to(self.device, torch.long)
        frame = (times.to(self.device, torch.float32) * self.fps[clip_ids]).clamp_min(0.0)
        last = self.length[clip_ids] - 1
        frame = torch.minimum(frame, last.to(frame.dtype))
        i0 = torch.minimum(frame.floor().long(), last - 1)  # so i0 + 1 is always inside the clip
        a = frame - i0  # in [0, 1]
        g0 = self.start[clip_ids] + i0
        g1 = g0 + 1
        a1, a2 = a.unsqueeze(-1), a.unsqueeze(-1).unsqueeze(-1)
        qpos = torch.lerp(self.qpos[g0], self.qpos[g1], a1)
        if self.layout.free_root:
            qpos[..., 3:7] = quat_slerp(self.qpos[g0, 3:7], self.qpos[g1, 3:7], a)
        return {
            "qpos": qpos,
            "qvel": torch.lerp(self.qvel[g0], self.qvel[g1], a1),
            "site_pos": torch.lerp(self.site_pos[g0], self.site_pos[g1], a2),
            "site_quat": quat_slerp(self.site_quat[g0], self.site_quat[g1], a.unsqueeze(-1)),
        }

    def future(self, clip_ids: torch.Tensor, times: torch.Tensor, num_frames: int, stride_s: float
               ) -> dict[str, torch.Tensor]:
        """Lookahead: states at ``times + stride_s * (1..K)`` as (n, K, ...), clamped at each clip's end."""
        if num_frames < 1 or not stride_s > 0:
            raise ValueError(f"MotionLibrary.future: expected num_frames >= 1 and stride_s > 0, "
                             f"got {num_frames}, {stride_s}")
        offsets = stride_s * torch.arange(1, num_frames + 1, device=self.device, dtype=torch.float32)
        t = times.to(self.device, torch.float32).unsqueeze(-1) + offsets  # (n, K)
        ids = clip_ids.to(self.device, torch.long).unsqueeze(-1).expand_as(t)
        return self.state(ids, t)

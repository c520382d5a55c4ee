"""The retargeted motion file: one ``.npz`` per clip, shared by its writer (retarget) and reader (library).

Fields (T frames, S mimic sites; quaternions (w, x, y, z); positions in the world frame):

- ``qpos`` (T, nq) float32, ``qvel`` (T, nv) float32 -- ``qvel`` is what MuJoCo calls qvel: for
  hinge/slide joints ``(q[t+1] - q[t]) * fps``; for a free joint world-frame linear velocity and
  body-frame angular velocity (exactly ``mj_differentiatePos``; see :func:`finite_difference_qvel`)
- ``fps`` scalar, ``joint_names`` (njnt,) str in model order, ``free_root`` bool (``qpos[:, 3:7]`` is
  the root quaternion), ``site_names`` (S,), ``site_pos`` (T, S, 3), ``site_quat`` (T, S, 4)
- ``embodiment`` str, ``source`` str (the input file), ``qa`` JSON string of QA metrics,
  ``format_version`` int (optional, 1)

Files are written uncompressed (float data barely compresses, and loading thousands of clips must
be fast) and atomically (:func:`atomic_write`), so an interrupted retarget never leaves a half-written
clip behind; they get the usual permissions (0666 minus the umask), as ``open`` would give them.

Also here, for every writer of user data in ``mmimic.motion``: :func:`prepare_output_dir` (an output
directory that is a directory and writable, or one clear error) and :class:`MotionDataWarning` (data
that loads but looks wrong, e.g. an implausible frame rate).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import mujoco
import numpy as np

FORMAT_VERSION = 1
REQUIRED_KEYS = ("qpos", "qvel", "fps", "joint_names", "free_root", "site_names", "site_pos",
                 "site_quat", "embodiment", "source", "qa")
QUAT_TOL = 1e-3  # |norm - 1| allowed for stored quaternions (float32 storage is ~1e-7)


class MotionFileError(ValueError):
    """A motion file (or clip) that cannot be used; the message names the file, field and expectation."""


class OutputPathError(ValueError):
    """An output location that cannot be used (not a directory, not writable, or it would overwrite the
    input or a file that is not ours); the message names the path(s)."""


class MotionDataWarning(UserWarning):
    """Motion data that loads but looks wrong (e.g. an implausible frame rate, an unreadable gender)."""


# --------------------------------------------------------------------------------------- writing files

# Temp files being written by this process: a retarget worker whose parent dies removes them before it
# exits (see mmimic.motion.batch), so no ``.NAME.*.tmp`` is left in the output directory.
TEMP_FILES: set[str] = set()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status);
    elsewhere by os.umask's set-and-restore."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(file)`` atomically: into a hidden temp file beside it (``.NAME.*.tmp``,
    which no ``*.npz`` glob matches), flushed to disk, given mode 0666 & ~umask (mkstemp makes 0600), then
    renamed over ``path``. On any error (or interrupt) the temp file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    TEMP_FILES.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        TEMP_FILES.discard(tmp)
    return path


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if missing and check that files can be written in it; else OutputPathError naming it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"output directory {path}: it exists and is a file, not a directory; "
                              "give a directory (created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"output directory {path}: cannot create it ({exc.strerror or exc}"
                              f"{f': {exc.filename}' if exc.filename and str(exc.filename) != str(path) else ''})"
                              ) from None
    try:  # the only reliable test (os.access ignores ACLs, read-only mounts are per filesystem)
        fd, probe = tempfile.mkstemp(prefix=".mmimic-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"output directory {path}: not writable ({exc.strerror or exc})") from None
    return path


@dataclass
class MotionClip:
    """One retargeted clip in memory. ``qa`` is a dict here and a JSON string in the file."""

    qpos: np.ndarray
    qvel: np.ndarray
    fps: float
    joint_names: list[str]
    free_root: bool
    site_names: list[str]
    site_pos: np.ndarray
    site_quat: np.ndarray
    embodiment: str
    source: str = ""
    qa: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    name: str = ""  # the file's stem when loaded; not stored in the file

    @property
    def num_frames(self) -> int:
        return int(self.qpos.shape[0])

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame: (T - 1) / fps."""
        return (self.num_frames - 1) / float(self.fps)


def validate_clip(clip: MotionClip, where: str = "<clip>") -> None:
    """Raise MotionFileError for the first problem found; ``where`` names the file in the message."""

    def fail(fld: str, expected: str, got) -> None:
        raise MotionFileError(f"{where}: field '{fld}': expected {expected}, got {got}")

    qpos, qvel = np.asarray(clip.qpos), np.asarray(clip.qvel)
    if qpos.ndim != 2:
        fail("qpos", "a 2-D array (T, nq)", f"shape {qpos.shape}")
    T = qpos.shape[0]
    if T < 2:
        fail("qpos", "at least 2 frames (T >= 2)", f"T={T}")
    if qvel.ndim != 2 or qvel.shape[0] != T:
        fail("qvel", f"shape (T={T}, nv) matching qpos", f"shape {qvel.shape}")
    fps = np.asarray(clip.fps)
    if fps.size != 1 or not np.isfinite(fps).all() or float(fps) <= 0:
        fail("fps", "one finite number > 0", fps)
    S = len(clip.site_names)
    for name, last in (("site_pos", 3), ("site_quat", 4)):
        arr = np.asarray(getattr(clip, name))
        if arr.shape != (T, S, last):
            fail(name, f"shape (T={T}, S={S}, {last}) matching qpos and site_names", f"shape {arr.shape}")
    if len(clip.joint_names) == 0:
        fail("joint_names", "at least one joint name", "an empty list")
    for name in ("qpos", "qvel", "site_pos", "site_quat"):
        arr = np.asarray(getattr(clip, name))
        if not np.issubdtype(arr.dtype, np.floating):
            fail(name, "a float array", f"dtype {arr.dtype}")
        if not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            fail(name, "finite values", f"NaN/inf first at index {tuple(int(i) for i in bad)}")
    quats = [("site_quat", np.asarray(clip.site_quat, dtype=np.float64))]
    if clip.free_root:
        if qpos.shape[1] < 7:
            fail("qpos", "nq >= 7 when free_root (qpos[:, 3:7] is the root quaternion)",
                 f"nq={qpos.shape[1]}")
        quats.append(("qpos[:, 3:7] (root quaternion)", qpos[:, 3:7].astype(np.float64)))
    for name, q in quats:
        err = np.abs(np.linalg.norm(q, axis=-1) - 1.0)
        if err.size and err.max() > QUAT_TOL:
            idx = tuple(int(i) for i in np.unravel_index(err.argmax(), err.shape))
            fail(name, f"unit quaternions (|norm - 1| <= {QUAT_TOL})", f"norm {1 + err[idx]:.4g} at {idx}")
    if int(clip.format_version) > FORMAT_VERSION:
        fail("format_version", f"<= {FORMAT_VERSION} (this reader)", clip.format_version)


def _json_default(x):
    """QA metrics are often numpy scalars or arrays: store them as plain numbers and lists."""
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    raise TypeError(f"field 'qa': {type(x).__name__} is not JSON serialisable")


def save_motion(path: str | os.PathLike, clip: MotionClip, extra: dict[str, np.ndarray] | None = None) -> Path:
    """Validate and write ``clip`` to ``path`` (.npz) atomically: a temp file beside it, then os.replace.
    ``extra``: more arrays stored beside the motion's (a rollout's ``act``, ``muscle_names``)."""
    path = Path(path)
    validate_clip(clip, str(path))
    arrays = dict(
        qpos=np.asarray(clip.qpos, dtype=np.float32), qvel=np.asarray(clip.qvel, dtype=np.float32),
        fps=np.float64(clip.fps), joint_names=np.asarray(list(clip.joint_names), dtype=str),
        free_root=np.bool_(clip.free_root), site_names=np.asarray(list(clip.site_names), dtype=str),
        site_pos=np.asarray(clip.site_pos, dtype=np.float32).reshape(clip.num_frames, -1, 3),
        site_quat=np.asarray(clip.site_quat, dtype=np.float32).reshape(clip.num_frames, -1, 4),
        embodiment=np.str_(clip.embodiment), source=np.str_(clip.source),
        qa=np.str_(json.dumps(clip.qa, default=_json_default)), format_version=np.int64(clip.format_version))
    clash = set(arrays) & set(extra or {})
    if clash:
        raise ValueError(f"{path}: extra arrays may not replace the motion's own fields {sorted(clash)}")
    arrays.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: np.savez(f, **arrays))


AMASS_KEYS = ("poses", "trans")  # an AMASS input file has these, a motion file does not


def load_motion(path: str | os.PathLike) -> MotionClip:
    """Read and validate one motion file; any problem is a MotionFileError naming the file and field."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise MotionFileError(f"{where}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in REQUIRED_KEYS if k not in z.files]
            if missing:
                hint = ("; it looks like an AMASS/SMPL input: retarget it first (mmimic retarget)"
                        if all(k in z.files for k in AMASS_KEYS) else "")
                raise MotionFileError(f"{where}: missing field(s) {missing}; "
                                      f"a motion file needs {list(REQUIRED_KEYS)}{hint}")
            d = {k: z[k] for k in z.files}
    except MotionFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, MemoryError) as e:
        raise MotionFileError(f"{where}: not a readable .npz motion file ({type(e).__name__}: {e})") from e

    def fail(name: str, expected: str, got) -> None:
        raise MotionFileError(f"{where}: field '{name}': expected {expected}, got {got}")

    for name in ("fps", "free_root", "embodiment", "source", "qa", "format_version"):
        if name in d and d[name].ndim != 0:
            fail(name, "a scalar", f"shape {d[name].shape}")
    for name, kinds, what in (("fps", "fiu", "a number"), ("free_root", "b", "a bool"),
                              ("format_version", "iu", "an integer"), ("embodiment", "U", "a str"),
                              ("source", "U", "a str"), ("qa", "U", "a JSON string")):
        if name in d and d[name].dtype.kind not in kinds:
            fail(name, what, f"dtype {d[name].dtype} ({str(d[name])[:60]!r})")
    try:
        qa = json.loads(str(d["qa"]))
    except json.JSONDecodeError:
        fail("qa", "a JSON string", repr(str(d["qa"])[:60]))
    if not isinstance(qa, dict):
        fail("qa", "a JSON object of QA metrics", type(qa).__name__)
    for name in ("joint_names", "site_names"):
        if d[name].ndim != 1 or d[name].dtype.kind != "U":
            fail(name, "a 1-D array of str", f"shape {d[name].shape} dtype {d[name].dtype}")
    clip = MotionClip(
        qpos=d["qpos"], qvel=d["qvel"], fps=float(d["fps"]), joint_names=d["joint_names"].tolist(),
        free_root=bool(d["free_root"]), site_names=d["site_names"].tolist(), site_pos=d["site_pos"],
        site_quat=d["site_quat"], embodiment=str(d["embodiment"]), source=str(d["source"]), qa=qa,
        format_version=int(d.get("format_version", FORMAT_VERSION)), name=path.stem)
    validate_clip(clip, where)
    return clip


def finite_difference_qvel(model: mujoco.MjModel, qpos: np.ndarray, fps: float) -> np.ndarray:
    """(T, nq) positions at ``fps`` -> (T, nv) velocities in MuJoCo's qvel convention.

    ``qvel[t]`` is the velocity that carries ``qpos[t]`` to ``qpos[t+1]`` in 1/fps
    (``mj_integratePos(qpos[t], qvel[t], 1/fps) == qpos[t+1]``): mj_differentiatePos handles the free
    and ball joints' quaternions (body-frame angular velocity, shortest way round). The last frame
    repeats the previous velocity. Hinge/slide-only models take a vectorised numpy path.
    """
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != model.nq:
        raise ValueError(f"finite_difference_qvel: qpos: expected shape (T, nq={model.nq}), got {qpos.shape}")
    if qpos.shape[0] < 2:
        raise ValueError(f"finite_difference_qvel: qpos: expected at least 2 frames, got {qpos.shape[0]}")
    if not fps > 0:
        raise ValueError(f"finite_difference_qvel: fps: expected > 0, got {fps}")
    T = qpos.shape[0]
    qvel = np.empty((T, model.nv))
    if model.nq == model.nv:  # no quaternion joints: qvel is the plain difference
        qvel[:-1] = np.diff(qpos, axis=0) * fps
    else:
        dt = 1.0 / fps
        for t in range(T - 1):
            mujoco.mj_differentiatePos(model, qvel[t], dt, qpos[t], qpos[t + 1])
    qvel[-1] = qvel[-2]
    return qvel

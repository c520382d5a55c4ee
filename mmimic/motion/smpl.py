"""AMASS/SMPL input: read and check an AMASS ``.npz``, and turn its poses into world joint positions.

``load_amass`` validates everything a later stage relies on (shapes, finite values, frame rate,
gender) and names the file and field when something is wrong. Nothing in a file can run code: AMASS
files are read without pickle, except a ``gender`` stored as a pickled object array (some releases),
and body-model files are pickles by nature; both go through a restricted unpickler that only builds
numpy arrays and plain data (see ``SafeUnpickler``), and anything else is refused. ``smpl_joints`` runs forward
kinematics for the 22 body joints that SMPL, SMPL-H and SMPL-X share:

- with ``model_dir``: the licensed body model through the ``smplx`` package (betas are used);
- without: the built-in mean-shape skeleton (``data/smpl_neutral_skeleton.json``; betas ignored).

The FK is written here by hand because the SMPL model files cannot be shipped: the built-in
skeleton has no mesh or joint regressor, only joint offsets, so it needs its own kinematic chain.
It follows SMPL's own rules exactly (checked against ``smplx`` in tests/test_smpl.py):

- the body frame is y-up (x body-left, z forward); ``root_orient`` rotates it into the z-up world;
- pelvis = ``trans`` + the rest pelvis location, which is NOT rotated by ``root_orient``;
- child = parent + R_parent @ rest_offset, R_child = R_parent @ R_local(axis-angle of the child).
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from mmimic.math import axis_angle_to_matrix, matrix_to_quat
# One exception class for every unusable motion file in the package (AMASS input and retargeted output).
from mmimic.motion.motion_file import MotionDataWarning, MotionFileError

__all__ = ["AmassClip", "BodyModelError", "MotionFileError", "SmplJoints", "Skeleton", "builtin_skeleton",
           "forward_kinematics", "load_amass", "smpl_joints", "BODY_JOINT_NAMES", "BODY_PARENTS", "LAYOUTS"]

SKELETON_FILE = Path(__file__).resolve().parent / "data" / "smpl_neutral_skeleton.json"
LAYOUTS = {72: "smpl", 156: "smplh", 165: "smplx"}  # pose columns -> body model
NUM_BODY = 22  # Pelvis .. R_Wrist: the joints all three layouts share
FPS_KEYS = ("mocap_framerate", "mocap_frame_rate")  # AMASS SMPL-H / SMPL-X spellings
GENDERS = ("neutral", "male", "female")
PLAUSIBLE_FPS = (10.0, 1000.0)  # mocap frame rates outside are warned about (AMASS: 60-250)


class BodyModelError(ValueError):
    """SMPL model files that are missing or unusable; the message names the directory and the expected files."""


@dataclass
class AmassClip:
    """One AMASS clip as stored: axis-angle ``poses`` (T, P) with P = 72 | 156 | 165, world z-up."""

    path: str
    poses: np.ndarray  # (T, P) float64, axis-angle; [:, :3] root_orient, [:, 3:66] body joints 1..21
    trans: np.ndarray  # (T, 3) float64, metres
    betas: np.ndarray  # (B,) float64
    gender: str  # neutral | male | female
    fps: float
    layout: str  # smpl | smplh | smplx

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def root_orient(self) -> np.ndarray:
        """(T, 3): rotates the y-up SMPL body frame into the z-up world."""
        return self.poses[:, :3]

    @property
    def body_pose(self) -> np.ndarray:
        """(T, 21, 3): local axis-angle rotations of joints 1..21 (L_Hip .. R_Wrist)."""
        return self.poses[:, 3:66].reshape(-1, 21, 3)


@dataclass(frozen=True)
class Skeleton:
    """The 24-joint SMPL tree at rest, in the SMPL body frame (y-up), metres."""

    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    rest_offsets: np.ndarray  # (24, 3); entry 0 is the pelvis's absolute rest location
    description: str
    source: str

    @property
    def rest_joints(self) -> np.ndarray:
        """(24, 3) absolute rest joint locations (offsets summed along the chain)."""
        out = np.array(self.rest_offsets, dtype=np.float64)
        for j, p in enumerate(self.parents):
            if p >= 0:
                out[j] += out[p]
        return out


@dataclass
class SmplJoints:
    """World joint trajectories of the 22 shared body joints (float64 torch tensors on the chosen device)."""

    positions: torch.Tensor  # (T, 22, 3) world, z-up, metres
    rotations: torch.Tensor  # (T, 22, 4) global joint orientations (w, x, y, z): body frame -> world
    rest_joints: torch.Tensor  # (22, 3) rest joint locations in the SMPL body frame (y-up), this body's shape
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    fps: float
    source: str  # what made the positions, e.g. "built-in mean-shape skeleton (betas ignored)"


@lru_cache(maxsize=1)
def builtin_skeleton() -> Skeleton:
    """The packaged mean-shape neutral skeleton (figures, provenance: ``data/smpl_neutral_skeleton.json``)."""
    raw = json.loads(SKELETON_FILE.read_text())
    offsets = np.asarray(raw["rest_offsets_m"], dtype=np.float64)
    offsets.setflags(write=False)
    return Skeleton(tuple(raw["joint_names"]), tuple(raw["parents"]), offsets, raw["description"],
                    raw["source"])


BODY_JOINT_NAMES: tuple[str, ...] = builtin_skeleton().joint_names[:NUM_BODY]
BODY_PARENTS: tuple[int, ...] = builtin_skeleton().parents[:NUM_BODY]


# ---------------------------------------------------------------------------------- restricted unpickling

_NUMPY_ARRAY_GLOBALS = frozenset(
    [(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")]
    + [(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")])
_SPARSE_GLOBALS = frozenset(
    (f"scipy.sparse.{mod}", f"{kind}_matrix") for kind in ("csc", "csr", "coo")
    for mod in (kind, f"_{kind}", "compressed", "_compressed"))
_OLD_STYLE_GLOBALS = frozenset([("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
                                ("__builtin__", "object"), ("builtins", "object")])


class RefusedPickle(pickle.UnpicklingError):
    """A pickle that refers to something outside the allowed set (it could run code)."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``allowed`` (exact (module, name) pairs).

    Unpickling runs whatever callables a pickle names, so a crafted file can run any code
    (``os.system``, ...) under plain ``pickle.load`` / ``np.load(allow_pickle=True)``. Here the only
    callables a pickle can reach are the ones numpy itself uses to rebuild an array (``_reconstruct``,
    ``ndarray``, ``dtype``, ``scalar``, ``_frombuffer``, and ``_codecs.encode`` for Python 2 byte
    strings), which only allocate and fill arrays; str, bytes, numbers, lists, tuples and dicts are
    pickle opcodes and need no global. Names are matched exactly, so dotted lookups
    (``numpy.ndarray.__init__``-style tricks) are refused too.
    """

    allowed: frozenset = _NUMPY_ARRAY_GLOBALS

    def find_class(self, module: str, name: str):
        if (module, name) in self.allowed or self._also_allowed(module, name):
            return super().find_class(module, name)
        raise RefusedPickle(f"it refers to {module}.{name}")

    def _also_allowed(self, module: str, name: str) -> bool:
        return False


class _ModelUnpickler(SafeUnpickler):
    """Body-model files (.pkl; object fields of .npz): numpy arrays, plus what the original SMPL/SMPL-H
    releases store -- scipy sparse matrices (J_regressor) and chumpy arrays (``chumpy.*`` subclasses of
    ``chumpy.Ch``), and ``copyreg._reconstructor`` with which Python 2 pickles such objects. Their
    constructors and ``__setstate__`` only build arrays from the data given. Importing scipy or chumpy
    still fails with ModuleNotFoundError where they are not installed (reported as such)."""

    allowed = _NUMPY_ARRAY_GLOBALS | _SPARSE_GLOBALS | _OLD_STYLE_GLOBALS

    def _also_allowed(self, module: str, name: str) -> bool:
        if (module != "chumpy" and not module.startswith("chumpy.")) or not name.isidentifier():
            return False
        import chumpy  # noqa: F401 - ModuleNotFoundError is reported by the caller

        obj = pickle.Unpickler.find_class(self, module, name)
        return isinstance(obj, type) and issubclass(obj, chumpy.Ch)


def _npz_member(zf: zipfile.ZipFile, key: str, unpickler: type[SafeUnpickler]):
    """One ``key`` of an open .npz: a plain array read without pickle, or an object array through
    ``unpickler`` (RefusedPickle if it refers to anything else)."""
    fmt = np.lib.format
    with zf.open(f"{key}.npy") as fp:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"field {key!r}: .npy format version {version} is not supported here")
        if not dtype.hasobject:
            fp.seek(0)
            return fmt.read_array(fp, allow_pickle=False)
        value = unpickler(fp, encoding="latin1").load()
    return value


def _unpickle_checked(key: str, data, unpickler: type[SafeUnpickler]):
    """``data[key]`` where it is a plain array, else the object array read with ``unpickler``."""
    try:
        return data[key]
    except ValueError:  # "Object arrays cannot be loaded when allow_pickle=False"
        return _npz_member(data.zip, key, unpickler)


# ----------------------------------------------------------------------------------------------- reading


def _fail(path, field: str, expected: str, got) -> None:
    raise MotionFileError(f"{path}: field '{field}': expected {expected}, got {got}")


def _float_array(path, data, key: str) -> np.ndarray:
    arr = np.asarray(data[key])
    if arr.dtype.kind not in "fiu":
        _fail(path, key, "a numeric array", f"dtype {arr.dtype}")
    return arr.astype(np.float64)


def _finite(path, key: str, arr: np.ndarray) -> None:
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        _fail(path, key, "finite values", f"{arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")


def _gender(path, data) -> str:
    try:
        raw = _unpickle_checked("gender", data, SafeUnpickler)
    except Exception as exc:  # noqa: BLE001 - refused (RefusedPickle) or a damaged pickle: never fatal
        why = f"{exc}; not unpickled, as it could run code" if isinstance(exc, RefusedPickle) else \
            f"{type(exc).__name__}: {exc}"
        warnings.warn(f"{path}: field 'gender': a pickled object that is not a plain string ({why}); "
                      "using neutral", MotionDataWarning, stacklevel=3)
        return "neutral"
    arr = np.asarray(raw)
    if arr.size != 1:
        _fail(path, "gender", "one string (neutral, male or female)", f"shape {arr.shape}")
    value = arr.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip().lower()
    if text not in GENDERS:
        _fail(path, "gender", "neutral, male or female", repr(text))
    return text


def load_amass(path: str | Path) -> AmassClip:
    """Read one AMASS ``.npz`` (SMPL / SMPL-H / SMPL-X layout, told apart by the pose width) and check it.

    Raises MotionFileError naming the file, the field and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise MotionFileError(f"{path}: cannot read: no such file")
    if not zipfile.is_zipfile(path):
        raise MotionFileError(f"{path}: expected an AMASS .npz (zip archive of arrays), got a file that is not "
                              "a zip")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a damaged archive can fail in many ways
        raise MotionFileError(f"{path}: cannot read as .npz: {exc}") from None
    with data:
        keys = set(data.files)
        fps_key = next((k for k in FPS_KEYS if k in keys), None)
        missing = [k for k in ("poses", "trans", "betas", "gender") if k not in keys]
        if fps_key is None:
            missing.append(" or ".join(FPS_KEYS))
        if missing:
            ours = {"qpos", "qvel", "site_pos", "embodiment"} <= keys
            raise MotionFileError(f"{path}: missing field(s) {', '.join(repr(m) for m in missing)}; "
                                  f"expected an AMASS file with poses, trans, betas, gender, {FPS_KEYS[0]}; "
                                  f"found: {', '.join(sorted(keys)) or 'nothing'}"
                                  + ("; it is a retargeted motion file (an output of mmimic retarget), not an "
                                     "AMASS input" if ours else ""))
        try:
            poses = _float_array(path, data, "poses")
            trans = _float_array(path, data, "trans")
            betas = _float_array(path, data, "betas")
            fps_arr = _float_array(path, data, fps_key)
        except (ValueError, MemoryError, EOFError, OSError, zipfile.BadZipFile) as exc:
            if isinstance(exc, MotionFileError):
                raise
            raise MotionFileError(f"{path}: cannot read a field: {type(exc).__name__}: {exc}") from None
        gender = _gender(path, data)
    widths = "|".join(str(w) for w in LAYOUTS)
    if poses.ndim != 2 or poses.shape[1] not in LAYOUTS:
        _fail(path, "poses", f"shape (T, {widths})", poses.shape)
    T = poses.shape[0]
    if T == 0:
        _fail(path, "poses", "at least one frame", "0 frames")
    if trans.shape != (T, 3):
        _fail(path, "trans", f"shape (T, 3) with T = {T} (as poses)", trans.shape)
    if betas.ndim == 2 and betas.shape[0] == 1:
        betas = betas[0]
    if betas.ndim != 1 or betas.size == 0:
        _fail(path, "betas", "shape (B,) with B >= 1 (AMASS: 16 or 10)", betas.shape)
    for key, arr in (("poses", poses), ("trans", trans), ("betas", betas)):
        _finite(path, key, arr)
    if fps_arr.size != 1:
        _fail(path, fps_key, "one number (frames per second)", f"shape {fps_arr.shape}")
    fps = float(fps_arr.reshape(-1)[0])
    if not np.isfinite(fps) or fps <= 0:
        _fail(path, fps_key, "a finite frame rate > 0", fps)
    lo, hi = PLAUSIBLE_FPS
    if not lo <= fps <= hi:
        warnings.warn(f"{path}: field '{fps_key}': {fps:g} fps is implausible for motion capture (expected "
                      f"{lo:g}-{hi:g}; AMASS uses 60-250); the clip is {T} frames = {T / fps:.4g} s at that "
                      "rate: check the file", MotionDataWarning, stacklevel=2)
    return AmassClip(str(path), poses, trans, betas, gender, fps, LAYOUTS[poses.shape[1]])


# ------------------------------------------------------------------------------------------ kinematics


def forward_kinematics(root_orient: torch.Tensor, body_pose: torch.Tensor, trans: torch.Tensor,
                       rest_joints: torch.Tensor, parents=BODY_PARENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """SMPL's kinematic chain over a batch of frames.

    root_orient (T, 3), body_pose (T, J-1, 3) axis-angle; trans (T, 3); rest_joints (J, 3) rest
    locations in the body frame. Returns world positions (T, J, 3) and global rotation matrices
    (T, J, 3, 3). Parents must come before their children (true for SMPL's ordering).
    """
    local = axis_angle_to_matrix(torch.cat([root_orient[:, None], body_pose], dim=1))  # (T, J, 3, 3)
    rots = [local[:, 0]]
    pos = [trans + rest_joints[0]]  # the rest pelvis offset is added unrotated, as in SMPL
    for j in range(1, len(parents)):
        p = parents[j]
        rots.append(rots[p] @ local[:, j])
        pos.append(pos[p] + rots[p] @ (rest_joints[j] - rest_joints[p]))
    return torch.stack(pos, dim=1), torch.stack(rots, dim=1)


def smpl_joints(clip: AmassClip, model_dir: str | Path | None = None,
                device: str | torch.device = "cpu") -> SmplJoints:
    """World positions and orientations of the 22 body joints of ``clip``.

    ``model_dir``: a folder with licensed SMPL-family model files (or one model file) for the clip's
    layout (see ``find_model_file``); None uses the built-in mean-shape skeleton and ignores betas.
    """
    dev = torch.device(device)
    f64 = dict(dtype=torch.float64, device=dev)
    root = torch.as_tensor(clip.root_orient, **f64)
    body = torch.as_tensor(clip.body_pose, **f64)
    trans = torch.as_tensor(clip.trans, **f64)
    if model_dir is None:
        rest = torch.as_tensor(builtin_skeleton().rest_joints[:NUM_BODY], **f64)
        source = "built-in mean-shape skeleton (betas ignored)"
        positions, rots = forward_kinematics(root, body, trans, rest)
    else:
        positions, rest, source = _smplx_joints(clip, Path(model_dir), dev)
        # rotations depend on the poses only, not on the shape: same chain as the built-in path
        _, rots = forward_kinematics(root, body, trans, rest)
    return SmplJoints(positions, matrix_to_quat(rots), rest, BODY_JOINT_NAMES, BODY_PARENTS, clip.fps, source)


# ------------------------------------------------------------------------------- smplx (licensed models)

_PREFIX = {"smpl": "SMPL", "smplh": "SMPLH", "smplx": "SMPLX"}
_EXTS = {"smpl": ("pkl", "npz"), "smplh": ("pkl", "npz"), "smplx": ("npz", "pkl")}
_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")
_HAND_KEYS = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")
CHUNK = 512  # frames per smplx forward pass (a real model's vertices: 512 x 6890 x 3 floats)


def model_file_candidates(model_dir: Path, layout: str, gender: str) -> list[Path]:
    """Where a model for ``layout``/``gender`` may live: smplx's own naming (``SMPLH_MALE.pkl``, also in
    a ``smplh/`` subfolder) and AMASS's download layout (``smplh/male/model.npz``)."""
    prefix, out = _PREFIX[layout], []
    for folder in (model_dir, model_dir / layout):
        out += [folder / f"{prefix}_{gender.upper()}.{ext}" for ext in _EXTS[layout]]
    out += [model_dir / layout / gender / "model.npz", model_dir / gender / "model.npz"]
    return out


def find_model_file(model_dir: Path, layout: str, gender: str) -> tuple[Path, str]:
    """The model file to use and the gender it holds (the clip's, else neutral)."""
    if model_dir.is_file():
        return model_dir, gender
    tried = []
    for g in dict.fromkeys((gender, "neutral")):
        for cand in model_file_candidates(model_dir, layout, g):
            if cand.is_file():
                return cand, g
            tried.append(str(cand.relative_to(model_dir)))
    raise BodyModelError(f"{model_dir}: no {_PREFIX[layout]} body model for a {gender} {layout} clip; "
                         f"looked for {', '.join(tried)} (download them from the SMPL/MANO/SMPL-X sites; "
                         "they cannot be shipped)")


def _load_model_data(path: Path, layout: str) -> dict:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: _unpickle_checked(k, z, _ModelUnpickler) for k in z.files}
        else:
            with open(path, "rb") as fh:
                data = dict(_ModelUnpickler(fh, encoding="latin1").load())
    except RefusedPickle as exc:
        raise BodyModelError(f"{path}: refused to load the body model: its pickled data is not only arrays "
                             f"({exc}), and unpickling it could run code; use the model files from the "
                             "SMPL/MANO/SMPL-X sites") from None
    except ModuleNotFoundError as exc:
        raise BodyModelError(f"{path}: the file needs the Python module {exc.name!r} to unpickle (original "
                             "SMPL files store chumpy/scipy objects): install it or convert the file to plain "
                             "numpy arrays") from None
    except Exception as exc:  # noqa: BLE001
        raise BodyModelError(f"{path}: cannot read the body model ({type(exc).__name__}: {exc})") from None
    needed = _REQUIRED + (_HAND_KEYS if layout in ("smplh", "smplx") else ())
    missing = [k for k in needed if k not in data]
    if missing:
        raise BodyModelError(f"{path}: not a {_PREFIX[layout]} body model: missing {', '.join(missing)}")
    parents = np.asarray(data["kintree_table"])[0, 1:NUM_BODY].astype(np.int64)
    if data["J_regressor"].shape[0] < NUM_BODY or tuple(parents) != BODY_PARENTS[1:]:
        raise BodyModelError(f"{path}: field 'kintree_table': expected SMPL's tree for joints 0..21 "
                             f"(parents {BODY_PARENTS[1:]}), got {tuple(parents)}")
    return data


@lru_cache(maxsize=2)  # a batch of clips of one layout and gender reuses the model (~0.1 GB for a real one)
def _build_model(path: Path, mtime_ns: int, layout: str, gender: str, num_betas: int, batch: int, device: str):
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for 10-beta files; source says it
        return _make_model(path, layout, gender, num_betas, batch).to(device)


def _make_model(path: Path, layout: str, gender: str, num_betas: int, batch: int):
    import smplx
    from smplx.utils import Struct

    common = dict(gender=gender, num_betas=num_betas, batch_size=batch, dtype=torch.float64)
    data = _load_model_data(path, layout)  # checked, and read without running code
    if layout == "smplx":
        # SMPLX reads the file itself (with allow_pickle=True / pickle.load) and fixes its own extra vertex
        # keypoints. The read above went through the restricted unpickler, so the file refers to nothing
        # but array builders, and smplx's unrestricted read of the same bytes builds the same arrays.
        return smplx.SMPLX(str(path), ext=path.suffix[1:], use_pca=False, flat_hand_mean=True, **common)
    data = Struct(**data)
    # Only the 22 regressed joints are used: the selector's extra vertex keypoints (nose, toes,
    # fingertips) are pointed at vertex 0, so any mesh size works (the tests use a tiny one).
    sel = dict(vertex_ids={k: 0 for k in ("nose", "reye", "leye", "rear", "lear")},
               use_hands=False, use_feet_keypoints=False)
    if layout == "smpl":
        return smplx.SMPL(str(path), data_struct=data, **sel, **common)
    return smplx.SMPLH(str(path), data_struct=data, use_pca=False, flat_hand_mean=True, **sel, **common)


def _smplx_joints(clip: AmassClip, model_dir: Path,
                  dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    from smplx.lbs import blend_shapes

    path, gender = find_model_file(model_dir, clip.layout, clip.gender)
    T = clip.num_frames
    batch = min(T, CHUNK)
    try:
        model = _build_model(path, path.stat().st_mtime_ns, clip.layout, gender, len(clip.betas), batch,
                             str(dev))
    except BodyModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - smplx fails with assorted errors on a broken file
        raise BodyModelError(f"{path}: smplx cannot build a {clip.layout} model "
                             f"({type(exc).__name__}: {exc})") from None
    nb = model.num_betas
    betas = torch.zeros(1, nb, dtype=torch.float64, device=dev)
    used = min(nb, len(clip.betas))
    betas[0, :used] = torch.as_tensor(clip.betas[:used], dtype=torch.float64, device=dev)
    poses = torch.as_tensor(clip.poses, dtype=torch.float64, device=dev)
    trans = torch.as_tensor(clip.trans, dtype=torch.float64, device=dev)
    out = []
    with torch.no_grad():
        for start in range(0, T, batch):
            idx = torch.arange(start, start + batch, device=dev).clamp_max(T - 1)  # pad the last chunk
            p = poses[idx]
            kw = dict(betas=betas.expand(batch, -1), global_orient=p[:, :3], transl=trans[idx])
            if clip.layout == "smpl":
                kw["body_pose"] = p[:, 3:72]
            elif clip.layout == "smplh":
                kw.update(body_pose=p[:, 3:66], left_hand_pose=p[:, 66:111], right_hand_pose=p[:, 111:156])
            else:
                kw.update(body_pose=p[:, 3:66], jaw_pose=p[:, 66:69], leye_pose=p[:, 69:72],
                          reye_pose=p[:, 72:75], left_hand_pose=p[:, 75:120], right_hand_pose=p[:, 120:165],
                          expression=p.new_zeros(batch, model.num_expression_coeffs))
            joints = model(return_verts=True, **kw).joints[:, :NUM_BODY]
            out.append(joints[: min(batch, T - start)])
        v_shaped = model.v_template + blend_shapes(betas, model.shapedirs)[0]
        rest = (model.J_regressor @ v_shaped)[:NUM_BODY]
    note = "" if gender == clip.gender else f", no {clip.gender} model so {gender}"
    note += "" if used == len(clip.betas) else f", first {used} of {len(clip.betas)} betas"
    return torch.cat(out), rest, f"smplx {_PREFIX[clip.layout]} model {path}{note}"

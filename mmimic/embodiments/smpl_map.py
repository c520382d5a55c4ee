"""Per-embodiment tables pairing SMPL joints with "mimic" sites of a muscle model.

The tables are data (``smpl_maps/<embodiment>.json``, their description says what each field
means and where the pairs came from); this module reads and checks them, and adds the mimic sites
to a model with MjSpec. Retargeting fits those sites to SMPL joints; imitation tracks them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

MAPS_DIR = Path(__file__).resolve().parent / "smpl_maps"
MODES = ("root", "rigid", "limb")

# SMPL's native body frame (x left, y up, z forward) -> a model's body frame, as v_model = M @ v_smpl.
# The default suits models built facing -y with x to their left and z up (bimanual, myofullbody); it
# equals the rotation AMASS's usual root_orient applies (+90 deg about x). A model built another way
# (arm26 faces +x, left +y) gives its own in the map's "smpl_to_model" field.
DEFAULT_SMPL_TO_MODEL = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))


@dataclass(frozen=True)
class Keypoint:
    site: str  # mimic site name, added at ``body``'s origin + ``offset``
    body: str
    smpl: str  # SMPL joint name (mmimic.motion.smpl joint_names)
    mode: str  # root | rigid | limb: how its target is built (see the JSON description)
    parent: str | None  # parent keypoint's site
    frame: str  # SMPL joint whose global rotation carries a rigid offset
    weight: float
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SmplMap:
    embodiment: str
    anchor: str
    keypoints: tuple[Keypoint, ...]
    smpl_to_model: tuple[tuple[float, float, float], ...] = DEFAULT_SMPL_TO_MODEL  # 3x3, rows

    @property
    def site_names(self) -> list[str]:
        return [k.site for k in self.keypoints]

    @property
    def smpl_to_model_matrix(self) -> np.ndarray:
        """(3, 3) float64 rotation taking SMPL body-frame vectors into the model's frame."""
        return np.array(self.smpl_to_model, dtype=np.float64)


def has_smpl_map(name: str) -> bool:
    return (MAPS_DIR / f"{name}.json").is_file()


def load_smpl_map(name: str) -> SmplMap:
    """Read and check ``smpl_maps/<name>.json``: parents come first, one root, known modes."""
    path = MAPS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in MAPS_DIR.glob("*.json"))
        raise FileNotFoundError(f"{path}: no SMPL map for embodiment {name!r}; maps exist for: {', '.join(known)}")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object with 'keypoints' and 'anchor'")
    kps = []
    seen = set()
    for i, entry in enumerate(raw.get("keypoints", [])):
        try:
            kp = Keypoint(**{**entry, "offset": tuple(entry.get("offset", (0.0, 0.0, 0.0)))})
        except TypeError as exc:
            raise ValueError(f"{path}: keypoints[{i}]: {exc}") from None
        try:
            weight, offset = float(kp.weight), tuple(float(x) for x in kp.offset)
        except (TypeError, ValueError):
            weight, offset = float("nan"), ()
        if not (np.isfinite(weight) and weight > 0) or len(offset) != 3 or not np.isfinite(offset).all():
            raise ValueError(f"{path}: keypoints[{i}] ({kp.site}): weight must be a number > 0 and offset three "
                             f"numbers (m), got weight {kp.weight!r}, offset {kp.offset!r}")
        if kp.mode not in MODES:
            raise ValueError(f"{path}: keypoints[{i}] ({kp.site}): mode must be one of {MODES}, got {kp.mode!r}")
        if (kp.mode == "root") != (kp.parent is None):
            raise ValueError(f"{path}: keypoints[{i}] ({kp.site}): only the root keypoint has no parent")
        if kp.parent is not None and kp.parent not in seen:
            raise ValueError(f"{path}: keypoints[{i}] ({kp.site}): parent {kp.parent!r} must be listed before it")
        seen.add(kp.site)
        kps.append(kp)
    if sum(k.mode == "root" for k in kps) != 1 or raw.get("anchor") not in seen:
        raise ValueError(f"{path}: expected exactly one 'root' keypoint and 'anchor' naming a listed site")
    rot = _rotation(path, raw.get("smpl_to_model", DEFAULT_SMPL_TO_MODEL))
    return SmplMap(embodiment=name, anchor=raw["anchor"], keypoints=tuple(kps), smpl_to_model=rot)


def _rotation(path: Path, value) -> tuple[tuple[float, float, float], ...]:
    """Check an optional 'smpl_to_model' entry: a proper 3x3 rotation (orthonormal, det +1)."""
    try:
        m = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape != (3, 3) or not np.allclose(m @ m.T, np.eye(3), atol=1e-6) or np.linalg.det(m) < 0:
        raise ValueError(f"{path}: 'smpl_to_model' must be a 3x3 rotation matrix (rows; orthonormal, "
                         f"determinant +1), got {value!r}")
    return tuple(tuple(float(x) for x in row) for row in m)


def add_mimic_sites(spec: mujoco.MjSpec, smpl_map: SmplMap) -> None:
    """Add one small site per keypoint to the spec (sites have no mass: dynamics unchanged)."""
    for kp in smpl_map.keypoints:
        body = spec.body(kp.body)
        if body is None:
            raise ValueError(f"SMPL map of {smpl_map.embodiment}: body {kp.body!r} (site {kp.site}) is not in the model")
        body.add_site(name=kp.site, pos=list(kp.offset), size=[0.01, 0.01, 0.01], group=4)

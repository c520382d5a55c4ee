"""Muscle models by name: load the MJCF, edit it with ``mujoco.MjSpec``, compile.

The large models come from the ``musclemimic-models`` package and are never copied: every change
(finger removal, timestep, solver settings) is an MjSpec edit at load time, so the package's XML
stays the single source. The project's own small model lives in ``models_xml/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mujoco
import numpy as np

from mmimic.embodiments.config import EmbodimentConfig
from mmimic.embodiments.smpl_map import SmplMap, add_mimic_sites, has_smpl_map, load_smpl_map

MODELS_XML_DIR = Path(__file__).resolve().parents[2] / "models_xml"

# Finger joints of the MyoArm hands (both models share them): thumb cmc/mp/ip, digits 2-5 mcp/pm/md.
_MYO_FINGER_JOINT = re.compile(r"^(cmc_|mp_|ip_|mcp\d|pm\d|md\d)")


@dataclass(frozen=True)
class EmbodimentInfo:
    """What the registry knows about a model before loading it."""

    name: str
    xml_path: Callable[[], Path]
    description: str
    default_substeps: int
    finger_joint: re.Pattern | None = None  # None: the model has no fingers to remove


@dataclass
class Embodiment:
    """A compiled muscle model plus how to step it."""

    name: str
    spec: mujoco.MjSpec
    model: mujoco.MjModel
    substeps: int
    nconmax: int | None = None
    njmax: int | None = None
    removed_joints: list[str] = field(default_factory=list)
    removed_actuators: list[str] = field(default_factory=list)
    smpl_map: SmplMap | None = None  # SMPL joint <-> mimic site pairs, when the model has a table

    @property
    def control_dt(self) -> float:
        """Seconds of simulated time per control step."""
        return float(self.model.opt.timestep) * self.substeps

    @property
    def free_root(self) -> bool:
        """True when the first joint is a free joint (a floating base, e.g. the full body)."""
        m = self.model
        return m.njnt > 0 and m.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE

    @property
    def muscle_names(self) -> list[str]:
        return [self.model.actuator(i).name for i in range(self.model.nu)]

    @property
    def joint_names(self) -> list[str]:
        return [self.model.joint(i).name for i in range(self.model.njnt)]


def _musclemimic_xml(name: str) -> Callable[[], Path]:
    def path() -> Path:
        import musclemimic_models

        return Path(musclemimic_models.get_xml_path(name))

    return path


def _project_xml(filename: str) -> Callable[[], Path]:
    def path() -> Path:
        p = MODELS_XML_DIR / filename
        if not p.is_file():
            raise FileNotFoundError(f"{p}: the project's model file is missing (is this a full checkout?)")
        return p

    return path


EMBODIMENTS: dict[str, EmbodimentInfo] = {}


def register(info: EmbodimentInfo) -> None:
    """Add a model to the registry (name must be new)."""
    if info.name in EMBODIMENTS:
        raise ValueError(f"embodiment {info.name!r} is already registered")
    EMBODIMENTS[info.name] = info


register(EmbodimentInfo(
    name="arm26",
    xml_path=_project_xml("arm26.xml"),
    description="project's 2-link planar arm, 6 muscles on spatial tendons (fast tests, CPU demo)",
    default_substeps=5,
))
register(EmbodimentInfo(
    name="bimanual",
    xml_path=_musclemimic_xml("bimanual"),
    description="MyoArm bimanual upper body, fixed root, 126 muscles (64 without fingers)",
    default_substeps=5,
    finger_joint=_MYO_FINGER_JOINT,
))
register(EmbodimentInfo(
    name="myofullbody",
    xml_path=_musclemimic_xml("myofullbody"),
    description="MyoFullBody, free root, 416 muscles (354 without fingers)",
    default_substeps=10,
    finger_joint=_MYO_FINGER_JOINT,
))


def known_embodiments() -> list[str]:
    return sorted(EMBODIMENTS)


def embodiment_info(name: str) -> EmbodimentInfo:
    if name not in EMBODIMENTS:
        raise KeyError(f"unknown embodiment {name!r}; known: {', '.join(known_embodiments())}")
    return EMBODIMENTS[name]


def load_embodiment(cfg: EmbodimentConfig | str | None = None, **overrides) -> Embodiment:
    """Build an embodiment from a config (or a name plus keyword options)."""
    if cfg is None or isinstance(cfg, str):
        cfg = EmbodimentConfig(name=cfg or EmbodimentConfig.name)
    if overrides:
        cfg = EmbodimentConfig(**{**cfg.__dict__, **overrides})
    info = embodiment_info(cfg.name)
    _validate(cfg)
    spec = mujoco.MjSpec.from_file(str(info.xml_path()))
    removed_joints: list[str] = []
    removed_acts: list[str] = []
    if cfg.remove_fingers:
        if info.finger_joint is None:
            raise ValueError(f"embodiment {cfg.name!r} has no fingers to remove (remove_fingers=True)")
        removed_joints, removed_acts = _remove_fingers(spec, info.finger_joint)
    smpl_map = load_smpl_map(cfg.name) if cfg.mimic_sites and has_smpl_map(cfg.name) else None
    if smpl_map is not None:
        add_mimic_sites(spec, smpl_map)
    if cfg.timestep is not None:
        spec.option.timestep = cfg.timestep
    if cfg.solver_iterations is not None:
        spec.option.iterations = cfg.solver_iterations
    if cfg.ls_iterations is not None:
        spec.option.ls_iterations = cfg.ls_iterations
    model = spec.compile()
    return Embodiment(
        name=cfg.name,
        spec=spec,
        model=model,
        substeps=cfg.substeps or info.default_substeps,
        nconmax=cfg.nconmax,
        njmax=cfg.njmax,
        removed_joints=removed_joints,
        removed_actuators=removed_acts,
        smpl_map=smpl_map,
    )


def _validate(cfg: EmbodimentConfig) -> None:
    for key in ("timestep",):
        v = getattr(cfg, key)
        if v is not None and not (v > 0):
            raise ValueError(f"embodiment option {key} must be > 0, got {v!r}")
    for key in ("substeps", "solver_iterations", "ls_iterations"):
        v = getattr(cfg, key)
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"embodiment option {key} must be an integer >= 1, got {v!r}")
    # njmax=0 makes mujoco_warp 4.0.0 skip the velocity update (the sim silently freezes): refuse it.
    for key, least in (("nconmax", 0), ("njmax", 1)):
        v = getattr(cfg, key)
        if v is not None and (not isinstance(v, (int, np.integer)) or v < least):
            raise ValueError(f"embodiment option {key} must be an integer >= {least}, got {v!r}")


def _remove_fingers(spec: mujoco.MjSpec, finger_joint: re.Pattern) -> tuple[list[str], list[str]]:
    """Weld the finger joints and drop every muscle whose tendon path touches a finger body.

    The finger bodies stay (they carry mass and the hand's shape); the joints between them go, so
    the hand becomes rigid. Muscles crossing the fingers (long flexors/extensors, intrinsics) have
    path points on finger bodies and would pull on nothing: they go with their tendons and any
    sensor or equality naming them.
    """
    model = spec.compile()
    fjoints = [i for i in range(model.njnt) if finger_joint.match(model.joint(i).name)]
    fbodies = set(int(b) for b in model.jnt_bodyid[fjoints])
    for b in range(model.nbody):  # bodies are ordered parents-first, so one pass finds all descendants
        if int(model.body_parentid[b]) in fbodies:
            fbodies.add(b)
    ften = set()
    for t in range(model.ntendon):
        for w in range(model.tendon_adr[t], model.tendon_adr[t] + model.tendon_num[t]):
            wtype, obj = model.wrap_type[w], model.wrap_objid[w]
            if wtype == mujoco.mjtWrap.mjWRAP_SITE and model.site_bodyid[obj] in fbodies:
                ften.add(t)
            elif wtype in (mujoco.mjtWrap.mjWRAP_SPHERE, mujoco.mjtWrap.mjWRAP_CYLINDER) and (
                model.geom_bodyid[obj] in fbodies
            ):
                ften.add(t)
            elif wtype == mujoco.mjtWrap.mjWRAP_JOINT and obj in fjoints:
                ften.add(t)
    acts = [a for a in range(model.nu)
            if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_TENDON and model.actuator_trnid[a, 0] in ften]
    joint_names = [model.joint(j).name for j in fjoints]
    act_names = [model.actuator(a).name for a in acts]
    tendon_names = {model.tendon(t).name for t in ften}
    dead = set(joint_names) | set(act_names) | tendon_names
    for s in list(spec.sensors):
        if s.objname in dead or s.refname in dead:
            spec.delete(s)
    for e in list(spec.equalities):
        if e.name1 in dead or e.name2 in dead:
            spec.delete(e)
    keep_q = np.ones(model.nq, bool)
    for j in fjoints:
        keep_q[model.jnt_qposadr[j]] = False  # finger joints are hinges: one qpos each
    keep_u = np.ones(model.nu, bool)
    keep_u[acts] = False
    for key in spec.keys:  # keyframes must shrink with the state
        if len(key.qpos):
            key.qpos = np.asarray(key.qpos)[keep_q]
        if len(key.qvel):
            key.qvel = np.asarray(key.qvel)[_dof_mask(model, fjoints)]
        if len(key.act):
            key.act = np.asarray(key.act)[keep_u]
        if len(key.ctrl):
            key.ctrl = np.asarray(key.ctrl)[keep_u]
    for name in act_names:
        spec.delete(spec.actuator(name))
    for name in tendon_names:
        spec.delete(spec.tendon(name))
    for name in joint_names:
        spec.delete(spec.joint(name))
    return joint_names, act_names


def _dof_mask(model: mujoco.MjModel, joints: list[int]) -> np.ndarray:
    keep = np.ones(model.nv, bool)
    for j in joints:
        keep[model.jnt_dofadr[j]] = False
    return keep

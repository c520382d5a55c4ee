"""Gait validation: sagittal joint kinematics of a walk over the normalised gait cycle, against human data.

Input: retargeted motions (is the reference itself human-like?) or policy rollouts (``mmimic eval`` writes
them for walking clips; a rollout is a motion file with the muscle activations ``act`` added,
``mmimic.eval.rollout``). The steps, as in a gait lab:

1. Heel strikes per foot. Rollouts: onsets of foot-floor contact (MuJoCo's collision detection on the
   recorded states, floor against the calcaneus, talus and toes). Motions, and rollouts where contact
   finds fewer than two strikes on a side: the calcaneus coming down, both low (``HEEL_DOWN_FRACTION``
   of its height range) and slow (``HEEL_SLOW_FRACTION`` of its peak horizontal speed), timed between
   frames by linear interpolation; a retargeted motion touches the floor only at isolated frames, so
   contact cannot time it.
2. Stride cycles from one heel strike to the same foot's next; cycles whose duration lies beyond the mean
   +- 2 SD are dropped (with 3 or more cycles); each is resampled to 101 points (0-100 %).
3. Hip flexion, knee flexion and ankle dorsiflexion on both sides from the model's joints
   (``hip_flexion_*``, ``knee_angle_*``, ``ankle_angle_*``: the OpenSim / Rajagopal conventions, + =
   flexion / dorsiflexion, as in the human data, so no sign flips), in degrees.
4. Against the normative mean curve (``norms/gait_kinematics.csv``: Fukuchi et al. 2018, 42 adults, both
   sides pooled): Pearson r and RMSE (deg) per joint of the model's mean curve (both sides' cycles
   pooled, as the data pools them), per side too; ``mean_r`` over the three joints.

Hand-written because no maintained package does gait-event detection and cycle normalisation on MuJoCo
states; the steps are the textbook ones (e.g. Winter, Biomechanics and Motor Control of Human Movement).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import mujoco
import numpy as np

from mmimic.motion.motion_file import MotionFileError, atomic_write, load_motion

JOINTS = {"hip_flexion": "hip_flexion_{}", "knee_flexion": "knee_angle_{}", "ankle_dorsiflexion": "ankle_angle_{}"}
SIDES = {"right": "r", "left": "l"}
FOOT_BODIES = ("calcn_{}", "talus_{}", "toes_{}")
HEEL_BODY = "calcn_{}"
POINTS = np.linspace(0.0, 100.0, 101)
HEEL_DOWN_FRACTION = 0.15  # calcaneus method: heel "down" = below 15 % of its height range above its lowest level
HEEL_SLOW_FRACTION = 0.2  # ... and slower than 20 % of its peak horizontal speed
MIN_HEEL_LIFT_M = 0.02  # a heel that rises less than this is not stepping
MAX_HEEL_FLOOR_M = 0.15  # ... and one whose lowest level is higher above the floor never touches it
MIN_PHASE_S = 0.1  # shorter stance or swing phases are glitches (merged away) before onsets are taken
HEEL_STRIKE_METHODS = ("auto", "contact", "calcaneus")
REFERENCE = ("Fukuchi CA, Fukuchi RK, Duarte M (2018) PeerJ 6:e4640, doi:10.7717/peerj.4640 (CC BY 4.0): "
             "42 adults, overground walking at comfortable speed, right and left sides pooled (84 curves)")


class GaitError(ValueError):
    """A walk that cannot be analysed (no legs, no foot contact, too few strides); the message says why."""


# ------------------------------------------------------------------------------------------ inputs

@dataclass
class GaitTrial:
    """One walk: joint positions per frame, and for rollouts the muscle activations."""

    name: str
    path: str
    fps: float
    qpos: np.ndarray  # (T, nq)
    embodiment: str
    joint_names: list[str]
    act: np.ndarray | None = None  # (T, nu): rollouts only
    muscle_names: list[str] = field(default_factory=list)

    @property
    def is_rollout(self) -> bool:
        return self.act is not None


def load_trial(path: str | Path) -> GaitTrial:
    """A motion file or a rollout (a motion file with ``act`` and ``muscle_names``)."""
    clip = load_motion(path)
    act, muscles = None, []
    with np.load(path, allow_pickle=False) as z:
        if "act" in z.files:
            act, muscles = np.asarray(z["act"], dtype=np.float64), z["muscle_names"].tolist()
            if act.shape[0] != clip.num_frames or act.shape[1] != len(muscles):
                raise MotionFileError(f"{path}: field 'act': expected ({clip.num_frames}, {len(muscles)}) (frames, "
                                      f"muscle_names), got {act.shape}")
    return GaitTrial(clip.name, str(path), clip.fps, np.asarray(clip.qpos, dtype=np.float64), clip.embodiment,
                     list(clip.joint_names), act, muscles)


def gait_inputs(paths) -> list[Path]:
    """Files and folders (every ``*.npz`` inside, sorted) -> files; an error names what is missing."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.npz"))
            if not found:
                raise GaitError(f"{p}: no .npz motion or rollout files in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise GaitError(f"{p}: no such file or folder")
    if not files:
        raise GaitError("no motion or rollout files given")
    return files


@lru_cache(maxsize=4)
def _model(embodiment: str, joints: tuple[str, ...]) -> mujoco.MjModel:
    from mmimic.embodiments import load_embodiment

    for options in ({}, {"remove_fingers": True}):
        emb = load_embodiment(embodiment, **options)
        if tuple(emb.joint_names) == joints:
            return emb.model
    raise GaitError(f"no variant of model {embodiment!r} has this file's {len(joints)} joints")


def model_for(trial: GaitTrial) -> mujoco.MjModel:
    """The trial's MjModel (with or without fingers, whichever has its joints); an error if it has no legs."""
    m = _model(trial.embodiment, tuple(trial.joint_names))
    missing = [pattern.format(s) for pattern in JOINTS.values() for s in SIDES.values()
               if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, pattern.format(s)) < 0]
    if missing:
        raise GaitError(f"{trial.path}: model {trial.embodiment!r} has no leg joints for gait analysis "
                        f"(missing {', '.join(missing)}); gait needs a model with legs, e.g. myofullbody")
    return m


# ------------------------------------------------------------------------------------ kinematics

@dataclass
class Kinematics:
    """Per frame: the sagittal angles (deg), calcaneus position (m) and foot-floor contact, per side."""

    angles: dict[str, np.ndarray]  # side -> (T, 3) in JOINTS order
    heel: dict[str, np.ndarray]  # side -> (T, 3) calcaneus position
    contact: dict[str, np.ndarray]  # side -> (T,) bool


def kinematics(trial: GaitTrial, with_contact: bool) -> Kinematics:
    """Forward kinematics (and collision detection when ``with_contact``) of every frame."""
    m = model_for(trial)
    d = mujoco.MjData(m)
    name = lambda kind, n: mujoco.mj_name2id(m, kind, n)  # noqa: E731
    qadr = {side: [m.jnt_qposadr[name(mujoco.mjtObj.mjOBJ_JOINT, p.format(s))] for p in JOINTS.values()]
            for side, s in SIDES.items()}
    heel = {side: name(mujoco.mjtObj.mjOBJ_BODY, HEEL_BODY.format(s)) for side, s in SIDES.items()}
    feet = {side: {name(mujoco.mjtObj.mjOBJ_BODY, b.format(s)) for b in FOOT_BODIES} - {-1}
            for side, s in SIDES.items()}
    floor = {g for g in range(m.ngeom) if m.geom_bodyid[g] == 0 and m.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE}
    T = trial.qpos.shape[0]
    heel_pos = {side: np.zeros((T, 3)) for side in SIDES}
    contact = {side: np.zeros(T, dtype=bool) for side in SIDES}
    for t in range(T):
        d.qpos[:] = trial.qpos[t]
        if with_contact:
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            mujoco.mj_collision(m, d)
            for c in d.contact[:d.ncon]:
                g1, g2 = int(c.geom[0]), int(c.geom[1])
                other = g2 if g1 in floor else g1 if g2 in floor else -1
                for side in SIDES:
                    if other >= 0 and m.geom_bodyid[other] in feet[side] and c.dist <= 0:
                        contact[side][t] = True
        else:
            mujoco.mj_kinematics(m, d)
        for side in SIDES:
            heel_pos[side][t] = d.xpos[heel[side]]
    angles = {side: np.degrees(trial.qpos[:, qadr[side]]) for side in SIDES}
    return Kinematics(angles, heel_pos, contact)


# ------------------------------------------------------------------------------------ heel strikes

def clean_phases(down: np.ndarray, min_frames: int) -> np.ndarray:
    """Merge away "up" gaps, then "down" runs, shorter than ``min_frames`` (contact flicker, noise)."""
    out = down.astype(bool).copy()
    for value in (False, True):
        runs = np.flatnonzero(np.diff(np.r_[-1, out.astype(int), -1]) != 0)
        for a, b in zip(runs[:-1], runs[1:]):
            if out[a] == value and b - a < min_frames and a > 0 and b < len(out):
                out[a:b] = not value
    return out


def onsets(down: np.ndarray) -> np.ndarray:
    """Frames where ``down`` turns on (not frame 0: a walk that starts in stance has no strike there)."""
    return np.flatnonzero(~down[:-1] & down[1:]) + 1


def heel_strikes_contact(contact: np.ndarray, fps: float) -> np.ndarray:
    """Heel-strike times (s): onsets of foot-floor contact."""
    down = clean_phases(contact, max(1, int(round(MIN_PHASE_S * fps))))
    return onsets(down) / fps


def heel_strikes_calcaneus(heel: np.ndarray, fps: float, where: str = "") -> np.ndarray:
    """Heel-strike times (s) from the calcaneus path (T, 3): onsets of "down", the heel both low (below
    ``HEEL_DOWN_FRACTION`` of its height range above its lowest level) and slow (horizontal speed below
    ``HEEL_SLOW_FRACTION`` of its peak), interpolated between frames on whichever became true last."""
    z = heel[:, 2]
    speed = np.linalg.norm(np.gradient(heel[:, :2], axis=0), axis=1) * fps
    low, high = np.percentile(z, 2), np.percentile(z, 98)
    if low > MAX_HEEL_FLOOR_M:
        raise GaitError(f"{where}no foot contact: the heel's lowest level is {low:.3f} m above the floor (a walk's "
                        f"heels come within {MAX_HEEL_FLOOR_M} m of it)")
    if high - low < MIN_HEEL_LIFT_M:
        raise GaitError(f"{where}not a walk: the heel rises only {high - low:.3f} m (a step lifts it at least "
                        f"{MIN_HEEL_LIFT_M} m)")
    z_level = low + HEEL_DOWN_FRACTION * (high - low)
    v_level = HEEL_SLOW_FRACTION * np.percentile(speed, 98)
    is_low, is_slow = z < z_level, speed < v_level
    frames = onsets(clean_phases(is_low & is_slow, max(1, int(round(MIN_PHASE_S * fps)))))
    frames = frames[frames > 0]

    def crossing(x, level, f):  # fraction of the frame interval where x falls through level
        x0, x1 = x[f - 1], x[f]
        return np.clip((x0 - level) / np.where(x0 - x1 > 1e-12, x0 - x1, 1.0), 0.0, 1.0)

    frac = np.where(~is_slow[frames - 1], crossing(speed, v_level, frames), crossing(z, z_level, frames))
    return (frames - 1 + frac) / fps


def heel_strikes(trial: GaitTrial, kin: Kinematics, method: str = "auto") -> tuple[dict[str, np.ndarray], str]:
    """{side: times (s)} and the method used (``auto``: contact for rollouts, with the calcaneus method where
    contact finds fewer than two strikes; calcaneus for motions)."""
    if method not in HEEL_STRIKE_METHODS:
        raise GaitError(f"heel-strike method must be one of {HEEL_STRIKE_METHODS}, got {method!r}")
    where = f"{trial.path}: "
    if method == "contact" or (method == "auto" and trial.is_rollout):
        found = {side: heel_strikes_contact(kin.contact[side], trial.fps) for side in SIDES}
        if all(len(v) >= 2 for v in found.values()):
            return found, "contact"
        if method == "contact":
            counts = ", ".join(f"{side} {len(v)}" for side, v in found.items())
            raise GaitError(f"{where}no foot contact: foot-floor contact gives too few heel strikes ({counts}; at "
                            "least 2 per side needed)")
    return {side: heel_strikes_calcaneus(kin.heel[side], trial.fps, where) for side in SIDES}, "calcaneus"


# ------------------------------------------------------------------------------------------ cycles

def cut_cycles(signal: np.ndarray, strikes: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``signal`` (T, K) over each stride between consecutive ``strikes`` (s) to 101 points:
    (cycles, 101, K) and the strides' durations (s)."""
    t = np.arange(signal.shape[0]) / fps
    strikes = np.asarray(strikes, dtype=np.float64)
    cycles = [np.stack([np.interp(a + (b - a) * POINTS / 100.0, t, signal[:, k]) for k in range(signal.shape[1])],
                       axis=-1) for a, b in zip(strikes[:-1], strikes[1:])]
    shape = (0, len(POINTS), signal.shape[1])
    return (np.stack(cycles) if cycles else np.zeros(shape)), np.diff(strikes)


def keep_typical(durations: np.ndarray) -> np.ndarray:
    """Mask of the strides to keep: durations within mean +- 2 SD (all of them with fewer than 3)."""
    if len(durations) < 3:
        return np.ones(len(durations), dtype=bool)
    mean, sd = durations.mean(), durations.std(ddof=1)
    return np.abs(durations - mean) <= 2.0 * sd + 1e-12


def pearson_r(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two curves (nan if either is constant)."""
    a, b = np.asarray(a, dtype=np.float64) - np.mean(a), np.asarray(b, dtype=np.float64) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# --------------------------------------------------------------------------------------- norms

def load_norms(name: str) -> dict[str, np.ndarray]:
    """A table of ``mmimic/eval/norms/`` as {column: (101,)} (``percent_cycle`` included)."""
    text = resources.files("mmimic.eval").joinpath("norms", name).read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    header = lines[0].split(",")
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    return {h: rows[:, i] for i, h in enumerate(header)}


def kinematic_norms() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{joint: (mean, sd)} in degrees over 101 points."""
    table = load_norms("gait_kinematics.csv")
    return {j: (table[f"{j}_mean"], table[f"{j}_sd"]) for j in JOINTS}


# ------------------------------------------------------------------------------------------ analysis

@dataclass
class Strides:
    """Every trial's heel strikes and kept stride cycles, per side; what gait and EMG analysis share."""

    trials: list[GaitTrial]
    strikes: list[dict[str, np.ndarray]]  # per trial: side -> times (s)
    methods: list[str]
    angles: dict[str, np.ndarray]  # side -> (cycles, 101, 3) kept cycles, all trials
    durations: dict[str, np.ndarray]  # side -> (cycles,) all strides before dropping
    kept: dict[str, np.ndarray]  # side -> (cycles,) bool, all trials' strides in order
    skipped: dict[str, str]  # path -> why it is not analysed

    def kept_of(self, i: int, side: str) -> np.ndarray:
        """(strides of trial ``i``,) bool: which of its strides on ``side`` are kept."""
        first = sum(max(len(self.strikes[k][side]) - 1, 0) for k in range(i))
        return self.kept[side][first:first + max(len(self.strikes[i][side]) - 1, 0)]


def find_strides(trials: list[GaitTrial], method: str = "auto") -> Strides:
    """Heel strikes and stride cycles of every trial (outliers dropped over all trials of a side). A trial
    that is not a walk (no foot contact, fewer than two strikes a side) is reported in ``skipped`` and left
    out; an error if none is left."""
    strikes, methods, used_trials, skipped = [], [], [], {}
    angles = {side: [] for side in SIDES}
    durations = {side: [] for side in SIDES}
    for trial in trials:
        try:
            kin = kinematics(trial, with_contact=method == "contact" or (method == "auto" and trial.is_rollout))
            hs, used = heel_strikes(trial, kin, method)
            if min(len(hs[side]) for side in SIDES) < 2:
                counts = ", ".join(f"{side} {len(hs[side])}" for side in SIDES)
                raise GaitError(f"{trial.path}: too few heel strikes for a stride ({counts}; at least 2 per side)")
        except GaitError as exc:
            skipped[trial.path] = str(exc)
            continue
        used_trials.append(trial)
        strikes.append(hs)
        methods.append(used)
        for side in SIDES:
            cyc, dur = cut_cycles(kin.angles[side], hs[side], trial.fps)
            angles[side].append(cyc)
            durations[side].append(dur)
    if not used_trials:
        raise GaitError("no walk to analyse: " + "; ".join(skipped.values()))
    all_dur = {side: np.concatenate(durations[side]) for side in SIDES}
    kept = {side: keep_typical(all_dur[side]) for side in SIDES}
    angles = {side: np.concatenate(angles[side])[kept[side]] for side in SIDES}
    return Strides(used_trials, strikes, methods, angles, all_dur, kept, skipped)


def compare(curves: np.ndarray, norms: dict[str, tuple[np.ndarray, np.ndarray]], names) -> dict[str, dict]:
    """{name: {r, rmse}} of the mean of ``curves`` (cycles, 101, K) against each norm's mean."""
    mean = curves.mean(axis=0)
    return {n: {"r": pearson_r(mean[:, k], norms[n][0]), "rmse": rmse(mean[:, k], norms[n][0])}
            for k, n in enumerate(names)}


def analyze_gait(paths, method: str = "auto") -> tuple[dict, Strides]:
    """Gait kinematics of the walks in ``paths`` against the human norms: (the gait.json dict, the strides)."""
    trials = [load_trial(p) for p in gait_inputs(paths)]
    models = {(t.embodiment, len(t.joint_names)) for t in trials}
    if len(models) > 1:
        raise GaitError(f"all walks must be of one model; got {sorted(m for m, _ in models)}")
    strides = find_strides(trials, method)
    trials = strides.trials
    norms = kinematic_norms()
    names = list(JOINTS)
    pooled = compare(np.concatenate([strides.angles[s] for s in SIDES]), norms, names)
    per_side = {side: compare(strides.angles[side], norms, names) for side in SIDES}
    joints = {}
    for j in names:
        joints[j] = {"r": pooled[j]["r"], "rmse_deg": pooled[j]["rmse"],
                     **{side: {"r": per_side[side][j]["r"], "rmse_deg": per_side[side][j]["rmse"]} for side in SIDES}}
    kept_dur = np.concatenate([strides.durations[s][strides.kept[s]] for s in SIDES])
    all_cycles = np.concatenate([strides.angles[s] for s in SIDES])
    result = {
        "mean_r": float(np.mean([joints[j]["r"] for j in names])),
        "joints": joints,
        "cycles": {**{side: int(strides.kept[side].sum()) for side in SIDES},
                   "dropped": int(sum((~strides.kept[s]).sum() for s in SIDES))},
        "stride_time_s": {"mean": float(kept_dur.mean()), "sd": float(kept_dur.std(ddof=1)) if len(kept_dur) > 1
                          else 0.0},
        "heel_strikes": {t.name: {"method": m, **{side: [round(float(x), 4) for x in hs[side]] for side in SIDES}}
                         for t, m, hs in zip(trials, strides.methods, strides.strikes)},
        "inputs": [t.path for t in trials],
        "skipped": strides.skipped,
        "model": trials[0].embodiment,
        "reference": REFERENCE,
        "curves": {"percent_cycle": POINTS.tolist(),
                   **{j: {"mean": all_cycles[:, :, k].mean(axis=0).round(3).tolist(),
                          "sd": all_cycles[:, :, k].std(axis=0).round(3).tolist()} for k, j in enumerate(names)}},
    }
    return result, strides


def plot_gait(result: dict, path: Path) -> Path:
    """The model's mean curves (+- 1 SD) over the human mean +- 1 SD band, one panel per joint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norms = kinematic_norms()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, j in zip(axes, JOINTS):
        hm, hs = norms[j]
        ax.fill_between(POINTS, hm - hs, hm + hs, color="0.8", label="human mean +- 1 SD")
        ax.plot(POINTS, hm, color="0.4", lw=1.2)
        mm, ms = (np.asarray(result["curves"][j][k]) for k in ("mean", "sd"))
        ax.fill_between(POINTS, mm - ms, mm + ms, color="tab:blue", alpha=0.2)
        ax.plot(POINTS, mm, color="tab:blue", lw=1.8, label="model")
        info = result["joints"][j]
        ax.set_title(f"{j.replace('_', ' ')}: r = {info['r']:.2f}, RMSE {info['rmse_deg']:.1f} deg", fontsize=10)
        ax.set_xlabel("gait cycle (%)")
        ax.set_ylabel("degrees")
        ax.set_xlim(0, 100)
    axes[0].legend(fontsize=8, loc="best")
    c = result["cycles"]
    fig.suptitle(f"{result['model']}: mean r = {result['mean_r']:.2f} over {c['right']} right + {c['left']} left "
                 "cycles; human data: Fukuchi et al. 2018 (CC BY 4.0)", fontsize=10)
    fig.tight_layout()
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def write_json(result: dict, path: Path) -> Path:
    return atomic_write(path, lambda f: f.write((json.dumps(result, indent=2) + "\n").encode()))




# ------------------------------------------------------------------------------------------- report

WALK_WORDS = ("walk", "run", "jog", "gait")  # clip names that mark walking clips for eval's gait analysis


def has_legs(model: mujoco.MjModel) -> bool:
    return all(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, p.format(s)) >= 0
               for p in JOINTS.values() for s in SIDES.values())


def walking_clips(names: list[str]) -> list[int]:
    """Indices of the clips whose names say they are walks (``WALK_WORDS``)."""
    return [i for i, n in enumerate(names) if any(w in n.lower() for w in WALK_WORDS)]


def run_gait(paths, out_dir: str | Path, method: str = "auto") -> dict:
    """``OUT/gait.json`` and ``OUT/gait.png``; for rollouts also ``OUT/emg.json`` and ``OUT/emg.png``.
    Returns the gait result, with ``emg`` (the EMG result) when there were rollouts."""
    from mmimic.eval.emg import analyze_emg, plot_emg

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result, strides = analyze_gait(paths, method)
    if any(t.is_rollout for t in strides.trials):
        emg = analyze_emg(strides)
        write_json(emg, out / "emg.json")
        plot_emg(emg, out / "emg.png")
        result["emg"] = {"mean_r": emg["mean_r"], "mean_on_off_agreement": emg["mean_on_off_agreement"],
                         "muscles": {k: {"r": v["r"], "on_off_agreement": v["on_off_agreement"]}
                                     for k, v in emg["muscles"].items()}}
    write_json(result, out / "gait.json")
    plot_gait(result, out / "gait.png")
    return result


def format_gait(result: dict) -> str:
    """The lines ``mmimic gait`` prints."""
    c = result["cycles"]
    lines = [f"gait: {c['right']} right + {c['left']} left cycles ({c['dropped']} dropped), stride "
             f"{result['stride_time_s']['mean']:.3f} +- {result['stride_time_s']['sd']:.3f} s; vs Fukuchi et al. 2018:"]
    for j, v in result["joints"].items():
        lines.append(f"  {j:<20} r = {v['r']:6.3f}   RMSE {v['rmse_deg']:5.1f} deg")
    lines.append(f"  {'mean r':<20} {result['mean_r']:.3f}")
    if "emg" in result:
        e = result["emg"]
        lines.append(f"EMG (activation vs envelopes): mean r = {e['mean_r']:.3f}, on/off agreement "
                     f"{e['mean_on_off_agreement']:.0%}")
        for k, v in e["muscles"].items():
            lines.append(f"  {k:<24} r = {v['r']:6.3f}   on/off {v['on_off_agreement']:.0%}")
    for why in result.get("skipped", {}).values():
        lines.append(f"skipped {why}")
    return "\n".join(lines)


__all__ = ["GaitError", "GaitTrial", "HEEL_STRIKE_METHODS", "JOINTS", "POINTS", "SIDES", "Strides", "WALK_WORDS",
           "analyze_gait", "clean_phases", "compare", "cut_cycles", "find_strides", "format_gait", "gait_inputs",
           "has_legs", "heel_strikes_calcaneus", "heel_strikes_contact", "keep_typical", "kinematic_norms",
           "load_norms", "load_trial", "pearson_r", "plot_gait", "rmse", "run_gait", "walking_clips", "write_json"]

"""Synthetic motions in the AMASS file format, for tests and the bundled demo.

AMASS may not be redistributed, so the project makes its own clips: SMPL-H layout (156 pose
columns, hands flat), mean shape (16 zero betas), neutral gender, and a ``source`` field
("mmimic synth <kind> seed <k>") so nobody mistakes them for captured data. The motions are
hand-written joint-angle curves (gait cycle, reach, wave, ...) inside comfortable human ranges,
because they are retargeted onto muscle models with joint limits.

Frames: the SMPL body frame is y-up (x body-left, z forward); ``root_orient`` turns it into the
z-up world facing +x (left is +y). Placement uses the built-in skeleton: every frame is lifted so
the lowest foot contact point (ball = SMPL's foot joint, or a virtual heel as low, behind the ankle)
is ``FOOT_CLEARANCE_M`` above z = 0. Standing motions keep the ankles' midpoint over the origin;
walking moves the pelvis so that the stance foot's lowest contact point does not slide, so the
forward speed (about 1.1-1.2 m/s, varying within a step as the body vaults over the foot) and the
pelvis bob come from the leg angles themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmimic.math import matrix_to_axis_angle
from mmimic.motion.motion_file import OutputPathError, atomic_write, prepare_output_dir
from mmimic.motion.smpl import BODY_JOINT_NAMES, builtin_skeleton, forward_kinematics

KINDS = ("walk", "reach", "wave", "bimanual_lift", "squat", "arm_circles")
SOURCE_PREFIX = "mmimic synth "  # the 'source' field of our clips: "mmimic synth <kind> seed <k>"
MAX_FRAMES = 100_000  # per synthesized clip (55 min at 30 fps); more is a typo, and GBs of memory
DEMO_COUNT = 3  # clips per kind in the demo set (18 clips of 4 s at 30 fps, about 0.3 MB compressed)
FOOT_CLEARANCE_M = 0.05  # lowest foot contact point above the floor (SMPL's foot joint sits inside the sole)
J = {name: i for i, name in enumerate(BODY_JOINT_NAMES)}
FOOT_JOINTS = [J[n] for n in ("L_Ankle", "R_Ankle", "L_Foot", "R_Foot")]
# A heel contact point in the ankle's frame (body axes at rest): as low as the ball (foot joint), 5 cm
# behind the ankle. With it a stance foot rolls heel -> ball instead of pivoting on the ball all along.
HEEL_OFFSET = np.array([0.0, -0.056, -0.05])

# Largest rotation (degrees, from SMPL's T-pose rest) each joint reaches in these clips; tests hold
# the clips to it. Shoulders start from arms-down (~80 deg from the T-pose) so their budget is larger.
# "Pelvis" bounds the pelvis's tilt away from upright instead.
MAX_ANGLE_DEG = {"Pelvis": 25, "Hip": 110, "Knee": 125, "Ankle": 40, "Foot": 10, "Spine": 25, "Neck": 20,
                 "Head": 20, "Collar": 10, "Shoulder": 150, "Elbow": 130, "Wrist": 30}


# ------------------------------------------------------------------------------------------- rotations

def _rot(axis: int, deg) -> np.ndarray:
    """Rotation matrices (T, 3, 3) about a body axis (0 x, 1 y, 2 z) by angles in degrees (T,)."""
    a = np.radians(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1.0
    out[..., i, i], out[..., i, j], out[..., j, i], out[..., j, j] = c, -s, s, c
    return out


def rx(deg):
    return _rot(0, deg)


def ry(deg):
    return _rot(1, deg)


def rz(deg):
    return _rot(2, deg)


MIRROR = np.diag([-1.0, 1.0, 1.0])


class Pose:
    """Local rotations (T, 22, 3, 3) being built; index 0 is the pelvis in the body frame.

    Left-side joints are written with left-side angle conventions, right-side ones are the mirror
    image (x -> -x) of the same angles, so both sides use the same anatomical meaning:
    hip/shoulder flexion is forward, abduction is outward, knee/elbow flexion is bending.
    """

    def __init__(self, T: int):
        self.T = T
        self.R = np.tile(np.eye(3), (T, 22, 1, 1))

    def set(self, joint: str, R: np.ndarray, side: str = "") -> None:
        """``side``: "L" or "R" for paired joints (R gets the mirror image), "" for the spine and pelvis."""
        self.R[:, J[f"{side}_{joint}" if side else joint]] = MIRROR @ R @ MIRROR if side == "R" else R

    def leg(self, side, hip_flex, knee, ankle_dorsi, hip_abd=0.0, hip_rot=0.0):
        self.set("Hip", rx(-_a(hip_flex, self.T)) @ rz(_a(hip_abd, self.T)) @ ry(_a(hip_rot, self.T)), side)
        self.set("Knee", rx(_a(knee, self.T)), side)
        self.set("Ankle", rx(-_a(ankle_dorsi, self.T)), side)

    def arm(self, side, abd, flex, elbow, twist=0.0):
        """Shoulder from arms-down: ``abd`` outward (90 = T-pose), ``flex`` forward, ``twist`` about the
        upper arm (negative: external rotation); elbow flexion about the rest-pose vertical axis."""
        T = self.T
        self.set("Shoulder", rx(-_a(flex, T)) @ rz(_a(abd, T) - 90.0) @ rx(_a(twist, T)), side)
        self.set("Elbow", ry(-_a(elbow, T)), side)

    def spine(self, lean, twist=0.0, side_bend=0.0):
        """Spread forward lean / twist / side bend over the three spine joints."""
        for name in ("Spine1", "Spine2", "Spine3"):
            self.set(name, rx(_a(lean, self.T) / 3) @ ry(_a(twist, self.T) / 3) @ rz(_a(side_bend, self.T) / 3))


def _a(x, T) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=np.float64), (T,))


# -------------------------------------------------------------------------------------------- profiles

def min_jerk(u):
    u = np.clip(u, 0.0, 1.0)
    return u ** 3 * (10 - 15 * u + 6 * u ** 2)


def go_hold_return(t, period, rise, hold, fall, start=0.0):
    """0 -> 1 (min-jerk over ``rise`` s), hold, back to 0 over ``fall`` s, rest; repeats every ``period`` s
    (which must be >= rise + hold + fall, or the curve would jump)."""
    assert period >= rise + hold + fall - 1e-9
    u = np.mod(t - start, period)
    up = min_jerk(u / rise)
    down = min_jerk((u - rise - hold) / fall)
    return np.where(t < start, 0.0, up - down)


# --------------------------------------------------------------------------------------------- motions

def _standing(p: Pose, t, rng):
    """Relaxed stance: arms at the sides, soft knees, a slow small sway; feet flat."""
    sway = rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * rng.uniform(0.15, 0.3) * t + rng.uniform(0, 6.3))
    p.spine(lean=2.0 + sway)
    p.set("Neck", rx(-1.0 - 0.5 * sway))
    abd = rng.uniform(8, 14)
    for side in ("L", "R"):
        p.arm(side, abd, rng.uniform(0, 6), rng.uniform(10, 18))
        hip, knee = 3.0 + 0.5 * sway, 4.0
        p.leg(side, hip, knee, ankle_dorsi=knee - hip)  # foot flat


# Approximate joint angles over one normal gait cycle (percent of the cycle from heel strike, degrees),
# read off the usual textbook curves; smoothed into periodic curves by a 4-harmonic Fourier fit.
GAIT_TABLE = {
    "hip": ([0, 10, 20, 30, 40, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95],  # flexion
            [25, 22, 14, 6, -2, -9, -10, -5, 3, 12, 19, 24, 27, 28, 27]),
    "knee": ([0, 5, 10, 15, 20, 30, 40, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95],  # flexion
             [3, 8, 15, 18, 16, 8, 4, 7, 15, 35, 50, 60, 58, 48, 35, 20, 7]),
    "ankle": ([0, 5, 10, 20, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 90, 95],  # dorsiflexion
              [0, -5, -3, 4, 8, 8, 5, -1, -7, -13, -17, -16, -10, -4, 0, 2, 1]),
}


def _fourier(name: str, harmonics: int = 4):
    pct, deg = (np.asarray(v, dtype=np.float64) for v in GAIT_TABLE[name])
    basis = lambda ph: np.stack([np.ones_like(ph)] + [f(2 * np.pi * k * ph) for k in range(1, harmonics + 1)
                                                       for f in (np.cos, np.sin)], axis=-1)
    coef = np.linalg.lstsq(basis(pct / 100), deg, rcond=None)[0]
    return lambda phase: basis(np.mod(phase, 1.0)) @ coef


GAIT = {name: _fourier(name) for name in GAIT_TABLE}


def _walk_timing(rng) -> tuple[float, float]:
    """(cadence in gait cycles per second (~118 steps/min), phase at t = 0): the walk's first draws."""
    return rng.uniform(0.95, 1.02), rng.uniform(0, 1)


def walk_heel_strikes(seed: int, duration: float = 4.0) -> dict[str, np.ndarray]:
    """The heel-strike times (s) a synthesized walk was made with, per side ("left", "right"): phase 0 of the
    gait table is the left heel strike, phase 0.5 the right one. A known answer for gait analysis."""
    cadence, phase0 = _walk_timing(np.random.default_rng([seed, KINDS.index("walk")]))
    out = {}
    for side, offset in (("left", 0.0), ("right", 0.5)):
        k = np.arange(np.ceil(phase0 + offset), phase0 + offset + cadence * duration + 1)
        t = (k - phase0 - offset) / cadence
        out[side] = t[(t >= 0) & (t <= duration)]
    return out


def walk(t, rng) -> tuple[Pose, np.ndarray]:
    T = len(t)
    p = Pose(T)
    cadence, phase0 = _walk_timing(rng)
    phase = cadence * t + phase0
    hip_gain, knee_gain, arm_amp = rng.uniform(1.05, 1.15), rng.uniform(0.95, 1.05), rng.uniform(12, 20)
    for side, ph in (("L", phase), ("R", phase + 0.5)):
        knee = np.maximum(GAIT["knee"](ph) * knee_gain, 0.0)
        p.leg(side, GAIT["hip"](ph) * hip_gain, knee, GAIT["ankle"](ph),
              hip_abd=2.0 + 2.0 * np.cos(2 * np.pi * ph))
        arm = -arm_amp * np.cos(2 * np.pi * (ph - 0.05))  # opposite to the same side's leg
        p.arm(side, 10.0, arm, 18.0 + 12.0 * np.clip(arm / arm_amp, 0, 1))
    twist = 4.0 * np.sin(2 * np.pi * phase)
    p.set("Pelvis", rx(_a(4.0, T)) @ ry(twist) @ rz(2.0 * np.sin(2 * np.pi * phase)))
    p.spine(lean=2.0, twist=-1.5 * twist)
    p.set("Neck", rx(_a(-4.0, T)))
    stance = (np.mod(phase, 1.0) >= 0.5).astype(int)  # the foot that struck last: 0 left, 1 right
    return p, stance


def reach(t, rng):
    p = Pose(len(t))
    _standing(p, t, rng)
    side = "L" if rng.uniform() < 0.5 else "R"
    rise, hold, fall = rng.uniform(0.9, 1.2), rng.uniform(0.3, 0.6), rng.uniform(0.9, 1.2)
    s = go_hold_return(t, rise + hold + fall + rng.uniform(0.3, 0.8), rise, hold, fall, start=0.3)
    p.arm(side, 10.0 - 5.0 * s, rng.uniform(80, 120) * s, 15.0 - 10.0 * s, twist=-10.0 * s)
    p.spine(lean=2.0 + rng.uniform(4, 10) * s, twist=(8.0 if side == "R" else -8.0) * s)
    return p, None


def wave(t, rng):
    p = Pose(len(t))
    _standing(p, t, rng)
    side = "L" if rng.uniform() < 0.5 else "R"
    d = t[-1] if t[-1] > 0 else 1.0
    s = go_hold_return(t, d + 1e-9, 0.2 * d, 0.6 * d, 0.2 * d)
    freq, amp = rng.uniform(1.4, 2.2), rng.uniform(20, 30)
    flex = 90.0 + amp * np.sin(2 * np.pi * freq * t)
    p.arm(side, 12.0 + rng.uniform(80, 95) * s, 15.0 * s, 15.0 + (flex - 15.0) * s, twist=-75.0 * s)
    p.spine(lean=2.0, side_bend=(-3.0 if side == "L" else 3.0) * s)
    return p, None


def bimanual_lift(t, rng):
    p = Pose(len(t))
    _standing(p, t, rng)
    period = rng.uniform(3.6, 4.2)
    grab = go_hold_return(t, period, 0.8, period - 1.6, 0.8)  # hands come forward to the box at the waist,
    lift = go_hold_return(t, period, 0.7, 0.4, 0.7, start=0.9)  # raise it to the chest and back, let go
    for side in ("L", "R"):
        p.arm(side, 12.0 - 4.0 * grab, 25.0 * grab + 15.0 * lift, 15.0 + 55.0 * grab + 35.0 * lift,
              twist=-5.0 * grab)
    p.spine(lean=2.0 + 6.0 * grab - 4.0 * lift)
    return p, None


def squat(t, rng):
    T = len(t)
    p = Pose(T)
    _standing(p, t, rng)
    rise, hold, fall = rng.uniform(1.1, 1.4), rng.uniform(0.2, 0.4), rng.uniform(1.1, 1.4)
    s = go_hold_return(t, rise + hold + fall + rng.uniform(0.3, 0.6), rise, hold, fall, start=0.2)
    knee = 4.0 + rng.uniform(85, 105) * s
    tilt = 0.2 * knee
    hip = 0.9 * knee
    p.set("Pelvis", rx(tilt))
    for side in ("L", "R"):
        p.leg(side, hip, knee, ankle_dorsi=tilt - hip + knee)  # ankle angle that keeps the foot flat
        p.arm(side, 12.0, rng.uniform(60, 80) * s, 15.0 + 10.0 * s)  # arms forward for balance
    p.spine(lean=2.0 + 10.0 * s)
    p.set("Neck", rx(-10.0 * s))
    return p, None


def arm_circles(t, rng):
    p = Pose(len(t))
    _standing(p, t, rng)
    d = t[-1] if t[-1] > 0 else 1.0
    s = go_hold_return(t, d + 1e-9, 0.2 * d, 0.6 * d, 0.2 * d)
    w = 2 * np.pi * rng.uniform(0.6, 1.0) * t
    r = rng.uniform(15, 25)
    for side in ("L", "R"):
        p.arm(side, 12.0 + (73.0 + r * np.cos(w)) * s, r * np.sin(w) * s, 15.0 - 5.0 * s)
    return p, None


MOTIONS = {"walk": walk, "reach": reach, "wave": wave, "bimanual_lift": bimanual_lift, "squat": squat,
           "arm_circles": arm_circles}


# ------------------------------------------------------------------------------------------- placement

def _place(pose: Pose, stance: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Poses (T, 66) and trans (T, 3) that stand the body on the floor, facing +x. ``stance`` (T,): the
    supporting foot per frame (0 left, 1 right) of a walk, None for standing in place."""
    T = pose.T
    # body frame (y-up, z forward) -> world (z-up, facing +x): Rz(90) @ Rx(90), then the pelvis's own rotation
    root = rz(_a(90.0, T)) @ rx(_a(90.0, T)) @ pose.R[:, 0]
    root_aa = matrix_to_axis_angle(torch.as_tensor(root)).numpy()
    body_aa = matrix_to_axis_angle(torch.as_tensor(pose.R[:, 1:])).numpy()
    rest = torch.as_tensor(builtin_skeleton().rest_joints[:22])
    pos, rot = forward_kinematics(torch.as_tensor(root_aa), torch.as_tensor(body_aa),
                                  torch.zeros(T, 3, dtype=torch.float64), rest)
    pos, rot = pos.numpy(), rot.numpy()
    # contact points (T, side, point, 3): a virtual heel under and behind the ankle, and the ball (foot joint)
    ankles = [J["L_Ankle"], J["R_Ankle"]]
    heel = pos[:, ankles] + rot[:, ankles] @ HEEL_OFFSET
    contacts = np.stack([heel, pos[:, [J["L_Foot"], J["R_Foot"]]]], axis=2)
    trans = np.zeros((T, 3))
    trans[:, 2] = FOOT_CLEARANCE_M - contacts[..., 2].min(axis=(1, 2))
    if stance is not None:  # move the body so that the stance foot's lowest point stays put
        frames = np.arange(T - 1)
        side = stance[:-1]
        pivot = contacts[frames, side, :, 2].argmin(axis=1)  # heel early in stance, ball at push-off
        step = contacts[frames, side, pivot, :2] - contacts[frames + 1, side, pivot, :2]
        trans[:, :2] = np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)]) - pos[0, 0, :2]
    else:  # the ankles' midpoint stays over the origin
        trans[:, :2] = -pos[:, ankles, :2].mean(axis=1)
    return np.concatenate([root_aa, body_aa.reshape(T, -1)], axis=1), trans


# ---------------------------------------------------------------------------------------------- public

def _check_timing(duration: float, fps: float) -> None:
    if not (np.isfinite(fps) and fps > 0) or not (np.isfinite(duration) and duration > 0):
        raise ValueError(f"duration and fps must be > 0 (and finite), got duration={duration}, fps={fps}")
    if duration * fps > MAX_FRAMES:
        raise ValueError(f"duration {duration:g} s at {fps:g} fps is {duration * fps:.3g} frames per clip; at most "
                         f"{MAX_FRAMES:,} (a clip that long takes GBs of memory): use a shorter duration or a "
                         "lower fps")


def synthesize(kind: str, duration: float = 4.0, fps: float = 30.0, seed: int = 0) -> dict[str, np.ndarray]:
    """One clip as the arrays of an AMASS SMPL-H file (poses (T, 156), trans, betas, gender, mocap_framerate,
    source). ``seed`` varies amplitudes, speeds and phases a little; the same seed gives the same clip."""
    if kind not in MOTIONS:
        raise ValueError(f"unknown motion kind {kind!r}; known: {', '.join(KINDS)}")
    _check_timing(duration, fps)
    T = max(2, int(round(duration * fps)))
    t = np.arange(T) / fps
    pose, stance = MOTIONS[kind](t, np.random.default_rng([seed, KINDS.index(kind)]))
    body, trans = _place(pose, stance)
    poses = np.zeros((T, 156))
    poses[:, :66] = body[:, :66]
    return dict(poses=poses, trans=trans, betas=np.zeros(16), gender=np.array("neutral"),
                mocap_framerate=np.array(float(fps)), source=np.array(f"{SOURCE_PREFIX}{kind} seed {seed}"))


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write compressed, atomically (a reader never sees half a file; an interrupted write leaves the old
    file whole and no partial file behind). Mode 0666 minus the umask, as for any new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def is_synth_file(path: str | Path) -> bool:
    """True for a clip written by this module (its 'source' field says so); False for anything else."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return "source" in z.files and str(z["source"]).startswith(SOURCE_PREFIX)
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return False


def write_synth(out_dir: str | Path, kinds=KINDS, count: int = 1, seed: int = 0, fps: float = 30.0,
                duration: float = 4.0) -> list[Path]:
    """Write ``out_dir/<kind>_<k>.npz`` for k = seed .. seed + count - 1; returns the paths.

    Checks everything before writing anything: the arguments, that ``out_dir`` is (or can be made) a
    writable directory (OutputPathError), and that no target path holds a file other than a synthetic clip
    of ours (such as a real AMASS file of the same name): those are never overwritten (OutputPathError
    listing them). Our own clips are rewritten (the same seed gives the same clip).
    """
    unknown = [k for k in kinds if k not in MOTIONS]
    if unknown or count < 1:
        raise ValueError(f"kinds must be among {', '.join(KINDS)} and count >= 1; "
                         f"got kinds {list(kinds)}, count {count}")
    _check_timing(duration, fps)
    out_dir = prepare_output_dir(out_dir)
    targets = [(out_dir / f"{kind}_{k}.npz", kind, k) for kind in kinds for k in range(seed, seed + count)]
    foreign = [p for p, _, _ in targets if p.exists() and not is_synth_file(p)]
    if foreign:
        raise OutputPathError(f"{len(foreign)} file(s) already in {out_dir} are not synthetic clips written by "
                              f"mmimic motion synth and are not overwritten: {', '.join(str(p) for p in foreign[:5])}"
                              f"{' ...' if len(foreign) > 5 else ''}; choose another output directory")
    return [save_npz(p, synthesize(kind, duration, fps, k)) for p, kind, k in targets]


def ensure_demo_motions(directory: str | Path, count: int = DEMO_COUNT, kinds=KINDS, first_seed: int = 0) -> list[Path]:
    """The demo set (``count`` clips of each of ``kinds``, seeds ``first_seed`` on, 4 s at 30 fps) in
    ``directory``: the clips that are missing are written (a set interrupted halfway is completed),
    existing ones are left as they are. Returns the clip paths, sorted."""
    directory = Path(directory)
    want = sorted(directory / f"{kind}_{k}.npz" for kind in kinds for k in range(first_seed, first_seed + count))
    for path in want:
        if not path.is_file():
            kind, k = path.stem.rsplit("_", 1)
            write_synth(directory, (kind,), 1, int(k))
    return want

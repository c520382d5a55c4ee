"""WarpSim: N worlds of one MuJoCo model on mujoco_warp, seen from torch without copies.

A thin bridge in the spirit of mjlab's ``sim/``: mujoco_warp owns the state; this class exposes
zero-copy torch views of it (``wp.to_torch``), steps ``substeps`` physics steps per control step
(captured once as a CUDA graph on GPU), resets chosen worlds to given states, and watches every
world for NaN/instability so that one exploding world is flagged and counted, never fatal.

Timing convention: see ``mmimic.sim.simulator`` (that of ``mujoco.mj_step``, shared by both backends).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import subprocess
import warnings

import warp as wp

# warp logs its banner and a line per loaded kernel module (hundreds for a muscle model) at INFO: quiet
# from a library import too, not only from the CLI (``mmimic ... --verbose``, or
# ``wp.config.log_level = wp.LOG_INFO``, brings them back). Warnings still show.
wp.config.log_level = wp.LOG_WARNING

import mujoco  # noqa: E402
import mujoco_warp as mjw  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmimic.embodiments import Embodiment
from mmimic.sim.simulator import SimBase

log = logging.getLogger(__name__)


_OVERFLOW_FLAGS = [int(f) for f in mjw.OverflowType if f.value and f.value != mjw.OverflowType.ALL]
# Hitting the solver's iteration cap is normal for a few worlds; it is not a buffer overflow.
_SOLVER_LIMIT_FLAGS = int(mjw.OverflowType.ITERATIONS | mjw.OverflowType.LS_ITERATIONS)


def _overflow_names(bits: int) -> list[str]:
    return [mjw.OverflowType(f).name for f in _OVERFLOW_FLAGS if bits & f]


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver release (e.g. ``"580.65.06"``) from ``nvidia-smi``, or None where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def check_warp_sees_cuda(device: torch.device) -> None:
    """Fail clearly where torch sees a CUDA device but warp does not (finding 5 of issue 11).

    warp-lang 1.19's wheel is built with CUDA 13 and needs a driver that supports it (NVIDIA R580 or
    newer); on an older driver warp disables CUDA with a one-line console warning while torch (whose
    wheel may be built for an older CUDA) still works, and ``wp.get_device("cuda:0")`` fails with
    ``Invalid device identifier``. Raises RuntimeError naming the versions and the fix.
    """
    if device.type != "cuda":
        return
    index = device.index or 0
    if index < wp.get_cuda_device_count():
        return
    drv = wp.get_cuda_driver_version()
    drv_text = "no usable CUDA driver" if drv is None else f"a driver for CUDA {drv[0]}.{drv[1]}"
    smi = nvidia_driver_version()
    raise RuntimeError(
        f"device {str(device)!r}: torch sees {torch.cuda.device_count()} CUDA device(s), but warp-lang "
        f"{wp.__version__} sees {wp.get_cuda_device_count()} ({drv_text}"
        f"{f', nvidia-smi driver {smi}' if smi else ''}). warp {wp.__version__}'s wheel is built with CUDA "
        f"{'.'.join(map(str, wp.get_cuda_toolkit_version()))} and needs an NVIDIA driver for CUDA 13 (R580 or "
        "newer): update the driver, or run on the CPU (--device cpu)")


@contextlib.contextmanager
def gc_paused():
    """Python's garbage collector off for the block (on again after, if it was on).

    During a CUDA graph capture a collection may finalize a stale warp object (an old graph or array)
    whose destructor's CUDA call would then be recorded into, or break, the capture (mjlab pauses GC
    for the same reason)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def contact_buffer_sizes(model: mujoco.MjModel) -> tuple[int, int]:
    """Per-world contact and constraint-row capacities sized for a muscle model.

    Contacts: two per explicit contact pair plus a margin for the collidable geoms, never below
    mujoco_warp's own default. Constraint rows: one per equality row and limited joint/tendon
    (all may be active at once), plus pyramidal contact rows (2 * (condim - 1), 4 for condim 3)
    for half of the contact capacity. Rounded up to 16. Overflow is still detected at run time.
    """
    ncollide = int(np.count_nonzero(model.geom_contype | model.geom_conaffinity))
    nconmax = max(48, 2 * model.npair + ncollide // 2)
    eq_rows = {int(mujoco.mjtEq.mjEQ_CONNECT): 3, int(mujoco.mjtEq.mjEQ_WELD): 6}
    neq_rows = sum(eq_rows.get(int(t), 1) for t in model.eq_type)
    nlimit = int(model.jnt_limited.sum() + model.tendon_limited.sum())
    njmax = neq_rows + nlimit + 4 * (nconmax // 2)
    return nconmax, int(-(-njmax // 16) * 16)


class WarpSim(SimBase):
    """N worlds of one embodiment, stepped by mujoco_warp on ``cpu`` or ``cuda:k``.

    ``step(ctrl)`` copies ``ctrl`` (N, nu) into the simulator and advances one control step
    (``embodiment.substeps`` physics steps). ``reset(mask, qpos=..., qvel=..., act=...)`` resets
    the worlds where ``mask`` is true, to the model's default state or to the given rows.
    """

    backend = "warp"

    def __init__(
        self,
        embodiment: Embodiment,
        num_worlds: int,
        device: str | torch.device = "cpu",
        use_cuda_graph: bool = True,
        max_abs_qvel: float = 1e3,
        overflow_check_every: int = 100,
    ):
        self._init_common(embodiment, num_worlds, max_abs_qvel, overflow_check_every)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:k]', got {device!r}")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA device")
        check_warp_sees_cuda(self.device)
        self.wp_device = wp.get_device(str(self.device))

        mjd = mujoco.MjData(self.mjm)
        if self.mjm.nkey > 0:  # a model's first keyframe is its intended start pose
            mujoco.mj_resetDataKeyframe(self.mjm, mjd, 0)
        mujoco.mj_forward(self.mjm, mjd)
        default_ncon, default_njmax = contact_buffer_sizes(self.mjm)
        self.nconmax = embodiment.nconmax if embodiment.nconmax is not None else max(default_ncon, mjd.ncon)
        self.njmax = embodiment.njmax if embodiment.njmax is not None else max(default_njmax, mjd.nefc)

        with wp.ScopedDevice(self.wp_device):
            self.m = mjw.put_model(self.mjm)
            self.m.opt.warn_overflow = 0  # overflow is checked and reported by check_overflow()
            self.d = mjw.put_data(self.mjm, mjd, nworld=self.num_worlds, nconmax=self.nconmax, njmax=self.njmax)
            self._reset_mask_wp = wp.zeros(self.num_worlds, dtype=bool)
        wp.synchronize_device(self.wp_device)  # uploads done before torch touches the views

        # The views (STATE_VIEWS): zero-copy torch tensors over mujoco_warp's arrays.
        d = self.d
        self.qpos = wp.to_torch(d.qpos)
        self.qvel = wp.to_torch(d.qvel)
        self.act = wp.to_torch(d.act)
        self.ctrl = wp.to_torch(d.ctrl)
        self.actuator_length = wp.to_torch(d.actuator_length)
        self.actuator_velocity = wp.to_torch(d.actuator_velocity)
        self.actuator_force = wp.to_torch(d.actuator_force)
        self.xpos = wp.to_torch(d.xpos)
        self.xquat = wp.to_torch(d.xquat)
        self.site_xpos = wp.to_torch(d.site_xpos)
        self.cvel = wp.to_torch(d.cvel)
        self.sensordata = wp.to_torch(d.sensordata)
        self.time = wp.to_torch(d.time)
        self.overflow = wp.to_torch(self.d.overflow)
        self._reset_mask = wp.to_torch(self._reset_mask_wp)

        # Default state (the keyframe or qpos0) and the instability counters, on the device.
        self._init_state(mjd.qpos, mjd.qvel, mjd.act)

        # On CUDA warp launches on its own stream and torch on the current torch stream; GPU-side
        # waits between the two order them without a host sync (see _on_warp_stream).
        self._wp_stream = self.wp_device.stream if self.device.type == "cuda" else None
        self._torch_of_wp_stream = wp.stream_to_torch(self._wp_stream) if self._wp_stream is not None else None
        self._wp_of_torch_stream: dict[int, wp.Stream] = {}

        # CUDA graphs (GPU only): the substep loop (``graph``), the masked reset (``reset_graph``: mujoco_warp's
        # reset_data with the mask array) and the kinematics that follow a reset (``kinematics_graph``).
        self.graph = self.reset_graph = self.kinematics_graph = None
        self.capture_error: str | None = None  # why capture failed, if it did (mmimic doctor reports it)
        self.use_cuda_graph = bool(use_cuda_graph) and self.device.type == "cuda"
        if self.device.type == "cuda" and not self.use_cuda_graph:
            self._no_conditional_solver()
        if self.use_cuda_graph:
            self._capture()

    # ----------------------------------------------------------------------------------------
    def _substeps(self) -> None:
        for _ in range(self.substeps):
            mjw.step(self.m, self.d)

    def _reset_data(self) -> None:
        mjw.reset_data(self.m, self.d, reset=self._reset_mask_wp)

    def _kinematics(self) -> None:
        mjw.fwd_kinematics(self.m, self.d)
        mjw.transmission(self.m, self.d)
        mjw.fwd_velocity(self.m, self.d)
        mjw.fwd_actuation(self.m, self.d)

    def _on_warp_stream(self, fn) -> None:
        """Run warp work ``fn`` after the torch work queued so far, and before torch work queued next."""
        if self._wp_stream is None:
            with wp.ScopedDevice(self.wp_device):
                fn()
            return
        torch_stream = torch.cuda.current_stream(self.device)
        key = torch_stream.cuda_stream
        if key not in self._wp_of_torch_stream:
            self._wp_of_torch_stream[key] = wp.stream_from_torch(torch_stream)
        self._wp_stream.wait_stream(self._wp_of_torch_stream[key])
        with wp.ScopedStream(self._wp_stream):
            fn()
        torch_stream.wait_stream(self._torch_of_wp_stream)

    def _launch(self, graph, fn) -> None:
        """Replay ``graph`` if captured, else launch ``fn``'s kernels directly (CPU, or capture failed)."""
        if graph is not None:
            self._on_warp_stream(lambda: wp.capture_launch(graph, stream=self._wp_stream))
        else:
            self._on_warp_stream(fn)

    def _no_conditional_solver(self) -> None:
        """Without a graph, mujoco_warp's solver loop must not use a conditional node: launched directly,
        ``wp.capture_while`` reads the loop condition back to the host every solver iteration. The
        plain loop runs ``opt.iterations`` iterations (no early exit) but never syncs."""
        self.m.opt.graph_conditional = False

    def _capture_one(self, fn):
        with wp.ScopedStream(self._wp_stream), wp.ScopedCapture(stream=self._wp_stream) as capture:
            fn()
        return capture.graph

    def _capture(self) -> None:
        """Record the substep loop, the masked reset and the kinematics as three CUDA graphs.

        Every kernel is compiled and loaded by a direct run first (reset_data defines its kernels inside
        the function: the direct run loads them, the capture then finds them loaded). Python's GC is
        paused during capture. Without conditional graph nodes (CUDA < 12.4) the solver's loop is
        captured unrolled. A capture that fails leaves that part to direct launches, with a warning
        (``self.capture_error`` says why); without the step graph the solver's conditional loop is
        switched off. Measured on no GPU yet: this path is written by review against mujoco_warp 4.0
        and mjlab's simulator bridge, and checked by ``mmimic doctor`` on a GPU.
        """
        errors = []
        parts = {"graph": self._substeps, "reset_graph": self._reset_data, "kinematics_graph": self._kinematics}
        if not wp.is_mempool_enabled(self.wp_device):
            errors.append("warp's memory pool is disabled on this device (graph capture needs it)")
        else:
            if not wp.is_conditional_graph_supported():
                self._no_conditional_solver()  # the solver loop is then captured as opt.iterations iterations
            try:
                self._reset_mask.fill_(True)
                for fn in parts.values():  # compile and load every kernel before capture
                    self._on_warp_stream(fn)
                self.synchronize()
            except Exception as exc:  # noqa: BLE001 - reported with the capture errors
                errors.append(f"warm-up: {type(exc).__name__}: {exc}")
            else:
                with gc_paused():
                    for name, fn in parts.items():
                        try:
                            setattr(self, name, self._capture_one(fn))
                        except Exception as exc:  # noqa: BLE001 - an optimisation: launch directly instead
                            errors.append(f"{name}: {type(exc).__name__}: {exc}")
        if errors:
            self.capture_error = "; ".join(errors)
            if self.graph is None:
                self._no_conditional_solver()
            warnings.warn(f"CUDA graph capture failed ({self.capture_error}); launching those kernels directly "
                          "(slower)", stacklevel=3)
        self.reset(torch.ones(self.num_worlds, dtype=torch.bool, device=self.device))

    # ----------------------------------------------------------------------------------------
    def step(self, ctrl: torch.Tensor | None = None) -> torch.Tensor:
        """Advance one control step. Returns the (N,) bool mask of worlds that went unstable.

        ``ctrl`` (N, nu), if given, is copied in place into the simulator's control array (the
        CUDA graph reads that memory, so it is never rebound). Unstable worlds (non-finite state
        or |qvel| above ``max_abs_qvel``) are added to ``self.unstable`` and counted in
        ``self.unstable_count``; the caller resets them.
        """
        if ctrl is not None:
            self._check_ctrl(ctrl)
            self.ctrl.copy_(ctrl)
        self._launch(self.graph, self._substeps)
        return self._after_step()

    def check_overflow(self) -> int:
        """Read the per-world overflow flags (one host sync); warn once per new kind. Returns the bits."""
        flags = torch.tensor(_OVERFLOW_FLAGS, dtype=self.overflow.dtype, device=self.device)
        hit = ((self.overflow[:, None] & flags) != 0)  # (N, nflags)
        counts = hit.sum(0).tolist()
        bits = sum(f for f, c in zip(_OVERFLOW_FLAGS, counts) if c)
        new = bits & ~self._overflow_warned & ~_SOLVER_LIMIT_FLAGS
        if new:
            self._overflow_warned |= new
            worst = max(c for f, c in zip(_OVERFLOW_FLAGS, counts) if f & new)
            warnings.warn(
                f"mujoco_warp buffer overflow in up to {worst} of {self.num_worlds} worlds: "
                f"{', '.join(_overflow_names(new))} (nconmax={self.nconmax}, njmax={self.njmax} per world). "
                "Contacts/constraints beyond the buffers are dropped; raise nconmax/njmax in the embodiment config.",
                stacklevel=2,
            )
        return bits

    # ----------------------------------------------------------------------------------------
    def reset(
        self,
        mask: torch.Tensor,
        qpos: torch.Tensor | None = None,
        qvel: torch.Tensor | None = None,
        act: torch.Tensor | None = None,
    ) -> None:
        """Reset the worlds where ``mask`` (N,) is true.

        Those worlds get mujoco_warp's clean data (time 0, no warm start, zero ctrl) and then the
        given state: ``qpos`` (M, nq), ``qvel`` (M, nv), ``act`` (M, na) with M = mask.sum(), or
        (N, ...) of which the masked rows are taken; the default state where not given. Derived
        quantities (positions, muscle lengths and forces) are recomputed. Their flags in
        ``self.unstable`` are cleared.
        """
        mask = self._check_mask(mask)
        self._reset_mask.copy_(mask)
        self._launch(self.reset_graph, self._reset_data)
        self._write_reset_state(mask, qpos, qvel, act)
        self.forward_kinematics()

    def forward_kinematics(self) -> None:
        """Recompute what observations read from positions and velocities, for all worlds.

        Kinematics, tendon/muscle lengths and moment arms, velocities and muscle forces; it skips
        collision and the constraint solver, which no observation needs, so it costs well under
        a physics step. A CUDA graph on GPU.
        """
        self._launch(self.kinematics_graph, self._kinematics)

    def forward(self) -> None:
        """Full ``mj_forward`` on every world (collision and constraint forces included)."""
        self._on_warp_stream(lambda: mjw.forward(self.m, self.d))

    def synchronize(self) -> None:
        wp.synchronize_device(self.wp_device)

    def _engine_state(self) -> dict:
        """The solver's warm start (the views hold the rest of mujoco_warp's state)."""
        return {"qacc_warmstart": wp.to_torch(self.d.qacc_warmstart).clone()}

    def _load_engine_state(self, state: dict) -> None:
        wp.to_torch(self.d.qacc_warmstart).copy_(state["qacc_warmstart"])

    def __repr__(self) -> str:
        return (f"WarpSim({self.embodiment.name!r}, num_worlds={self.num_worlds}, device={str(self.device)!r}, "
                f"nu={self.nu}, substeps={self.substeps}, cuda_graph={self.graph is not None}, "
                f"reset_graph={self.reset_graph is not None})")

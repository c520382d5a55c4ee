"""WarpSim: N worlds of one MuJoCo model on mujoco_warp, seen from torch without copies.

A thin bridge in the spirit of mjlab's ``sim/``: mujoco_warp owns the state; this class exposes
zero-copy torch views of it (``wp.to_torch``), steps ``substeps`` physics steps per control step
(captured once as a CUDA graph on GPU), resets chosen worlds to given states, and watches every
world for NaN/instability so that one exploding world is flagged and counted, never fatal.

Timing convention: see ``mmimic.sim.simulator`` (that of ``mujoco.mj_step``, shared by both backends).
"""

from __future__ import annotations

import logging
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

        self.graph = None
        self.use_cuda_graph = bool(use_cuda_graph) and self.device.type == "cuda"
        if self.use_cuda_graph:
            self._capture()

    # ----------------------------------------------------------------------------------------
    def _substeps(self) -> None:
        for _ in range(self.substeps):
            mjw.step(self.m, self.d)

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

    def _capture(self) -> None:
        """Record the substep loop as a CUDA graph (kernels compiled by a warm-up step first)."""
        try:
            self._on_warp_stream(self._substeps)  # compile and load every kernel before capture
            with wp.ScopedStream(self._wp_stream), wp.ScopedCapture(stream=self._wp_stream) as capture:
                self._substeps()
            self.graph = capture.graph
        except Exception as exc:  # noqa: BLE001 - capture is an optimisation; launch directly instead
            warnings.warn(f"CUDA graph capture failed ({exc}); launching kernels directly (slower)", stacklevel=2)
            self.graph = None
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
        if self.graph is not None:
            self._on_warp_stream(lambda: wp.capture_launch(self.graph, stream=self._wp_stream))
        else:
            self._on_warp_stream(self._substeps)
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
        self._on_warp_stream(lambda: mjw.reset_data(self.m, self.d, reset=self._reset_mask_wp))
        self._write_reset_state(mask, qpos, qvel, act)
        self.forward_kinematics()

    def forward_kinematics(self) -> None:
        """Recompute what observations read from positions and velocities, for all worlds.

        Kinematics, tendon/muscle lengths and moment arms, velocities and muscle forces; it skips
        collision and the constraint solver, which no observation needs, so it costs well under
        a physics step.
        """
        def kinematics():
            mjw.fwd_kinematics(self.m, self.d)
            mjw.transmission(self.m, self.d)
            mjw.fwd_velocity(self.m, self.d)
            mjw.fwd_actuation(self.m, self.d)

        self._on_warp_stream(kinematics)

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
                f"nu={self.nu}, substeps={self.substeps}, cuda_graph={self.graph is not None})")

"""The one simulator interface of mmimic, its shared bookkeeping, and the factory that picks a backend.

Two backends implement ``Simulator``:
- ``warp``: ``WarpSim``, N worlds on mujoco_warp (float32, CUDA graphs): the GPU path;
- ``mujoco``: ``MujocoSim``, N ``MjData`` on MuJoCo's C engine (float64) stepped by a thread pool:
  the CPU path (about 10-15x mujoco_warp on the same CPU cores for the muscle models).
``backend="auto"`` takes warp on CUDA and mujoco on CPU. Envs and learners only see this interface:
they never branch on the backend.

Timing convention of both (that of ``mujoco.mj_step``): after ``step``, ``qpos/qvel/act/time`` are at
the new time; quantities computed from positions (``xpos``, ``site_xpos``, ``actuator_length``,
``actuator_force``, ``sensordata``...) are those of the last physics substep's start, one physics step
behind. ``forward_kinematics`` recomputes them from the state in every world; ``reset`` recomputes them in
the worlds it resets (WarpSim, whose kernels run over all worlds at once, in every world).
"""

from __future__ import annotations

import os
import warnings
from typing import Protocol, runtime_checkable

import torch

from mmimic.embodiments import Embodiment

BACKENDS = ("auto", "warp", "mujoco")

# The torch views every backend exposes: name -> shape and meaning. All are float32, (N, ...) on the
# simulator's device. qpos, qvel, act and ctrl may be written (a write takes effect at the next step).
STATE_VIEWS = {
    "qpos": "(N, nq)",
    "qvel": "(N, nv)",
    "act": "(N, na) muscle activation",
    "ctrl": "(N, nu) muscle excitation (clamped to [0, 1] by the muscle dynamics)",
    "actuator_length": "(N, nu)",
    "actuator_velocity": "(N, nu)",
    "actuator_force": "(N, nu) negative: muscles pull",
    "xpos": "(N, nbody, 3)",
    "xquat": "(N, nbody, 4) w, x, y, z",
    "site_xpos": "(N, nsite, 3)",
    "cvel": "(N, nbody, 6) rotational then translational, com-based",
    "sensordata": "(N, nsensordata)",
    "time": "(N,)",
}


@runtime_checkable
class Simulator(Protocol):
    """N worlds of one embodiment with torch views of their state (see ``STATE_VIEWS``)."""

    embodiment: Embodiment
    num_worlds: int
    substeps: int
    device: torch.device
    backend: str  # "warp" | "mujoco"

    qpos: torch.Tensor  # (N, nq)
    qvel: torch.Tensor  # (N, nv)
    act: torch.Tensor  # (N, na)
    ctrl: torch.Tensor  # (N, nu)
    actuator_length: torch.Tensor  # (N, nu)
    actuator_velocity: torch.Tensor  # (N, nu)
    actuator_force: torch.Tensor  # (N, nu)
    xpos: torch.Tensor  # (N, nbody, 3)
    xquat: torch.Tensor  # (N, nbody, 4)
    site_xpos: torch.Tensor  # (N, nsite, 3)
    cvel: torch.Tensor  # (N, nbody, 6)
    sensordata: torch.Tensor  # (N, nsensordata)
    time: torch.Tensor  # (N,)

    default_qpos: torch.Tensor  # (nq,) what a reset without explicit state restores
    default_qvel: torch.Tensor  # (nv,)
    default_act: torch.Tensor  # (na,)
    unstable: torch.Tensor  # (N,) bool: went unstable since its last reset
    unstable_count: torch.Tensor  # () int64: world-steps that went unstable, in all

    @property
    def nu(self) -> int: ...

    @property
    def control_dt(self) -> float: ...

    def step(self, ctrl: torch.Tensor | None = None) -> torch.Tensor:
        """Copy ``ctrl`` (N, nu) in and advance one control step; returns the (N,) mask of worlds gone unstable."""

    def reset(self, mask: torch.Tensor, qpos: torch.Tensor | None = None, qvel: torch.Tensor | None = None,
              act: torch.Tensor | None = None) -> None:
        """Reset the worlds where ``mask`` is true, to the given rows or the default state."""

    def forward_kinematics(self) -> None:
        """Recompute positions, muscle lengths, velocities and forces from the state, in every world."""

    def forward(self) -> None:
        """Full ``mj_forward`` in every world (collision and constraint forces included)."""

    def find_unstable(self) -> torch.Tensor:
        """(N,) bool: non-finite state or speed above the limit."""

    def check_overflow(self) -> int:
        """Warn about dropped contacts/constraints (one host sync); returns the overflow bits."""

    def synchronize(self) -> None:
        """Wait for queued simulator work."""


def available_threads() -> int:
    """CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(device: str | torch.device) -> str:
    """``auto`` -> ``cuda`` when torch sees a CUDA device, else ``cpu``; checks cpu / cuda / cuda:K.

    The one place the ``auto`` device is resolved. Raises ValueError naming the problem."""
    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not (name in ("cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:K, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: torch sees no CUDA device on this machine (use cpu or auto)")
    return name


def resolve_backend(backend: str, device: str | torch.device) -> str:
    """``auto`` -> ``warp`` on CUDA, ``mujoco`` on CPU; checks the pair. Raises ValueError with the fix."""
    dev = torch.device(device)
    if backend not in BACKENDS:
        raise ValueError(f"unknown simulator backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "warp" if dev.type == "cuda" else "mujoco"
    if backend == "mujoco" and dev.type != "cpu":
        raise ValueError(f"backend 'mujoco' (MuJoCo's C engine) runs on the CPU only, but device is {str(dev)!r}; "
                         "use backend=warp (or auto) on CUDA, or device=cpu")
    return backend


def make_simulator(embodiment: Embodiment, num_worlds: int, device: str | torch.device = "cpu",
                   backend: str = "auto", threads: int | None = None, use_cuda_graph: bool = True,
                   **options) -> Simulator:
    """The simulator for ``backend`` (see ``resolve_backend``). ``threads``: the C backend's pool size
    (default: ``available_threads()``); ``use_cuda_graph``: warp on CUDA. ``options`` go to both
    (``max_abs_qvel``, ``overflow_check_every``)."""
    kind = resolve_backend(backend, device)
    if kind == "mujoco":
        from mmimic.sim.mujoco_sim import MujocoSim

        return MujocoSim(embodiment, num_worlds, device, threads=threads, **options)
    from mmimic.sim.warp_sim import WarpSim

    return WarpSim(embodiment, num_worlds, device, use_cuda_graph=use_cuda_graph, **options)


class SimBase:
    """What both backends share: argument checks, the default state, instability bookkeeping and the
    reset's row handling. Subclasses set the views, then call ``_init_state``."""

    backend = ""

    def _init_common(self, embodiment: Embodiment, num_worlds: int, max_abs_qvel: float,
                     overflow_check_every: int) -> None:
        if int(num_worlds) < 1:
            raise ValueError(f"num_worlds must be >= 1, got {num_worlds!r}")
        self.embodiment = embodiment
        self.mjm = embodiment.model
        self.num_worlds = int(num_worlds)
        self.substeps = int(embodiment.substeps)
        self.max_abs_qvel = float(max_abs_qvel)
        self.overflow_check_every = int(overflow_check_every)
        self._steps = 0
        self._overflow_warned = 0

    def _init_state(self, qpos0, qvel0, act0) -> None:
        """Default state (the keyframe or qpos0) and the on-device instability counters."""
        self.default_qpos = torch.as_tensor(qpos0, dtype=torch.float32, device=self.device)
        self.default_qvel = torch.as_tensor(qvel0, dtype=torch.float32, device=self.device)
        self.default_act = torch.as_tensor(act0, dtype=torch.float32, device=self.device)
        self.unstable = torch.zeros(self.num_worlds, dtype=torch.bool, device=self.device)
        self.unstable_count = torch.zeros((), dtype=torch.int64, device=self.device)

    @property
    def nu(self) -> int:
        return int(self.mjm.nu)

    @property
    def control_dt(self) -> float:
        return self.embodiment.control_dt

    # ---------------------------------------------------------------- saving (exact resume)
    def state_dict(self) -> dict:
        """Everything a continuation needs, bit for bit: the views, the engine's own state (the float64
        integration state of each MjData on the C backend, the solver warm start on warp) and the
        instability counters. Plain tensors and numbers (loadable with ``torch.load(weights_only=True)``)."""
        self.synchronize()
        return {"backend": self.backend, "views": {k: getattr(self, k).clone() for k in STATE_VIEWS},
                "engine": self._engine_state(), "unstable": self.unstable.clone(),
                "unstable_count": self.unstable_count.clone(), "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()`` (same model and world count, or a ValueError saying what differs).
        From the other backend (a CPU run continued on a GPU) only the views move over: the engine's own
        state (warm start) starts afresh, so the continuation is close but not bit-exact (a warning says so)."""
        for k in STATE_VIEWS:
            view, saved = getattr(self, k), state["views"][k]
            if tuple(saved.shape) != tuple(view.shape):
                raise ValueError(f"simulator state: {k} is {tuple(saved.shape)} in the saved state, "
                                 f"{tuple(view.shape)} here (another model or world count)")
        if state.get("backend", self.backend) == self.backend:
            self._load_engine_state(state["engine"])
        else:
            warnings.warn(f"simulator state saved on the {state['backend']!r} backend, loaded on {self.backend!r}: "
                          "the state moves over, the solver's warm start does not (not a bit-exact continuation)",
                          stacklevel=2)
        for k in STATE_VIEWS:
            getattr(self, k).copy_(state["views"][k])
        self.unstable.copy_(state["unstable"])
        self.unstable_count.copy_(state["unstable_count"])
        self._steps = int(state["steps"])
        self._after_load()

    def _engine_state(self) -> dict:
        return {}

    def _load_engine_state(self, state: dict) -> None:
        pass

    def _after_load(self) -> None:
        pass

    def _check_ctrl(self, ctrl: torch.Tensor) -> None:
        if ctrl.shape != self.ctrl.shape:
            raise ValueError(f"ctrl must have shape {tuple(self.ctrl.shape)} (N, nu), got {tuple(ctrl.shape)}")

    def _after_step(self) -> torch.Tensor:
        """Flag and count the worlds that went unstable (no host sync); periodic overflow check."""
        bad = self.find_unstable()
        self.unstable |= bad
        self.unstable_count += bad.sum()
        self._steps += 1
        if self.overflow_check_every and self._steps % self.overflow_check_every == 0:
            self.check_overflow()
        return bad

    def find_unstable(self) -> torch.Tensor:
        """(N,) bool: worlds whose state is not finite or whose speed exceeds ``max_abs_qvel``."""
        finite = torch.isfinite(self.qpos).all(1) & torch.isfinite(self.qvel).all(1) & torch.isfinite(self.act).all(1)
        return ~finite | (self.qvel.abs() > self.max_abs_qvel).any(1)

    def _check_mask(self, mask: torch.Tensor) -> torch.Tensor:
        mask = torch.as_tensor(mask, device=self.device).to(torch.bool)
        if mask.shape != (self.num_worlds,):
            raise ValueError(f"reset mask must have shape ({self.num_worlds},), got {tuple(mask.shape)}")
        return mask

    def _write_reset_state(self, mask: torch.Tensor, qpos, qvel, act) -> None:
        """Write the given rows (or the default state) into the state views of the masked worlds."""
        for view, given, default in (
            (self.qpos, qpos, self.default_qpos),
            (self.qvel, qvel, self.default_qvel),
            (self.act, act, self.default_act),
        ):
            if view.shape[1] == 0:
                continue
            value = default.expand_as(view) if given is None else self._rows(given, mask, view.shape[1])
            # torch.where keeps shapes static (no nonzero/host sync) and writes in place.
            view.copy_(torch.where(mask[:, None], value.to(view.dtype), view))
        self.unstable &= ~mask

    def _rows(self, value: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
        value = torch.as_tensor(value, device=self.device)
        if value.ndim == 1:
            value = value.expand(self.num_worlds, -1)
        if value.shape == (self.num_worlds, width):
            return value
        if value.ndim == 2 and value.shape[1] == width:  # (M, width): scatter into the masked rows
            full = torch.zeros(self.num_worlds, width, dtype=value.dtype, device=self.device)
            full[mask] = value
            return full
        raise ValueError(f"reset state must be (N, {width}) or (mask.sum(), {width}), got {tuple(value.shape)}")

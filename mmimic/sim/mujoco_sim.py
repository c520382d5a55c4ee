"""MujocoSim: N worlds on MuJoCo's C engine (one ``MjData`` each), stepped by a pool of threads.

The CPU path. Each world is a float64 ``MjData``; a control step hands contiguous chunks of worlds
to ``threads`` threads, each of which calls ``mujoco.mj_step`` ``substeps`` times per world (the
bindings release the GIL inside ``mj_step``, so the threads run the physics in parallel) and then
copies the world's state and derived quantities into float32 torch tensors: the same views as
``WarpSim`` (``STATE_VIEWS``), on the CPU.

Why threads over ``mj_step`` rather than ``mujoco.rollout``: measured on a 2-core machine,
bimanual without fingers, 64 worlds, 5 substeps, random excitations: the rollout pool (C++ threads,
2) ran 1,769 control steps/s, threads over chunks calling ``mj_step`` 1,385-1,888 (1 thread: 1,038).
They tie, but a rollout returns only the physics state and sensors: positions, muscle lengths and
forces would need a second pass over every world, while an ``MjData`` that has just stepped
already holds them. Per world and control step the Python work is one ctrl copy-in, ``substeps``
calls and about a dozen small array copies (~1-2 % of the step for the muscle models).

Writes to the ``qpos``/``qvel``/``act`` views take effect at the next step (as on WarpSim, where
the views are the simulator's memory): a step first finds the rows that differ from what the
simulator last wrote (vectorized) and copies only those into their ``MjData``, so the float64 state
is never rounded to float32 unless written. MuJoCo's automatic reset of diverged worlds is turned
off (``mjDSBL_AUTORESET``) so that a blown-up world shows NaN and is flagged and counted the same
way on both backends; the env resets it. The physics of each world does not depend on the
partition into threads: 1 and N threads give identical states.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np
import torch

from mmimic.embodiments import Embodiment
from mmimic.sim.simulator import STATE_VIEWS, SimBase, available_threads

# MjData fields with the same shape per world as the views (everything but time and ctrl).
_COPIED = tuple(k for k in STATE_VIEWS if k not in ("time", "ctrl"))
_OVERFLOW_WARNINGS = (mujoco.mjtWarning.mjWARN_CONTACTFULL, mujoco.mjtWarning.mjWARN_CNSTRFULL)


class MujocoSim(SimBase):
    """N worlds of one embodiment on MuJoCo's C engine, ``threads`` at a time. CPU only.

    Same interface as ``WarpSim`` (``mmimic.sim.Simulator``): ``step(ctrl)``, ``reset(mask, qpos=,
    qvel=, act=)``, ``forward_kinematics()``, the views of ``STATE_VIEWS``, ``unstable`` and
    ``unstable_count``.
    """

    backend = "mujoco"

    def __init__(self, embodiment: Embodiment, num_worlds: int, device: str | torch.device = "cpu",
                 threads: int | None = None, max_abs_qvel: float = 1e3, overflow_check_every: int = 100):
        self._init_common(embodiment, num_worlds, max_abs_qvel, overflow_check_every)
        self.device = torch.device(device)
        if self.device.type != "cpu":
            raise ValueError(f"MujocoSim (MuJoCo's C engine) runs on the CPU, got device {str(device)!r}; "
                             "use WarpSim (backend warp) on CUDA")
        self.threads = available_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        self.threads = min(self.threads, self.num_worlds)
        # Our own copy of the model: the embodiment's is shared (warp, retargeting) and stays untouched.
        self.model = copy.copy(self.mjm)
        self.model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_AUTORESET)

        start = mujoco.MjData(self.model)
        if self.model.nkey > 0:  # a model's first keyframe is its intended start pose
            mujoco.mj_resetDataKeyframe(self.model, start, 0)
        mujoco.mj_forward(self.model, start)
        self.datas = [copy.copy(start) for _ in range(self.num_worlds)]

        n, m = self.num_worlds, self.model
        shapes = {name: np.asarray(getattr(start, name)).shape for name in _COPIED}
        # The views, declared one by one (float32, (N, ...) on the CPU); numpy twins share their memory.
        self.qpos = torch.zeros(n, *shapes["qpos"])
        self.qvel = torch.zeros(n, *shapes["qvel"])
        self.act = torch.zeros(n, *shapes["act"])
        self.ctrl = torch.zeros(n, m.nu)
        self.actuator_length = torch.zeros(n, *shapes["actuator_length"])
        self.actuator_velocity = torch.zeros(n, *shapes["actuator_velocity"])
        self.actuator_force = torch.zeros(n, *shapes["actuator_force"])
        self.xpos = torch.zeros(n, *shapes["xpos"])
        self.xquat = torch.zeros(n, *shapes["xquat"])
        self.site_xpos = torch.zeros(n, *shapes["site_xpos"])
        self.cvel = torch.zeros(n, *shapes["cvel"])
        self.sensordata = torch.zeros(n, *shapes["sensordata"])
        self.time = torch.zeros(n)
        self._np = {name: getattr(self, name).numpy() for name in (*_COPIED, "ctrl", "time")}
        # What the simulator last wrote into qpos/qvel/act: rows that differ were written by a user.
        self._written = {k: torch.zeros_like(getattr(self, k)) for k in ("qpos", "qvel", "act")}

        self._init_state(start.qpos, start.qvel, start.act)
        # Per world, (view row target, MjData array) pairs: the MjData arrays never move, so the
        # numpy views of them are made once, not at every copy.
        self._sources = [[getattr(d, name) for name in _COPIED] for d in self.datas]
        self._targets = [self._np[name] for name in _COPIED]
        self._chunks = self._split(np.arange(n))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mmimic-mujoco") if self.threads > 1 else None
        if self._pool is not None:
            weakref.finalize(self, self._pool.shutdown, wait=False)
        for i in range(n):
            self._pull(i)
        self._remember_state()

    # ---------------------------------------------------------------- per-world work (in the pool)
    def _pull(self, i: int) -> None:
        """Copy world i's MjData into row i of the views."""
        for target, source in zip(self._targets, self._sources[i]):
            target[i] = source
        self._np["time"][i] = self.datas[i].time

    def _step_chunk(self, worlds: np.ndarray) -> None:
        m, ctrl, substeps = self.model, self._np["ctrl"], self.substeps
        for i in worlds:
            d = self.datas[i]
            d.ctrl[:] = ctrl[i]
            mujoco.mj_step(m, d, substeps)  # one call, one GIL release, for all substeps
            self._pull(i)

    def _physics_chunk(self, worlds: np.ndarray) -> None:
        m, substeps = self.model, self.substeps
        for i in worlds:
            mujoco.mj_step(m, self.datas[i], substeps)

    def _kinematics_chunk(self, worlds: np.ndarray) -> None:
        m = self.model
        for i in worlds:
            d = self.datas[i]
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            mujoco.mj_tendon(m, d)
            mujoco.mj_transmission(m, d)
            mujoco.mj_fwdVelocity(m, d)
            mujoco.mj_fwdActuation(m, d)
            self._pull(i)

    def _forward_chunk(self, worlds: np.ndarray) -> None:
        for i in worlds:
            mujoco.mj_forward(self.model, self.datas[i])
            self._pull(i)

    def _split(self, worlds: np.ndarray) -> list[np.ndarray]:
        return [c for c in np.array_split(worlds, min(self.threads, max(len(worlds), 1))) if c.size]

    def _run(self, fn, chunks: list[np.ndarray] | None = None) -> None:
        """``fn(worlds)`` for each chunk (default: all worlds), one chunk per pool thread."""
        chunks = self._chunks if chunks is None else chunks
        if self._pool is None or len(chunks) < 2:
            for c in chunks:
                fn(c)
        else:
            for future in [self._pool.submit(fn, c) for c in chunks]:
                future.result()  # re-raises a worker's exception here

    # ---------------------------------------------------------------- state written from torch
    def _remember_state(self) -> None:
        for k, v in self._written.items():
            v.copy_(getattr(self, k))

    def _push_written(self) -> None:
        """Copy rows of qpos/qvel/act written through the views since the last step into their MjData."""
        changed = torch.zeros(self.num_worlds, dtype=torch.bool)
        for k, last in self._written.items():
            if last.shape[1]:
                changed |= (getattr(self, k) != last).any(1)  # NaN != NaN: a NaN row counts as written
        for i in changed.nonzero().flatten().tolist():
            d = self.datas[i]
            d.qpos[:] = self._np["qpos"][i]
            d.qvel[:] = self._np["qvel"][i]
            d.act[:] = self._np["act"][i]

    # ---------------------------------------------------------------- the interface
    def step(self, ctrl: torch.Tensor | None = None) -> torch.Tensor:
        """Advance one control step. Returns the (N,) bool mask of worlds that went unstable.

        ``ctrl`` (N, nu), if given, is copied into the ``ctrl`` view first. Unstable worlds (non-finite
        state or |qvel| above ``max_abs_qvel``) are added to ``self.unstable`` and counted in
        ``self.unstable_count``; the caller resets them.
        """
        if ctrl is not None:
            self._check_ctrl(ctrl)
            self.ctrl.copy_(ctrl)
        self._push_written()
        self._run(self._step_chunk)
        self._remember_state()
        return self._after_step()

    def physics_only_step(self) -> None:
        """``substeps`` bare ``mj_step`` calls in every world through the pool, nothing copied in or out
        and no checks: what ``mmimic bench`` times as the raw simulator. The views go stale."""
        self._run(self._physics_chunk)

    def reset(self, mask: torch.Tensor, qpos: torch.Tensor | None = None, qvel: torch.Tensor | None = None,
              act: torch.Tensor | None = None) -> None:
        """Reset the worlds where ``mask`` (N,) is true (``WarpSim.reset``'s contract).

        Those worlds get ``mj_resetData`` (time 0, no warm start, zero ctrl) and then the given state:
        ``qpos`` (M, nq), ``qvel`` (M, nv), ``act`` (M, na) with M = mask.sum(), or (N, ...) of which
        the masked rows are taken; the default state where not given. Derived quantities are then
        recomputed in those worlds (the others keep theirs: kinematics costs ~60 % of a physics step
        for the muscle models, too much to redo in every world at every partial reset). Their flags
        in ``self.unstable`` are cleared.
        """
        mask = self._check_mask(mask)
        self._push_written()  # rows written since the last step, in worlds that are not reset
        self._write_reset_state(mask, qpos, qvel, act)
        worlds = mask.nonzero().flatten().numpy()
        for i in worlds:
            d = self.datas[i]
            mujoco.mj_resetData(self.model, d)
            d.qpos[:], d.qvel[:], d.act[:] = self._np["qpos"][i], self._np["qvel"][i], self._np["act"][i]
        self.ctrl[mask] = 0.0
        self.time[mask] = 0.0
        self._remember_state()
        self._run(self._kinematics_chunk, self._split(worlds))

    def forward_kinematics(self) -> None:
        """Kinematics, tendon/muscle lengths and moment arms, velocities and muscle forces, in every
        world (no collision, no constraint solver)."""
        self._push_written()
        self._run(self._kinematics_chunk)
        self._remember_state()

    def forward(self) -> None:
        """Full ``mj_forward`` in every world (collision and constraint forces included)."""
        self._push_written()
        self._run(self._forward_chunk)
        self._remember_state()

    # ---------------------------------------------------------------- saving (see SimBase.state_dict)
    _INTEGRATION = int(mujoco.mjtState.mjSTATE_INTEGRATION)  # time, qpos, qvel, act, warm start, ctrl, ...

    def _engine_state(self) -> dict:
        self._push_written()
        size = mujoco.mj_stateSize(self.model, self._INTEGRATION)
        out = np.empty((self.num_worlds, size))
        for i, d in enumerate(self.datas):
            mujoco.mj_getState(self.model, d, out[i], self._INTEGRATION)
        return {"integration": torch.from_numpy(out)}

    def _load_engine_state(self, state: dict) -> None:
        saved = state["integration"].numpy()
        size = mujoco.mj_stateSize(self.model, self._INTEGRATION)
        if saved.shape != (self.num_worlds, size):
            raise ValueError(f"simulator state: MuJoCo integration state is {saved.shape}, expected "
                             f"{(self.num_worlds, size)}")
        for i, d in enumerate(self.datas):
            mujoco.mj_setState(self.model, d, saved[i], self._INTEGRATION)

    def _after_load(self) -> None:
        self._remember_state()  # the restored views are the simulator's, not a user's edit

    def check_overflow(self) -> int:
        """MuJoCo's arena-full warnings (contacts or constraints dropped), warned once. Returns 1 if any."""
        full = sum(1 for d in self.datas if any(d.warning[w].number for w in _OVERFLOW_WARNINGS))
        if full and not self._overflow_warned:
            self._overflow_warned = 1
            warnings.warn(f"MuJoCo ran out of arena memory for contacts/constraints in {full} of "
                          f"{self.num_worlds} worlds; raise the model's <size memory=...>", stacklevel=2)
        return int(full > 0)

    def synchronize(self) -> None:
        """Nothing queued: every call returns when its work is done."""

    def close(self) -> None:
        """Stop the worker threads (also done when the simulator is garbage-collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._chunks = [np.arange(self.num_worlds)]

    def __repr__(self) -> str:
        return (f"MujocoSim({self.embodiment.name!r}, num_worlds={self.num_worlds}, threads={self.threads}, "
                f"nu={self.nu}, substeps={self.substeps})")

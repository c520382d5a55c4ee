"""Simulators behind one interface (``Simulator``): ``WarpSim`` (mujoco_warp, the GPU path) and
``MujocoSim`` (MuJoCo's C engine over a thread pool, the CPU path); ``make_simulator`` picks one."""

from mmimic.sim.mujoco_sim import MujocoSim
from mmimic.sim.simulator import (BACKENDS, STATE_VIEWS, Simulator, available_threads, make_simulator,
                                  resolve_backend, resolve_device)
from mmimic.sim.warp_sim import WarpSim, contact_buffer_sizes

__all__ = ["BACKENDS", "STATE_VIEWS", "MujocoSim", "Simulator", "WarpSim", "available_threads",
           "contact_buffer_sizes", "make_simulator", "resolve_backend", "resolve_device"]

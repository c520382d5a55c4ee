"""Simulator: batched mujoco_warp worlds with zero-copy torch views (``WarpSim``)."""

from mmimic.sim.warp_sim import STATE_VIEWS, WarpSim, contact_buffer_sizes

__all__ = ["STATE_VIEWS", "WarpSim", "contact_buffer_sizes"]

"""Helpers shared by the tests (imported as ``from helpers import ...``; pytest puts tests/ on the path)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")


def cuda(fn):
    """Mark a test ``cuda`` and skip it, with a reason, where torch sees no CUDA device."""
    return pytest.mark.cuda(NEEDS_CUDA(fn))


def mj_default_data(model: mujoco.MjModel) -> mujoco.MjData:
    """C MuJoCo data at a model's default state (first keyframe if any, as WarpSim uses)."""
    d = mujoco.MjData(model)
    if model.nkey > 0:
        mujoco.mj_resetDataKeyframe(model, d, 0)
    mujoco.mj_forward(model, d)
    return d


def as_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def make_sim(emb, num_worlds: int, backend: str, **options):
    """A simulator of ``backend`` on the CPU (``mmimic.sim.make_simulator``)."""
    from mmimic.sim import make_simulator

    return make_simulator(emb, num_worlds, "cpu", backend=backend, **options)


def warmstart(sim, world: int) -> np.ndarray:
    """The solver warm start (qacc_warmstart) of one world, from either backend's own data."""
    if sim.backend == "warp":
        return sim.d.qacc_warmstart.numpy()[world].copy()
    return sim.datas[world].qacc_warmstart.copy()


def refuse_writes_in(monkeypatch, folder) -> None:
    """Make temp files in ``folder`` fail as in a read-only directory (tests run as root, which ignores
    chmod): every atomic write goes through ``tempfile.mkstemp``."""
    import tempfile
    from pathlib import Path

    real_mkstemp = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir) == Path(folder):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def replay_reference(env, joint_offset: float = 0.0):
    """A stand-in for ``env.sim.step`` that replaces the physics by the reference: after each step every
    world is exactly on its clip's reference at the new time, plus ``joint_offset`` on the first joint."""
    task, sim = env.task, env.sim

    def step(ctrl=None):
        ref = task.library.state(task.clip_id, task.ref_time + task.dt)
        qpos = ref["qpos"].clone()
        qpos[:, 0] += joint_offset
        sim.qpos.copy_(qpos)
        sim.qvel.copy_(ref["qvel"])
        sim.forward_kinematics()
        return torch.zeros(env.num_envs, dtype=torch.bool)

    return step


HOST_READS = ("item", "__bool__", "tolist", "nonzero", "__float__", "__int__", "__index__")


def refuse_host_reads(monkeypatch, where: str, tensor_from_host: bool = False) -> None:
    """Until ``monkeypatch.undo()``: any read of a tensor back to the host (``HOST_READS``, boolean-mask or
    0-dim-tensor indexing) raises, naming ``where``; with ``tensor_from_host`` also ``torch.tensor`` (an H2D
    copy, which synchronizes on CUDA). A CPU stand-in for CUDA's sync debug mode: Python-level calls only."""
    def refuse(name):
        def fn(*args, **kwargs):
            raise AssertionError(f"host read in {where}: {name}")
        return fn

    getitem = torch.Tensor.__getitem__

    def no_host_index(self, idx):
        for i in idx if isinstance(idx, tuple) else (idx,):
            if isinstance(i, torch.Tensor):
                assert i.dtype != torch.bool, f"boolean-mask indexing in {where}"
                assert i.ndim > 0, f"indexing with a 0-dim tensor (an .item()) in {where}"
        return getitem(self, idx)

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, refuse(f"Tensor.{name}"))
    monkeypatch.setattr(torch.Tensor, "__getitem__", no_host_index)
    if tensor_from_host:
        monkeypatch.setattr(torch, "tensor", refuse("torch.tensor (from host data)"))

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

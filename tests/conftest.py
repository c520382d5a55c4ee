"""Shared fixtures.

Warp compiles its kernels on first use (about 45 s per model on CPU, cached in ~/.cache/warp
afterwards) and loads them once per process, so the compiled embodiments are built once per
session here and the tests keep world counts small (2-4) and rollouts short. A ``WarpSim`` or a
``MuscleEnv`` over an already loaded model costs well under a second, so tests that change a
sim's state build their own from these embodiments.
"""

from __future__ import annotations

import warp as wp

# Before warp is initialised: no banner and no line per loaded kernel module. warp >= 1.10 reads
# log_level (``quiet`` is the older switch, kept for older warp versions).
wp.config.quiet = True
wp.config.log_level = wp.LOG_WARNING

import pytest  # noqa: E402

from mmimic.embodiments import load_embodiment  # noqa: E402


def pytest_configure(config):
    # torchrl 0.14 announces the deprecation of its own weight updaters when the collectors are imported
    config.addinivalue_line("filterwarnings",
                            "ignore:Creating .*WeightUpdater which inherits:DeprecationWarning")


@pytest.fixture(scope="session", params=["mujoco", "warp"])
def backend(request):
    """Each test that takes it runs on both simulator backends (C engine, mujoco_warp), on the CPU."""
    return request.param


@pytest.fixture(scope="session")
def arm26():
    return load_embodiment("arm26")


@pytest.fixture(scope="session")
def bimanual():
    return load_embodiment("bimanual")


@pytest.fixture(scope="session")
def bimanual_nofingers():
    return load_embodiment("bimanual", remove_fingers=True)


@pytest.fixture(scope="session")
def myofullbody():
    return load_embodiment("myofullbody")


@pytest.fixture(scope="session")
def myofullbody_nofingers():
    return load_embodiment("myofullbody", remove_fingers=True)

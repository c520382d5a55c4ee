"""One exploding world is flagged, counted and reset, never fatal, the same way on both backends; buffer
overflows are reported (mujoco_warp's fixed buffers)."""

import warnings

import mujoco_warp as mjw
import pytest
import torch
from helpers import make_sim, mj_default_data
from tensordict import TensorDict
from torchrl.envs.utils import step_mdp

from mmimic.envs import MuscleEnv
from mmimic.sim import WarpSim

NEFC = int(mjw.OverflowType.NEFC)
SOLVER_LIMITS = int(mjw.OverflowType.ITERATIONS | mjw.OverflowType.LS_ITERATIONS)


def _check_nan_world_is_flagged_and_reset(emb, backend, num_worlds=3, bad=1):
    sim = make_sim(emb, num_worlds, backend)
    ctrl = torch.full((num_worlds, sim.nu), 0.3)
    sim.step(ctrl)
    assert int(sim.unstable_count) == 0 and not sim.unstable.any()
    good_before = sim.qpos.clone()

    sim.qvel[bad, 0] = float("nan")
    flagged = sim.step(ctrl)
    expected = torch.zeros(num_worlds, dtype=torch.bool)
    expected[bad] = True
    assert torch.equal(flagged, expected)
    assert torch.equal(sim.unstable, expected)
    assert int(sim.unstable_count) == 1
    others = ~expected
    for k in ("qpos", "qvel", "act", "actuator_force", "xpos"):
        assert torch.isfinite(getattr(sim, k)[others]).all(), f"NaN leaked into other worlds' {k}"
    assert not torch.equal(sim.qpos[others], good_before[others])  # the others kept moving

    # stepping again without a reset counts the world again (world-steps), still only that one
    flagged = sim.step(ctrl)
    assert torch.equal(flagged, expected)
    assert int(sim.unstable_count) == 2

    sim.reset(expected)
    assert not sim.unstable.any()
    for k in ("qpos", "qvel", "act", "actuator_length", "actuator_force", "site_xpos"):
        assert torch.isfinite(getattr(sim, k)).all(), k
    torch.testing.assert_close(sim.qpos[bad], sim.default_qpos)
    flagged = sim.step(ctrl)
    assert not flagged.any()
    assert torch.isfinite(sim.qpos).all() and torch.isfinite(sim.act).all()
    assert int(sim.unstable_count) == 2  # a running total, not cleared by reset


def test_nan_world_flagged_counted_and_reset_arm26(arm26, backend):
    _check_nan_world_is_flagged_and_reset(arm26, backend)


@pytest.mark.slow
def test_nan_world_flagged_counted_and_reset_bimanual(bimanual, backend):
    """With contacts and the constraint solver, a NaN world must not contaminate the others either."""
    _check_nan_world_is_flagged_and_reset(bimanual, backend, num_worlds=2, bad=0)


def test_nan_in_activation_is_flagged(arm26, backend):
    sim = make_sim(arm26, 2, backend)
    sim.act[0, 3] = float("nan")
    flagged = sim.step(torch.zeros(2, sim.nu))
    assert flagged.tolist() == [True, False]


def test_runaway_speed_is_flagged(arm26, backend):
    sim = make_sim(arm26, 2, backend, max_abs_qvel=5.0)
    sim.step(torch.zeros(2, sim.nu))
    assert not sim.unstable.any()
    sim.qvel[1, 1] = 200.0  # finite but far above max_abs_qvel
    flagged = sim.step(torch.zeros(2, sim.nu))
    assert flagged.tolist() == [False, True]
    assert torch.isfinite(sim.qvel).all()
    assert int(sim.unstable_count) == 1


def test_check_overflow_is_zero_on_normal_run(arm26, backend):
    sim = make_sim(arm26, 2, backend, overflow_check_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow warning fails the test
        for _ in range(10):
            sim.step(torch.rand(2, sim.nu))
        assert sim.check_overflow() == 0
    if backend == "warp":
        assert sim.njmax >= 1 and sim.nconmax >= 1


@pytest.mark.slow
def test_check_overflow_is_zero_on_normal_run_bimanual(bimanual, backend):
    sim = make_sim(bimanual, 2, backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):
            sim.step(torch.rand(2, sim.nu))
        bits = sim.check_overflow()
    assert bits & ~SOLVER_LIMITS == 0  # hitting the solver's iteration cap is not a buffer overflow


def test_tiny_constraint_buffer_warns_nefc_arm26():
    """arm26 has no contacts; with both joints pushed past their limits it needs 2 rows, and gets 1."""
    from mmimic.embodiments import load_embodiment

    emb = load_embodiment("arm26", njmax=1)
    m = emb.model
    sim = WarpSim(emb, 2, overflow_check_every=0)
    assert sim.njmax == 1
    at_limits = torch.tensor([m.jnt_range[0, 0] - 0.02, m.jnt_range[1, 1] + 0.02], dtype=torch.float32)
    sim.reset(torch.tensor([True, False]), qpos=at_limits[None])
    sim.step(torch.zeros(2, sim.nu))
    with pytest.warns(UserWarning, match="NEFC") as record:
        bits = sim.check_overflow()
    assert bits & NEFC
    assert "1 of 2 worlds" in str(record[0].message)
    assert "njmax=1" in str(record[0].message)
    # warned once per kind: asking again reports the bits silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sim.check_overflow() & NEFC
    # a reset clears the flag
    sim.reset(torch.ones(2, dtype=torch.bool))
    assert sim.check_overflow() == 0


@pytest.mark.slow
def test_tiny_constraint_buffer_warns_nefc_bimanual():
    from mmimic.embodiments import load_embodiment

    probe = load_embodiment("bimanual")
    nefc0 = mj_default_data(probe.model).nefc  # put_data refuses less than the start state needs
    assert nefc0 > 0
    emb = load_embodiment("bimanual", njmax=nefc0)
    sim = WarpSim(emb, 2, overflow_check_every=1)  # the periodic check in step() warns by itself
    with pytest.warns(UserWarning, match="NEFC"):
        for _ in range(3):
            sim.step(torch.full((2, sim.nu), 0.5))
    assert sim.check_overflow() & NEFC
    # smaller than the start state itself: refused when the buffers are allocated
    with pytest.raises(ValueError, match="njmax"):
        WarpSim(load_embodiment("bimanual", njmax=4), 2)


# ------------------------------------------------------------------------------------ env level
def test_env_nan_world_terminates_with_finite_obs(arm26, backend):
    env = MuscleEnv("arm26", num_envs=3, seed=0, backend=backend)
    td = env.reset()
    td = env.rand_step(td)
    assert not td["next", "done"].any()
    assert env.unstable_count == 0

    env.sim.qvel[1, 0] = float("nan")
    td = env.rand_step(step_mdp(td))
    nxt = td["next"]
    assert nxt["terminated"].squeeze(-1).tolist() == [False, True, False]
    assert nxt["done"].squeeze(-1).tolist() == [False, True, False]
    assert not nxt["truncated"].any()
    assert nxt["reward"][1].item() == 0.0
    assert torch.isfinite(nxt["reward"]).all()
    assert (nxt["reward"][[0, 2]] != 0).all()
    for key in env.observation_spec.keys(True, True):
        assert torch.isfinite(nxt[key]).all(), f"non-finite {key} handed to the policy"
    assert env.unstable_count == 1
    # the sim itself holds NaN until reset
    assert not torch.isfinite(env.sim.qpos[1]).all()
    assert torch.isfinite(env.sim.qpos[[0, 2]]).all()

    # partial reset through torchrl's "_reset" entry
    qpos_others = env.sim.qpos[[0, 2]].clone()
    step_others = env.episode_step[[0, 2]].clone()
    reset_td = TensorDict({"_reset": torch.tensor([[False], [True], [False]])}, batch_size=[3])
    out = env.reset(reset_td)
    assert torch.isfinite(env.sim.qpos).all()
    assert not env.sim.unstable.any()
    assert env.episode_step.tolist()[1] == 0
    assert torch.equal(env.episode_step[[0, 2]], step_others)
    assert torch.equal(env.sim.qpos[[0, 2]], qpos_others)
    assert not out["done"].any()
    td = env.rand_step(out)
    assert not td["next", "terminated"].any()
    assert env.unstable_count == 1


def test_env_nan_world_recovers_with_step_and_maybe_reset(arm26, backend):
    env = MuscleEnv("arm26", num_envs=2, seed=1, backend=backend)
    td = env.reset()
    td, td = env.step_and_maybe_reset(env.rand_action(td))
    env.sim.qvel[0, 1] = float("nan")
    td_out, td_root = env.step_and_maybe_reset(env.rand_action(td))
    assert td_out["next", "terminated"].squeeze(-1).tolist() == [True, False]
    assert td_out["next", "reward"][0].item() == 0.0
    assert env.unstable_count == 1
    # the root for the next step is a fresh episode for world 0, finite, not done
    assert torch.isfinite(td_root["observation"]).all()
    assert torch.isfinite(env.sim.qpos).all()
    assert env.episode_step.tolist() == [0, 2]
    assert not td_root["done"].any()
    td_out, _ = env.step_and_maybe_reset(env.rand_action(td_root))
    assert not td_out["next", "done"].any()
    assert env.unstable_count == 1

"""GPU readiness checked on the CPU where it can be (issue 11), and on CUDA where a GPU is present.

- ``MuscleEnv.step_and_reset``, the collect loop's step: the same outputs as torchrl's
  ``step_and_maybe_reset``, and on its sync-free path (the CUDA default) no host read at all;
- WarpSim's capture: the fallback when a capture fails (no graph, no conditional solver loop, GC paused
  during capture), a clear error when warp sees no CUDA device although torch does;
- on CUDA only (skipped here): no host sync in the collect loop under ``torch.cuda.set_sync_debug_mode``,
  the three graphs captured, a resume with ``map_location=cuda`` restores the RNG states.
"""

from __future__ import annotations

import gc

import pytest
import torch
import warp as wp
from helpers import cuda, refuse_host_reads

from mmimic.envs import MuscleImitationEnv
from mmimic.motion.demo import ensure_demo_library
from mmimic.rl import PPO, NetworkConfig, PPOConfig, collect
from mmimic.sim import WarpSim


@pytest.fixture(scope="module")
def arm_motions(tmp_path_factory):
    return ensure_demo_library("arm26", tmp_path_factory.mktemp("data"), log=lambda *_: None)


def _env(motions, backend, num_envs=4, device="cpu", **options):
    return MuscleImitationEnv("arm26", motions=motions, num_envs=num_envs, device=device, seed=3, backend=backend,
                              **options)


def _learner(env):
    return PPO.for_env(env, PPOConfig(network=NetworkConfig(actor_hidden=[16], critic_hidden=[16])))


# ------------------------------------------------------------------------------------ step_and_reset
def test_step_and_reset_matches_torchrl_step_and_maybe_reset(arm_motions, backend):
    """Three envs on one clip from its start (so that resets do not depend on the random draws) with staggered
    episode ends: torchrl's step_and_maybe_reset, step_and_reset as on the CPU (reset when a world is done) and
    as on CUDA (a masked reset every step) give the same outputs at every step, partial resets included."""
    clip = sorted(arm_motions.glob("*.npz"))[0]
    envs = [_env(clip, backend, random_start=False, max_episode_steps=4) for _ in range(3)]
    tds = [env.reset() for env in envs]
    for env in envs:
        env.episode_step = torch.tensor([0, 1, 2, 3])  # worlds end on different steps
    g = torch.Generator().manual_seed(0)
    partial = 0
    for _ in range(10):
        action = torch.rand(4, 6, generator=g) * 2 - 1
        outs = [envs[0].step_and_maybe_reset(tds[0].set("action", action.clone())),
                envs[1].step_and_reset(tds[1].set("action", action.clone()), sync_free=False),
                envs[2].step_and_reset(tds[2].set("action", action.clone()), sync_free=True)]
        done = outs[0][0]["next", "done"].reshape(-1)
        partial += bool(done.any() and not done.all())
        ref_out, ref_next = outs[0]
        for out, nxt in outs[1:]:
            assert (out == ref_out).all(), "the step's output differs"
            assert set(nxt.keys(True, True)) == set(ref_next.keys(True, True))
            assert (nxt == ref_next).all(), "the next step's input differs"
        tds = [nxt for _, nxt in outs]
    assert partial >= 3  # the comparison went through partial resets


def test_collect_on_the_sync_free_path_reads_nothing_back(arm_motions, monkeypatch):
    """The collect loop with the CUDA default (``env.sync_free``) on warp: no .item(), bool(), tolist(),
    boolean-mask or 0-dim tensor indexing in the env step, the masked reset or the policy, and no tensor
    built from host data (``torch.tensor``: an H2D copy, which synchronizes on CUDA; TensorDict.where's
    ``pad`` made one per step). The CPU stand-in for the CUDA test below: Python-level calls only."""
    env = _env(arm_motions, "warp", history_steps=2, critic_obs=True, max_episode_steps=3)
    env.sync_free = True
    learner = _learner(env)
    td = env.reset()
    collect(env, learner, 2, td)  # first calls: lazy setup outside the check

    refuse_host_reads(monkeypatch, "the collect loop", tensor_from_host=True)
    rollout, td = collect(env, learner, 6, td)  # episodes of 3 steps: resets inside
    monkeypatch.undo()
    assert rollout["done"].any()


# ------------------------------------------------------------------------------------ WarpSim capture
def _fake_capture(sim, monkeypatch, fail: set[str], gc_states: list):
    """Capture on the CPU as if on CUDA: the parts in ``fail`` raise, the others return a placeholder."""
    monkeypatch.setattr(wp, "is_mempool_enabled", lambda device: True)
    monkeypatch.setattr(wp, "is_conditional_graph_supported", lambda: True)
    names = iter(["graph", "reset_graph", "kinematics_graph"])

    def capture_one(fn):
        gc_states.append(gc.isenabled())
        name = next(names)
        if name in fail:
            raise RuntimeError(f"{name} broke")
        return f"<{name}>"

    monkeypatch.setattr(sim, "_capture_one", capture_one)


def test_failed_capture_launches_directly_without_the_conditional_solver_loop(arm26, monkeypatch):
    sim = WarpSim(arm26, 2, "cpu")
    assert sim.m.opt.graph_conditional  # mujoco_warp's default
    gc_states = []
    _fake_capture(sim, monkeypatch, {"graph", "reset_graph", "kinematics_graph"}, gc_states)
    with pytest.warns(UserWarning, match="CUDA graph capture failed.*graph: RuntimeError: graph broke"):
        sim._capture()
    assert gc_states == [False, False, False] and gc.isenabled()  # GC paused during capture only
    assert sim.graph is sim.reset_graph is sim.kinematics_graph is None
    assert sim.m.opt.graph_conditional is False  # else the solver loop reads its condition back every iteration
    assert "reset_graph: RuntimeError: reset_graph broke" in sim.capture_error
    sim.step(torch.full((2, 6), 0.5))  # launches directly
    assert torch.isfinite(sim.qpos).all()


def test_a_failed_reset_capture_keeps_the_step_graph_and_the_solver_loop(arm26, monkeypatch):
    sim = WarpSim(arm26, 2, "cpu")
    _fake_capture(sim, monkeypatch, {"reset_graph", "kinematics_graph"}, [])
    with pytest.warns(UserWarning, match="reset_graph broke"):
        sim._capture()
    assert sim.graph == "<graph>" and sim.reset_graph is None and sim.kinematics_graph is None
    assert sim.m.opt.graph_conditional is True


def test_no_capture_without_warps_memory_pool(arm26, monkeypatch):
    sim = WarpSim(arm26, 2, "cpu")
    monkeypatch.setattr(wp, "is_mempool_enabled", lambda device: False)
    with pytest.warns(UserWarning, match="memory pool is disabled"):
        sim._capture()
    assert sim.graph is None and sim.m.opt.graph_conditional is False


def test_warp_without_cuda_while_torch_has_it_is_a_clear_error(arm26, monkeypatch):
    """torch sees a GPU, warp 1.19 does not (its wheel needs a CUDA 13 driver): say so, with the fix."""
    assert wp.get_cuda_device_count() == 0  # this machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match=r"torch sees 1 CUDA device\(s\), but warp-lang 1\.\d+\.\d+ sees 0 .*"
                                           r"CUDA 13 \(R580 or newer\).*--device cpu"):
        WarpSim(arm26, 2, "cuda:0")


# ------------------------------------------------------------------------------------ on CUDA only
@cuda
def test_collect_loop_makes_no_host_sync_on_cuda(arm_motions):
    """torch.cuda.set_sync_debug_mode("error") raises on any synchronizing call in 12 collect steps with
    resets (episodes of 5 steps). The periodic reads by design (overflow check every
    ``overflow_check_every`` = 100 steps, failure-sampling weights every 200) fall outside the window."""
    env = _env(arm_motions, "warp", num_envs=64, device="cuda", history_steps=2, critic_obs=True,
               max_episode_steps=5)
    assert env.sim.graph is not None and env.sim.reset_graph is not None and env.sim.kinematics_graph is not None
    learner = _learner(env)
    td = env.reset()
    _, td = collect(env, learner, 3, td)  # warm-up: lazy initialisation may sync once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        rollout, td = collect(env, learner, 12, td)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert rollout["done"].any()


@cuda
def test_resume_on_cuda_restores_the_rng_states(arm_motions, tmp_path):
    """A checkpoint read with map_location=cuda puts the RNG states on the GPU; set_rng_state wants CPU bytes."""
    from mmimic.config import load_config
    from mmimic.rl.checkpoint import read_checkpoint
    from mmimic.rl.trainer import Trainer, TrainConfig

    def cfg(*more):
        return load_config(TrainConfig, "experiments/smoke.yaml", [
            f"env.motions={arm_motions}", f"out_dir={tmp_path}", "env.device=cuda", "env.num_envs=16",
            "ppo.rollout_steps=8", "ppo.minibatches=2", "ppo.epochs=1", "checkpoint_every=1", *more])

    first = Trainer(cfg("iterations=1"), log=lambda *_: None)
    first.train()
    state, _ = read_checkpoint(first.run_dir, "cuda")
    assert state["rng"]["cuda"].device.type == "cuda"  # what map_location does
    resumed = Trainer(cfg("iterations=2", f"resume={first.run_dir}"), log=lambda *_: None)
    assert torch.equal(torch.cuda.get_rng_state(resumed.env.device), state["rng"]["cuda"].cpu())
    assert torch.equal(resumed.env.rng.get_state(), state["env"]["rng"].cpu())
    resumed.train()
    assert resumed.iteration == 2

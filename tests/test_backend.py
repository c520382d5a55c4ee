"""Choosing the simulator backend: the factory, ``backend``/``sim_threads``/``num_envs: auto`` in the env
config, and the clear errors for what cannot run."""

import pytest
import torch

from mmimic.envs import MuscleEnv
from mmimic.envs.config import AUTO_NUM_ENVS_CUDA, auto_num_envs
from mmimic.sim import MujocoSim, Simulator, WarpSim, available_threads, make_simulator, resolve_backend


def test_auto_is_warp_on_cuda_and_mujoco_on_cpu():
    assert resolve_backend("auto", "cpu") == "mujoco"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "warp"  # resolving needs no GPU
    assert resolve_backend("warp", "cpu") == "warp"
    assert resolve_backend("mujoco", "cpu") == "mujoco"


def test_unknown_backend_and_mujoco_on_cuda_are_clear_errors():
    with pytest.raises(ValueError, match="unknown simulator backend 'physx'.*auto, warp, mujoco"):
        resolve_backend("physx", "cpu")
    with pytest.raises(ValueError, match="runs on the CPU only.*'cuda:0'.*backend=warp"):
        resolve_backend("mujoco", "cuda:0")


def test_factory_builds_each_backend(arm26):
    c = make_simulator(arm26, 3, "cpu", backend="auto", threads=2)
    w = make_simulator(arm26, 3, "cpu", backend="warp")
    assert isinstance(c, MujocoSim) and c.backend == "mujoco" and c.threads == 2
    assert isinstance(w, WarpSim) and w.backend == "warp"
    assert isinstance(c, Simulator) and isinstance(w, Simulator)
    assert make_simulator(arm26, 3, "cpu").threads == min(3, available_threads())
    with pytest.raises(ValueError, match="threads must be >= 1"):
        MujocoSim(arm26, 2, threads=0)
    with pytest.raises(ValueError, match="runs on the CPU"):
        MujocoSim(arm26, 2, device="cuda")


def test_env_backend_option_and_errors(arm26):
    env = MuscleEnv("arm26", num_envs=2, backend="mujoco", sim_threads=1)
    assert isinstance(env.sim, MujocoSim) and env.sim.threads == 1
    assert isinstance(MuscleEnv("arm26", num_envs=2).sim, MujocoSim)  # auto on a CPU device
    assert isinstance(MuscleEnv("arm26", num_envs=2, backend="warp").sim, WarpSim)
    with pytest.raises(ValueError, match="unknown simulator backend 'nope'"):
        MuscleEnv("arm26", num_envs=2, backend="nope")
    with pytest.raises(ValueError, match="sim_threads must be >= 1"):
        MuscleEnv("arm26", num_envs=2, sim_threads=0)


def test_num_envs_auto(arm26):
    assert auto_num_envs("bimanual", "warp", 2) == AUTO_NUM_ENVS_CUDA
    assert auto_num_envs("bimanual", "mujoco", 2) == 64
    assert auto_num_envs("bimanual", "mujoco", 8) == 256  # scales with the simulator threads
    assert auto_num_envs("myofullbody", "mujoco", 1) == 32  # never below the 2-core count
    env = MuscleEnv("arm26", num_envs="auto", backend="mujoco", sim_threads=2)
    assert env.num_envs == 64 and env.cfg.num_envs == 64
    with pytest.raises(ValueError, match="num_envs must be a positive integer or 'auto'"):
        MuscleEnv("arm26", num_envs="many")

"""MuscleEnv: TorchRL specs, rollouts, partial resets, seeding, action mapping, episode ends, collectors."""

import math

import pytest
import torch
from helpers import cuda
from torchrl.collectors import Collector, RandomPolicy
from torchrl.envs.utils import check_env_specs, step_mdp

from mmimic.envs import MuscleEnv, MuscleEnvConfig

OBS_PARTS = ["joint_pos", "joint_vel", "muscle_length", "muscle_velocity", "muscle_force",
             "muscle_activation", "posture_error"]


def _arm(num_envs=4, seed=0, **options):
    return MuscleEnv("arm26", num_envs=num_envs, seed=seed, **options)


def _step(env, td, action):
    """One env step from ``td`` with ``action`` (N, nu); returns the full step output."""
    return env.step(td.set("action", action))


# ---------------------------------------------------------------------------------- specs
def test_check_env_specs_arm26(arm26, backend):
    env = _arm(num_envs=3, backend=backend)
    check_env_specs(env)
    assert env.batch_size == torch.Size([3])
    assert env.action_spec.shape == (3, 6)
    assert torch.equal(env.action_spec.space.low, -torch.ones(3, 6))
    assert torch.equal(env.action_spec.space.high, torch.ones(3, 6))
    obs_spec = env.observation_spec
    assert "root" not in obs_spec.keys()
    sizes = {k: obs_spec[k].shape[-1] for k in OBS_PARTS}
    assert sizes == {"joint_pos": 2, "joint_vel": 2, "muscle_length": 6, "muscle_velocity": 6,
                     "muscle_force": 6, "muscle_activation": 6, "posture_error": 2}
    assert obs_spec["observation"].shape == (3, sum(sizes.values()))


@pytest.mark.slow
def test_check_env_specs_bimanual(bimanual, backend):
    env = MuscleEnv("bimanual", num_envs=2, backend=backend)
    check_env_specs(env)
    assert env.action_spec.shape == (2, 126)
    assert env.observation_spec["joint_pos"].shape == (2, 76)
    assert "root" not in env.observation_spec.keys()


@pytest.fixture(scope="module")
def fullbody_env(myofullbody, backend):
    # a large posture tolerance: only falling ends an episode here
    return MuscleEnv("myofullbody", num_envs=2, seed=0, max_posture_error=100.0, backend=backend)


@pytest.mark.slow
def test_check_env_specs_myofullbody(fullbody_env):
    env = fullbody_env
    check_env_specs(env)
    assert env.action_spec.shape == (2, 416)
    spec = env.observation_spec
    assert spec["root"].shape == (2, 10)
    assert spec["joint_pos"].shape == (2, 129 - 7)
    assert spec["joint_vel"].shape == (2, 128 - 6)
    assert spec["observation"].shape == (2, 10 + 2 * 122 + 4 * 416 + 122)


@pytest.mark.slow
def test_myofullbody_root_observation_and_fall_terminates(fullbody_env):
    env = fullbody_env
    td = env.reset()
    root = td["root"]
    assert root.shape == (2, 10)
    torch.testing.assert_close(root[:, 0], env.sim.qpos[:, 2])  # root height
    upright = torch.tensor([[0.0, 0.0, -1.0]] * 2)
    torch.testing.assert_close(root[:, 1:4], upright, atol=1e-3, rtol=0)  # gravity in the root frame
    torch.testing.assert_close(td["observation"][:, :10], root)
    start_height = env.sim.qpos[:, 2].clone()
    assert (start_height > 0.5).all()

    relaxed = -torch.ones(2, env.sim.nu)  # zero excitation: the body collapses
    terminated_at = [None, None]
    for t in range(1, 61):
        out = _step(env, td, relaxed)
        nxt = out["next"]
        assert torch.isfinite(nxt["observation"]).all()
        for w in range(2):
            if terminated_at[w] is None and nxt["terminated"][w].item():
                terminated_at[w] = t
                assert env.sim.qpos[w, 2] < env.cfg.task.fall_height_fraction * start_height[w]
        if all(x is not None for x in terminated_at):
            break
        # not fallen yet: still above the threshold
        standing = ~nxt["terminated"].squeeze(-1)
        assert (env.sim.qpos[standing, 2] >= env.cfg.task.fall_height_fraction * start_height[standing]).all()
        td = step_mdp(out)
    assert None not in terminated_at, "the relaxed body did not fall within 60 control steps"
    assert min(terminated_at) > 3  # not an immediate termination: the body had to fall
    assert not nxt["truncated"].any()
    assert env.unstable_count == 0


# ---------------------------------------------------------------------------------- rollouts
def test_rollout_shapes(arm26, backend):
    env = _arm(num_envs=3, backend=backend)
    td = env.rollout(20, break_when_any_done=False)
    assert td.batch_size == torch.Size([3, 20])
    assert td["action"].shape == (3, 20, 6)
    assert td["observation"].shape == (3, 20, 30)
    assert td["next", "observation"].shape == (3, 20, 30)
    assert td["next", "reward"].shape == (3, 20, 1)
    for k in ("done", "terminated", "truncated"):
        assert td["next", k].shape == (3, 20, 1) and td["next", k].dtype == torch.bool
    assert torch.isfinite(td["next", "observation"]).all()
    assert torch.isfinite(td["next", "reward"]).all()
    # consecutive steps chain: the next observation of step t is the observation of step t+1 (no done here)
    assert not td["next", "done"].any()
    torch.testing.assert_close(td["next", "observation"][:, :-1], td["observation"][:, 1:])
    # the arm moves under random muscle commands
    assert (td["next", "joint_pos"][:, -1] - td["joint_pos"][:, 0]).abs().max() > 1e-3


def test_observation_parts_match_sim_and_concat(arm26, backend):
    env = _arm(num_envs=2, backend=backend)
    out = _step(env, env.reset(), env.action_spec.rand())
    nxt = out["next"]
    sim = env.sim
    torch.testing.assert_close(nxt["joint_pos"], sim.qpos)
    torch.testing.assert_close(nxt["joint_vel"], sim.qvel * 0.1)
    torch.testing.assert_close(nxt["muscle_activation"], sim.act)
    torch.testing.assert_close(nxt["posture_error"], env.task.target_qpos - sim.qpos)
    lr = torch.as_tensor(env.embodiment.model.actuator_lengthrange, dtype=torch.float32)
    torch.testing.assert_close(nxt["muscle_length"], (sim.actuator_length - lr[:, 0]) / (lr[:, 1] - lr[:, 0]))
    # pulling muscles: force <= 0, bounded by a few times F0
    assert (nxt["muscle_force"] <= 0).all() and (nxt["muscle_force"] > -3).all()
    torch.testing.assert_close(nxt["observation"], torch.cat([nxt[k] for k in OBS_PARTS], -1))


def test_reward_is_posture_minus_effort(arm26, backend):
    env = _arm(num_envs=3, backend=backend)
    out = _step(env, env.reset(), env.action_spec.rand())
    nxt = out["next"]
    expected = (torch.exp(-4.0 * nxt["posture_error"].square().mean(-1))
                - 0.1 * nxt["muscle_activation"].square().mean(-1))
    torch.testing.assert_close(nxt["reward"].squeeze(-1), expected)


def test_partial_reset_resets_only_selected_envs(arm26, backend):
    env = _arm(num_envs=4, seed=3, backend=backend)
    td = env.reset()
    for _ in range(4):
        td = step_mdp(_step(env, td, env.action_spec.rand()))
    assert env.episode_step.tolist() == [4, 4, 4, 4]
    before = {k: td[k].clone() for k in ("joint_pos", "joint_vel", "muscle_activation", "posture_error")}
    target_before = env.task.target_qpos.clone()
    sim_time_before = env.sim.time.clone()

    qpos_before = env.sim.qpos.clone()

    mask = torch.tensor([True, False, True, False])
    # torchrl keeps the input's entries where "_reset" is False: pass the current root data along
    out = env.reset(td.clone().set("_reset", mask[:, None]))
    assert env.episode_step.tolist() == [0, 4, 0, 4]
    keep = ~mask
    assert torch.equal(env.sim.qpos[keep], qpos_before[keep])
    for k, v in before.items():
        torch.testing.assert_close(out[k][keep], v[keep], msg=f"{k} of an env not reset changed")
    # what _reset itself computed for the kept envs agrees with what they had
    fresh = env._observe(env.task.state(None))
    torch.testing.assert_close(fresh["joint_pos"][keep], before["joint_pos"][keep])
    torch.testing.assert_close(fresh["posture_error"][keep], before["posture_error"][keep])
    assert torch.equal(env.task.target_qpos[keep], target_before[keep])
    assert torch.equal(env.sim.time[keep], sim_time_before[keep])
    # reset envs: time 0, at rest, joints near the default pose (within reset_noise)
    assert (env.sim.time[mask] == 0).all()
    default = env.body.default_joint_qpos
    assert ((out["joint_pos"][mask] - default).abs() <= env.cfg.task.reset_noise + 1e-6).all()
    assert (out["joint_vel"][mask] == 0).all()
    assert not torch.equal(out["joint_pos"][mask], before["joint_pos"][mask])
    assert not out["done"].any()
    # targets within target_range of the default, within the joint range
    lo, hi = env.body.joint_range[:, 0], env.body.joint_range[:, 1]
    half = 0.5 * (hi - lo)
    assert ((env.task.target_qpos[mask] - default).abs() <= env.cfg.task.target_range * half + 1e-6).all()


def test_seeding(arm26, backend):
    a, b, c = _arm(seed=11, backend=backend), _arm(seed=11, backend=backend), _arm(seed=12, backend=backend)
    ra, rb, rc = a.reset(), b.reset(), c.reset()
    assert torch.equal(ra["observation"], rb["observation"])
    assert torch.equal(a.task.target_qpos, b.task.target_qpos)
    assert not torch.equal(ra["observation"], rc["observation"])
    # the same actions from the same reset give the same trajectory
    act = torch.rand(4, 6) * 2 - 1
    out_a, out_b = _step(a, ra, act), _step(b, rb, act)
    torch.testing.assert_close(out_a["next", "observation"], out_b["next", "observation"])
    # set_seed replays the draws
    a.set_seed(5)
    r1 = a.reset()
    a.set_seed(5)
    r2 = a.reset()
    assert torch.equal(r1["observation"], r2["observation"])
    assert torch.equal(r1["joint_pos"], r2["joint_pos"])


def test_action_to_excitation_mapping(arm26, backend):
    env = _arm(num_envs=2, backend=backend)
    td = env.reset()
    action = torch.tensor([[-1.0, 1.0, 0.0, -0.5, 0.5, 1.0],
                           [1.0, -1.0, -1.0, 1.0, 0.0, 0.2]])
    _step(env, td, action)
    torch.testing.assert_close(env.sim.ctrl, (action + 1) / 2)
    assert env.sim.ctrl[0, 0].item() == 0.0 and env.sim.ctrl[0, 1].item() == 1.0


def test_sigmoid_action_map_has_no_flat_region(arm26):
    env = _arm(num_envs=1, backend="mujoco", action_map="sigmoid")
    td = env.reset()
    action = torch.tensor([[-2.0, -1.0, -0.5, 0.0, 1.0, 2.0]])
    _step(env, td, action)
    torch.testing.assert_close(env.sim.ctrl, torch.sigmoid(4.0 * action))
    assert env.sim.ctrl[0, 0] < env.sim.ctrl[0, 1] < 0.02 and env.sim.ctrl[0, 4] > 0.98  # -2 and -1 differ
    with pytest.raises(ValueError, match="action_map must be one of linear, sigmoid, got 'tanh'"):
        _arm(num_envs=1, backend="mujoco", action_map="tanh")


def test_actions_outside_bounds_are_clipped(arm26, backend):
    env, ref = _arm(num_envs=2, seed=4, backend=backend), _arm(num_envs=2, seed=4, backend=backend)
    td, td_ref = env.reset(), ref.reset()
    wild = torch.tensor([[5.0, -7.0, 1.5, -1.5, 100.0, -100.0]] * 2)
    clipped = wild.clamp(-1, 1)
    out = _step(env, td, wild)
    out_ref = _step(ref, td_ref, clipped)
    assert ((env.sim.ctrl >= 0) & (env.sim.ctrl <= 1)).all()
    torch.testing.assert_close(env.sim.ctrl, (clipped + 1) / 2)
    torch.testing.assert_close(out["next", "observation"], out_ref["next", "observation"])
    torch.testing.assert_close(out["next", "reward"], out_ref["next", "reward"])


def test_truncation_at_max_episode_steps(arm26, backend):
    env = _arm(num_envs=3, max_episode_steps=5, backend=backend)
    td = env.reset()
    zero = torch.zeros(3, 6)
    for t in range(1, 6):
        out = _step(env, td, zero)
        nxt = out["next"]
        assert not nxt["terminated"].any()
        assert nxt["truncated"].all() == (t == 5), f"step {t}"
        assert torch.equal(nxt["done"], nxt["truncated"] | nxt["terminated"])
        td = step_mdp(out)
    # rollouts auto-reset truncated episodes
    td = env.rollout(12, break_when_any_done=False)
    trunc = td["next", "truncated"].squeeze(-1)
    assert trunc[:, [4, 9]].all()
    assert trunc.sum() == 2 * 3
    assert not td["next", "terminated"].any()


def test_termination_by_posture_error(arm26, backend):
    env = _arm(num_envs=3, max_posture_error=1e-6, backend=backend)
    out = _step(env, env.reset(), torch.zeros(3, 6))
    assert out["next", "terminated"].all()
    assert not out["next", "truncated"].any()
    assert out["next", "done"].all()
    # with the default tolerance the same start does not end the episode
    env2 = _arm(num_envs=3, backend=backend)
    assert not _step(env2, env2.reset(), torch.zeros(3, 6))["next", "done"].any()


def test_unknown_option_raises_typeerror_listing_known(backend):
    with pytest.raises(TypeError) as exc:
        MuscleEnv("arm26", num_envs=2, no_such_option=3, backend=backend)
    msg = str(exc.value)
    assert "no_such_option" in msg
    for known in ("max_episode_steps", "remove_fingers", "seed", "substeps", "use_cuda_graph"):
        assert known in msg


def test_options_are_routed(arm26, backend):
    env = _arm(num_envs=2, substeps=2, timestep=0.001, max_episode_steps=7, seed=9, backend=backend)
    assert env.sim.substeps == 2
    assert env.embodiment.model.opt.timestep == pytest.approx(0.001)
    assert env.cfg.task.max_episode_steps == 7
    assert env.cfg.seed == 9
    cfg = MuscleEnvConfig.from_options("arm26", 2, "cpu", rewards={"effort": {"weight": 0.0}})
    env = MuscleEnv(cfg)
    assert env.reward_weights() == {"posture": 1.0, "effort": 0.0} and env.num_envs == 2
    with pytest.raises(ValueError, match="num_envs"):
        MuscleEnv("arm26", num_envs=0, backend=backend)


def _collect_batches(env, policy, **options):
    collector = Collector(env, policy=policy, frames_per_batch=20, total_frames=60, **options)
    try:
        return list(collector)
    finally:
        collector.shutdown()


def _episodes_carry_on(batches, env) -> bool:
    """Whether the episodes went on across the batches: where a world's episode did not end at a batch's
    last step, the next batch starts from that step's next observation (exactly), and the env's
    episode counter counts every step since the world's last episode end, not only the last batch's."""
    for prev, cur in zip(batches, batches[1:]):
        going_on = ~prev["next", "done"][:, -1, 0]
        if not torch.equal(cur["observation"][going_on, 0], prev["next", "observation"][going_on, -1]):
            return False
    done = torch.cat([b["next", "done"][..., 0] for b in batches], dim=1)  # (N, total steps)
    total = done.shape[1]
    expected = []
    for w in range(done.shape[0]):
        ends = done[w].nonzero().flatten().tolist()
        expected.append(total - 1 - ends[-1] if ends else total)
    return env.episode_step.tolist() == expected


@pytest.mark.parametrize("policy", ["none", "random"])
def test_collector(arm26, policy, backend):
    env = _arm(num_envs=2, backend=backend)
    pol = None if policy == "none" else RandomPolicy(env.action_spec)
    batches = _collect_batches(env, pol)
    assert len(batches) == 3
    for batch in batches:
        assert batch.numel() == 20
        assert batch.batch_size == torch.Size([2, 10])
        assert batch["action"].shape == (2, 10, 6)
        assert (batch["action"].abs() <= 1).all()
        assert torch.isfinite(batch["next", "observation"]).all()
        assert batch["next", "reward"].shape == (2, 10, 1)
        # within a batch, steps chain where no episode ended
        going_on = ~batch["next", "done"][:, :-1, 0]
        assert torch.equal(batch["observation"][:, 1:][going_on],
                           batch["next", "observation"][:, :-1][going_on])
    # the collector carries the episodes on from where it stopped: batch k + 1 continues batch k
    # (posture task: 500-step episodes, so no episode ends in these 30 steps and all 30 are counted)
    assert not torch.cat([b["next", "done"] for b in batches], 1).any()
    assert _episodes_carry_on(batches, env)
    assert env.episode_step.tolist() == [30, 30]
    # ... which a collector that resets the env at every batch does not do (the check can tell them apart)
    env2 = _arm(num_envs=2, backend=backend)
    reset_each = _collect_batches(env2, pol, reset_at_each_iter=True)
    assert not _episodes_carry_on(reset_each, env2)
    assert env2.episode_step.tolist() == [10, 10]


# ---------------------------------------------------------------------------------- CUDA
@cuda
def test_env_on_cuda_matches_cpu(arm26, backend):
    # CPU and CUDA generators draw different numbers for one seed: start both from the default pose
    env_gpu = MuscleEnv("arm26", num_envs=4, device="cuda", seed=2, reset_noise=0.0)
    env_cpu = MuscleEnv("arm26", num_envs=4, device="cpu", seed=2, reset_noise=0.0, backend=backend)
    assert env_gpu.sim.graph is not None  # the substep loop runs as a captured CUDA graph
    check_env_specs(env_gpu)
    td_g, td_c = env_gpu.reset(), env_cpu.reset()
    torch.testing.assert_close(td_g["joint_pos"].cpu(), td_c["joint_pos"], atol=1e-6, rtol=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        a = torch.rand(4, 6, generator=gen) * 2 - 1
        out_g, out_c = _step(env_gpu, td_g, a.cuda()), _step(env_cpu, td_c, a)
        td_g, td_c = step_mdp(out_g), step_mdp(out_c)
    assert td_g["observation"].device.type == "cuda"
    torch.testing.assert_close(td_g["joint_pos"].cpu(), td_c["joint_pos"], atol=1e-4, rtol=0)
    torch.testing.assert_close(td_g["muscle_activation"].cpu(), td_c["muscle_activation"], atol=1e-5, rtol=0)


@cuda
def test_nan_world_on_cuda_graph(arm26):
    env = MuscleEnv("arm26", num_envs=3, device="cuda")
    td = env.reset()
    env.sim.qvel[2, 0] = math.nan
    out = _step(env, td, torch.zeros(3, 6, device="cuda"))
    assert out["next", "terminated"].squeeze(-1).tolist() == [False, False, True]
    assert torch.isfinite(out["next", "observation"]).all()
    assert env.unstable_count == 1

"""MuscleImitationEnv: specs, reference-state initialisation, partial resets, episode ends, failure-weighted
clip sampling, reward terms and tracking errors, options, determinism, no host sync in the step.

Fast tests use arm26 with three short synthesized clips (right-arm reaches and a wave) retargeted once per
session; one slow test runs the bimanual model."""

from __future__ import annotations

import dataclasses
import math

import mujoco
import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs, step_mdp
from helpers import refuse_host_reads

from mmimic.envs import ImitationTaskConfig, MuscleImitationEnv, MuscleImitationEnvConfig
from mmimic.math import quat_mul
from mmimic.motion.batch import retarget_dir
from mmimic.motion.library import MotionLibrary
from mmimic.motion.motion_file import load_motion
from mmimic.motion.synth import write_synth
from mmimic.rl import (PPO, AdversarialConfig, AdversarialShaper, NetworkConfig, PPOConfig, collect,
                       compute_gae)

PROPRIO = ["joint_pos", "joint_vel", "muscle_length", "muscle_velocity", "muscle_force", "muscle_activation",
           "site_pos"]


@pytest.fixture(scope="session")
def arm26_motions(tmp_path_factory, arm26):
    """reach seeds 0 and 1 and wave seed 2 move the right arm (the side is drawn per seed); 1.5 s each."""
    src = tmp_path_factory.mktemp("im_amass")
    write_synth(src, kinds=("reach",), count=2, duration=1.5)
    write_synth(src, kinds=("wave",), count=1, seed=2, duration=1.5)
    out = tmp_path_factory.mktemp("im_arm26")
    summary = retarget_dir(src, "arm26", out, jobs=1, progress=False)
    assert summary["aggregate"]["ok"] == 3
    return out


def _env(motions, num_envs=4, seed=0, **options):
    return MuscleImitationEnv("arm26", motions=motions, num_envs=num_envs, seed=seed, **options)


def _step(env, td, action):
    return env.step(td.set("action", action))


def _hold(env):
    return torch.full((env.num_envs, env.sim.nu), env.task.hold_action)


def _fix_starts(monkeypatch, env, clip_ids, times):
    """Make the env's library draw these (clip, time) pairs (resets, and AMP's expert samples) instead of
    random ones; returns the tensors, which the caller may change in place for later draws."""
    clip_ids, times = clip_ids.clone(), times.clone()

    def sample(n, generator=None, truncate_end=0.0):
        assert n == len(clip_ids), n
        return clip_ids.clone(), times.clone()

    monkeypatch.setattr(env.library, "sample", sample)
    return clip_ids, times


# ---------------------------------------------------------------------------------- specs
def test_check_env_specs_and_parts(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=3, backend=backend)
    check_env_specs(env)
    spec, K, S = env.observation_spec, env.cfg.task.lookahead_frames, 3
    sizes = {k: spec[k].shape[-1] for k in PROPRIO + ["goal_sites", "goal_joints", "phase"]}
    assert sizes == {"joint_pos": 2, "joint_vel": 2, "muscle_length": 6, "muscle_velocity": 6, "muscle_force": 6,
                     "muscle_activation": 6, "site_pos": 3 * S, "goal_sites": K * 3 * S, "goal_joints": K * 2,
                     "phase": 1}
    assert spec["observation"].shape == (3, sum(sizes.values()))
    for absent in ("root", "goal_root", "history", "critic_observation", "posture_error"):
        assert absent not in spec.keys()
    assert env.reward_term_names == ["joint_pos", "joint_vel", "site_pos", "site_rot", "site_vel", "effort",
                                     "action_rate", "action_bound"]
    assert env.tracking_error_names == ["joint_pos", "joint_vel", "site_rel", "site_abs", "site_rot"]
    for key, names in (("reward_terms", env.reward_term_names), ("tracking_errors", env.tracking_error_names)):
        assert set(spec[key].keys()) == set(names)
        assert all(spec[key, k].shape == (3,) for k in names)
    td = env.reset()
    torch.testing.assert_close(td["observation"], torch.cat([td[k] for k in sizes], -1))


def test_history_and_critic_options_change_the_specs(arm26_motions, backend):
    base = _env(arm26_motions, num_envs=2, backend=backend)
    env = _env(arm26_motions, num_envs=2, history_steps=2, critic_obs=True, goal_joint_pos=False,
               lookahead_frames=2, backend=backend)
    check_env_specs(env)
    P = sum(base.observation_spec[k].shape[-1] for k in PROPRIO)
    spec = env.observation_spec
    assert spec["history"].shape == (2, 2 * P)
    assert "goal_joints" not in spec.keys() and spec["goal_sites"].shape == (2, 2 * 9)
    obs_size = base.observation_spec["observation"].shape[-1] - 3 * 2 - 9 + 2 * P
    assert spec["observation"].shape == (2, obs_size)
    privileged = 2 + 2 + 3 * 3 + 3 * 3 + 3  # dq, dqd, site_rel, site_abs, site angles (arm26: 2 joints, 3 sites)
    assert spec["critic_observation"].shape == (2, obs_size + privileged)
    # history: the reset state repeated, then the previous steps' proprioception, newest first
    td = env.reset()
    proprio0 = torch.cat([td[k] for k in PROPRIO], -1)
    torch.testing.assert_close(td["history"], proprio0.repeat(1, 2))
    td1 = step_mdp(_step(env, td, _hold(env)))
    proprio1 = torch.cat([td1[k] for k in PROPRIO], -1)
    torch.testing.assert_close(td1["history"], torch.cat([proprio0, proprio0], -1))
    td2 = step_mdp(_step(env, td1, _hold(env)))
    torch.testing.assert_close(td2["history"], torch.cat([proprio1, proprio0], -1))
    torch.testing.assert_close(td2["critic_observation"][:, :obs_size], td2["observation"])


# ---------------------------------------------------------------------------------- resets
def test_reset_puts_each_world_on_the_reference(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=4, reset_activation=0.1, backend=backend)
    td = env.reset()
    ref = env.library.state(env.task.clip_id, env.task.ref_time)
    assert torch.equal(env.sim.qpos, ref["qpos"]) and torch.equal(env.sim.qvel, ref["qvel"])
    torch.testing.assert_close(env.sim.act, torch.full((4, 6), 0.1))
    assert (env.task.ref_time >= 0).all() and (env.task.ref_time <= env.library.duration[env.task.clip_id] - 0.1 + 1e-6).all()
    assert env.episode_step.tolist() == [0] * 4
    # the state is the reference: every tracking error ~0, every tracking term ~1 (site positions are
    # interpolated between frames in the library, so they agree to well under a millimetre)
    errors = td["tracking_errors"]
    for name in env.tracking_error_names:
        assert errors[name].abs().max() < 1e-3, name
    for name in ("joint_pos", "joint_vel", "site_pos", "site_rot", "site_vel"):
        torch.testing.assert_close(td["reward_terms", name], torch.ones(4), atol=1e-3, rtol=0)
    # the goal's first frame is the reference one control step ahead
    nxt = env.library.state(env.task.clip_id, env.task.ref_time + env.task.dt)
    anchor = env.sim.site_xpos[:, env.task.site_ids[env.task.anchor]]
    torch.testing.assert_close(td["goal_sites"][:, :9], (nxt["site_pos"] - anchor[:, None]).flatten(1))
    torch.testing.assert_close(td["phase"][:, 0], env.task.ref_time / env.library.duration[env.task.clip_id])


def test_partial_reset_resets_only_selected_worlds(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=4, seed=3, max_site_error=0.0, backend=backend)
    td = env.reset()
    for _ in range(3):
        td = step_mdp(_step(env, td, env.action_spec.rand()))
    keep = torch.tensor([False, True, False, True])
    before = {"qpos": env.sim.qpos.clone(), "clip": env.task.clip_id.clone(), "time": env.task.ref_time.clone(),
              "obs": td["observation"].clone()}
    out = env.reset(td.clone().set("_reset", ~keep[:, None]))
    assert env.episode_step.tolist() == [0, 3, 0, 3]
    assert torch.equal(env.sim.qpos[keep], before["qpos"][keep])
    assert torch.equal(env.task.clip_id[keep], before["clip"][keep]) and torch.equal(env.task.ref_time[keep], before["time"][keep])
    torch.testing.assert_close(out["observation"][keep], before["obs"][keep])
    ref = env.library.state(env.task.clip_id, env.task.ref_time)
    assert torch.equal(env.sim.qpos[~keep], ref["qpos"][~keep])
    assert not out["done"].any()


def test_reference_time_advances_by_control_dt(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=2, max_site_error=0.0, backend=backend)
    td = env.reset()
    t0 = env.task.ref_time.clone()
    for k in range(1, 4):
        td = step_mdp(_step(env, td, _hold(env)))
        torch.testing.assert_close(env.task.ref_time, t0 + k * env.task.dt)
    assert env.task.dt == pytest.approx(0.01)


# ---------------------------------------------------------------------------------- episode ends
def test_clip_end_truncates_and_counts_as_success(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=3, max_site_error=0.0, backend=backend)
    td = env.reset()
    env.task.ref_time = env.library.duration[env.task.clip_id] - 2.5 * env.task.dt  # (the sim state is left where it is)
    for k in range(1, 4):
        res = _step(env, td, _hold(env))
        out = res["next"]
        assert not out["terminated"].any()
        assert out["truncated"].all() == (k == 3) and torch.equal(out["done"], out["truncated"]), k
        td = step_mdp(res)
    assert env.task.clip_episodes.sum() == 3 and env.task.clip_failures.sum() == 0
    torch.testing.assert_close(env.task.clip_episodes, torch.bincount(env.task.clip_id, minlength=3).float())


def test_failure_on_the_clips_last_step_is_terminated_not_truncated(arm26_motions, backend, monkeypatch):
    """A world that reaches its clip's end on the very step it fails the termination rule ends as a failure:
    terminated, not truncated, and counted in clip_failures (a success would bootstrap a failed state)."""
    env = _env(arm26_motions, num_envs=4, max_site_error=0.05, backend=backend)
    dt, dur = env.task.dt, env.library.duration
    ids = torch.tensor([0, 1, 2, 0])
    # worlds 0 and 1 start half a control step before their clip's end (the next step is the last one),
    # worlds 2 and 3 in the middle of their clips
    times = torch.stack([dur[0] - 0.5 * dt, dur[1] - 0.5 * dt, torch.tensor(0.5), torch.tensor(0.7)])
    _fix_starts(monkeypatch, env, ids, times)
    td = env.reset()
    assert torch.equal(env.sim.qpos, env.library.state(ids, times)["qpos"])
    # worlds 0 and 2 leave the reference: the elbow bent by 0.8 rad (inside its range)
    elbow = env.sim.qpos[:, 1]
    bent = torch.where(elbow < 1.3, elbow + 0.8, elbow - 0.8)
    for w in (0, 2):
        env.sim.qpos[w, 1] = bent[w]
    out = _step(env, td, _hold(env))["next"]
    errors = out["tracking_errors", "site_rel"]
    assert (errors[[0, 2]] > 0.05).all() and (errors[[1, 3]] < 0.05).all(), errors  # the rule fails 0 and 2
    assert not out["unstable"].any()
    assert out["terminated"].squeeze(-1).tolist() == [True, False, True, False]
    # only world 1 reached its clip's end without failing
    assert out["truncated"].squeeze(-1).tolist() == [False, True, False, False]
    assert out["done"].squeeze(-1).tolist() == [True, True, True, False]
    # per clip: world 0 (clip 0) and world 2 (clip 2) failed; world 1 (clip 1) finished its clip
    assert env.task.clip_failures.tolist() == [1.0, 0.0, 1.0]
    assert env.task.clip_episodes.tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(env.task.clip_failure_rate(), torch.tensor([1.0, 0.0, 1.0]))


def test_max_episode_steps_truncates(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=2, max_episode_steps=2, max_site_error=0.0, backend=backend)
    td = env.rollout(4, break_when_any_done=False)
    assert td["next", "truncated"].squeeze(-1)[:, 1].all() and not td["next", "terminated"].any()


def test_deviation_terminates_and_counts_as_failure(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=3, max_site_error=1e-6, backend=backend)
    td = env.reset()
    clips = env.task.clip_id.clone()
    out = _step(env, td, torch.ones(3, 6))["next"]
    assert out["terminated"].all() and not out["truncated"].any() and out["done"].all()
    torch.testing.assert_close(env.task.clip_failures, torch.bincount(clips, minlength=3).float())
    torch.testing.assert_close(env.task.clip_episodes, env.task.clip_failures)
    calm = _env(arm26_motions, num_envs=3, backend=backend)  # the default tolerance (0.3 m) survives a step from the reference
    assert not _step(calm, calm.reset(), _hold(calm))["next", "terminated"].any()


def test_unstable_world_terminates_with_zero_reward(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=3, max_site_error=0.0, backend=backend)
    td = env.reset()
    env.sim.qvel[1, 0] = math.nan
    out = _step(env, td, _hold(env))["next"]
    assert out["terminated"].squeeze(-1).tolist() == [False, True, False]
    assert out["reward"][1, 0] == 0 and torch.isfinite(out["observation"]).all()
    for key in ("reward_terms", "tracking_errors"):
        assert all(torch.isfinite(v).all() and v[1] == 0 for v in out[key].values())
    assert env.task.clip_failures.sum() == 1


# ---------------------------------------------------------------------------------- clip sampling
def test_failure_weighted_sampling_prefers_failing_clips(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=4, sampling="failure", failure_eps=0.05, failure_power=1.0, backend=backend)
    torch.testing.assert_close(env.library.weights, torch.full((3,), 1 / 3))
    env.task.clip_episodes.copy_(torch.tensor([10.0, 10.0, 0.0]))
    env.task.clip_failures.copy_(torch.tensor([0.0, 9.0, 0.0]))
    torch.testing.assert_close(env.task.clip_failure_rate(), torch.tensor([0.0, 0.9, 1.0]))  # unseen clips: 1
    w = env.task.update_sampling_weights()
    torch.testing.assert_close(w, torch.tensor([0.05, 0.95, 1.05]))
    torch.testing.assert_close(env.library.weights, w / w.sum())
    env.task.clip_episodes[2] = 10.0  # clip 2 played without failing: clip 1 is now the one to practise
    env.task.update_sampling_weights()
    counts = torch.zeros(3)
    for _ in range(25):
        env.reset()
        counts += torch.bincount(env.task.clip_id, minlength=3)
    assert counts[1] > 0.8 * counts.sum(), counts


def test_weights_update_on_their_own_every_interval(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=4, sampling="failure", weight_update_interval=3, max_site_error=0.0,
               stats_decay=0.5, backend=backend)
    env.task.clip_episodes.copy_(torch.tensor([4.0, 4.0, 4.0]))
    env.task.clip_failures.copy_(torch.tensor([4.0, 0.0, 0.0]))
    td = env.reset()
    for _ in range(2):
        td = step_mdp(_step(env, td, _hold(env)))
    torch.testing.assert_close(env.library.weights, torch.full((3,), 1 / 3))
    _step(env, td, _hold(env))  # the third step updates the weights, then halves the counts
    expected = torch.tensor([1.05, 0.05, 0.05])
    torch.testing.assert_close(env.library.weights, expected / expected.sum())
    torch.testing.assert_close(env.task.clip_failures, torch.tensor([2.0, 0.0, 0.0]))


# ---------------------------------------------------------------------------------- AMP and PPO on this env
def test_amp_policy_features_on_the_reference_equal_the_expert_transitions(arm26_motions, backend,
                                                                           monkeypatch):
    """Worlds placed exactly on the reference at (clip, t) and (clip, t + dt) give the policy-side AMP
    features (the observation entries ``motion_feature_keys`` at t and t + 1, as
    AdversarialShaper.features reads a rollout) that equal the expert transitions
    ``reference_transitions`` draws at the same clips and times."""
    env = _env(arm26_motions, num_envs=4, seed=5, max_site_error=0.0, backend=backend)
    env.reset()  # reference-state initialisation draws the clips and times
    ids, times = env.task.clip_id.clone(), env.task.ref_time.clone()
    assert (times > 0).all() and len(set(times.tolist())) == 4
    spec = env.observation_spec
    feature_keys = tuple(env.task.motion_feature_keys)
    assert feature_keys == ("joint_pos", "joint_vel")
    shaper = AdversarialShaper(AdversarialConfig(mode="amp", hidden=[8]), env.task,
                               {k: spec[k].shape[-1] for k in spec.keys()})
    assert shaper.next_keys == feature_keys
    F = sum(spec[k].shape[-1] for k in feature_keys)

    # policy side: the env's own reset puts each world on the reference at t, then at t + dt
    _, fixed_times = _fix_starts(monkeypatch, env, ids, times)
    td_t = env.reset()
    fixed_times += env.task.dt
    td_t1 = env.reset()
    torch.testing.assert_close(env.task.ref_time, times + env.task.dt)
    rollout = td_t.select(*feature_keys).clone()
    rollout.set("next", td_t1.select(*feature_keys).clone())
    policy = shaper.features(rollout)
    # expert side at the same clips and times
    fixed_times -= env.task.dt
    expert = env.task.reference_transitions(4)
    assert policy.shape == expert.shape == (4, 2 * F)
    torch.testing.assert_close(policy, expert)
    # not trivially equal: most worlds' motions move within dt (a clip may hold still), and the worlds differ
    assert ((expert[:, :F] - expert[:, F:]).abs().amax(-1) > 1e-3).sum() >= 3
    assert (expert[1:] - expert[:1]).abs().amax(-1).min() > 1e-4
    # the same through collect: the first step's features at t (before physics moves the body) are the
    # expert's
    env.reset()
    agent = PPO.for_env(env, PPOConfig(network=NetworkConfig(actor_hidden=[16], critic_hidden=[16])))
    collected, _ = collect(env, agent, 2, env.reset(), next_keys=shaper.next_keys)
    torch.testing.assert_close(shaper.features(collected)[:, 0, :F], expert[:, :F])


@pytest.mark.parametrize("critic", ["shared", "asymmetric"])
def test_truncated_step_at_a_clip_end_bootstraps_from_the_final_observation(arm26_motions, backend,
                                                                            monkeypatch, critic):
    """collect + PPO.observe on the imitation env: at the step that reaches the clip's end (truncated),
    next_value is the critic's value of the observation that step produced (the clip's last frame), not
    of the reset observation the next step starts from."""
    env = _env(arm26_motions, num_envs=3, seed=1, max_site_error=0.0, critic_obs=critic == "asymmetric",
               backend=backend)
    dt, dur = env.task.dt, env.library.duration
    ids = torch.tensor([0, 1, 2])
    _fix_starts(monkeypatch, env, ids, dur[ids] - 1.5 * dt)  # every start: 2 steps before the clip's end
    key = "critic_observation" if critic == "asymmetric" else "observation"
    torch.manual_seed(0)
    agent = PPO.for_env(env, PPOConfig(network=NetworkConfig(actor_hidden=[32], critic_hidden=[32]),
                                       critic_obs_key=key))
    produced = []  # what each env step returned, before any reset replaces it
    step = env._step

    def recording_step(td):
        out = step(td)
        produced.append(out.clone())
        return out

    monkeypatch.setattr(env, "_step", recording_step)
    rollout, _ = collect(env, agent, 4, env.reset())
    agent.observe(rollout)
    assert len(produced) == 4
    trunc, term = rollout["truncated"], rollout["terminated"]
    assert trunc[:, [1, 3]].all() and not trunc[:, [0, 2]].any() and not term.any()  # 2-step episodes
    final = produced[1]  # the clip's last frame
    assert (final["phase"] == 1.0).all()
    for k in agent.obs_keys:
        torch.testing.assert_close(rollout["next", k][:, 1], final[k])
    # the step after starts from the reset observation, 2 steps before the end again
    reset_obs = rollout[key][:, 2]
    torch.testing.assert_close(reset_obs, rollout[key][:, 0])
    assert (reset_obs - final[key]).abs().amax(-1).min() > 1e-3
    v_final, v_reset = agent.value(final[key]), agent.value(reset_obs)
    assert (v_final - v_reset).abs().min() > 1e-4  # the test can tell them apart
    torch.testing.assert_close(rollout["next_value"][:, 1], v_final)
    # (and at the next episode's end)
    torch.testing.assert_close(rollout["next_value"][:, 3], agent.value(produced[3][key]))
    # elsewhere the episode goes on: next_value is the value the next step was acted on with
    torch.testing.assert_close(rollout["next_value"][:, [0, 2]], rollout["value"][:, [1, 3]])
    # and GAE bootstraps the truncated step from it
    gamma = agent.cfg.gamma
    adv, _ = compute_gae(rollout["reward"], rollout["value"], rollout["next_value"], term, rollout["done"],
                         gamma, agent.cfg.gae_lambda)
    torch.testing.assert_close(adv[:, 1], rollout["reward"][:, 1] + gamma * v_final - rollout["value"][:, 1])


# ---------------------------------------------------------------------------------- reward
def test_reward_is_the_weighted_sum_of_its_terms(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=3, max_site_error=0.0, backend=backend)
    td = env.reset()
    prev = env.task.prev_action.clone()
    action = torch.tensor([[2.0, -3.0, 0.5, 0.0, 1.0, -1.0]] * 3)
    out = _step(env, td, action)["next"]
    terms, errors = out["reward_terms"], out["tracking_errors"]
    assert set(terms.keys()) == set(env.reward_term_names) and set(errors.keys()) == set(env.tracking_error_names)
    weights = env.reward_weights()
    total = sum(weights[k] * terms[k] for k in env.reward_term_names)
    torch.testing.assert_close(out["reward"].squeeze(-1), total)
    for k in ("joint_pos", "joint_vel", "site_pos", "site_rot", "site_vel"):
        assert ((terms[k] > 0) & (terms[k] <= 1)).all() and weights[k] > 0, k
    for k in ("effort", "action_rate", "action_bound"):
        assert (terms[k] >= 0).all() and weights[k] < 0, k
    torch.testing.assert_close(terms["action_bound"], torch.full((3,), (1.0 + 4.0) / 6))
    torch.testing.assert_close(terms["action_rate"], (action.clamp(-1, 1) - prev).square().mean(-1))
    torch.testing.assert_close(terms["effort"], env.sim.act.square().mean(-1))
    assert (errors["site_abs"] >= 0).all() and (errors["joint_pos"] > 0).all()  # the arm moved off the reference
    torch.testing.assert_close(terms["joint_pos"], torch.exp(-5.0 * (env.sim.qpos - env.task.ref["qpos"]).square().mean(-1)))


def test_refresh_kinematics_gives_the_sites_of_the_new_state(arm26_motions, arm26, backend):
    m = arm26.model
    d = mujoco.MjData(m)
    for refresh, expect_fresh in ((True, True), (False, False)):
        env = _env(arm26_motions, num_envs=2, refresh_kinematics=refresh, max_site_error=0.0, backend=backend)
        out = _step(env, env.reset(), torch.ones(2, 6))["next"]
        d.qpos[:] = env.sim.qpos[0].double().numpy()
        mujoco.mj_kinematics(m, d)
        sites = d.site_xpos[env.task.site_ids.numpy()]
        expected = torch.as_tensor((sites - sites[env.task.anchor]).reshape(-1), dtype=torch.float32)
        fresh = torch.allclose(out["site_pos"][0], expected, atol=1e-5)
        assert fresh == expect_fresh, refresh


def test_rollout(arm26_motions, backend):
    env = _env(arm26_motions, num_envs=3, backend=backend)
    td = env.rollout(20, break_when_any_done=False)
    assert td.batch_size == torch.Size([3, 20])
    obs = env.observation_spec["observation"].shape[-1]
    assert td["next", "observation"].shape == (3, 20, obs)
    assert td["next", "reward"].shape == (3, 20, 1) and torch.isfinite(td["next", "reward"]).all()
    for name in env.reward_term_names:
        assert td["next", "reward_terms", name].shape == (3, 20)
    for name in env.tracking_error_names:
        assert td["next", "tracking_errors", name].shape == (3, 20)
    assert torch.isfinite(td["next", "observation"]).all()


# ---------------------------------------------------------------------------------- construction, seeds
def test_determinism_with_seed(arm26_motions, backend):
    a, b, c = (_env(arm26_motions, seed=s, backend=backend) for s in (7, 7, 8))
    ra, rb, rc = a.reset(), b.reset(), c.reset()
    assert torch.equal(a.task.clip_id, b.task.clip_id) and torch.equal(a.task.ref_time, b.task.ref_time)
    assert torch.equal(ra["observation"], rb["observation"])
    assert not torch.equal(a.task.ref_time, c.task.ref_time)
    actions = torch.rand(5, 4, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for act in actions:
        oa, ob = _step(a, ra, act.clone()), _step(b, rb, act.clone())
        torch.testing.assert_close(oa["next", "observation"], ob["next", "observation"])
        torch.testing.assert_close(oa["next", "reward"], ob["next", "reward"])
        ra, rb = step_mdp(oa), step_mdp(ob)
    a.set_seed(3)
    a.reset()
    first = (a.task.clip_id.clone(), a.task.ref_time.clone())
    a.set_seed(3)
    a.reset()
    assert torch.equal(first[0], a.task.clip_id) and torch.equal(first[1], a.task.ref_time)


def test_construction_from_config_list_file_or_library(arm26_motions, tmp_path, backend):
    cfg = MuscleImitationEnvConfig(model="arm26", num_envs=2, motions=str(arm26_motions),
                                   task=ImitationTaskConfig(history_steps=1, random_start=False))
    env = MuscleImitationEnv(cfg)
    env.reset()
    assert env.cfg.task.history_steps == 1 and (env.task.ref_time == 0).all() and env.library.num_clips == 3
    listing = tmp_path / "train.txt"
    listing.write_text("# two clips\n" + "\n".join(str(p) for p in sorted(arm26_motions.glob("reach_*.npz"))))
    assert _env(listing, num_envs=2, backend=backend).library.num_clips == 2
    single = _env(sorted(arm26_motions.glob("wave_*.npz"))[0], num_envs=2, backend=backend)
    assert single.library.num_clips == 1
    lib = MotionLibrary.from_dir(arm26_motions, embodiment="arm26")
    assert _env(lib, num_envs=2, backend=backend).library is lib


def test_bad_options_are_clear_errors(arm26_motions, tmp_path, backend):
    with pytest.raises(TypeError, match="MuscleImitationEnv got an unknown option 'no_such'.*history_steps"):
        _env(arm26_motions, no_such=1, backend=backend)
    with pytest.raises(ValueError, match="motions.*empty"):
        MuscleImitationEnv("arm26", num_envs=2, backend=backend)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _env(tmp_path / "nowhere", backend=backend)
    with pytest.raises(ValueError, match="sampling"):
        _env(arm26_motions, sampling="greedy", backend=backend)
    with pytest.raises(ValueError, match="reset_activation"):
        _env(arm26_motions, reset_activation=1.5, backend=backend)
    with pytest.raises(ValueError, match="lookahead_frames"):
        _env(arm26_motions, lookahead_frames=0, backend=backend)
    with pytest.raises(ValueError, match="mimic sites"):
        _env(arm26_motions, mimic_sites=False, backend=backend)


def test_step_and_reset_make_no_host_sync(arm26_motions, monkeypatch):
    """The step and a partial reset never read a tensor back (no .item(), bool(), boolean-mask indexing).

    On warp, the backend whose device may be a GPU: the C backend lives on the host and reads its
    tensors by design (which worlds to reset), where a read costs nothing."""
    env = _env(arm26_motions, num_envs=4, history_steps=2, critic_obs=True, sampling="failure", backend="warp")
    td = env.reset()
    td["action"] = env.action_spec.rand()
    mask = torch.tensor([True, False, True, False])

    refuse_host_reads(monkeypatch, "the env")
    for _ in range(2):
        env._step(td)
    env._reset(td.clone().set("_reset", mask[:, None]))
    monkeypatch.undo()


# ---------------------------------------------------------------------------------- bimanual
@pytest.mark.slow
def test_bimanual_imitation_env(tmp_path_factory, bimanual, backend):
    src = tmp_path_factory.mktemp("im_bi_amass")
    write_synth(src, kinds=("reach", "wave"), count=1, duration=1.0)
    out = tmp_path_factory.mktemp("im_bi")
    assert retarget_dir(src, "bimanual", out, jobs=1, progress=False)["aggregate"]["ok"] == 2
    env = MuscleImitationEnv("bimanual", motions=out, num_envs=2, critic_obs=True, backend=backend)
    check_env_specs(env)
    td = env.reset()
    assert torch.equal(env.sim.qpos, env.library.state(env.task.clip_id, env.task.ref_time)["qpos"])
    assert td["tracking_errors", "site_rel"].max() < 1e-3 and env.task.num_sites == 7
    assert td["goal_sites"].shape == (2, 3 * 7 * 3) and td["goal_joints"].shape == (2, 3 * 76)
    roll = env.rollout(5, break_when_any_done=False)
    assert torch.isfinite(roll["next", "reward"]).all()
    assert (roll["next", "tracking_errors", "site_rel"][:, -1] > 0).all()


# ---------------------------------------------------------------------------------- myofullbody (free root)
def _turned_clip(clip, yaw: float):
    """The same motion turned by ``yaw`` about the world vertical (root pose, root velocity, sites)."""
    c, s = math.cos(yaw), math.sin(yaw)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    qz = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)], dtype=np.float32)
    qpos, qvel = clip.qpos.copy(), clip.qvel.copy()
    qpos[:, :3] = qpos[:, :3] @ R.T
    qpos[:, 3:7] = quat_mul(torch.from_numpy(qz).expand(len(qpos), 4), torch.from_numpy(qpos[:, 3:7])).numpy()
    qvel[:, :3] = qvel[:, :3] @ R.T  # free joint: world-frame linear velocity, local angular velocity
    site_quat = quat_mul(torch.from_numpy(qz).expand(clip.site_quat.shape), torch.from_numpy(clip.site_quat))
    return dataclasses.replace(clip, qpos=qpos, qvel=qvel, site_pos=clip.site_pos @ R.T,
                               site_quat=site_quat.numpy(), name=f"{clip.name}_turned")


@pytest.mark.slow
def test_myofullbody_free_root_goal_is_in_the_heading_frame(tmp_path_factory, myofullbody, backend):
    src = tmp_path_factory.mktemp("im_full_amass")
    write_synth(src, kinds=("walk",), count=1, duration=1.0)
    out = tmp_path_factory.mktemp("im_full")
    assert retarget_dir(src, "myofullbody", out, jobs=1, progress=False)["aggregate"]["ok"] == 1
    walk = load_motion(out / "walk_0.npz")
    lib = MotionLibrary([walk, _turned_clip(walk, 1.1)], embodiment="myofullbody")
    env = MuscleImitationEnv("myofullbody", motions=lib, num_envs=2, critic_obs=True, backend=backend)
    check_env_specs(env)
    assert env.observation_spec["goal_root"].shape == (2, 3 * 15)
    assert "root_pos" in env.reward_term_names and "root_rot" in env.tracking_error_names
    env.reset()
    # both worlds at the same time of the walk, one of them turned by 1.1 rad: the goal reads the same
    env.task.clip_id = torch.tensor([0, 1])
    env.task.ref_time = torch.full((2,), 0.4)
    env.task.update_reference()
    env.sim.reset(torch.ones(2, dtype=torch.bool), qpos=env.task.ref["qpos"], qvel=env.task.ref["qvel"])
    env.task.prev_site_pos = env.sim.site_xpos[:, env.task.site_ids].clone()
    env.task.prev_ref_site_pos = env.task.ref["site_pos"]
    state = env.task.state(None)
    obs = env._observe(state)
    for key in ("goal_sites", "goal_root", "site_pos", "goal_joints", "phase"):
        torch.testing.assert_close(obs[key][0], obs[key][1], atol=2e-4, rtol=0, msg=key)
    for name, error in env.task.errors.items():
        assert error(state).abs().max() < 1e-3, name
    # leaving the reference's root position ends the episode
    env2 = MuscleImitationEnv("myofullbody", motions=lib, num_envs=2, max_root_pos_error=1e-6, max_site_error=0.0, backend=backend)
    res = _step(env2, env2.reset(), _hold(env2))["next"]
    assert res["terminated"].all() and (res["tracking_errors", "root_pos"] > 1e-6).all()

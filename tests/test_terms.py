"""Task terms on hand-built states (no simulator): every reward term against a hand computation with a
known offset from the reference, observation sizes from the functions, terminations just below and
above their thresholds; the term tables' binding from config; the one reward formula."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from mmimic.config import load_config
from mmimic.envs.body import BodyTables
from mmimic.envs.tasks import imitation as im
from mmimic.envs.tasks import posture as po
from mmimic.envs.terms import BoundReward, bind_rewards, bind_terminations, total_reward
from mmimic.math import axis_angle_to_matrix, matrix_to_quat

N, S = 2, 3


def _body(free_root: bool, nj: int = 2, nu: int = 4) -> BodyTables:
    q0, v0 = (7, 6) if free_root else (0, 0)
    return BodyTables(free_root=free_root, q0=q0, v0=v0, joint_range=torch.tensor([[-1.0, 1.0]] * nj),
                      default_joint_qpos=torch.zeros(nj), length_lo=torch.zeros(nu), length_span=torch.ones(nu),
                      muscle_f0=torch.full((nu,), 100.0), root_body=1 if free_root else 0)


def axis_angle_to_quat(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    return matrix_to_quat(axis_angle_to_matrix(axis * angle))


def _identity(*shape) -> torch.Tensor:
    q = torch.zeros(*shape, 4)
    q[..., 0] = 1.0
    return q


def _state(free_root=False, **over) -> im.TrackingState:
    """The body exactly on the reference (all errors 0), then ``over`` applied."""
    body = _body(free_root)
    nq, nv = body.q0 + 2, body.v0 + 2
    qpos = torch.zeros(N, nq)
    if free_root:
        qpos[:, 3] = 1.0
        qpos[:, 2] = 0.9
    ref = {"qpos": qpos.clone(), "qvel": torch.zeros(N, nv),
           "site_pos": torch.arange(N * S * 3, dtype=torch.float32).reshape(N, S, 3) * 0.01,
           "site_quat": _identity(N, S)}
    sim = SimpleNamespace(qpos=qpos.clone(), qvel=torch.zeros(N, nv), act=torch.full((N, 4), 0.5),
                          actuator_length=torch.zeros(N, 4), actuator_velocity=torch.zeros(N, 4),
                          actuator_force=torch.zeros(N, 4))
    args = dict(sim=sim, body=body, action=torch.zeros(N, 4), prev_action=torch.zeros(N, 4), ref=ref,
                goal={k: v[:, None].expand(N, 3, *v.shape[1:]) for k, v in ref.items()},
                site_pos=ref["site_pos"].clone(), site_quat=_identity(N, S),
                prev_site_pos=ref["site_pos"].clone(), prev_ref_site_pos=ref["site_pos"].clone(), anchor=0,
                dt=0.01, phase=torch.full((N,), 0.25))
    args.update(over)
    return im.TrackingState(**args)


def test_on_the_reference_every_tracking_term_is_one_and_every_error_zero():
    for free_root in (False, True):
        s = _state(free_root)
        for name, spec in im.REWARDS.items():
            if spec.free_root_only and not free_root:
                continue
            value = spec.fn(s, **spec.params)
            expected = 1.0 if spec.weight > 0 else (0.25 if name == "effort" else 0.0)
            torch.testing.assert_close(value, torch.full((N,), expected), msg=name)
        for name, fn in im.ERRORS.items():
            if name in im.ROOT_ERRORS and not free_root:
                continue
            torch.testing.assert_close(fn(s), torch.zeros(N), msg=name)


def test_site_pos_and_site_abs_with_a_known_offset():
    s0 = _state()
    moved = s0.site_pos.clone()
    moved[:, 1] += torch.tensor([0.03, 0.0, 0.04])  # one non-anchor site 5 cm off
    s = _state(site_pos=moved)
    # mean over 3 sites of |d|^2: (0.05^2) / 3
    torch.testing.assert_close(im.site_pos_reward(s, scale=40.0), torch.full((N,), math.exp(-40.0 * 0.0025 / 3)))
    torch.testing.assert_close(im.site_rel_error(s), torch.full((N,), 0.05 / 3))
    torch.testing.assert_close(im.site_abs_error(s), torch.full((N,), 0.05 / 3))
    # moving every site together (the anchor too) is no root-relative error, but an absolute one
    shifted = _state(site_pos=s0.site_pos + torch.tensor([0.1, 0.0, 0.0]))
    torch.testing.assert_close(im.site_rel_error(shifted), torch.zeros(N))
    torch.testing.assert_close(im.site_abs_error(shifted), torch.full((N,), 0.1))


def test_site_rot_site_vel_joint_terms_with_known_offsets():
    quat = _identity(N, S)
    quat[:, 2] = axis_angle_to_quat(torch.tensor([0.0, 0.0, 1.0]), torch.tensor(0.3))
    s = _state(site_quat=quat)
    torch.testing.assert_close(im.site_rot_reward(s, scale=2.0), torch.full((N,), math.exp(-2.0 * 0.09 / 3)))
    torch.testing.assert_close(im.site_rot_error(s), torch.full((N,), 0.1))
    # the site moved 1 cm in a 10 ms step, the reference stood still: 1 m/s on one of 3 sites
    prev = _state().site_pos.clone()
    prev[:, 1, 0] -= 0.01
    s = _state(prev_site_pos=prev)
    torch.testing.assert_close(im.site_vel_reward(s, scale=0.5), torch.full((N,), math.exp(-0.5 * 1.0 / 3)))
    # joints: 0.2 rad on one of 2 joints, 1 rad/s on the other's velocity
    s = _state()
    s.sim.qpos[:, 0] += 0.2
    s.sim.qvel[:, 1] += 1.0
    torch.testing.assert_close(im.joint_pos_reward(s, scale=5.0), torch.full((N,), math.exp(-5.0 * 0.04 / 2)))
    torch.testing.assert_close(im.joint_vel_reward(s, scale=0.1), torch.full((N,), math.exp(-0.1 * 1.0 / 2)))
    torch.testing.assert_close(im.joint_pos_error(s), torch.full((N,), 0.1))
    torch.testing.assert_close(im.joint_vel_error(s), torch.full((N,), 0.5))


def test_root_terms_and_the_root_angle_in_joint_pos():
    s = _state(free_root=True)
    s.sim.qpos[:, :3] += torch.tensor([0.3, 0.0, 0.4])
    s.sim.qpos[:, 3:7] = axis_angle_to_quat(torch.tensor([0.0, 0.0, 1.0]), torch.tensor(0.2))
    s.sim.qvel[:, 0] += 2.0
    s.sim.qvel[:, 5] += 3.0
    torch.testing.assert_close(im.root_pos_reward(s, scale=20.0), torch.full((N,), math.exp(-20.0 * 0.25)))
    torch.testing.assert_close(im.root_pos_error(s), torch.full((N,), 0.5))
    torch.testing.assert_close(im.root_rot_error(s), torch.full((N,), 0.2))
    vel = 4.0 + 0.1 * 9.0
    torch.testing.assert_close(im.root_vel_reward(s, scale=1.0, ang_vel_factor=0.1), torch.full((N,), math.exp(-vel)))
    # the root orientation counts as one more joint in joint_pos: (0 + 0 + 0.2^2) / 3
    torch.testing.assert_close(im.joint_pos_reward(s, scale=5.0), torch.full((N,), math.exp(-5.0 * 0.04 / 3)))


def test_action_penalties_and_effort():
    s = _state(action=torch.tensor([[2.0, -3.0, 0.5, 0.0]] * N), prev_action=torch.full((N, 4), 0.5))
    torch.testing.assert_close(im.action_bound(s), torch.full((N,), (1.0 + 4.0) / 4))
    torch.testing.assert_close(im.action_rate(s), torch.full((N,), (0.25 + 2.25 + 0.0 + 0.25) / 4))
    s.sim.act[:] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(im.proprio.effort(s), torch.full((N,), 0.5))


def test_terminations_just_below_and_above_each_threshold():
    moved = _state().site_pos.clone()
    moved[:, 1, 0] += 0.3  # mean root-relative deviation 0.1 m
    s = _state(free_root=True, site_pos=moved)
    s.sim.qpos[:, 0] += 0.5
    s.sim.qpos[:, 3:7] = axis_angle_to_quat(torch.tensor([1.0, 0.0, 0.0]), torch.tensor(0.7))
    for fn, value in ((im.site_deviation, 0.1), (im.root_drift, 0.5), (im.root_turned, 0.7)):
        assert fn(s, value * 0.99).all() and not fn(s, value * 1.01).any(), fn.__name__
    cfg = im.ImitationTaskConfig(max_site_error=0.0, max_root_pos_error=0.4, max_root_rot_error=0.0)
    bound = bind_terminations(im.TERMINATIONS, cfg, free_root=True)
    assert list(bound) == ["root_drift"] and bound["root_drift"](s).all()  # thresholds <= 0 switch terms off
    assert list(bind_terminations(im.TERMINATIONS, im.ImitationTaskConfig(), free_root=False)) == ["site_deviation"]


def test_observation_terms_report_their_sizes():
    s = _state(free_root=True, history=torch.zeros(N, 2, 5))
    sizes = {name: spec.fn(s).shape for name, spec in {**im.PROPRIOCEPTION, **im.GOAL, **im.PRIVILEGED}.items()}
    assert sizes["site_pos"] == (N, S * 3) and sizes["goal_sites"] == (N, 3 * S * 3)
    assert sizes["goal_root"] == (N, 3 * 15) and sizes["goal_joints"] == (N, 3 * 2) and sizes["phase"] == (N, 1)
    assert sizes["root"] == (N, 10) and sizes["muscle_force"] == (N, 4)
    assert sizes["tracking"] == (N, 2 + 2 + S * 3 * 2 + S + 12)
    assert im.history(s).shape == (N, 10)
    # on the reference the goal is the reference itself, seen from the body: zero root and joint goals
    torch.testing.assert_close(im.goal_joints(s), torch.zeros(N, 6))
    assert im.goal_root(s)[:, :9].abs().max() == 0


def test_posture_terms_by_hand():
    body = _body(free_root=True)
    qpos = torch.zeros(N, 9)
    qpos[:, 3:7] = axis_angle_to_quat(torch.tensor([1.0, 0.0, 0.0]), torch.tensor(0.5))  # tilted 0.5 rad
    qpos[:, 2] = 0.5
    qpos[:, 7] = 0.3
    sim = SimpleNamespace(qpos=qpos, qvel=torch.zeros(N, 8), act=torch.zeros(N, 4))
    s = po.PostureState(sim, body, target_qpos=torch.zeros(N, 2), start_root_height=torch.ones(N))
    torch.testing.assert_close(po.posture(s, scale=4.0), torch.full((N,), math.exp(-4.0 * 0.09 / 2)))
    torch.testing.assert_close(po.upright(s, scale=2.0), torch.full((N,), math.exp(-2.0 * 0.25)), atol=1e-6, rtol=0)
    rms = math.sqrt(0.09 / 2)
    assert po.posture_lost(s, rms * 0.99).all() and not po.posture_lost(s, rms * 1.01).any()
    assert po.fallen(s, 0.51).all() and not po.fallen(s, 0.49).any()


def test_rewards_bind_from_config_with_clear_errors():
    table = im.REWARDS
    bound = bind_rewards(table, {"site_pos": {"weight": 0.5, "scale": 10.0}}, free_root=False, owner="T")
    assert "root_pos" not in bound and bound["site_pos"].weight == 0.5 and bound["site_pos"].params == {"scale": 10.0}
    assert bound["joint_pos"].weight == 0.3  # untouched entries keep the table's defaults
    with pytest.raises(ValueError, match="unknown reward term.*'site_pos_typo'.*known: joint_pos"):
        bind_rewards(table, {"site_pos_typo": {"weight": 1.0}}, False, "T")
    with pytest.raises(ValueError, match="'site_pos' has no parameter.*'scal'.*takes weight, scale"):
        bind_rewards(table, {"site_pos": {"scal": 1.0}}, False, "T")
    # from YAML-style overrides, as `mmimic train ... env.task.rewards.site_pos.weight=0.5`
    from mmimic.envs import MuscleImitationEnvConfig
    cfg = load_config(MuscleImitationEnvConfig, None, ["task.rewards.site_pos.weight=0.5",
                                                       "task.rewards.root_vel.ang_vel_factor=0.2"])
    assert cfg.task.rewards["site_pos"] == {"weight": 0.5, "scale": 40.0}
    assert cfg.task.rewards["root_vel"]["ang_vel_factor"] == 0.2


def test_total_reward_is_the_weighted_sum_and_zero_where_unstable():
    rewards = {"a": BoundReward(lambda s: s, 0.5, {}), "b": BoundReward(lambda s: s, -2.0, {})}
    terms = {"a": torch.tensor([1.0, 0.4, 0.8]), "b": torch.tensor([0.1, 0.0, 0.5])}
    unstable = torch.tensor([False, False, True])
    torch.testing.assert_close(total_reward(terms, rewards, unstable), torch.tensor([0.3, 0.2, 0.0]))


def test_configs_of_the_earlier_layout_still_load(tmp_path):
    """A run's config.yaml from before the reward table (e.g. resumed with --resume) loads, with a warning;
    the posture task's effort weight, positive and subtracted then, becomes a negative weight."""
    from mmimic.envs.posture_demo import PostureRunConfig
    from mmimic.rl.trainer import TrainConfig

    old = tmp_path / "config.yaml"
    old.write_text("env:\n  task:\n    site_pos_weight: 0.5\n    site_pos_scale: 20.0\n    root_ang_vel_factor: 0.3\n"
                   "    effort_weight: -0.02\n")
    with pytest.warns(UserWarning) as record:
        cfg = load_config(TrainConfig, str(old), ["env.task.joint_pos_weight=0.7"])
    messages = [str(w.message) for w in record]
    assert any("config.yaml: env.task.site_pos_weight" in m for m in messages)
    assert any(m.startswith("the overrides: env.task.joint_pos_weight are keys of an earlier layout") for m in messages)
    rewards = cfg.env.task.rewards
    assert rewards["site_pos"] == {"weight": 0.5, "scale": 20.0} and rewards["root_vel"]["ang_vel_factor"] == 0.3
    assert rewards["effort"]["weight"] == -0.02 and rewards["joint_pos"]["weight"] == 0.7
    old.write_text("env:\n  task:\n    effort_weight: 0.1\n    posture_scale: 8.0\n")
    with pytest.warns(UserWarning, match="earlier layout"):
        cfg = load_config(PostureRunConfig, str(old))
    assert cfg.env.task.rewards["effort"]["weight"] == -0.1 and cfg.env.task.rewards["posture"]["scale"] == 8.0

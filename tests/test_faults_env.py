"""Bad actions never poison a batch: NaN, +-inf, huge and non-float actions give finite, bounded rewards,
and the other worlds step exactly as they would have."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs.utils import step_mdp

from mmimic.envs import MuscleEnv, MuscleImitationEnv
from mmimic.envs.muscle_env import ACTION_LIMIT
from mmimic.motion.demo import ensure_demo_library


@pytest.fixture(scope="module")
def arm_motions(tmp_path_factory):
    return ensure_demo_library("arm26", tmp_path_factory.mktemp("data"), log=lambda *_: None)


def _pair(make):
    """Two identical envs (same seed): one gets the bad actions, the other a clean copy."""
    return make(), make()


@pytest.mark.parametrize("kind", ["imitation", "posture"])
def test_non_finite_and_huge_actions_give_finite_bounded_rewards(arm_motions, kind):
    def make():
        if kind == "imitation":
            return MuscleImitationEnv("arm26", motions=arm_motions, num_envs=4, seed=1, backend="mujoco",
                                      max_site_error=0.0)
        return MuscleEnv("arm26", num_envs=4, seed=1, backend="mujoco", max_posture_error=0.0)

    bad_env, ref_env = _pair(make)
    td_bad, td_ref = bad_env.reset(), ref_env.reset()
    clean = torch.zeros(4, 6)
    bad = clean.clone()
    bad[1, 0], bad[2, 3], bad[3, 5] = float("nan"), float("inf"), -1e30
    out_bad = bad_env.step(td_bad.set("action", bad))["next"]
    # what the env makes of them: NaN -> 0, +-inf / huge -> clamped (the physics sees [-1, 1])
    as_used = clean.clone()
    as_used[2, 3], as_used[3, 5] = ACTION_LIMIT, -ACTION_LIMIT
    out_ref = ref_env.step(td_ref.set("action", as_used))["next"]
    reward = out_bad["reward"].squeeze(-1)
    assert torch.isfinite(reward).all()
    torch.testing.assert_close(reward, out_ref["reward"].squeeze(-1), rtol=0, atol=0)
    assert torch.equal(bad_env.sim.qpos, ref_env.sim.qpos)  # world 0 (clean) and the others: as if sanitized
    if kind == "imitation":
        penalty = out_bad["reward_terms", "action_bound"]
        assert penalty[0] == 0 and penalty[3] == pytest.approx((ACTION_LIMIT - 1) ** 2 / 6)  # bounded
    assert bad_env.unstable_count == 0


def test_bool_and_integer_actions_are_cast_and_a_wrong_shape_is_a_clear_error(arm_motions):
    env = MuscleImitationEnv("arm26", motions=arm_motions, num_envs=2, seed=0, backend="mujoco")
    td = env.reset()
    for action in (torch.ones(2, 6, dtype=torch.bool), torch.zeros(2, 6, dtype=torch.int64)):
        out = env.step(td.set("action", action))
        assert torch.isfinite(out["next", "reward"]).all()
        td = step_mdp(out)
    with pytest.raises(ValueError, match=r"action must be \(num_envs, nu\) = \(2, 6\), got \(2, 5\)"):
        env.step(td.set("action", torch.zeros(2, 5)))

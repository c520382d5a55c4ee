"""Rollout collection over one batched TorchRL env (``batch_size=[N]``), on the env's device.

``collect(env, learner, steps, td)`` calls ``env.step_and_maybe_reset`` ``steps`` times and returns
``(rollout, td)``: a TensorDict with batch ``[N, T]`` and the env's TensorDict to continue from.

How torchrl 0.14.1's ``step_and_maybe_reset(td)`` returns (checked in tests/test_ppo.py):
``out, td_next = env.step_and_maybe_reset(td)``; ``out`` is the input ``td`` (observation at t,
``action``) with ``out["next"]`` holding what the step produced: reward, done flags and the
*true* next observation, even for the worlds that were reset. ``td_next`` is the input of the
next step: the next observation where the episode goes on, the reset observation where it ended
(and done flags cleared). So a learner that bootstraps a truncated step must use ``rollout["next"]``,
which ``collect`` keeps.

Rollout entries (all ``[N, T, ...]``):

- the learner's observation entries (``learner.obs_keys``) and ``next_keys`` at t;
- every entry of ``learner.act`` (``action (N, T, A)``, and e.g. ``log_prob``, ``value``);
- ``reward``, bool ``terminated``, ``truncated``, ``done``, and ``unstable`` when the env writes it;
- ``next``: the same observation entries at t + 1 (the true next observation);
- ``reward_terms`` / ``tracking_errors`` sub-TensorDicts when the env's step returns them (for
  logging and the error discriminator).

``collect`` runs under ``torch.no_grad``. It steps with ``env.step_and_reset`` where the env has it
(``MuscleEnv``: the same outputs as ``step_and_maybe_reset``, without host syncs on CUDA: torchrl's
reads back whether any world is done, and more, every step), else with torchrl's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase

from mmimic import keys

OPTIONAL_KEYS = (keys.REWARD_TERMS, keys.TRACKING_ERRORS)
FLAGS = (keys.TERMINATED, keys.TRUNCATED, keys.DONE)


@torch.no_grad()
def collect(env, learner, steps: int, td: TensorDictBase, next_keys: Sequence[str] = (),
            extra_keys: Sequence[str] = OPTIONAL_KEYS) -> tuple[TensorDict, TensorDictBase]:
    """Run ``steps`` env steps with ``learner``; returns ``(rollout [N, T], td to continue from)``."""
    if int(steps) < 1:
        raise ValueError(f"collect: steps must be >= 1, got {steps!r}")
    if td.batch_dims != 1:
        raise ValueError(f"collect: expected the env's TensorDict with batch [N], got {td.batch_size}")
    obs_keys = tuple(dict.fromkeys((*learner.obs_keys, *next_keys)))  # entries kept at t and t + 1
    missing = [k for k in obs_keys if k not in td.keys()]
    if missing:
        raise KeyError(f"collect: the env's TensorDict lacks {missing} (has {sorted(map(str, td.keys()))})")
    # MuscleEnv's own step-and-reset never reads back to the host on CUDA; other envs: torchrl's
    step_and_reset = getattr(env, "step_and_reset", env.step_and_maybe_reset)
    steps_out: list[TensorDict] = []
    for _ in range(int(steps)):
        # act on the observation at t
        acted = learner.act(td)
        step = td.select(*obs_keys).update(acted)
        td.set(keys.ACTION, acted.get(keys.ACTION))
        # step; done worlds are reset inside, out["next"] keeps their true final observation
        out, td = step_and_reset(td)
        nxt = out.get(keys.NEXT)
        step.set(keys.REWARD, nxt.get(keys.REWARD).reshape(-1))
        for k in FLAGS:
            step.set(k, nxt.get(k).reshape(-1))
        if keys.UNSTABLE in nxt.keys():
            step.set(keys.UNSTABLE, nxt.get(keys.UNSTABLE).reshape(-1))
        for k in extra_keys:
            if k in nxt.keys():
                step.set(k, nxt.get(k))
        step.set(keys.NEXT, nxt.select(*obs_keys))
        steps_out.append(step)
    return torch.stack(steps_out, dim=1), td


class EpisodeStats:
    """Episode returns and lengths across rollouts, accumulated on the device.

    ``update(rollout)`` after each ``collect``; ``summary()`` (one host transfer) returns the means
    over the episodes that ended since the last summary and starts a new window.
    """

    def __init__(self, num_envs: int, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.running_return = torch.zeros(num_envs, device=self.device)
        self.running_length = torch.zeros(num_envs, device=self.device)
        self._sums = torch.zeros(5, device=self.device)  # episodes, return, length, terminated, truncated

    @torch.no_grad()
    def update(self, rollout: TensorDictBase) -> None:
        reward, done = rollout.get(keys.REWARD), rollout.get(keys.DONE)
        terminated, truncated = rollout.get(keys.TERMINATED), rollout.get(keys.TRUNCATED)
        for t in range(reward.shape[1]):
            self.running_return += reward[:, t]
            self.running_length += 1
            ended = done[:, t].float()
            self._sums += torch.stack([ended.sum(), (self.running_return * ended).sum(),
                                       (self.running_length * ended).sum(), terminated[:, t].float().sum(),
                                       truncated[:, t].float().sum()])
            keep = 1.0 - ended
            self.running_return *= keep
            self.running_length *= keep

    def state_dict(self) -> dict:
        return {"running_return": self.running_return.clone(), "running_length": self.running_length.clone(),
                "sums": self._sums.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.running_return.copy_(state["running_return"])
        self.running_length.copy_(state["running_length"])
        self._sums.copy_(state["sums"])

    def summary(self) -> dict[str, float]:
        """``episodes``, ``episode_return``, ``episode_length`` (means; NaN if none ended),
        ``terminated_fraction``, ``truncated_fraction`` of the ended episodes."""
        episodes, ret, length, term, trunc = self._sums.tolist()
        self._sums.zero_()
        nan = float("nan")
        return {"episodes": episodes,
                "episode_return": ret / episodes if episodes else nan,
                "episode_length": length / episodes if episodes else nan,
                "terminated_fraction": term / episodes if episodes else nan,
                "truncated_fraction": trunc / episodes if episodes else nan}


__all__ = ["EpisodeStats", "OPTIONAL_KEYS", "collect"]

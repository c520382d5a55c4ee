"""Rollout collection over one batched TorchRL env (``batch_size=[N]``), on the env's device.

``collect(env, agent, steps, td)`` calls ``env.step_and_maybe_reset`` ``steps`` times and returns
``(rollout, td)``: a TensorDict with batch ``[N, T]`` and the env's TensorDict to continue from.

How torchrl 0.14.1's ``step_and_maybe_reset(td)`` returns (checked in tests/test_ppo.py):
``out, td_next = env.step_and_maybe_reset(td)``; ``out`` is the input ``td`` (observation at t,
``action``) with ``out["next"]`` holding what the step produced: reward, done flags and the
*true* next observation, even for the worlds that were reset. ``td_next`` is the input of the
next step: the next observation where the episode goes on, the reset observation where it ended
(and done flags cleared). So the value needed to bootstrap a truncated step is the critic's
value of ``out["next"]``, which ``collect`` computes at every step (one extra critic pass; where
the episode goes on it equals the next step's value).

Rollout entries (all ``[N, T, ...]``):

- the agent's observation entries (``agent.obs_keys``) at t;
- ``action (N, T, A)``, ``log_prob``, ``value``: what the agent did and thought at t;
- ``reward``, ``next_value`` (V of the true next observation), bool ``terminated``,
  ``truncated``, ``done``: all ``(N, T)``;
- for every ``next_keys`` entry: ``key`` at t and ``("next", key)``, the true next observation
  (for AMP transition features: ``transition_features(rollout, rollout["next"], keys)``);
- ``reward_terms`` / ``tracking_errors`` sub-TensorDicts when the env's step returns them (for
  logging and the error discriminator); absent otherwise.

The agent needs ``obs_keys``, ``act(td) -> (action, log_prob, value)`` and ``value(td)``
(``mmimic.rl.PPO`` has them). ``collect`` runs under ``torch.no_grad``. torchrl itself reads one
boolean per step (``any_done``, to decide whether to reset): that is the only host sync.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase

OPTIONAL_KEYS = ("reward_terms", "tracking_errors")


@torch.no_grad()
def collect(env, agent, steps: int, td: TensorDictBase, next_keys: Sequence[str] = (),
            extra_keys: Sequence[str] = OPTIONAL_KEYS) -> tuple[TensorDict, TensorDictBase]:
    """Run ``steps`` env steps with ``agent``; returns ``(rollout [N, T], td to continue from)``."""
    if int(steps) < 1:
        raise ValueError(f"collect: steps must be >= 1, got {steps!r}")
    if td.batch_dims != 1:
        raise ValueError(f"collect: expected the env's TensorDict with batch [N], got {td.batch_size}")
    obs_keys = tuple(agent.obs_keys)
    missing = [k for k in (*obs_keys, *next_keys) if k not in td.keys()]
    if missing:
        raise KeyError(f"collect: the env's TensorDict lacks {missing} (has {sorted(map(str, td.keys()))})")
    stored_obs = tuple(dict.fromkeys((*obs_keys, *next_keys)))  # entries kept at t
    columns: dict = {k: [] for k in (*stored_obs, "action", "log_prob", "value", "reward", "next_value",
                                     "terminated", "truncated", "done")}
    nexts: dict = {k: [] for k in next_keys}
    extras: dict = {}
    for _ in range(int(steps)):
        # act on the observation at t
        action, log_prob, value = agent.act(td)
        for k in stored_obs:
            columns[k].append(td.get(k))
        td.set("action", action)
        # step; done worlds are reset inside, out["next"] keeps their true final observation
        out, td = env.step_and_maybe_reset(td)
        nxt = out.get("next")
        columns["action"].append(action)
        columns["log_prob"].append(log_prob)
        columns["value"].append(value)
        columns["reward"].append(nxt.get("reward").reshape(-1))
        columns["next_value"].append(agent.value(nxt))
        for k in ("terminated", "truncated", "done"):
            columns[k].append(nxt.get(k).reshape(-1))
        for k in next_keys:
            nexts[k].append(nxt.get(k))
        for k in extra_keys:
            if k in nxt.keys():
                extras.setdefault(k, []).append(nxt.get(k))
    n = td.batch_size[0]
    data = {k: torch.stack(v, dim=1) for k, v in columns.items()}
    rollout = TensorDict(data, batch_size=[n, int(steps)], device=td.device)
    if next_keys:
        rollout.set("next", TensorDict({k: torch.stack(v, dim=1) for k, v in nexts.items()},
                                       batch_size=[n, int(steps)], device=td.device))
    for k, v in extras.items():
        if len(v) == int(steps):  # present at every step
            rollout.set(k, torch.stack(v, dim=1))
    return rollout, td


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
        reward, done = rollout.get("reward"), rollout.get("done")
        terminated, truncated = rollout.get("terminated"), rollout.get("truncated")
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

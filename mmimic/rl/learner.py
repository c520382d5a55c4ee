"""The ``Learner`` interface: what the trainer, ``collect`` and evaluation need of a learning algorithm.

PPO (``mmimic.rl.ppo``) is the first implementation; an off-policy or flow-based learner plugs in
the same way. One training iteration, as the trainer runs it:

    rollout, td = collect(env, learner, learner.steps_per_update, td)   # learner.act at every step
    (shapers rewrite rollout["reward"], e.g. the adversarial one)
    learner.observe(rollout)
    stats = learner.update()

Saving: ``state_dict()`` holds everything the learner needs to resume (weights, normalizers,
optimizer, counters); the trainer's checkpoint is the learners' and shapers' states plus its counters.

Several processes (``mmimic train --nproc N``): the trainer calls the learner's ``distribute(dist)``
(optional: without it a learner trains in one process only); see ``PPO.distribute``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tensordict import TensorDict, TensorDictBase


@runtime_checkable
class Learner(Protocol):
    name: str  # TensorBoard group of its statistics, e.g. "ppo"

    @property
    def obs_keys(self) -> tuple[str, ...]:
        """Env entries the learner reads; ``collect`` stores them at t and (under "next") at t + 1."""

    @property
    def steps_per_update(self) -> int:
        """Env steps per env between two updates."""

    def act(self, obs: TensorDictBase, deterministic: bool = False) -> TensorDict:
        """At least ``action`` (N, A); every other entry (e.g. log_prob, value) is stored in the rollout."""

    def observe(self, rollout: TensorDictBase) -> None:
        """Take ``[N, T]`` transitions (observations at t and under "next", the ``act`` entries, reward,
        done flags) for the next update."""

    def update(self) -> dict[str, float]:
        """Learn from what was observed; returns statistics (floats) to log."""

    def state_dict(self) -> dict:
        """Everything needed to resume."""

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``."""

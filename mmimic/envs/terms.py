"""Tasks as tables of named term functions, and the one reward formula.

A term is a plain function of one per-step state object ``s`` (the task's state class: the simulator
views, the reference, tracking quantities, the previous action) that returns ``(N, ...)`` tensors. A
task declares its terms in tables, in the order they are computed and concatenated:

- ``Observation``: ``fn(s) -> (N, size)``; the size is read from the function's output on the first
  state (nothing to keep in step by hand);
- ``Reward``: ``fn(s, **params) -> (N,)`` with a default weight and parameters; the task config's
  ``rewards`` dict overrides them by name (``env.task.rewards.site_pos.weight=0.5``);
- ``Termination``: ``fn(s, threshold) -> (N,) bool``; the threshold is a field of the task config, and
  a threshold <= 0 switches the term off;
- tracking errors: plain ``fn(s) -> (N,)`` (logged, and the features of the error discriminator).

Adding a reward term is one function and one table entry. The reward is ``total_reward``: the
weighted sum of the terms, zero for a world that blew up, computed here and nowhere else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Observation:
    fn: Callable[..., torch.Tensor]
    free_root_only: bool = False  # needs a free root (dropped for fixed-base models)


@dataclass(frozen=True)
class Reward:
    fn: Callable[..., torch.Tensor]
    weight: float  # signed: tracking terms in (0, 1] get w > 0, penalties (>= 0) get w < 0
    params: dict[str, float] = field(default_factory=dict)
    free_root_only: bool = False


@dataclass(frozen=True)
class Termination:
    fn: Callable[..., torch.Tensor]
    threshold: str  # name of the task-config field holding the threshold (<= 0: term off)
    free_root_only: bool = False


@dataclass(frozen=True)
class BoundReward:
    """A reward term with its weight and parameters from the config: ``term(s)`` evaluates it."""

    fn: Callable[..., torch.Tensor]
    weight: float
    params: dict[str, float]

    def __call__(self, s) -> torch.Tensor:
        return self.fn(s, **self.params)


def reward_defaults(table: dict[str, Reward]) -> dict[str, dict[str, float]]:
    """The config form of a reward table: ``{name: {"weight": w, **params}}`` (a task config's default)."""
    return {name: {"weight": r.weight, **r.params} for name, r in table.items()}


def active(table: dict, free_root: bool) -> dict:
    """The entries of a term table that apply to the model (free-root-only terms need a free root)."""
    return {k: v for k, v in table.items() if free_root or not getattr(v, "free_root_only", False)}


def bind_rewards(table: dict[str, Reward], config: dict[str, dict[str, float]], free_root: bool,
                 owner: str) -> dict[str, BoundReward]:
    """Reward terms with the weights and parameters of ``config`` (entries missing there keep the
    table's defaults). An unknown term or parameter is an error naming the known ones."""
    unknown = sorted(set(config) - set(table))
    if unknown:
        raise ValueError(f"{owner}: unknown reward term(s) {unknown}; known: {', '.join(table)}")
    out = {}
    for name, spec in active(table, free_root).items():
        given = dict(config.get(name, {}))
        weight = float(given.pop("weight", spec.weight))
        accepted = [p for p in inspect.signature(spec.fn).parameters][1:]
        bad = sorted(set(given) - set(accepted))
        if bad:
            raise ValueError(f"{owner}: reward term {name!r} has no parameter(s) {bad}; it takes weight"
                             f"{''.join(', ' + p for p in accepted)}")
        out[name] = BoundReward(spec.fn, weight, {**spec.params, **{k: float(v) for k, v in given.items()}})
    return out


def bind_terminations(table: dict[str, Termination], task_cfg, free_root: bool) -> dict[str, Callable]:
    """Termination terms switched on by their thresholds: ``name -> fn(s) -> (N,) bool``."""
    out = {}
    for name, spec in active(table, free_root).items():
        threshold = float(getattr(task_cfg, spec.threshold))
        if threshold > 0:
            out[name] = _with_threshold(spec.fn, threshold)
    return out


def _with_threshold(fn: Callable, threshold: float) -> Callable:
    return lambda s: fn(s, threshold)


def total_reward(terms: dict[str, torch.Tensor], rewards: dict[str, BoundReward],
                 unstable: torch.Tensor | None = None) -> torch.Tensor:
    """THE reward: ``sum_k weight_k * term_k`` (table order), and 0 where ``unstable`` (a world that blew
    up earns nothing, so a policy cannot learn to blow up the simulator)."""
    reward = sum(r.weight * terms[name] for name, r in rewards.items())
    if unstable is not None:
        reward = torch.where(unstable, torch.zeros_like(reward), reward)
    return reward


def any_terminated(terminations: dict[str, Callable], s, like: torch.Tensor) -> torch.Tensor:
    """(N,) bool: any termination term fires."""
    failed = torch.zeros_like(like, dtype=torch.bool)
    for fn in terminations.values():
        failed = failed | fn(s)
    return failed

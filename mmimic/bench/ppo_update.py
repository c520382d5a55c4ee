"""Time one PPO update, hand-written (mmimic.rl.PPO) against torchrl's ClipPPOLoss + GAE module.

    python -m mmimic.bench.ppo_update [--envs 4096] [--steps 24] [--device cpu] [--repeats 5]

Both sides get the same synthetic rollout (``[envs, steps]``, obs 64, action 16), the same actor
and critic modules (MLP 256-128, LayerNorm + SiLU), the same normalized observations, 5 epochs x
4 minibatches, Adam, gradient clipping and a fixed learning rate; the torchrl side computes the
advantages with ``torchrl.objectives.value.GAE`` (value_network=None, the stored values) and
the loss with ``ClipPPOLoss`` on TensorDict minibatches. Also times GAE alone three ways. Prints
medians; the figures quoted in ``mmimic/rl/ppo.py`` come from this script.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from mmimic.rl import PPO, NetworkConfig, PPOConfig, compute_gae


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_rollout(n: int, t: int, obs_dim: int, act_dim: int, device: torch.device) -> TensorDict:
    g = torch.Generator(device=device).manual_seed(0)
    done = torch.rand(n, t, generator=g, device=device) < 0.02
    return TensorDict(
        observation=torch.randn(n, t, obs_dim, generator=g, device=device),
        action=torch.randn(n, t, act_dim, generator=g, device=device).clamp(-1, 1),
        log_prob=-torch.rand(n, t, generator=g, device=device) * act_dim,
        value=torch.randn(n, t, generator=g, device=device),
        next_value=torch.randn(n, t, generator=g, device=device),
        reward=torch.randn(n, t, generator=g, device=device),
        terminated=done & (torch.rand(n, t, generator=g, device=device) < 0.5),
        truncated=done.clone(), done=done,
        batch_size=[n, t], device=device)


class _LocScale(nn.Module):
    def __init__(self, actor):
        super().__init__()
        self.actor = actor

    def forward(self, obs):
        loc = self.actor(obs)
        return loc, self.actor.clamped_log_std().exp().expand_as(loc)


class _Value(nn.Module):
    def __init__(self, critic):
        super().__init__()
        self.critic = critic

    def forward(self, obs):
        return self.critic(obs).unsqueeze(-1)


def torchrl_update_fn(agent: PPO, rollout: TensorDict, cfg: PPOConfig):
    """A PPO update built from torchrl pieces around the same networks and optimizer settings."""
    from torchrl.modules import ProbabilisticActor, ValueOperator
    from torchrl.modules.distributions import IndependentNormal
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    actor = ProbabilisticActor(TensorDictModule(_LocScale(agent.actor), in_keys=["observation"],
                                                out_keys=["loc", "scale"]),
                               in_keys=["loc", "scale"], distribution_class=IndependentNormal,
                               return_log_prob=True, log_prob_key="log_prob")
    critic = ValueOperator(_Value(agent.critic), in_keys=["observation"])
    loss_module = ClipPPOLoss(actor, critic, clip_epsilon=cfg.clip_eps, entropy_coeff=cfg.entropy_coef,
                              critic_coeff=cfg.value_coef, loss_critic_type="l2", normalize_advantage=False)
    loss_module.set_keys(sample_log_prob="log_prob")
    gae = GAE(gamma=cfg.gamma, lmbda=cfg.gae_lambda, value_network=None)
    params = [*agent.actor.parameters(), *agent.critic.parameters()]
    optim = torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps)
    n, t = rollout.batch_size
    device = rollout.device

    def update():
        td = TensorDict(
            observation=agent.actor_normalizer(rollout["observation"]), action=rollout["action"],
            log_prob=rollout["log_prob"], state_value=rollout["value"][..., None],
            next=TensorDict(reward=rollout["reward"][..., None], done=rollout["done"][..., None],
                            terminated=rollout["terminated"][..., None],
                            state_value=rollout["next_value"][..., None], batch_size=[n, t]),
            batch_size=[n, t], device=device)
        with torch.no_grad():
            gae(td)
        flat = td.reshape(-1)
        adv = flat["advantage"]
        flat["advantage"] = (adv - adv.mean()) / (adv.std() + 1e-8)
        mb = flat.shape[0] // cfg.minibatches
        for _ in range(cfg.epochs):
            perm = torch.randperm(flat.shape[0], device=device)
            for i in range(cfg.minibatches):
                batch = flat[perm[i * mb:(i + 1) * mb]]
                out = loss_module(batch)
                loss = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                optim.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optim.step()

    return update, gae


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, default=4096)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--obs", type=int, default=64)
    p.add_argument("--act", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hidden", default="256,128", help="comma-separated MLP widths (actor and critic)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    hidden = [int(w) for w in args.hidden.split(",")]
    cfg = PPOConfig(network=NetworkConfig(actor_hidden=hidden, critic_hidden=hidden), schedule="fixed",
                    epochs=5, minibatches=4)
    rollout = make_rollout(args.envs, args.steps, args.obs, args.act, device)
    agent = PPO(args.obs, args.act, cfg, device=device)
    agent.update_normalizers(rollout["observation"])
    agent.eval()  # keep the normalizer fixed across repeats (both sides use it)

    results = {}
    torchrl_update, gae_module = torchrl_update_fn(agent, rollout, cfg)
    # interleaved (hand, torchrl, hand, ...) so that a change of machine load hits both alike
    hand_update = lambda: agent.update(rollout)  # noqa: E731
    hand_update(), torchrl_update()  # warm-up
    hand, trl = [], []
    for _ in range(args.repeats):
        hand.append(_timed(hand_update, device, 1, warmup=False))
        trl.append(_timed(torchrl_update, device, 1, warmup=False))
    results["update_hand_s"] = statistics.median(hand)
    results["update_torchrl_s"] = statistics.median(trl)

    r = rollout
    results["gae_hand_s"] = _timed(
        lambda: compute_gae(r["reward"], r["value"], r["next_value"], r["terminated"], r["done"],
                            cfg.gamma, cfg.gae_lambda), device, args.repeats)
    n, t = r.batch_size
    td = TensorDict(state_value=r["value"][..., None],
                    next=TensorDict(reward=r["reward"][..., None], done=r["done"][..., None],
                                    terminated=r["terminated"][..., None],
                                    state_value=r["next_value"][..., None],
                                    batch_size=[n, t]), batch_size=[n, t], device=device)

    def gae_torchrl():
        with torch.no_grad():
            gae_module(td.clone(False))

    results["gae_torchrl_module_s"] = _timed(gae_torchrl, device, args.repeats)
    from torchrl.objectives.value.functional import generalized_advantage_estimate

    results["gae_torchrl_functional_s"] = _timed(
        lambda: generalized_advantage_estimate(cfg.gamma, cfg.gae_lambda, td["state_value"],
                                               td["next", "state_value"], td["next", "reward"],
                                               td["next", "done"], td["next", "terminated"]),
        device, args.repeats)
    print(f"PPO update, {args.envs} envs x {args.steps} steps, obs {args.obs}, action {args.act}, "
          f"MLP {args.hidden}, "
          f"{cfg.epochs} epochs x {cfg.minibatches} minibatches, {device}, threads {torch.get_num_threads()} "
          f"(median of {args.repeats})")
    for k, v in results.items():
        print(f"  {k:28s} {v * 1e3:9.1f} ms")
    print(f"  torchrl / hand (update)      {results['update_torchrl_s'] / results['update_hand_s']:9.2f}x")
    return results


if __name__ == "__main__":
    main()

"""PPO (clipped surrogate, GAE, KL-adaptive learning rate), written out step by step: the first
``Learner`` (``mmimic.rl.learner``). ``act`` picks actions during collection, ``observe`` takes the
collected ``[N, T]`` rollout (and computes ``next_value``, the critic's value of each step's true next
observation), ``update`` learns from it; ``state_dict`` holds networks, normalizers, optimizer and
counters.

``PPO.update()`` runs, in this order:

1. GAE over the ``[N, T]`` rollout (``compute_gae``). Terminated steps do not bootstrap;
   truncated steps bootstrap from ``next_value``, the critic's value of the *true* final
   observation (``collect`` stores it before the env's reset replaces the observation).
2. Flatten to ``B = N * T`` samples and normalize the observations once (the normalizers are
   frozen during the update; they learn from the rollout at step 7).
3. The behaviour policy's action means on the rollout (the policy has not changed since
   collection), for the analytic KL between old and new policy.
4. Advantage normalization over the whole rollout.
5. ``epochs`` passes over ``minibatches`` random minibatches: clipped surrogate, (clipped) value
   loss, entropy bonus; KL-adaptive learning rate (before the step, as in rsl_rl); backward;
   gradient-norm clipping; Adam step.
6. Linear learning-rate schedule, if chosen.
7. The observation normalizers take in this rollout's observations (after the optimization, so
   the rollout was collected and optimized under the same statistics: the importance ratio is
   exactly 1 at the first minibatch).
8. Statistics: averaged on the device, then *one* host transfer (``.tolist()``), or none with
   ``update(rollout, sync=False)`` (0-d device tensors, e.g. to log only every K updates).

Nothing in 1-7 reads a value back to the host: minibatch indices come from ``torch.randperm`` on
the device, the learning rate is a tensor the optimizer reads in place (Adam with ``fused=True``
takes a tensor ``lr`` and needs no ``.item()`` for its step count), gradient clipping returns a
tensor.

Why not ``torchrl.objectives.ClipPPOLoss`` and ``torchrl.objectives.value.GAE``: measured with
``python -m mmimic.bench.ppo_update`` (same synthetic rollout, same actor/critic modules and
normalized observations, obs 64, action 16, 5 epochs x 4 minibatches, Adam, grad clipping,
fixed lr; the torchrl side = GAE module + ClipPPOLoss on TensorDict minibatches; 2-core CPU,
torch 2.13, torchrl 0.14.1, hand and torchrl runs interleaved, medians):

    4096 envs x 24 steps, MLP 256-128, 2 threads:  hand 3.68 s, torchrl 3.78 s per update (1.03x)
    the same, 1 thread:                            hand 6.52 s, torchrl 6.11 s per update (0.94x)
    128 envs x 24 steps, MLP 64-64, 1 thread:      hand 84-103 ms, torchrl 134-169 ms    (1.6x)
    128 envs x 24 steps, MLP 64-64, 2 threads:     hand 69.5 ms, torchrl 126.3 ms        (1.8x)
    GAE alone, 4096 x 24:                          hand loop 1.2-1.4 ms, torchrl GAE module 1.3 ms,
                                                   torchrl functional GAE 1.2 ms

With big matrix products on a CPU both are the same: the matmuls dominate, and the hand update
also runs step 3, one no-grad actor pass over the rollout for the analytic KL (0.50 s of the
6.52 s above, which is the whole 1-thread difference). Where the arithmetic is cheap (small
batches here; a GPU with a small network should look alike, not measured: no GPU was available)
the ~2.5 ms of Python/TensorDict plumbing ClipPPOLoss adds per minibatch dominates (1.6-1.8x).
(CPU timings here swing 10x and more when another process holds a core while torch's two OpenMP
threads spin; hence the interleaved runs, and ranges where two runs differed.)
The torchrl GAE module's vectorized path splits the rollout at done flags
(``torch.where(done)``: data-dependent shapes, a host sync on CUDA); the hand loop over T has
none and matches torchrl's functional GAE element-wise (tests). And the KL-adaptive schedule
wants the analytic KL of the two Gaussians, which ClipPPOLoss does not give
(its ``kl_approx`` is the sample estimator). So the loss and GAE are written out here (a dozen
lines each); TensorDict carries the rollout and torchrl the environments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from mmimic import keys
from mmimic.rl.networks import (Critic, GaussianActor, NetworkConfig, gaussian_entropy, gaussian_kl,
                                gaussian_log_prob)
from mmimic.rl.normalizer import RunningNormalizer

SCHEDULES = ("fixed", "kl_adaptive", "linear")

# Per-minibatch statistics, in the order of the rows of the stats tensor.
_MB_STATS = ("policy_loss", "value_loss", "entropy", "kl", "approx_kl", "clip_fraction", "grad_norm")


@dataclass
class PPOConfig:
    """PPO hyper-parameters (omegaconf-friendly). Defaults suit thousands of envs x ~24 steps."""

    # learning rate and its schedule
    lr: float = 3e-4  # Adam learning rate (the start value for kl_adaptive and linear)
    schedule: str = "kl_adaptive"  # fixed | kl_adaptive | linear
    desired_kl: float = 0.01  # kl_adaptive: lr /= factor above 2x, *= factor below 0.5x (per minibatch)
    kl_lr_factor: float = 1.5  # kl_adaptive: the factor the lr is divided / multiplied by
    lr_min: float = 1e-5  # kl_adaptive clamp; linear: the final lr
    lr_max: float = 1e-2  # kl_adaptive: upper clamp
    anneal_updates: int = 1000  # linear: updates over which lr goes from `lr` to `lr_min`
    adam_eps: float = 1e-5  # Adam epsilon
    # losses
    clip_eps: float = 0.2  # surrogate ratio clip
    value_clip: float = 0.0  # 0 = off; > 0: value may move at most this much per update (absolute)
    entropy_coef: float = 0.0  # entropy bonus weight (sigma is state-independent)
    value_coef: float = 1.0  # loss = policy + value_coef * mean (V - R)^2 - entropy_coef * entropy
    max_grad_norm: float = 1.0  # gradient-norm clipping of actor + critic
    normalize_advantage: bool = True  # over the whole rollout
    # passes
    epochs: int = 5  # passes over each rollout
    minibatches: int = 4  # minibatches per pass (each N * T / minibatches samples)
    # returns
    gamma: float = 0.99  # discount per control step
    gae_lambda: float = 0.95  # GAE lambda
    rollout_steps: int = 24  # T per env per update (the trainer passes it to `collect`)
    # inputs
    actor_obs_key: str = keys.OBSERVATION  # env observation entry the actor sees
    critic_obs_key: str = keys.OBSERVATION  # may be a privileged entry; same key = shared normalizer
    normalize_obs: bool = True  # running mean/std normalization of the observations
    obs_clip: float = 5.0  # normalized observations are clipped to [-clip, clip]
    network: NetworkConfig = field(default_factory=NetworkConfig)  # actor and critic sizes and init

    def validate(self) -> None:
        bad = []
        if self.schedule not in SCHEDULES:
            bad.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("lr", "lr_min", "lr_max", "clip_eps", "adam_eps", "max_grad_norm", "kl_lr_factor",
                     "desired_kl"):
            if not getattr(self, name) > 0:
                bad.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.lr_min <= self.lr_max:
            bad.append(f"lr_min ({self.lr_min}) must be <= lr_max ({self.lr_max})")
        for name in ("value_clip", "entropy_coef", "value_coef"):
            if getattr(self, name) < 0:
                bad.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("epochs", "minibatches", "rollout_steps", "anneal_updates"):
            if int(getattr(self, name)) < 1:
                bad.append(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not (0.0 <= self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            bad.append(f"gamma and gae_lambda must be in [0, 1], got {self.gamma!r}, {self.gae_lambda!r}")
        if bad:
            raise ValueError("PPOConfig: " + "; ".join(bad))


@torch.no_grad()
def compute_gae(reward: torch.Tensor, value: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor,
                done: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over ``(N, T)`` tensors; returns ``(advantage, return)``.

    ``next_value[:, t]`` is V of the observation that followed step t (for a truncated step, the
    true final observation, not the reset one). ``terminated`` removes the bootstrap;
    ``done`` (terminated or truncated) stops the advantage from flowing across the episode end:

        delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - value_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
        R_t     = A_t + value_t
    """
    same = reward.shape == value.shape == next_value.shape == terminated.shape == done.shape
    if not same or reward.ndim != 2:
        raise ValueError("compute_gae: reward, value, next_value, terminated, done must all be (N, T); got "
                         f"{[tuple(t.shape) for t in (reward, value, next_value, terminated, done)]}")
    not_terminated = (~terminated.bool()).to(value.dtype)
    carry = gamma * lam * (~done.bool()).to(value.dtype)
    delta = reward + gamma * not_terminated * next_value - value
    advantage = torch.empty_like(delta)
    last = torch.zeros_like(delta[:, 0])
    for t in range(delta.shape[1] - 1, -1, -1):
        last = delta[:, t] + carry[:, t] * last
        advantage[:, t] = last
    return advantage, advantage + value


class PPO:
    """Actor, critic, observation normalizers and their optimizer; a ``Learner``. See the module docstring.

    ``obs_dim``: size of ``cfg.actor_obs_key``; ``critic_obs_dim``: size of ``cfg.critic_obs_key``
    (defaults to ``obs_dim``).
    """

    name = "ppo"  # TensorBoard group of its statistics

    def __init__(self, obs_dim: int, action_dim: int, cfg: PPOConfig | None = None,
                 device: torch.device | str = "cpu", critic_obs_dim: int | None = None):
        cfg = cfg or PPOConfig()
        cfg.validate()
        self.cfg = cfg
        self.device = torch.device(device)
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.critic_obs_dim = int(critic_obs_dim) if critic_obs_dim is not None else self.obs_dim
        self.shared_obs = cfg.actor_obs_key == cfg.critic_obs_key
        if self.shared_obs and self.critic_obs_dim != self.obs_dim:
            raise ValueError(f"PPO: actor and critic read the same key {cfg.actor_obs_key!r} but obs_dim "
                             f"{self.obs_dim} != critic_obs_dim {self.critic_obs_dim}")
        self.actor = GaussianActor(self.obs_dim, self.action_dim, cfg.network)
        self.critic = Critic(self.critic_obs_dim, cfg.network)
        if cfg.normalize_obs:
            self.actor_normalizer = RunningNormalizer(self.obs_dim, clip=cfg.obs_clip)
            self.critic_normalizer = (self.actor_normalizer if self.shared_obs
                                      else RunningNormalizer(self.critic_obs_dim, clip=cfg.obs_clip))
        else:
            self.actor_normalizer = self.critic_normalizer = nn.Identity()
        # every module in one container: weights, device moves, train/eval mode
        self.nets = nn.ModuleDict({"actor": self.actor, "critic": self.critic,
                                   "actor_normalizer": self.actor_normalizer,
                                   "critic_normalizer": self.critic_normalizer}).to(self.device)
        # A tensor learning rate on the device, read in place by the optimizer: the schedules
        # change it without a host round trip. Fused Adam accepts it and does not sync.
        lr = torch.tensor(float(cfg.lr), device=self.device)
        self.optimizer = torch.optim.Adam(self._trainable(), lr=lr, eps=cfg.adam_eps,
                                          fused=self.device.type in ("cuda", "cpu"))
        self.num_updates = 0
        self._rollout: TensorDictBase | None = None
        self.dist = None  # a distributed run's process group (mmimic.rl.distributed.Dist): see distribute()

    @classmethod
    def for_env(cls, env, cfg: PPOConfig | None = None) -> "PPO":
        """A PPO sized for ``env`` (its observation entries and action spec), on the env's device."""
        cfg = cfg or PPOConfig()
        spec = env.observation_spec
        for key in (cfg.actor_obs_key, cfg.critic_obs_key):
            if key not in spec.keys():
                raise ValueError(f"PPO: the env has no observation entry {key!r} (has {sorted(map(str, spec.keys()))})")
        return cls(spec[cfg.actor_obs_key].shape[-1], env.action_spec.shape[-1], cfg, env.device,
                   critic_obs_dim=spec[cfg.critic_obs_key].shape[-1])

    # ------------------------------------------------------------------ helpers
    def _trainable(self) -> list[nn.Parameter]:
        return [*self.actor.parameters(), *self.critic.parameters()]

    @property
    def steps_per_update(self) -> int:
        """Env steps per env collected for one update (``rollout_steps``)."""
        return int(self.cfg.rollout_steps)

    @property
    def lr(self) -> torch.Tensor:
        """The current learning rate (0-d tensor on the device, shared with the optimizer)."""
        return self.optimizer.param_groups[0]["lr"]

    @property
    def obs_keys(self) -> tuple[str, ...]:
        """The env observation entries the agent reads (what ``collect`` stores)."""
        cfg = self.cfg
        return (cfg.actor_obs_key,) if self.shared_obs else (cfg.actor_obs_key, cfg.critic_obs_key)

    def _split(self, obs: torch.Tensor | TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(obs, TensorDictBase):
            return obs.get(self.cfg.actor_obs_key), obs.get(self.cfg.critic_obs_key)
        return obs, obs

    def train(self, mode: bool = True) -> "PPO":
        """Training mode (the normalizers learn in ``update``); ``eval()`` freezes them."""
        self.nets.train(mode)
        return self

    def eval(self) -> "PPO":
        return self.train(False)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor | TensorDictBase, deterministic: bool = False) -> TensorDict:
        """``action (N, A)``, ``log_prob (N,)``, ``value (N,)`` as a TensorDict (``collect`` stores them).
        ``obs``: a tensor (actor and critic both read it) or a TensorDict with ``cfg.actor_obs_key`` /
        ``cfg.critic_obs_key``. ``deterministic=True`` returns the mean action (evaluation)."""
        actor_obs, critic_obs = self._split(obs)
        action, log_prob, _ = self.actor.sample(self.actor_normalizer(actor_obs), deterministic)
        value = self.critic(self.critic_normalizer(critic_obs))
        return TensorDict({keys.ACTION: action, keys.LOG_PROB: log_prob, keys.VALUE: value},
                          batch_size=actor_obs.shape[:-1], device=actor_obs.device)

    @torch.no_grad()
    def value(self, obs: torch.Tensor | TensorDictBase) -> torch.Tensor:
        """Critic value ``(...)`` of (raw) observations ``(..., obs)``."""
        return self.critic(self.critic_normalizer(self._split(obs)[1]))

    @torch.no_grad()
    def update_normalizers(self, obs: torch.Tensor | TensorDictBase) -> None:
        """Feed raw observations to the normalizers (no-op in eval mode or without normalization)."""
        if not self.cfg.normalize_obs:
            return
        actor_obs, critic_obs = self._split(obs)
        reduce = self.dist.sum_ if self.dist is not None else None
        self.actor_normalizer.update(actor_obs, reduce=reduce)
        if not self.shared_obs:
            self.critic_normalizer.update(critic_obs, reduce=reduce)

    def distribute(self, dist) -> None:
        """Train data-parallel over ``dist``'s ranks (``mmimic.rl.distributed.Dist``): rank 0's weights and
        normalizers go to every rank now; each update then averages the gradients (and the KL that adapts the
        learning rate) and merges the normalizer statistics over the ranks, so all stay identical."""
        self.dist = dist
        dist.broadcast_(list(self.nets.parameters()) + list(self.nets.buffers()))
        for m in self.nets.modules():
            if isinstance(m, RunningNormalizer):
                m._refresh()

    def reset_log_std(self, value: float) -> None:
        """Set the policy's log sigma to ``value`` and forget its Adam moments (fine-tuning)."""
        self.actor.reset_log_std(value)
        self.optimizer.state.pop(self.actor.log_std, None)

    def set_lr(self, value: float) -> None:
        self.lr.fill_(float(value))

    # ------------------------------------------------------------------ observing
    @torch.no_grad()
    def observe(self, rollout: TensorDictBase) -> None:
        """Take a ``[N, T]`` rollout from ``collect`` for the next ``update``. Adds ``next_value`` (the
        critic's value of ``rollout["next"][critic key]``, the true next observation: for a truncated step
        the final one, not the reset one) unless the rollout has it already. The normalizers are those the
        rollout was collected under (they change only at the end of ``update``), so this equals the value
        the critic gave at collection time."""
        if isinstance(rollout, TensorDictBase) and keys.NEXT_VALUE not in rollout.keys():
            key = self.cfg.critic_obs_key
            if (keys.NEXT, key) not in rollout.keys(include_nested=True):
                raise KeyError(f"PPO.observe: the rollout has neither {keys.NEXT_VALUE!r} nor ('next', {key!r}) "
                               "(collect stores the next observation of every key the learner reads)")
            rollout.set(keys.NEXT_VALUE, self.value(rollout.get((keys.NEXT, key))))
        self._check_rollout(rollout)
        self._rollout = rollout

    # ------------------------------------------------------------------ learning
    def update(self, rollout: TensorDictBase | None = None, sync: bool = True) -> dict:
        """One PPO update on the observed rollout (or on ``rollout``: ``observe`` it first). See the
        module docstring.

        Reads ``cfg.actor_obs_key`` (and ``cfg.critic_obs_key``) ``(N, T, obs)``, ``action``
        ``(N, T, A)``, ``log_prob``, ``value``, ``next_value``, ``reward`` ``(N, T)`` and bool
        ``terminated``, ``done`` ``(N, T)``. Returns floats: policy_loss, value_loss, entropy,
        kl (analytic, old || new), approx_kl (sample estimate), clip_fraction, grad_norm (means
        over minibatches), lr, action_std, explained_variance, return_mean, advantage_std.
        ``sync=False`` returns them as 0-d device tensors instead (no host transfer at all).
        """
        cfg = self.cfg
        if rollout is not None:
            self.observe(rollout)
        if self._rollout is None:
            raise RuntimeError("PPO.update: no rollout observed since the last update (call observe first)")
        rollout, self._rollout = self._rollout, None
        n_envs, n_steps = rollout.batch_size
        batch = n_envs * n_steps
        if batch < cfg.minibatches:
            raise ValueError(f"PPO.update: {batch} samples cannot make {cfg.minibatches} minibatches")

        # 1. advantages and returns (GAE; terminated: no bootstrap, truncated: bootstrap from next_value)
        advantage, returns = compute_gae(rollout.get(keys.REWARD), rollout.get(keys.VALUE),
                                         rollout.get(keys.NEXT_VALUE), rollout.get(keys.TERMINATED),
                                         rollout.get(keys.DONE), cfg.gamma, cfg.gae_lambda)

        # 2. flat samples; observations normalized once (normalizers are frozen during the update)
        with torch.no_grad():
            actor_obs = self.actor_normalizer(rollout.get(cfg.actor_obs_key).reshape(batch, -1))
            critic_obs = (actor_obs if self.shared_obs
                          else self.critic_normalizer(rollout.get(cfg.critic_obs_key).reshape(batch, -1)))
        actions = rollout.get(keys.ACTION).reshape(batch, -1)
        old_log_prob = rollout.get(keys.LOG_PROB).reshape(batch)
        old_value = rollout.get(keys.VALUE).reshape(batch)
        advantage, returns = advantage.reshape(batch), returns.reshape(batch)

        # 3. the behaviour policy (unchanged since collection), for the analytic KL
        with torch.no_grad():
            old_loc = self.actor(actor_obs)
            old_log_std = self.actor.clamped_log_std().clone()

        # 4. advantage normalization over the whole rollout
        if cfg.normalize_advantage:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)

        # 5. epochs x minibatches
        mb_size = batch // cfg.minibatches
        stats = torch.zeros(cfg.epochs * cfg.minibatches, len(_MB_STATS), device=self.device)
        params = self._trainable()
        k = 0
        for _epoch in range(cfg.epochs):
            perm = torch.randperm(batch, device=self.device)
            for i in range(cfg.minibatches):
                idx = perm[i * mb_size:(i + 1) * mb_size]
                # policy: clipped surrogate
                loc = self.actor(actor_obs[idx])
                log_std = self.actor.clamped_log_std()
                log_ratio = gaussian_log_prob(actions[idx], loc, log_std) - old_log_prob[idx]
                ratio = log_ratio.exp()
                adv = advantage[idx]
                clipped_ratio = ratio.clamp(1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
                policy_loss = -torch.min(ratio * adv, clipped_ratio * adv).mean()
                # value: squared error, optionally clipped around the rollout's values
                value = self.critic(critic_obs[idx])
                ret = returns[idx]
                if cfg.value_clip > 0:
                    old_v = old_value[idx]
                    value_clipped = old_v + (value - old_v).clamp(-cfg.value_clip, cfg.value_clip)
                    value_loss = torch.max((value - ret).square(), (value_clipped - ret).square()).mean()
                else:
                    value_loss = (value - ret).square().mean()
                # entropy bonus (state-independent sigma: the same in every state)
                entropy = gaussian_entropy(log_std)
                loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy

                with torch.no_grad():
                    kl = gaussian_kl(old_loc[idx], old_log_std, loc, log_std).mean()
                    approx_kl = ((ratio - 1.0) - log_ratio).mean()
                    clip_fraction = ((ratio - 1.0).abs() > cfg.clip_eps).float().mean()

                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.dist is not None:  # mean gradients and KL over the ranks: one all-reduce
                    kl = kl.clone()
                    self.dist.average_gradients(params, [kl])
                if cfg.schedule == "kl_adaptive":
                    self._adapt_lr(kl)  # (the lr is read by the step below, not by backward)
                grad_norm = nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                stats[k] = torch.stack([policy_loss.detach(), value_loss.detach(), entropy.detach(), kl,
                                        approx_kl, clip_fraction, grad_norm])
                k += 1

        # 6. linear learning-rate schedule (per update)
        self.num_updates += 1
        if cfg.schedule == "linear":
            frac = min(1.0, self.num_updates / cfg.anneal_updates)
            self.set_lr(cfg.lr + frac * (cfg.lr_min - cfg.lr))

        # 7. the normalizers learn from this rollout
        self.update_normalizers(rollout.select(*self.obs_keys))

        # 8. statistics: one host transfer
        with torch.no_grad():
            flat_value = old_value
            raw_returns = returns
            explained_var = 1.0 - (raw_returns - flat_value).var() / raw_returns.var().clamp_min(1e-8)
            extra = torch.stack([self.lr.float().reshape(()), self.actor.clamped_log_std().exp().mean(),
                                 explained_var, raw_returns.mean(), advantage.std()])
            values = torch.cat([stats.mean(0), extra])
        names = (*_MB_STATS, "lr", "action_std", "explained_variance", "return_mean", "advantage_std")
        return dict(zip(names, values.tolist() if sync else values.unbind()))

    @torch.no_grad()
    def _adapt_lr(self, kl: torch.Tensor) -> None:
        """rsl_rl's rule, on the device: KL above 2x the target divides the lr, below 0.5x multiplies it."""
        cfg, lr = self.cfg, self.lr
        f = cfg.kl_lr_factor
        factor = torch.where(kl > 2.0 * cfg.desired_kl, 1.0 / f,
                             torch.where(kl < 0.5 * cfg.desired_kl, f, 1.0))
        lr.copy_((lr * factor).clamp(cfg.lr_min, cfg.lr_max))

    def _check_rollout(self, rollout: TensorDictBase) -> None:
        if not isinstance(rollout, TensorDictBase) or rollout.batch_dims != 2:
            raise ValueError(f"PPO.update: expected a TensorDict with batch [N, T], got "
                             f"{type(rollout).__name__} {getattr(rollout, 'batch_size', None)}")
        have = set(rollout.keys())
        need = {*self.obs_keys, keys.ACTION, keys.LOG_PROB, keys.VALUE, keys.NEXT_VALUE, keys.REWARD, keys.TERMINATED,
                keys.DONE}
        missing = sorted(need - have)
        if missing:
            raise KeyError(f"PPO.update: rollout lacks {missing} (has {sorted(map(str, have))})")
        shapes = {keys.ACTION: (self.action_dim,), self.cfg.actor_obs_key: (self.obs_dim,),
                  self.cfg.critic_obs_key: (self.critic_obs_dim,)}
        for key in (keys.LOG_PROB, keys.VALUE, keys.NEXT_VALUE, keys.REWARD, keys.TERMINATED, keys.DONE):
            shapes[key] = ()
        for key, tail in shapes.items():
            got = tuple(rollout.get(key).shape)
            if got != (*rollout.batch_size, *tail):
                raise ValueError(f"PPO.update: rollout[{key!r}] has shape {got}, expected "
                                 f"{(*rollout.batch_size, *tail)}")

    # ------------------------------------------------------------------ saving
    def state_dict(self) -> dict:
        """Everything needed to resume: networks + normalizers (``model``), optimizer (with the lr), counters."""
        return {"model": self.nets.state_dict(), "optimizer": self.optimizer.state_dict(),
                "num_updates": self.num_updates}

    def load_state_dict(self, state: dict, load_optimizer: bool = True) -> None:
        """Restore ``state_dict()``; ``load_optimizer=False`` takes the weights and normalizers only
        (fine-tuning, or copying a policy)."""
        for key in ("model", "optimizer", "num_updates"):
            if key not in state:
                raise KeyError(f"PPO.load_state_dict: the state lacks {key!r} (has {sorted(state)})")
        self.nets.load_state_dict(state["model"])
        if load_optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
            # keep the lr a device tensor (older checkpoints or another device may hold a float)
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.param_groups[0]["lr"] = torch.as_tensor(lr, dtype=torch.float32,
                                                                   device=self.device).clone()
            self.num_updates = int(state["num_updates"])


__all__ = ["PPO", "PPOConfig", "SCHEDULES", "compute_gae"]

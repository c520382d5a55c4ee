"""Adversarial rewards: AMP (style discriminator on transitions) and error aggregation.

Two modes, chosen by ``AdversarialConfig.mode``:

- ``"amp"``: a discriminator ``D`` scores transition features ``(s, s')`` (see
  ``transition_features``): reference-motion transitions are *real*, the policy's are *fake*.
- ``"error"``: ``D`` scores the vector of per-term tracking errors (see ``error_features``);
  the zero vector (perfect tracking) is the *real* sample, the policy's errors the *fake* ones.
  Its reward replaces the hand-weighted sum of the tracking terms.
- ``"none"``: no discriminator (the trainer uses the env's reward as is).

Both modes train ``D`` the same way (Peng et al. 2021, AMP):

    loss = mean (D(real) - 1)^2 + mean (D(fake) + 1)^2              least squares, real -> 1, fake -> -1
         + grad_penalty / 2 * mean ||dD/dx (real)||^2                gradient penalty on real samples
         + logit_reg * ||W_last||^2                                  keeps the logits from drifting
         (+ AdamW weight decay on all weights)

and reward the policy with ``r = max(0, 1 - 0.25 * (D(x) - 1)^2)`` in [0, 1] (1 at D = 1, 0 at
D <= -1). ``AdversarialShaper`` is what the trainer uses: it trains ``D`` on each rollout and adds its
part to the env's reward, ``w_task * env_reward + w_adv * r``, and 0 for a world that blew up (in
error mode a blown-up world's zeroed errors look exactly like the real sample, so without this a
policy could learn to blow up the simulator).

Fake samples come half from the current rollout and half from a replay buffer of earlier policy
samples (on the device, fixed capacity, random replacement once full), so ``D`` does not forget
what older policies did. Inputs are normalized by a running normalizer (fed with expert and
policy features in AMP mode, policy features only in error mode: the zero vector would collapse
the statistics), frozen while computing rewards. Nothing here leaves the device except the
statistics returned by ``update`` (one ``.tolist()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tensordict import TensorDictBase
from torch import nn

from mmimic import keys
from mmimic.rl.networks import mlp
from mmimic.rl.normalizer import RunningNormalizer

MODES = ("none", "amp", "error")


@dataclass
class AdversarialConfig:
    """Discriminator reward options (omegaconf-friendly)."""

    mode: str = "none"  # none | amp | error
    w_task: float = 0.5  # reward = w_task * task_reward + w_adv * discriminator_reward
    w_adv: float = 0.5  # weight of the discriminator reward (see w_task)
    hidden: list[int] = field(default_factory=lambda: [1024, 512])  # discriminator hidden layer widths
    activation: str = "relu"  # discriminator activation (silu, elu, relu, tanh, gelu)
    layer_norm: bool = False  # (the gradient penalty already keeps D smooth)
    lr: float = 1e-4  # discriminator AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    grad_penalty: float = 5.0  # weight of the gradient penalty on real samples
    logit_reg: float = 0.01  # L2 on the last layer's weights
    buffer_size: int = 200_000  # replay of policy features
    epochs: int = 1  # passes per update() call
    minibatches: int = 4  # minibatches per pass
    minibatch_size: int = 4096  # fake samples per minibatch (and as many real ones)
    normalize_features: bool = True  # running mean/std normalization of the discriminator's input
    feature_clip: float = 5.0  # normalized features are clipped to [-clip, clip]
    error_real_noise: float = 0.0  # error mode: |N(0, s^2)| added to the zero real samples (0 = exact zeros)

    def validate(self) -> None:
        bad = []
        if self.mode not in MODES:
            bad.append(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("lr", "minibatch_size", "buffer_size", "epochs", "minibatches"):
            if not getattr(self, name) > 0:
                bad.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("grad_penalty", "logit_reg", "weight_decay", "error_real_noise", "w_task", "w_adv"):
            if getattr(self, name) < 0:
                bad.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if bad:
            raise ValueError("AdversarialConfig: " + "; ".join(bad))


# ---------------------------------------------------------------------- features
def _cat_entries(obs: torch.Tensor | TensorDictBase, keys: Sequence[str] | None) -> torch.Tensor:
    if isinstance(obs, TensorDictBase):
        if not keys:
            raise ValueError("a TensorDict needs the list of entries (keys) to take features from")
        missing = [k for k in keys if k not in obs.keys()]
        if missing:
            raise KeyError(f"features: entries {missing} not found (have {sorted(map(str, obs.keys()))})")
        return torch.cat([obs.get(k) for k in keys], dim=-1)
    return obs


def transition_features(obs: torch.Tensor | TensorDictBase, next_obs: torch.Tensor | TensorDictBase,
                        keys: Sequence[str] | None = None) -> torch.Tensor:
    """AMP transition features ``(..., 2F)``: ``[s, s']`` from two consecutive observations.

    ``obs``/``next_obs``: tensors ``(..., F)``, or TensorDicts from which the entries ``keys`` are
    concatenated (e.g. ``rollout`` and ``rollout["next"]`` with ``collect(next_keys=keys)``;
    for the expert side, the same entries computed on consecutive reference frames).
    """
    s, s_next = _cat_entries(obs, keys), _cat_entries(next_obs, keys)
    if s.shape != s_next.shape:
        raise ValueError(f"transition_features: obs {tuple(s.shape)} and next_obs {tuple(s_next.shape)} "
                         "differ")
    return torch.cat([s, s_next], dim=-1)


def error_features(errors: TensorDictBase | torch.Tensor, keys: Sequence[str] | None = None) -> torch.Tensor:
    """Per-term tracking errors as one vector ``(..., E)``: the entries of ``errors`` (e.g.
    ``rollout["tracking_errors"]``) in ``keys`` order (default: sorted names), each ``(...)``
    or ``(..., k)``."""
    if isinstance(errors, torch.Tensor):
        return errors
    keys = list(keys) if keys else sorted(errors.keys())
    batch = errors.batch_dims
    parts = []
    for k in keys:
        v = errors.get(k)
        parts.append(v.unsqueeze(-1) if v.dim() == batch else v.reshape(*v.shape[:batch], -1))
    return torch.cat(parts, dim=-1)


def style_reward(logits: torch.Tensor) -> torch.Tensor:
    """AMP's least-squares reward shaping: ``max(0, 1 - 0.25 (d - 1)^2)`` in [0, 1]."""
    return (1.0 - 0.25 * (logits - 1.0).square()).clamp_min(0.0)


# ---------------------------------------------------------------------- replay
class FeatureReplay:
    """Fixed-capacity buffer of feature rows on the device; random replacement once full.

    The fill level is a host-side int (it only depends on the number of rows added, which the
    host knows), so adding and sampling never read the device.
    """

    def __init__(self, capacity: int, dim: int, device: torch.device | str = "cpu"):
        self.capacity, self.dim = int(capacity), int(dim)
        self.data = torch.zeros(self.capacity, self.dim, device=device)
        self.size = 0

    @torch.no_grad()
    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, self.dim)
        if x.shape[0] > self.capacity:  # keep a random subset of a batch bigger than the buffer
            x = x[torch.randperm(x.shape[0], device=x.device)[:self.capacity]]
        free = self.capacity - self.size
        n_fill = min(free, x.shape[0])
        if n_fill:
            self.data[self.size:self.size + n_fill] = x[:n_fill]
            self.size += n_fill
        rest = x[n_fill:]
        if rest.shape[0]:
            idx = torch.randint(0, self.capacity, (rest.shape[0],), device=self.data.device)
            self.data[idx] = rest

    def sample(self, n: int) -> torch.Tensor:
        if self.size == 0:
            raise RuntimeError("FeatureReplay.sample: the buffer is empty")
        return self.data[torch.randint(0, self.size, (int(n),), device=self.data.device)]

    def __len__(self) -> int:
        return self.size


# ---------------------------------------------------------------------- discriminator
class AdversarialReward(nn.Module):
    """Discriminator + its optimizer, replay buffer and input normalizer. See the module docstring."""

    def __init__(self, feature_dim: int, cfg: AdversarialConfig | None = None,
                 device: torch.device | str = "cpu"):
        super().__init__()
        cfg = cfg or AdversarialConfig(mode="amp")
        cfg.validate()
        if cfg.mode == "none":
            raise ValueError("AdversarialReward: mode 'none' has no discriminator; do not build one")
        self.cfg = cfg
        self.device = torch.device(device)
        self.feature_dim = int(feature_dim)
        self.disc = mlp(self.feature_dim, cfg.hidden, 1, layer_norm=cfg.layer_norm, activation=cfg.activation)
        self.normalizer = (RunningNormalizer(self.feature_dim, clip=cfg.feature_clip)
                           if cfg.normalize_features else nn.Identity())
        self.to(self.device)
        self.optimizer = torch.optim.AdamW(self.disc.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           fused=self.device.type in ("cuda", "cpu"))
        self.replay = FeatureReplay(cfg.buffer_size, self.feature_dim, self.device)
        self.dist = None  # a distributed run's process group: see distribute()

    def distribute(self, dist) -> None:
        """Rank 0's discriminator and normalizer to every rank; then gradients are averaged and the feature
        statistics merged over the ranks at each update (each rank keeps its own replay buffer)."""
        self.dist = dist
        dist.broadcast_(list(self.parameters()) + list(self.buffers()))
        if isinstance(self.normalizer, RunningNormalizer):
            self.normalizer._refresh()

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``D(x)`` for raw features ``(..., F)`` -> ``(...)`` (normalized inside)."""
        return self.disc(self.normalizer(features)).squeeze(-1)

    @torch.no_grad()
    def reward(self, features: torch.Tensor) -> torch.Tensor:
        """Discriminator reward in [0, 1] for raw features ``(..., F)`` -> ``(...)``, e.g. ``(N,)``."""
        self._check(features, "reward")
        return style_reward(self.logits(features))

    def mix(self, task_reward: torch.Tensor, adv_reward: torch.Tensor) -> torch.Tensor:
        """``w_task * task_reward + w_adv * adv_reward``."""
        return self.cfg.w_task * task_reward + self.cfg.w_adv * adv_reward

    def _check(self, x: torch.Tensor, where: str) -> None:
        if x.shape[-1] != self.feature_dim:
            raise ValueError(f"AdversarialReward.{where}: features must be (..., {self.feature_dim}), "
                             f"got {tuple(x.shape)}")

    def _real_batch(self, expert: torch.Tensor | None, n: int) -> torch.Tensor:
        if self.cfg.mode == "error":
            real = torch.zeros(n, self.feature_dim, device=self.device)
            if self.cfg.error_real_noise > 0:
                real = real + self.cfg.error_real_noise * torch.randn_like(real).abs()
            return real
        return expert[torch.randint(0, expert.shape[0], (n,), device=self.device)]

    def update(self, policy_features: torch.Tensor, expert_features: torch.Tensor | None = None,
               sync: bool = True) -> dict:
        """Train ``D`` on this rollout's policy features ``(..., F)`` (fake) against expert features
        ``(M, F)`` (real; AMP mode) or the zero error vector (error mode: ``expert_features`` is
        ignored and may be None).

        Order: normalizer takes in the new samples; policy samples join the replay buffer;
        ``epochs x minibatches`` steps on half-rollout, half-replay fakes and as many reals.
        Returns floats: loss, lsq_loss, grad_penalty (mean ||grad||^2 on reals), accuracy_real
        (D > 0), accuracy_fake (D < 0), logits_real, logits_fake (means), reward_fake (mean style
        reward of this rollout's samples after the update), replay_size. ``sync=False``: 0-d device
        tensors instead of floats (no host transfer).
        """
        cfg = self.cfg
        self._check(policy_features, "update")
        fake_new = policy_features.reshape(-1, self.feature_dim).detach()
        if cfg.mode == "amp":
            if expert_features is None:
                raise ValueError("AdversarialReward.update: AMP mode needs expert_features (M, F)")
            self._check(expert_features, "update")
            expert = expert_features.reshape(-1, self.feature_dim).detach()
        else:
            expert = None

        # 1. input statistics (frozen elsewhere), 2. replay of policy samples
        if cfg.normalize_features:
            reduce = self.dist.sum_ if self.dist is not None else None
            self.normalizer.update(fake_new, reduce=reduce)
            if expert is not None:
                self.normalizer.update(expert, reduce=reduce)
        replay_before = len(self.replay)
        # 3. minibatch steps
        half = cfg.minibatch_size // 2
        stats = torch.zeros(cfg.epochs * cfg.minibatches, 7, device=self.device)
        last = self.disc[-1]
        k = 0
        for _ in range(cfg.epochs):
            for _ in range(cfg.minibatches):
                new = fake_new[torch.randint(0, fake_new.shape[0], (half if replay_before else 2 * half,),
                                             device=self.device)]
                fake = torch.cat([new, self.replay.sample(half)]) if replay_before else new
                real = self._real_batch(expert, fake.shape[0])
                real_norm = self.normalizer(real).requires_grad_(True)
                d_real = self.disc(real_norm).squeeze(-1)
                d_fake = self.disc(self.normalizer(fake)).squeeze(-1)
                lsq = (d_real - 1.0).square().mean() + (d_fake + 1.0).square().mean()
                (grad,) = torch.autograd.grad(d_real.sum(), real_norm, create_graph=True)
                gp = grad.square().sum(-1).mean()
                loss = lsq + 0.5 * cfg.grad_penalty * gp + cfg.logit_reg * last.weight.square().sum()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.dist is not None:  # the same discriminator on every rank
                    self.dist.average_gradients(list(self.disc.parameters()))
                self.optimizer.step()
                with torch.no_grad():
                    stats[k] = torch.stack([loss.detach(), lsq.detach(), gp.detach(),
                                            (d_real > 0).float().mean(), (d_fake < 0).float().mean(),
                                            d_real.detach().mean(), d_fake.detach().mean()])
                k += 1
        self.replay.add(fake_new)
        with torch.no_grad():
            reward_fake = style_reward(self.logits(fake_new)).mean()
            values = torch.cat([stats.mean(0), reward_fake.reshape(1)])
        names = ("loss", "lsq_loss", "grad_penalty", "accuracy_real", "accuracy_fake", "logits_real",
                 "logits_fake", "reward_fake")
        out = dict(zip(names, values.tolist() if sync else values.unbind()))
        out["replay_size"] = float(len(self.replay))
        return out



class AdversarialShaper:
    """Trains the discriminator on each rollout and rewrites the rollout's reward (see the module docstring).

    ``task``: the env's task (``env.task``); AMP takes its ``motion_feature_keys`` observation entries and
    its ``reference_transitions``, error mode the tracking errors it logs (``task.errors``).
    """

    def __init__(self, cfg: AdversarialConfig, task, obs_sizes: dict[str, int], device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.task = task
        if cfg.mode == "amp":
            self.next_keys = tuple(task.motion_feature_keys)  # collect keeps them at t and t + 1
            dim = 2 * sum(obs_sizes[k] for k in self.next_keys)
        else:
            self.next_keys = ()
            dim = len(task.errors)
        self.discriminator = AdversarialReward(dim, cfg, device)

    def features(self, rollout: TensorDictBase) -> torch.Tensor:
        """``[N, T, F]``: transitions (AMP) or tracking-error vectors (error mode) of the rollout."""
        if self.cfg.mode == "amp":
            return transition_features(rollout, rollout.get(keys.NEXT), self.next_keys)
        return error_features(rollout.get(keys.TRACKING_ERRORS), list(self.task.errors))

    def shape(self, rollout: TensorDictBase) -> dict:
        """Train D on this rollout, then ``reward = w_task * reward + w_adv * D-reward`` (0 where unstable).
        Returns D's statistics plus ``reward`` (the mean D-reward)."""
        feats = self.features(rollout)
        expert = (self.task.reference_transitions(feats.shape[0] * feats.shape[1])
                  if self.cfg.mode == "amp" else None)
        stats = self.discriminator.update(feats, expert)
        d_reward = self.discriminator.reward(feats)
        reward = self.discriminator.mix(rollout.get(keys.REWARD), d_reward)
        rollout.set(keys.REWARD, torch.where(rollout.get(keys.UNSTABLE), torch.zeros_like(reward), reward))
        stats["reward"] = float(d_reward.mean())
        return stats

    def state_dict(self) -> dict:
        """Discriminator weights and input normalizer (``model``), its optimizer and replay buffer."""
        d = self.discriminator
        return {"model": d.state_dict(), "optimizer": d.optimizer.state_dict(),
                "replay": d.replay.data[:d.replay.size].clone()}

    def load_state_dict(self, state: dict) -> None:
        d = self.discriminator
        d.load_state_dict(state["model"])
        d.optimizer.load_state_dict(state["optimizer"])
        replay = state.get("replay")
        if replay is not None:
            d.replay.size = min(int(replay.shape[0]), d.replay.capacity)
            d.replay.data[:d.replay.size] = replay[:d.replay.size]


__all__ = ["AdversarialConfig", "AdversarialReward", "AdversarialShaper", "FeatureReplay", "MODES", "error_features",
           "style_reward", "transition_features"]

"""Actor and critic networks: MLPs (Linear -> LayerNorm -> SiLU) and a diagonal Gaussian policy.

The policy is ``a ~ N(mu(s), diag(sigma^2))`` with ``sigma = exp(log_std)`` a learned,
state-independent parameter (one entry per action dimension). The sample is *not* squashed
(no tanh): the muscle environments clip actions to [-1, 1] and penalize out-of-range actions,
so the log-probabilities here are those of the plain Gaussian. ``deterministic=True`` returns the
mean, for evaluation.

The Gaussian helpers (``gaussian_log_prob``, ``gaussian_entropy``, ``gaussian_kl``) are written
out by hand instead of going through ``torch.distributions.Normal``: the same formulas, without
building a distribution object (and its argument validation) for every minibatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

_LOG_2PI = math.log(2.0 * math.pi)

ACTIVATIONS = {"silu": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@dataclass
class NetworkConfig:
    """Sizes and initialization of the actor and the critic (omegaconf-friendly)."""

    actor_hidden: list[int] = field(default_factory=lambda: [512, 256, 128])  # hidden layer widths of the policy
    critic_hidden: list[int] = field(default_factory=lambda: [512, 256, 128])  # hidden layer widths of the value net
    layer_norm: bool = True  # LayerNorm after every hidden Linear, before the activation
    activation: str = "silu"  # one of ACTIVATIONS
    init_log_std: float = -1.0  # initial log sigma of every action dimension (sigma ~ 0.37)
    min_log_std: float = -7.0  # log sigma is clamped to [min, max] when used
    max_log_std: float = 1.0  # upper clamp of log sigma
    init_action_mean: float = 0.0  # initial bias of the actor's output (0 = excitation 0.5)
    actor_out_gain: float = 0.01  # orthogonal-init gain of the actor's last layer (small: mean ~ bias)
    critic_out_gain: float = 1.0  # orthogonal-init gain of the critic's last layer


def mlp(in_dim: int, hidden: list[int] | tuple[int, ...], out_dim: int, *, layer_norm: bool = True,
        activation: str = "silu", out_gain: float = 1.0) -> nn.Sequential:
    """``in -> [Linear -> LayerNorm? -> act] * len(hidden) -> Linear -> out``, orthogonal init."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if in_dim < 1 or out_dim < 1 or any(int(h) < 1 for h in hidden):
        raise ValueError(f"mlp sizes must be >= 1, got in={in_dim}, hidden={list(hidden)}, out={out_dim}")
    layers: list[nn.Module] = []
    last = int(in_dim)
    for width in hidden:
        lin = nn.Linear(last, int(width))
        nn.init.orthogonal_(lin.weight, gain=math.sqrt(2.0))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if layer_norm:
            layers.append(nn.LayerNorm(int(width)))
        layers.append(ACTIVATIONS[activation]())
        last = int(width)
    out = nn.Linear(last, int(out_dim))
    nn.init.orthogonal_(out.weight, gain=out_gain)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


def gaussian_log_prob(x: torch.Tensor, loc: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; loc, exp(log_std)^2), summed over the last (action) dimension: (...,)."""
    z = (x - loc) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * _LOG_2PI).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian, summed over the last dimension."""
    return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)


def gaussian_kl(loc_old: torch.Tensor, log_std_old: torch.Tensor, loc: torch.Tensor,
                log_std: torch.Tensor) -> torch.Tensor:
    """KL(old || new) of two diagonal Gaussians, summed over the last dimension: (...,)."""
    var_ratio = torch.exp(2.0 * (log_std_old - log_std))
    mean_term = (loc_old - loc).square() * torch.exp(-2.0 * log_std)
    return (log_std - log_std_old + 0.5 * (var_ratio + mean_term) - 0.5).sum(-1)


class GaussianActor(nn.Module):
    """``obs (..., obs_dim) -> action mean (..., action_dim)``, plus a state-independent log-std."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: NetworkConfig | None = None):
        super().__init__()
        cfg = cfg or NetworkConfig()
        if cfg.min_log_std > cfg.max_log_std:
            raise ValueError(f"NetworkConfig: min_log_std {cfg.min_log_std} > max_log_std {cfg.max_log_std}")
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.min_log_std, self.max_log_std = float(cfg.min_log_std), float(cfg.max_log_std)
        self.mean_net = mlp(obs_dim, cfg.actor_hidden, action_dim, layer_norm=cfg.layer_norm,
                            activation=cfg.activation, out_gain=cfg.actor_out_gain)
        nn.init.constant_(self.mean_net[-1].bias, float(cfg.init_action_mean))
        self.log_std = nn.Parameter(torch.full((self.action_dim,), float(cfg.init_log_std)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Action mean ``(..., action_dim)`` for (already normalized) observations."""
        return self.mean_net(obs)

    def clamped_log_std(self) -> torch.Tensor:
        """log sigma ``(action_dim,)`` as used by the distribution (clamped to the configured range)."""
        return self.log_std.clamp(self.min_log_std, self.max_log_std)

    def sample(self, obs: torch.Tensor, deterministic: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(action, log_prob, loc)``: a Gaussian sample (or the mean) and its log-probability."""
        loc = self.forward(obs)
        log_std = self.clamped_log_std()
        if deterministic:
            action = loc
        else:
            action = loc + torch.exp(log_std) * torch.randn_like(loc)
        return action, gaussian_log_prob(action, loc, log_std), loc

    def entropy(self) -> torch.Tensor:
        """Entropy of the policy (scalar; the same in every state)."""
        return gaussian_entropy(self.clamped_log_std())

    @torch.no_grad()
    def reset_log_std(self, value: float) -> None:
        """Set every log sigma to ``value`` (e.g. lower exploration before fine-tuning)."""
        if not math.isfinite(float(value)):
            raise ValueError(f"reset_log_std: value must be finite, got {value!r}")
        self.log_std.fill_(float(value))


class Critic(nn.Module):
    """``obs (..., obs_dim) -> V(s) (...,)``."""

    def __init__(self, obs_dim: int, cfg: NetworkConfig | None = None):
        super().__init__()
        cfg = cfg or NetworkConfig()
        self.obs_dim = int(obs_dim)
        self.value_net = mlp(obs_dim, cfg.critic_hidden, 1, layer_norm=cfg.layer_norm,
                             activation=cfg.activation, out_gain=cfg.critic_out_gain)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_net(obs).squeeze(-1)

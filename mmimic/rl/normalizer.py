"""Running mean / variance normalization of observations (or any feature vectors), on the device.

``RunningNormalizer(dim)`` keeps the count, mean and (population) variance of everything passed
to ``update`` and maps ``x -> clamp((x - mean) / sqrt(var + eps), -clip, clip)``.

Update: the parallel form of Welford's algorithm (Chan et al.): a batch with ``n_b`` rows, mean
``m_b`` and variance ``v_b`` merges into the running ``(n_a, m_a, v_a)`` as

    n = n_a + n_b,  d = m_b - m_a
    m = m_a + d * n_b / n
    v = (v_a * n_a + v_b * n_b + d^2 * n_a * n_b / n) / n

The statistics are float64 buffers on the device (the count too), so nothing leaves the device
and long runs do not lose precision; the float32 mean and 1/std used by ``forward`` are cached
after every update and after ``load_state_dict``. ``update`` does nothing while the module is in
eval mode (``.eval()``), so evaluation never moves the statistics. ``state_dict`` holds
``count``, ``mean`` and ``var``.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningNormalizer(nn.Module):
    """Normalize ``(..., dim)`` tensors with running statistics; see the module docstring."""

    def __init__(self, dim: int, clip: float = 5.0, eps: float = 1e-4,
                 device: torch.device | str | None = None):
        super().__init__()
        if int(dim) < 1:
            raise ValueError(f"RunningNormalizer: dim must be >= 1, got {dim!r}")
        if not clip > 0:
            raise ValueError(f"RunningNormalizer: clip must be > 0, got {clip!r}")
        self.dim, self.clip, self.eps = int(dim), float(clip), float(eps)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64, device=device))
        self.register_buffer("mean", torch.zeros(self.dim, dtype=torch.float64, device=device))
        self.register_buffer("var", torch.ones(self.dim, dtype=torch.float64, device=device))
        self.register_buffer("_mean32", torch.zeros(self.dim, device=device), persistent=False)
        self.register_buffer("_inv_std32", torch.ones(self.dim, device=device), persistent=False)
        self._refresh()
        self.register_load_state_dict_post_hook(lambda module, _keys: module._refresh())

    @torch.no_grad()
    def _refresh(self) -> None:
        self._mean32.copy_(self.mean)
        self._inv_std32.copy_(torch.rsqrt(self.var + self.eps))

    @torch.no_grad()
    def update(self, x: torch.Tensor, reduce=None) -> None:
        """Merge the rows of ``x (..., dim)`` into the statistics (no-op in eval mode).

        ``reduce``: in a distributed run, a function summing a float64 tensor over the ranks in place
        (``Dist.sum_``): the batch statistics of every rank's ``x`` are merged, so that the normalizer stays
        the same on every rank."""
        if not self.training:
            return
        if x.shape[-1] != self.dim:
            raise ValueError(f"RunningNormalizer.update: expected (..., {self.dim}), got {tuple(x.shape)}")
        x = x.reshape(-1, self.dim).to(torch.float64)
        if reduce is not None:  # count, sum and sum of squares over all ranks
            sums = reduce(torch.cat([torch.full((1,), float(x.shape[0]), dtype=torch.float64, device=x.device),
                                     x.sum(0), x.square().sum(0)]))
            n_b = sums[0]
            mean_b = sums[1:1 + self.dim] / n_b.clamp_min(1.0)
            var_b = (sums[1 + self.dim:] / n_b.clamp_min(1.0) - mean_b.square()).clamp_min(0.0)
            self._merge(n_b, mean_b, var_b)
            return
        n_b = x.shape[0]
        if n_b == 0:
            return
        var_b, mean_b = torch.var_mean(x, dim=0, correction=0)
        self._merge(n_b, mean_b, var_b)

    def _merge(self, n_b, mean_b: torch.Tensor, var_b: torch.Tensor) -> None:
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean.add_(delta * (n_b / n))
        self.var.copy_((self.var * n_a + var_b * n_b + delta.square() * (n_a * n_b / n)) / n)
        self.count.copy_(n)
        self._refresh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``clamp((x - mean) / sqrt(var + eps), -clip, clip)`` in ``x``'s dtype."""
        return ((x - self._mean32) * self._inv_std32).clamp(-self.clip, self.clip)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of ``forward`` (inside the clip range)."""
        return y / self._inv_std32 + self._mean32

    def extra_repr(self) -> str:
        return f"dim={self.dim}, clip={self.clip}, eps={self.eps}"

"""``F``: the SwiGLU MLP sublayer, ``w3(SiLU(w1 x) * w2 x)``.

As in the official Samba code (xformers ``SwiGLU(d, d_p, bias=False)``; samba-facts.md §6.6). The
hidden width defaults to 8/3·d rounded up to a multiple of 64, which gives the paper's 4096 at d=1536
and 6144 at d=2304 (fla's ``hidden_ratio=4`` rule).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blocks.mixers.base import ConfigError, Mixer, MixerConfig, linear_flops

__all__ = ["MLPConfig", "MLP", "default_hidden"]


def default_hidden(d_model: int) -> int:
    """8/3·d rounded up to a multiple of 64."""
    return 64 * math.ceil(8 * d_model / 3 / 64)


@dataclasses.dataclass(kw_only=True)
class MLPConfig(MixerConfig):
    """Args:
    hidden: inner width d_p; null takes ``default_hidden(d_model)``.
    """

    hidden: int | None = None

    def validate(self, d_model: int | None = None) -> None:
        if self.hidden is not None and self.hidden < 1:
            raise ConfigError(f"mlp: field 'hidden' must be a positive int or null; got {self.hidden!r}")


class MLP(Mixer):
    """SwiGLU MLP. Input and output (B, T, D); position-wise, so trivially causal."""

    Config = MLPConfig

    def __init__(self, d_model: int, config: MLPConfig) -> None:
        super().__init__(d_model, config)
        self.hidden = config.hidden or default_hidden(d_model)
        self.w1 = nn.Linear(d_model, self.hidden, bias=False)
        self.w2 = nn.Linear(d_model, self.hidden, bias=False)
        self.w3 = nn.Linear(self.hidden, d_model, bias=False)

    @classmethod
    def kernel_status(cls) -> str | None:
        return None  # the same matmuls run on any device; there is nothing to fuse-import

    def forward(self, x: Tensor) -> Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))

    def naive_forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.forward(x_t) for x_t in x.split(1, dim=1)], dim=1)

    def state_size(self, seq_len: int) -> int:
        return 0

    def flops(self, seq_len: int) -> int:
        return linear_flops(self.w1, self.w2, self.w3) + 4 * self.hidden

    def output_projections(self) -> list[nn.Module]:
        return [self.w3]


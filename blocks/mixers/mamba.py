"""``M``: the Mamba-1 mixer (selective SSM), as mamba_ssm's ``Mamba`` (``modules/mamba_simple.py``).

Samba's ``lit_gpt/mamba_simple.py`` is a copy of it (samba-facts.md §6.4): ``in_proj`` d -> 2·d_inner
split into x and z, causal depthwise conv1d (with bias) + SiLU, ``x_proj`` -> (dt, B, C), ``dt_proj``
+ softplus, selective scan with S4D-real ``A = -exp(A_log)`` and skip ``D``, gate SiLU(z), ``out_proj``.
Parameter names and shapes equal mamba_ssm's, so state_dicts load into either path. The scan runs on
``blocks.ops.selective_scan`` (``reference`` or ``kernel``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from blocks.mixers.base import ConfigError, Mixer, MixerConfig, linear_flops
from blocks.ops.selective_scan import kernel as scan_kernel
from blocks.ops.selective_scan import reference as scan_reference

__all__ = ["MambaConfig", "Mamba"]

_INSTALL = "pip install mamba-ssm causal-conv1d (CUDA machines; extra 'gpu')"


class _CausalConv(torch.autograd.Function):
    """Causal depthwise conv on (B, T, D): ``y_t = bias + sum_k w[:, k] * x_{t-K+1+k}``, zero before t = 0.

    Equals ``nn.Conv1d(D, D, K, groups=D, padding=K-1)(x)[..., :T]``. K shifted multiply-adds each way,
    because on CPU the depthwise ``conv1d`` backward and a padded autograd version are several times
    slower (the pad and slice backwards allocate full-size zeros).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, w: Tensor, bias: Tensor) -> Tensor:
        T, K = x.shape[1], w.shape[1]
        w_t = w.t().contiguous()  # (K, D): contiguous taps vectorise, strided ones do not
        y = torch.addcmul(bias, x, w_t[K - 1])  # (B, T, D)
        for j in range(1, min(K, T)):
            y[:, j:].addcmul_(x[:, : T - j], w_t[K - 1 - j])
        ctx.save_for_backward(x, w_t)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, dy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, w_t = ctx.saved_tensors
        T, K = x.shape[1], w_t.shape[0]
        dx = dy * w_t[K - 1]
        dw_t = torch.zeros_like(w_t)
        dw_t[K - 1] = (dy * x).sum(dim=(0, 1))
        for j in range(1, min(K, T)):
            dx[:, : T - j].addcmul_(dy[:, j:], w_t[K - 1 - j])
            dw_t[K - 1 - j] = (dy[:, j:] * x[:, : T - j]).sum(dim=(0, 1))
        return dx, dw_t.t(), dy.sum(dim=(0, 1))


@dataclasses.dataclass(kw_only=True)
class MambaConfig(MixerConfig):
    """Args:
    expand: d_inner = expand · d_model.
    d_state: SSM state size N per channel.
    d_conv: causal depthwise convolution width.
    dt_rank: rank of the Δ projection; ``auto`` = ceil(d_model / 16).
    dt_min, dt_max: initial Δ is log-uniform in [dt_min, dt_max] ...
    dt_init_floor: ... and at least this.
    """

    expand: int = 2
    d_state: int = 16
    d_conv: int = 4
    dt_rank: int | Literal["auto"] = "auto"
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4

    def validate(self, d_model: int | None = None) -> None:
        for name in ("expand", "d_state", "d_conv"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"mamba: field {name!r} must be >= 1; got {value!r}")
        rank = self.dt_rank
        if rank != "auto" and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
            raise ConfigError(f"mamba: field 'dt_rank' must be 'auto' or an int >= 1; got {rank!r}")
        for name in ("dt_min", "dt_max", "dt_init_floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"mamba: field {name!r} must be a finite float; got {value!r}")
        if self.dt_min <= 0:
            raise ConfigError(f"mamba: field 'dt_min' must be > 0; got {self.dt_min!r}")
        if self.dt_max <= self.dt_min:
            raise ConfigError(
                f"mamba: field 'dt_max' must be > dt_min ({self.dt_min!r}); got {self.dt_max!r}"
            )
        if self.dt_init_floor < 0:
            raise ConfigError(f"mamba: field 'dt_init_floor' must be >= 0; got {self.dt_init_floor!r}")
        if d_model is not None and d_model < 1:
            raise ConfigError(f"mamba: d_model must be >= 1; got {d_model!r}")


class Mamba(Mixer):
    """Mamba-1 block mixer. Input and output (B, T, D); causal; state (d_inner, d_state) + conv tail."""

    Config = MambaConfig

    def __init__(self, d_model: int, config: MambaConfig) -> None:
        super().__init__(d_model, config)
        self.d_inner = config.expand * d_model
        self.d_state = config.d_state
        self.d_conv = config.d_conv
        self.dt_rank = math.ceil(d_model / 16) if config.dt_rank == "auto" else config.dt_rank

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            config.d_conv,
            groups=self.d_inner,
            padding=config.d_conv - 1,
            bias=True,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_min, log_max = math.log(config.dt_min), math.log(config.dt_max)
        dt = torch.exp(torch.rand(self.d_inner) * (log_max - log_min) + log_min).clamp(
            min=config.dt_init_floor
        )
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]

        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)  # (d_inner, N)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self._route, self._conv = "", ""  # the kernel path's fused route and conv, set by set_backend

    @classmethod
    def kernel_status(cls) -> str | None:
        if not torch.cuda.is_available():
            return f"Mamba kernel path needs a CUDA device and mamba_ssm; none is visible here. {_INSTALL}"
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
        except (ImportError, OSError) as err:
            return f"Mamba kernel path needs mamba_ssm with its CUDA extension ({err}). {_INSTALL}"
        return None

    def set_backend(self, backend: Literal["reference", "kernel"]) -> None:
        """Select the path; on ``kernel``, also which fused route and causal conv it takes here (logged once)."""
        super().set_backend(backend)
        if backend == "kernel":
            self._route = scan_kernel.fused_impl()
            self._conv = scan_kernel.conv_impl()

    def kernel_route(self) -> str | None:
        if self.backend != "kernel":
            return None
        return self._route if self._route == "mamba_inner_fn" else f"{self._route} after the {self._conv} causal conv"

    def _A(self) -> Tensor:
        return -torch.exp(self.A_log.to(torch.promote_types(self.A_log.dtype, torch.float32)))  # (d_inner, N)

    def _delta(self, dt: Tensor) -> Tensor:
        """softplus(dt_proj(dt)) with the bias added in fp32 (at least), as mamba_ssm's fused kernel does."""
        acc = torch.promote_types(dt.dtype, torch.float32)
        if dt.dtype == acc:
            return F.softplus(self.dt_proj(dt))
        return F.softplus(F.linear(dt, self.dt_proj.weight).to(acc) + self.dt_proj.bias.to(acc))

    def _causal_conv(self, x: Tensor) -> Tensor:
        """``conv1d(x)[..., :T]`` on (B, T, d_inner), with the weights of ``self.conv1d``."""
        return _CausalConv.apply(x, self.conv1d.weight[:, 0, :], self.conv1d.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.backend == "kernel" and self.diagnostics is None:
            return self._fused_forward(x)
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, T, d_inner) each
        u = F.silu(self._causal_conv(xs))  # (B, T, d_inner)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = self._delta(dt).transpose(1, 2)  # (B, d_inner, T)
        if self.diagnostics is not None:
            self.record("delta", delta)
        scan = scan_kernel.selective_scan if self.backend == "kernel" else scan_reference.selective_scan
        y = scan(
            u.transpose(1, 2), delta, self._A(), B.transpose(1, 2), C.transpose(1, 2), self.D
        )  # (B, d_inner, T)
        y = y.transpose(1, 2) * F.silu(z)  # (B, T, d_inner)
        return self.out_proj(y)

    def _fused_forward(self, x: Tensor) -> Tensor:
        """The kernel path: ``mamba_inner_fn`` with causal-conv1d, else a causal conv then the gated scan.

        Same function as the reference ``forward``; a diagnostic capture (which needs delta) takes the
        unfused route with ``scan_kernel.selective_scan`` instead.
        """
        batch, T, _ = x.shape
        if self._route == "mamba_inner_fn":
            # in_proj as W @ x^T, as mamba_ssm does: (B, 2·d_inner, T) views it with unit stride along T
            xz = self.in_proj.weight @ x.reshape(batch * T, -1).t()  # (2·d_inner, B·T)
            return scan_kernel.mamba_inner(
                xz, batch, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
                self.out_proj.weight, self._A(), self.D, self.dt_proj.bias,
            )
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, T, d_inner) each
        if self._conv == "fla":
            u = scan_kernel.fla_causal_conv_silu(xs, self.conv1d.weight[:, 0, :], self.conv1d.bias)
        else:
            u = F.silu(self._causal_conv(xs)).to(xs.dtype)  # (B, T, d_inner)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # (B, T, d_inner), bias and softplus in the kernel
        y = scan_kernel.gated_scan(
            u.transpose(1, 2), delta.transpose(1, 2), self._A(), B.transpose(1, 2), C.transpose(1, 2),
            self.D, z.transpose(1, 2), self.dt_proj.bias,
        )  # (B, d_inner, T)
        return self.out_proj(y.transpose(1, 2))

    def naive_forward(self, x: Tensor) -> Tensor:
        """The same map with the conv and the SSM run one token at a time, as in mamba_ssm ``Mamba.step``."""
        batch, T, _ = x.shape
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, T, d_inner) each
        w = self.conv1d.weight[:, 0, :]  # (d_inner, d_conv)
        A = self._A()
        conv_state = x.new_zeros(batch, self.d_inner, self.d_conv)
        h = x.new_zeros(batch, self.d_inner, self.d_state).to(A.dtype)
        outs = []
        for t in range(T):
            conv_state = torch.cat([conv_state[:, :, 1:], xs[:, t, :, None]], dim=-1)
            u_t = F.silu((conv_state * w).sum(-1) + self.conv1d.bias)  # (B, d_inner)
            dt, B_t, C_t = self.x_proj(u_t).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
            delta_t = self._delta(dt)  # (B, d_inner)
            h = torch.exp(delta_t[:, :, None] * A) * h + (delta_t * u_t)[:, :, None] * B_t[:, None, :]
            y_t = (h * C_t[:, None, :]).sum(-1) + self.D * u_t
            outs.append(self.out_proj((y_t * F.silu(z[:, t])).to(x.dtype)))
        return torch.stack(outs, dim=1)

    def state_size(self, seq_len: int) -> int:
        return self.d_inner * self.d_state + self.d_inner * (self.d_conv - 1)

    def flops(self, seq_len: int) -> int:
        """Forward FLOPs per token, independent of ``seq_len``.

        Counts the four projections (``linear_flops``), the depthwise conv (2·d_inner·d_conv), the scan
        at 7 per (channel, state) element (Δ·A, exp, ·B, the two of a·h + b, the two of C·h) and 8 per
        channel for the elementwise rest (conv bias, SiLU, softplus, Δ·u, D skip (2), SiLU(z), gate).
        Each activation counts as one FLOP.
        """
        return (
            linear_flops(self.in_proj, self.x_proj, self.dt_proj, self.out_proj)
            + 2 * self.d_inner * self.d_conv
            + 7 * self.d_inner * self.d_state
            + 8 * self.d_inner
        )

    def output_projections(self) -> list[nn.Module]:
        return [self.out_proj]

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, d_conv={self.d_conv}, "
            f"dt_rank={self.dt_rank}, backend={self.backend}"
        )

"""Mamba-1 selective scan in pure PyTorch, fast on CPU: a chunked time loop with a hand-written backward.

Computes the recurrence of mamba_ssm's ``selective_scan_ref`` (state-spaces/mamba,
``mamba_ssm/ops/selective_scan_interface.py``) with the same argument layout as ``selective_scan_fn``:

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t        h_t: (batch, D, N), h_0 = 0
    y_t = sum_n C_t[n] * h_t[:, :, n] + D * u_t

Formulation (``shared/docs/cpu-kernels.md`` §3a): time runs in chunks of ``CHUNK`` steps. Per chunk the
discretised ``exp(delta A)`` and ``delta u B`` are built as time-major (c, batch, D, N) tensors in reused
buffers, the recurrence is one in-place ``addcmul`` per step on contiguous slices, and the chunk's output
is one batched matmul with ``C``. No (batch, D, L, N) tensor is ever built and no time index is selected
under autograd. Only the chunk-boundary states are kept for backward, which recomputes each chunk's
states from its start state, runs the adjoint recurrence ``dh_t = dy_t C_t + exp(delta_{t+1} A) dh_{t+1}``
backwards one ``addcmul`` per step, and forms all parameter gradients with chunk-level contractions.
Accumulation is fp32 (fp64 for fp64 inputs); outputs and gradients are cast back to the input dtypes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = ["selective_scan", "CHUNK"]

CHUNK = 32


def _chunk_states(
    u: Tensor, delta: Tensor, A_t: Tensor, B: Tensor, h0: Tensor, a: Tensor, h: Tensor, du: Tensor
) -> None:
    """Fill ``a`` with exp(delta A) and ``h`` with the states h_{s-1..e-1} of one chunk, in place.

    u, delta, du: (c, batch, D); A_t: (N, D); B: (c, batch, N); h0: (batch, N, D);
    a: (c, batch, N, D); h: (c + 1, batch, N, D) with ``h[0] = h0``; ``du`` receives delta * u.
    """
    torch.mul(delta.unsqueeze(2), A_t, out=a)
    a.exp_()
    torch.mul(delta, u, out=du)
    torch.mul(du.unsqueeze(2), B.unsqueeze(-1), out=h[1:])
    h[0].copy_(h0)
    for i in range(a.shape[0]):
        h[i + 1].addcmul_(a[i], h[i])


class _SelectiveScan(torch.autograd.Function):
    """Time-major scan without the D skip: u, delta (L, batch, D); A_t (N, D); B, C (L, batch, N).

    States are laid out (batch, N, D) so that D, the widest axis, is contiguous: contractions over N
    then reduce a middle axis, which vectorises along D.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, u: Tensor, delta: Tensor, A_t: Tensor, B: Tensor, C: Tensor, chunk: int) -> Tensor:
        L, batch, D = u.shape
        N = A_t.shape[0]
        n_chunks = -(-L // chunk)
        c_max = min(chunk, L)
        starts = u.new_empty(n_chunks, batch, N, D)
        starts[0].zero_()
        y = u.new_empty(L, batch, D)
        a = u.new_empty(c_max, batch, N, D)
        h = u.new_empty(c_max + 1, batch, N, D)
        du = u.new_empty(c_max, batch, D)
        for k in range(n_chunks):
            s, e = k * chunk, min(L, (k + 1) * chunk)
            c = e - s
            _chunk_states(u[s:e], delta[s:e], A_t, B[s:e], starts[k], a[:c], h[: c + 1], du[:c])
            torch.matmul(C[s:e].unsqueeze(2), h[1 : c + 1], out=y[s:e].unsqueeze(2))  # (c, batch, 1, D)
            if k + 1 < n_chunks:
                starts[k + 1].copy_(h[c])
        ctx.save_for_backward(u, delta, A_t, B, C, starts)
        ctx.chunk = chunk
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, dy: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, None]:
        u, delta, A_t, B, C, starts = ctx.saved_tensors
        chunk: int = ctx.chunk
        dy = dy.contiguous()
        L, batch, D = u.shape
        N = A_t.shape[0]
        n_chunks = starts.shape[0]
        c_max = min(chunk, L)
        d_u = torch.empty_like(u)
        d_delta = torch.empty_like(delta)
        d_B = torch.empty_like(B)
        d_C = torch.empty_like(C)
        a = u.new_empty(c_max, batch, N, D)
        h = u.new_empty(c_max + 1, batch, N, D)
        dh = u.new_empty(c_max, batch, N, D)
        g = u.new_empty(c_max, batch, N, D)
        g_delta = u.new_zeros(c_max, batch, N, D)  # sum over chunks of g * delta, reduced once at the end
        du = u.new_empty(c_max, batch, D)
        carry = u.new_empty(batch, N, D)
        for k in reversed(range(n_chunks)):
            s, e = k * chunk, min(L, (k + 1) * chunk)
            c = e - s
            ac, hc, dhc, gc, duc = a[:c], h[: c + 1], dh[:c], g[:c], du[:c]
            dyc, deltac = dy[s:e], delta[s:e]
            _chunk_states(u[s:e], deltac, A_t, B[s:e], starts[k], ac, hc, duc)
            torch.mul(C[s:e].unsqueeze(-1), dyc.unsqueeze(2), out=dhc)
            if k + 1 < n_chunks:
                dhc[c - 1].add_(carry)
            for i in range(c - 2, -1, -1):
                dhc[i].addcmul_(ac[i + 1], dhc[i + 1])
            if k > 0:
                torch.mul(ac[0], dhc[0], out=carry)
            torch.mul(hc[1:], dyc.unsqueeze(2), out=gc)
            torch.sum(gc, dim=-1, out=d_C[s:e])
            torch.mul(dhc, duc.unsqueeze(2), out=gc)
            torch.sum(gc, dim=-1, out=d_B[s:e])
            dh_b = torch.matmul(B[s:e].unsqueeze(2), dhc).squeeze(2)  # (c, batch, D)
            torch.mul(dhc, hc[:-1], out=gc)
            gc.mul_(ac)  # gradient w.r.t. delta * A
            g_delta[:c].addcmul_(gc, deltac.unsqueeze(2))
            gc.mul_(A_t)
            torch.sum(gc, dim=2, out=d_delta[s:e])
            d_delta[s:e].addcmul_(u[s:e], dh_b)
            torch.mul(deltac, dh_b, out=d_u[s:e])
        d_A_t = g_delta.sum(dim=(0, 1))  # (N, D)
        return d_u, d_delta, d_A_t, d_B, d_C, None


def selective_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None, *, chunk: int = CHUNK
) -> Tensor:
    """The Mamba-1 selective scan, differentiable in all inputs.

    Args:
        u: inputs, (batch, D, L).
        delta: step sizes, (batch, D, L), already biased and softplus-ed.
        A: state matrix (negative for a stable scan), (D, N).
        B, C: input and output projections per token, (batch, N, L).
        D: skip weight, (D,), or None.
        chunk: time steps per chunk (memory/speed trade-off; any value gives the same result).

    Returns:
        y, (batch, D, L), in ``u``'s dtype.
    """
    out_dtype = u.dtype
    dtype = torch.float64 if torch.float64 in (u.dtype, delta.dtype, A.dtype, B.dtype, C.dtype) else torch.float32

    def time_major(t: Tensor) -> Tensor:
        return t.to(dtype).permute(2, 0, 1).contiguous()  # (L, batch, ·)

    y = _SelectiveScan.apply(
        time_major(u), time_major(delta), A.to(dtype).t().contiguous(), time_major(B), time_major(C), chunk
    ).permute(1, 2, 0)  # (batch, D, L)
    if D is not None:
        y = y + u.to(dtype) * D.to(dtype).unsqueeze(-1)
    return y.to(out_dtype)

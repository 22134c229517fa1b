"""Mamba-1 selective scan in pure PyTorch, fast on CPU: a chunked time loop with a hand-written backward.

Computes the recurrence of mamba_ssm's ``selective_scan_ref`` (state-spaces/mamba,
``mamba_ssm/ops/selective_scan_interface.py``) with the argument layout of ``selective_scan_fn``:

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t        h_t: (batch, D, N), h_0 = 0
    y_t = sum_n C_t[n] * h_t[:, :, n] + D * u_t

Formulation (``shared/docs/cpu-kernels.md`` §3a): time runs in chunks of ``auto_chunk`` steps. Per chunk,
``exp(delta A)`` and ``delta u B`` are built time-major as (c, batch, N, D) tensors in buffers reused
across chunks; the recurrence is then one in-place ``addcmul`` per step on contiguous slices, and the
chunk's output is one batched matmul with ``C``. No (batch, D, L, N) tensor is ever built and no time
index is selected under autograd. Backward keeps only the chunk-boundary states. It walks the chunks in
reverse, recomputes each chunk's states from its start state, and runs the adjoint recurrence
``dh_t = dy_t C_t + exp(delta_{t+1} A) dh_{t+1}`` one ``addcmul`` per step. All input gradients are then
chunk-level contractions.

States are (batch, N, D) with D, the widest axis, contiguous: a contraction over N then reduces a middle
axis, which vectorises along D. The (batch, D, L) arguments are read as (batch, L, D) views, the storage
order of the mixer's activations, and each chunk's slice is copied into a contiguous time-major buffer
(broadcasting ops over operands of mixed strides lose vectorisation). Accumulation is fp32
(fp64 for fp64 inputs), and outputs and gradients are cast back to the input dtypes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = ["selective_scan", "auto_chunk"]

_LOG2E = 1.4426950408889634
_CHUNK_ELEMENTS = 1 << 19  # per-chunk buffers of ~2 MB (fp32) stay cache-resident; measured best on CPU


def auto_chunk(batch: int, d_inner: int, d_state: int) -> int:
    """Time steps per chunk: a power of two in [4, 64] giving (chunk, batch, N, D) buffers of ~2^19 elements.

    Measured on 2 CPU cores (B=8, L=512, N=16): 16 is best at D=256 and 8 at D=512, where 32 and 64
    are 1.3-1.8x slower in backward because the five chunk buffers fall out of cache.
    """
    per_step = max(1, batch * d_inner * d_state)
    return max(4, min(64, 1 << max(0, (_CHUNK_ELEMENTS // per_step).bit_length() - 1)))


def _chunk_states(
    u: Tensor,
    delta: Tensor,
    A2_t: Tensor,
    B: Tensor,
    h0: Tensor,
    a: Tensor,
    h: Tensor,
    du: Tensor,
    a_steps: tuple[Tensor, ...],
    h_steps: tuple[Tensor, ...],
) -> None:
    """Fill ``a`` with exp(delta A) and ``h`` with the states h_{s-1}..h_{e-1} of one chunk, in place.

    u, delta: (c, batch, D); A2_t: A·log2(e), (N, D); B: (c, batch, N); h0: (batch, N, D);
    a: (c, batch, N, D); h: (c + 1, batch, N, D), ``h[0] = h0`` on return; du: (c, batch, D), gets
    delta * u; a_steps, h_steps: ``unbind(0)`` of the full buffers behind ``a`` and ``h`` (made once per
    call: indexing per step costs more than the step's addcmul saves). ``exp2`` is used because it is
    about twice as fast as ``exp`` on CPU, and this is the scan's largest op.
    """
    torch.mul(delta.unsqueeze(2), A2_t, out=a)
    a.exp2_()
    torch.mul(delta, u, out=du)
    torch.mul(du.unsqueeze(2), B.unsqueeze(-1), out=h[1:])
    h[0].copy_(h0)
    for i in range(a.shape[0]):
        h_steps[i + 1].addcmul_(a_steps[i], h_steps[i])


def _time_major(x: Tensor, s: int, e: int) -> Tensor:
    return x[:, s:e].transpose(0, 1)  # (batch, L, ·) -> (c, batch, ·)


def _load(x: Tensor, s: int, e: int, buf: Tensor) -> Tensor:
    """Steps s..e-1 of ``x`` (batch, L, ·) copied into ``buf`` as a contiguous (c, batch, ·) tensor.

    Broadcasting ops over mixed-stride operands lose vectorisation (up to 10x slower), so every chunk
    operand is made contiguous first; the copies move rows of contiguous features and are cheap.
    """
    out = buf[: e - s]
    out.copy_(_time_major(x, s, e))
    return out


class _SelectiveScan(torch.autograd.Function):
    """u, delta (batch, L, D); A (D, N); B, C (batch, L, N); D (D,) or None -> y (batch, L, D)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Tensor | None,
        chunk: int,
    ) -> Tensor:
        batch, L, Dn = u.shape
        N = A.shape[1]
        n_chunks = -(-L // chunk)
        c_max = min(chunk, L)
        A2_t = (A * _LOG2E).t().contiguous()  # (N, D)
        starts = u.new_empty(n_chunks, batch, N, Dn)
        starts[0].zero_()
        y = u.new_empty(batch, L, Dn)
        a = u.new_empty(c_max, batch, N, Dn)
        h = u.new_empty(c_max + 1, batch, N, Dn)
        du = u.new_empty(c_max, batch, Dn)
        steps = a.unbind(0), h.unbind(0)
        xc = u.new_empty(3, c_max, batch, Dn)  # time-major chunks of u, delta and y
        bc = u.new_empty(2, c_max, batch, N)
        for k in range(n_chunks):
            s, e = k * chunk, min(L, (k + 1) * chunk)
            c = e - s
            uc, deltac = _load(u, s, e, xc[0]), _load(delta, s, e, xc[1])
            Bc, Cc = _load(B, s, e, bc[0]), _load(C, s, e, bc[1])
            _chunk_states(uc, deltac, A2_t, Bc, starts[k], a[:c], h[: c + 1], du[:c], *steps)
            yc = xc[2, :c]
            torch.matmul(Cc.unsqueeze(2), h[1 : c + 1], out=yc.unsqueeze(2))  # (c, batch, 1, D)
            _time_major(y, s, e).copy_(yc)
            if k + 1 < n_chunks:
                starts[k + 1].copy_(h[c])
        if D is not None:
            y.addcmul_(u, D)
        ctx.save_for_backward(u, delta, A, B, C, D, starts)
        ctx.chunk = chunk
        return y

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, dy: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None, None]:
        u, delta, A, B, C, D, starts = ctx.saved_tensors
        chunk: int = ctx.chunk
        batch, L, Dn = u.shape
        N = A.shape[1]
        n_chunks = starts.shape[0]
        c_max = min(chunk, L)
        A_t = A.t().contiguous()  # (N, D)
        A2_t = A_t * _LOG2E
        d_u = torch.empty_like(u, memory_format=torch.contiguous_format)
        d_delta = torch.empty_like(d_u)
        d_B = u.new_empty(batch, L, N)
        d_C = u.new_empty(batch, L, N)
        a = u.new_empty(c_max, batch, N, Dn)
        h = u.new_empty(c_max + 1, batch, N, Dn)
        dh = u.new_empty(c_max, batch, N, Dn)
        g = u.new_empty(c_max, batch, N, Dn)
        a_steps, h_steps, dh_steps = a.unbind(0), h.unbind(0), dh.unbind(0)
        g_delta = u.new_zeros(c_max, batch, N, Dn)  # sum over chunks of g * delta, reduced once at the end
        du = u.new_empty(c_max, batch, Dn)
        xc = u.new_empty(5, c_max, batch, Dn)  # time-major chunks of u, delta, dy and two gradients
        bc = u.new_empty(3, c_max, batch, N)
        carry = u.new_empty(batch, N, Dn)
        for k in reversed(range(n_chunks)):
            s, e = k * chunk, min(L, (k + 1) * chunk)
            c = e - s
            ac, hc, dhc, gc, duc = a[:c], h[: c + 1], dh[:c], g[:c], du[:c]
            uc, deltac, dyc = _load(u, s, e, xc[0]), _load(delta, s, e, xc[1]), _load(dy, s, e, xc[2])
            Bc, Cc = _load(B, s, e, bc[0]), _load(C, s, e, bc[1])
            dh_b, d_delta_c, d_bc = xc[3, :c], xc[4, :c], bc[2, :c]
            _chunk_states(uc, deltac, A2_t, Bc, starts[k], ac, hc, duc, a_steps, h_steps)
            torch.mul(Cc.unsqueeze(-1), dyc.unsqueeze(2), out=dhc)
            if k + 1 < n_chunks:
                dhc[c - 1].add_(carry)
            for i in range(c - 2, -1, -1):
                dh_steps[i].addcmul_(a_steps[i + 1], dh_steps[i + 1])
            if k > 0:
                torch.mul(ac[0], dhc[0], out=carry)
            torch.matmul(
                dyc.unsqueeze(2), hc[1:].transpose(-1, -2), out=d_bc.unsqueeze(2)
            )  # (c, batch, 1, N)
            _time_major(d_C, s, e).copy_(d_bc)
            torch.matmul(duc.unsqueeze(2), dhc.transpose(-1, -2), out=d_bc.unsqueeze(2))
            _time_major(d_B, s, e).copy_(d_bc)
            torch.matmul(Bc.unsqueeze(2), dhc, out=dh_b.unsqueeze(2))  # sum_n dh * B: (c, batch, 1, D)
            torch.mul(dhc, hc[:-1], out=gc)
            gc.mul_(ac)  # the gradient w.r.t. delta * A
            g_delta[:c].addcmul_(gc, deltac.unsqueeze(2))
            gc.mul_(A_t)
            torch.sum(gc, dim=2, out=d_delta_c)
            d_delta_c.addcmul_(uc, dh_b)
            _time_major(d_delta, s, e).copy_(d_delta_c)
            torch.mul(deltac, dh_b, out=dh_b)
            _time_major(d_u, s, e).copy_(dh_b)
        d_A = g_delta.sum(dim=(0, 1)).t()  # (D, N)
        d_D = None
        if D is not None:
            d_u.addcmul_(dy, D)
            d_D = (dy * u).sum(dim=(0, 1))
        return d_u, d_delta, d_A, d_B, d_C, d_D, None


@torch.compiler.disable  # an opaque op: a graph break when the model is compiled
def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    *,
    chunk: int | None = None,
) -> Tensor:
    """The Mamba-1 selective scan, differentiable in all inputs.

    Args:
        u: inputs, (batch, D, L).
        delta: step sizes, (batch, D, L), already biased and softplus-ed.
        A: state matrix (negative for a stable scan), (D, N).
        B, C: input and output projections per token, (batch, N, L).
        D: skip weight, (D,), or None.
        chunk: time steps per chunk; None takes ``auto_chunk``. Every value gives the same result.

    Returns:
        y, (batch, D, L), in ``u``'s dtype. Fastest when u and delta are (batch, L, D) in memory, i.e.
        transposed views, as the mixer passes them.
    """
    if chunk is None:
        chunk = auto_chunk(u.shape[0], A.shape[0], A.shape[1])
    if chunk < 1:
        raise ValueError(f"selective_scan: chunk must be >= 1; got {chunk}")
    tensors = (u, delta, A, B, C) if D is None else (u, delta, A, B, C, D)
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    y = _SelectiveScan.apply(
        u.to(dtype).transpose(1, 2),
        delta.to(dtype).transpose(1, 2),
        A.to(dtype),
        B.to(dtype).transpose(1, 2),
        C.to(dtype).transpose(1, 2),
        None if D is None else D.to(dtype),
        chunk,
    )  # (batch, L, D)
    return y.transpose(1, 2).to(u.dtype)

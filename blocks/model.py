"""``HybridLM``: embedding, one pre-norm residual sublayer per pattern token, final norm, LM head.

Every token of the pattern is one sublayer ``x = x + mixer(RMSNorm(x))`` (samba-facts.md §1.1); a
parallel group ``(M|A)`` feeds one normalised input to each branch and averages their outputs. The
block never knows mixer types and, as mamba_ssm's ``modules/block.py``, passes the residual stream as a
pair (mixer output, residual): each block adds the previous output to the residual just before its norm,
so the add, the norm and their gradients fuse into one compiled graph. Initialisation follows the
official Samba code (§6.7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blocks import registry
from blocks.backend import resolve_backend
from blocks.config import ModelConfig, resolve_mixer_defaults, validate_model_config
from blocks.loss import IGNORE_INDEX, cross_entropy, linear_cross_entropy
from blocks.mixers.base import Mixer, MixerConfig, apply_overrides
from blocks.pattern import Pattern, parse

__all__ = ["HybridBlock", "HybridLM", "ResolvedLayer", "join_stream", "resolve_layout"]


@dataclass(frozen=True)
class ResolvedLayer:
    """One sublayer with each branch's symbol and fully resolved mixer config."""

    index: int
    branches: tuple[tuple[str, MixerConfig], ...]

    @property
    def symbols(self) -> str:
        return "|".join(s for s, _ in self.branches)


def resolve_layout(cfg: ModelConfig) -> tuple[Pattern, list[ResolvedLayer]]:
    """Parse ``cfg.pattern`` and resolve every occurrence's config (defaults < model.mixers < [..]).

    Raises:
        PatternError: the pattern is malformed.
        ConfigError: a config value is impossible at ``cfg.d_model``; the message names the layer.
    """
    validate_model_config(cfg)
    pattern = parse(cfg.pattern)
    defaults = resolve_mixer_defaults(cfg.mixers)
    layers = []
    for i, layer in enumerate(pattern.layers):
        branches = []
        for tok in layer.branches:
            where = f"pattern layer {i} ({tok.symbol})"
            conf = apply_overrides(defaults[tok.symbol], tok.params_dict(), where)
            try:
                conf.validate(cfg.d_model)
            except ValueError as e:
                raise type(e)(f"{where}, d_model={cfg.d_model}: {e}") from None
            branches.append((tok.symbol, conf))
        layers.append(ResolvedLayer(i, tuple(branches)))
    return pattern, layers


def join_stream(out: Tensor, residual: Tensor | None) -> Tensor:
    """The residual stream from a block's (output, residual) pair: ``residual + out`` (``out`` when None)."""
    return out if residual is None else residual + out


class HybridBlock(nn.Module):
    """One pre-norm residual sublayer: stream ``x`` -> ``x + mean_b(mixer_b(RMSNorm(x)))``.

    The stream travels as a pair (mamba_ssm ``Block``): ``forward(out, residual)`` takes the previous
    sublayer's output and the residual before it (``residual=None``: ``out`` is the stream itself, as
    for the first block), forms ``x = residual + out``, and returns ``(mean_b(mixer_b(RMSNorm(x))), x)``.
    The stream after the block is the sum of the two. Deferring the add puts it in the same compiled
    graph as the norm that reads it; the sums and their order are those of the plain form.
    """

    def __init__(self, d_model: int, mixers: list[Mixer], norm_eps: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=norm_eps)
        self.mixers = nn.ModuleList(mixers)

    def forward(self, out: Tensor, residual: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = join_stream(out, residual)  # (B, T, D): the stream entering this sublayer
        h = self.norm(x)
        if len(self.mixers) == 1:
            return self.mixers[0](h), x
        return torch.stack([m(h) for m in self.mixers]).mean(0), x


class HybridLM(nn.Module):
    """A causal language model built from a layer pattern.

    Args:
        config: the model section; ``config.vocab_size`` may be null when ``vocab_size`` is given.
        vocab_size: the tokenizer's vocabulary size (used when ``config.vocab_size`` is null).
    """

    def __init__(self, config: ModelConfig, vocab_size: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.pattern, self.resolved = resolve_layout(config)
        self.vocab_size = config.vocab_size or vocab_size
        if not self.vocab_size:
            raise ValueError("model.vocab_size is null and no tokenizer vocabulary size was given")
        d = config.d_model
        self.embed = nn.Embedding(self.vocab_size, d)
        blocks = []
        for layer in self.resolved:
            mixers = []
            for b, (symbol, conf) in enumerate(layer.branches):
                mixer = registry.get(symbol).module(d, conf)
                mixer.layer_index, mixer.branch_index, mixer.symbol = layer.index, b, symbol
                mixers.append(mixer)
            blocks.append(HybridBlock(d, mixers, config.norm_eps))
        self.layers = nn.ModuleList(blocks)
        self.norm_f = nn.RMSNorm(d, eps=config.norm_eps)
        self.lm_head = nn.Linear(d, self.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.backends: dict[str, str] = {}
        self.kernel_routes: dict[str, str] = {}  # symbol -> Mixer.kernel_route(), after set_backend
        self.compiled: str | None = None  # the torch.compile backend after compile_sublayers()
        self.loss_chunk: int | None = None  # eager: the head + loss this many tokens at a time (blocks.loss)
        self._init_weights(config.init)

    def mixers(self) -> list[Mixer]:
        """All mixers in layer order (branches of a parallel group in branch order)."""
        return [m for block in self.layers for m in block.mixers]

    @torch.no_grad()
    def _init_weights(self, init: str) -> None:
        n_sub = len(self.layers)
        d = self.config.d_model
        if init == "mamba":
            nn.init.normal_(self.embed.weight, std=0.02)
            if not self.config.tie_embeddings:
                nn.init.normal_(self.lm_head.weight, std=0.02)
            out_scale = 1.0 / math.sqrt(n_sub)
        else:
            std = math.sqrt(2.0 / (5 * d))
            nn.init.normal_(self.embed.weight, std=std)
            if not self.config.tie_embeddings:
                nn.init.normal_(self.lm_head.weight, std=std)
            for m in self.mixers():
                for lin in m.modules():
                    if isinstance(lin, nn.Linear):
                        nn.init.normal_(lin.weight, std=std)
            n_blocks = max(1, sum(1 for layer in self.resolved if layer.symbols != "F"))
            out_std = 1.0 / (math.sqrt(d) * n_blocks)
        for m in self.mixers():
            for lin in m.modules():
                if isinstance(lin, nn.Linear) and lin.bias is not None and not getattr(lin.bias, "_no_reinit", False):
                    lin.bias.zero_()
            for proj in m.output_projections():
                if init == "mamba":
                    proj.weight.mul_(out_scale)
                else:
                    nn.init.normal_(proj.weight, std=out_std)

    def set_backend(self, requested: str, device: torch.device | str) -> dict[str, str]:
        """Resolve ``requested`` (auto/reference/kernel) per mixer for ``device``; returns symbol -> path.

        Resolution happens once per mixer class and is recorded in ``self.backends`` (logged as the
        MLflow tags ``hybridlab.backend.<symbol>``); where a kernel path has several routes, the one taken
        is in ``self.kernel_routes`` (tags ``hybridlab.kernel_route.<symbol>``).
        """
        chosen: dict[str, str] = {}
        for m in self.mixers():
            if m.symbol not in chosen:
                chosen[m.symbol] = resolve_backend(requested, type(m), device)
            m.set_backend(chosen[m.symbol])
        self.backends = chosen
        self.kernel_routes = {m.symbol: r for m in self.mixers() if (r := m.kernel_route()) is not None}
        return chosen

    def compile_sublayers(self, backend: str = "inductor", mode: str | None = None) -> None:
        """``torch.compile`` every sublayer and the final norm + LM head + loss, in place.

        The mixers' ops (``blocks/ops``: scans, attention, chunked linear attention, on either path) are
        opaque to the compiler (``torch.compiler.disable``), so each sublayer compiles to the graphs around
        them: the pre-norm, projections, RoPE, gates and the residual add fuse into a few kernels, and the
        loss reads the bf16 logits without an fp32 copy. Parameter names and the state_dict do not change.
        Static shapes; sublayers of one kind share their compiled graphs.
        """
        import torch._dynamo

        config = torch._dynamo.config
        limit = 8 * max(1, len(self.layers))  # one entry per distinct sublayer config at most
        if hasattr(config, "recompile_limit"):
            config.recompile_limit = max(config.recompile_limit, limit)
        else:  # pragma: no cover - torch < 2.6
            config.cache_size_limit = max(config.cache_size_limit, limit)
        for block in self.layers:
            block.compile(backend=backend, mode=mode, dynamic=False)
        self._head_loss = torch.compile(self._head_loss, backend=backend, mode=mode, dynamic=False)  # type: ignore[method-assign]
        self.compiled = backend

    def _stream(self, idx: Tensor) -> tuple[Tensor, Tensor | None]:
        """Token ids -> (last sublayer's output, residual before it); their sum is the stream (HybridBlock)."""
        out, residual = self.embed(idx), None
        for block in self.layers:
            out, residual = block(out, residual)
        return out, residual

    def hidden(self, idx: Tensor) -> Tensor:
        """Token ids (B, T) -> the residual stream after the last sublayer, (B, T, D)."""
        return join_stream(*self._stream(idx))

    def forward(self, idx: Tensor) -> Tensor:
        """Token ids (B, T) -> logits (B, T, V)."""
        return self.lm_head(self.norm_f(self.hidden(idx)))

    def _head_loss(self, out: Tensor, residual: Tensor | None, targets: Tensor) -> Tensor:
        h = self.norm_f(join_stream(out, residual))
        if self.loss_chunk and not self.compiled:  # compiled, inductor fuses the plain form instead
            return linear_cross_entropy(h, self.lm_head.weight, targets, self.loss_chunk)
        logits = self.lm_head(h)  # (B, T, V)
        if self.compiled:  # saves the logits as they are (bf16 under autocast), not an fp32 copy
            return cross_entropy(logits.flatten(0, 1), targets.flatten())
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp32 at least
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy over targets != -100, computed in fp32 (fp64 for an fp64 model).

        With ``loss_chunk`` set (and not compiled) the head and loss run ``loss_chunk`` tokens at a time and
        the full logits never exist (``blocks.loss``)."""
        return self._head_loss(*self._stream(idx), targets)

    def num_params(self) -> int:
        """Exact parameter count (a tied LM head is counted once)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token at ``seq_len``: every mixer plus the LM head (2 per multiply-add)."""
        return sum(m.flops(seq_len) for m in self.mixers()) + 2 * self.config.d_model * self.vocab_size

    def state_size(self, seq_len: int) -> int:
        """Elements of recurrent state and KV cache for one sequence of ``seq_len`` tokens."""
        return sum(m.state_size(seq_len) for m in self.mixers())

"""Probe batches for a trial's final evaluation, built from its data config.

``mqar``: Zoology-style multi-query associative recall at the training length (``data.mqar_*``).
``passkey``: the Samba paper's passkey retrieval at every evaluation length long enough for the prompt
and every depth in ``data.passkey_depths`` (sub-sets ``passkey/len{L}/depth{pct}``). Scored by
``analysis.probes.probe_metrics``; deterministic (fixed seeds), so trials are comparable.
"""

from __future__ import annotations

from torch import Tensor

from sweeps.data.config import DataConfig
from sweeps.data.synthetic import mqar_batch, passkey_batch, passkey_min_length
from sweeps.data.tokenizer import get_tokenizer

__all__ = ["probe_sets", "PROBES"]

PROBES = ("mqar", "passkey")
_SEED = 0x9E0BE


def probe_sets(data: DataConfig, probes: list[str], batch_size: int = 8, n_batches: int = 2) -> dict[str, list[tuple[Tensor, Tensor]]]:
    """Named lists of ``(inputs, targets)`` batches for the requested probes."""
    sets: dict[str, list[tuple[Tensor, Tensor]]] = {}
    if "mqar" in probes:
        sets["mqar"] = [
            mqar_batch(batch_size, data.seq_len, data.mqar_pairs, data.mqar_queries, data.mqar_vocab, (_SEED, i))
            for i in range(n_batches)
        ]
    if "passkey" in probes:
        tok = get_tokenizer(data.tokenizer)
        shortest = passkey_min_length(tok, data.passkey_digits)
        for length in sorted(set(data.eval_lengths)):
            if length < shortest:
                continue
            for depth in data.passkey_depths:
                sets[f"passkey/len{length}/depth{round(100 * depth)}"] = [
                    passkey_batch(tok, length, batch_size, (_SEED, length, i), depth=depth, digits=data.passkey_digits)
                    for i in range(n_batches)
                ]
    return sets

"""Batches for training and evaluation, for every data source (design.md, "Data"; samba-facts.md §2.3).

Language-model corpora follow Samba's recipe: training samples are random windows of
``seq_len + 1`` tokens of the EOS-joined stream (windows cross document boundaries), ``y`` is ``x``
shifted by one. Validation at length L uses the first L tokens of fixed, evenly spaced windows
of the longest evaluation length, so every length is measured on the same text and the loss is
the mean over all positions 1..L (samba-facts.md §2.3 and §7.4).

Batch ``i`` of a training stream depends only on ``(seed, i)``, so a resumed run can restart
at ``start_step`` and see the same data. Synthetic sources (``mqar``, ``passkey``) generate
their sequences from the same kind of seeds and put ``-100`` on ignored targets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

import numpy as np
import torch

from .cache import CacheEntry, ensure_cached
from .config import CORPUS_SOURCES, DataConfig, validate
from .synthetic import mqar_batch, passkey_batch, passkey_min_length
from .tokenizer import Tokenizer, get_tokenizer

__all__ = [
    "Batch",
    "train_batches",
    "eval_batches",
    "Dataset",
    "CorpusDataset",
    "MQARDataset",
    "PasskeyDataset",
    "make_dataset",
    "as_data_config",
]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
_EVAL_STREAM = 0x5EED_E7A1


def _windows(corpus: np.ndarray, starts: np.ndarray, width: int) -> torch.Tensor:
    idx = starts[:, None] + np.arange(width)[None, :]  # (B, width)
    return torch.from_numpy(np.asarray(corpus[idx], dtype=np.int64))


def train_batches(
    corpus: np.ndarray, batch_size: int, seq_len: int, seed: int, start_step: int = 0
) -> Iterator[Batch]:
    """Endless ``(x, y)`` int64 batches ``(batch_size, seq_len)`` of random windows, ``y = x`` shifted.

    Window starts are uniform over every position that leaves ``seq_len + 1`` tokens; batch ``i``
    is a function of ``(seed, i)`` only.
    """
    n = len(corpus)
    if n < seq_len + 1:
        raise ValueError(
            f"train_batches: the corpus has {n} tokens, fewer than seq_len + 1 = {seq_len + 1}. "
            "Fix: lower data.seq_len or use a larger corpus (data.max_bytes, data.files)."
        )
    step = start_step
    while True:
        rng = np.random.default_rng((seed, step))
        starts = rng.integers(0, n - seq_len, size=batch_size)
        w = _windows(corpus, starts, seq_len + 1)
        yield w[:, :-1], w[:, 1:]
        step += 1


def eval_batches(
    corpus: np.ndarray, batch_size: int, length: int, n_batches: int, window: int | None = None
) -> Iterator[Batch]:
    """``n_batches`` deterministic ``(x, y)`` batches ``(batch_size, length)`` from fixed windows.

    The ``batch_size * n_batches`` windows of ``window + 1`` tokens (default ``length + 1``) start
    at evenly spaced positions; each batch holds the first ``length + 1`` tokens of its windows.
    Passing the longest evaluation length as ``window`` makes all lengths share the same windows.
    """
    window = length if window is None else max(window, length)
    n = len(corpus)
    if n < window + 1:
        raise ValueError(
            f"eval_batches: the validation split has {n} tokens, fewer than {window + 1} needed for "
            f"windows of {window} tokens. Fix: lower data.eval_lengths, raise data.val_fraction, or use "
            "a larger corpus."
        )
    total = batch_size * n_batches
    starts = np.linspace(0, n - window - 1, num=total).round().astype(np.int64)
    for i in range(n_batches):
        w = _windows(corpus, starts[i * batch_size : (i + 1) * batch_size], length + 1)
        yield w[:, :-1], w[:, 1:]


class Dataset:
    """What the trainer uses, for any source.

    Attributes:
        cfg: the validated ``DataConfig``.
        kind: ``"lm"`` for text corpora, else the synthetic task name (``"mqar"``, ``"passkey"``).
        tokenizer: the ``Tokenizer``.
        vocab_size: the model's vocabulary size for this data (the tokenizer's).
    """

    kind: str = "lm"

    def __init__(self, cfg: DataConfig, tokenizer: Tokenizer) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def seq_len(self) -> int:
        return self.cfg.seq_len

    @property
    def is_synthetic(self) -> bool:
        return self.kind != "lm"

    def train_batches(
        self, batch_size: int, seed: int = 0, seq_len: int | None = None, start_step: int = 0
    ) -> Iterator[Batch]:
        """Endless training batches ``(x, y)`` of ``seq_len`` (default ``cfg.seq_len``) tokens."""
        raise NotImplementedError

    def eval_batches(self, length: int, batch_size: int, n: int) -> Iterator[Batch]:
        """``n`` deterministic evaluation batches at ``length`` tokens."""
        raise NotImplementedError

    def eval_batch(self, length: int, batch_size: int, n: int) -> Iterator[Batch]:
        """Alias of ``eval_batches``."""
        return self.eval_batches(length, batch_size, n)

    def info(self) -> dict[str, Any]:
        """Flat facts about the data for logging."""
        return {"source": self.cfg.source, "tokenizer": self.tokenizer.name, "vocab_size": self.vocab_size}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info()})"


class CorpusDataset(Dataset):
    """A cached text corpus (``stdlib``, ``files``, ``hf``): ``.train`` and ``.val`` token streams."""

    kind = "lm"

    def __init__(self, cfg: DataConfig, tokenizer: Tokenizer, entry: CacheEntry) -> None:
        super().__init__(cfg, tokenizer)
        self.entry = entry
        self.train = entry.load("train")
        self.val = entry.load("val")

    def train_batches(
        self, batch_size: int, seed: int = 0, seq_len: int | None = None, start_step: int = 0
    ) -> Iterator[Batch]:
        return train_batches(self.train, batch_size, seq_len or self.cfg.seq_len, seed, start_step)

    def eval_batches(self, length: int, batch_size: int, n: int) -> Iterator[Batch]:
        window = max([length, self.cfg.seq_len, *self.cfg.eval_lengths])
        if len(self.val) < window + 1:
            log.warning("data: the validation split (%d tokens) is shorter than the longest evaluation "
                        "window (%d); length %d uses its own windows", len(self.val), window + 1, length)
            window = length
        return eval_batches(self.val, batch_size, length, n, window=window)

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "cache_key": self.entry.key,
            "train_tokens": int(len(self.train)),
            "val_tokens": int(len(self.val)),
            "split_method": self.entry.meta["split_method"],
        }


class SyntheticDataset(Dataset):
    """A generated task: training batch ``i`` is a function of ``(seed, i)`` only."""

    def _train_batch(self, batch_size: int, length: int, seed: tuple[int, ...]) -> Batch:
        raise NotImplementedError

    def train_batches(
        self, batch_size: int, seed: int = 0, seq_len: int | None = None, start_step: int = 0
    ) -> Iterator[Batch]:
        length = seq_len or self.cfg.seq_len
        step = start_step
        while True:
            yield self._train_batch(batch_size, length, (seed, step))
            step += 1


class MQARDataset(SyntheticDataset):
    """Multi-query associative recall; ``eval_batches`` keeps the pairs and queries, spreads them wider."""

    kind = "mqar"

    def _batch(self, batch_size: int, length: int, seed: tuple[int, ...]) -> Batch:
        c = self.cfg
        return mqar_batch(batch_size, length, c.mqar_pairs, c.mqar_queries, c.mqar_vocab, seed)

    def _train_batch(self, batch_size: int, length: int, seed: tuple[int, ...]) -> Batch:
        return self._batch(batch_size, length, seed)

    def eval_batches(self, length: int, batch_size: int, n: int) -> Iterator[Batch]:
        for i in range(n):
            yield self._batch(batch_size, length, (_EVAL_STREAM, length, i))

    def info(self) -> dict[str, Any]:
        c = self.cfg
        return {**super().info(), "mqar_pairs": c.mqar_pairs, "mqar_queries": c.mqar_queries, "mqar_vocab": c.mqar_vocab}


class PasskeyDataset(SyntheticDataset):
    """Passkey retrieval; training rows have random depths, evaluation rows cycle ``passkey_depths``."""

    kind = "passkey"

    def _train_batch(self, batch_size: int, length: int, seed: tuple[int, ...]) -> Batch:
        return passkey_batch(self.tokenizer, length, batch_size, seed, None, self.cfg.passkey_digits)

    def eval_batches(self, length: int, batch_size: int, n: int) -> Iterator[Batch]:
        depths = list(self.cfg.passkey_depths)
        for i in range(n):
            row_depths = [depths[(i * batch_size + b) % len(depths)] for b in range(batch_size)]
            yield passkey_batch(
                self.tokenizer, length, batch_size, (_EVAL_STREAM, length, i), row_depths, self.cfg.passkey_digits
            )

    def info(self) -> dict[str, Any]:
        return {**super().info(), "passkey_digits": self.cfg.passkey_digits}


def as_data_config(cfg: DataConfig | Mapping[str, Any]) -> DataConfig:
    """A ``DataConfig`` from itself, a dict, or an OmegaConf ``DictConfig``; unknown keys are errors."""
    if isinstance(cfg, DataConfig):
        return cfg
    if type(cfg).__name__ == "DictConfig":
        from omegaconf import OmegaConf

        obj = OmegaConf.to_object(cfg)
        if isinstance(obj, DataConfig):
            return obj
        cfg = obj  # type: ignore[assignment]
    names = {f.name for f in fields(DataConfig)}
    unknown = sorted(set(cfg) - names)
    if unknown:
        raise ValueError(f"data: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    return DataConfig(**{k: (list(v) if isinstance(v, list | tuple) else v) for k, v in cfg.items()})


def make_dataset(cfg: DataConfig | Mapping[str, Any]) -> Dataset:
    """The dataset for a data config: validated, tokenizer loaded, corpus cached if it is one.

    Returns a ``CorpusDataset``, ``MQARDataset`` or ``PasskeyDataset``; all provide
    ``train_batches(batch_size, seed)``, ``eval_batches(length, batch_size, n)`` and ``vocab_size``.
    """
    cfg = as_data_config(cfg)
    validate(cfg)
    tokenizer = get_tokenizer(cfg.tokenizer)
    if cfg.source in CORPUS_SOURCES:
        return CorpusDataset(cfg, tokenizer, ensure_cached(cfg, tokenizer))
    if cfg.source == "mqar":
        if cfg.mqar_vocab > tokenizer.vocab_size:
            raise ValueError(
                f"data.mqar_vocab must be <= the tokenizer's vocab_size ({tokenizer.vocab_size}); got "
                f"{cfg.mqar_vocab}. Fix: lower data.mqar_vocab."
            )
        return MQARDataset(cfg, tokenizer)
    need = passkey_min_length(tokenizer, cfg.passkey_digits)
    if cfg.seq_len < need:
        raise ValueError(
            f"data.seq_len must be >= {need} for source=passkey with tokenizer {tokenizer.name!r}; got "
            f"{cfg.seq_len}. Fix: raise data.seq_len."
        )
    return PasskeyDataset(cfg, tokenizer)

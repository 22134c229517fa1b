"""The ``data:`` config section (design.md, "Model configuration" and "Data (names fixed)").

``DataConfig`` holds only primitives, lists and optionals, so ``OmegaConf.structured(DataConfig)``
types and closes it. ``validate`` rejects impossible combinations before any work is scheduled
(conventions.md §2.11: field, value, expectation, fix).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

__all__ = ["DataConfig", "SOURCES", "CORPUS_SOURCES", "SYNTHETIC_SOURCES", "validate"]

CORPUS_SOURCES = ("stdlib", "files", "hf")
SYNTHETIC_SOURCES = ("mqar", "passkey")
SOURCES = CORPUS_SOURCES + SYNTHETIC_SOURCES


@dataclass
class DataConfig:
    """Where training and evaluation tokens come from.

    ``source``: ``stdlib`` (the running Python's standard library source), ``files`` (``files``
    globs), ``hf`` (the ``datasets`` dataset ``hf_dataset``), ``mqar`` or ``passkey`` (synthetic).
    ``eval_lengths`` are the lengths at which validation loss (or task accuracy) is measured; the
    corpus is split into train/val by a hash of each document's path (``val_fraction``).
    ``max_bytes`` caps the text read from a corpus source (both splits together).
    """

    source: str = "stdlib"
    tokenizer: str = "bytes"
    seq_len: int = 256
    eval_lengths: list[int] = field(default_factory=lambda: [256, 512, 1024])
    files: list[str] = field(default_factory=list)
    hf_dataset: str | None = None
    hf_split: str = "train"
    hf_text_field: str = "text"
    val_fraction: float = 0.05
    max_bytes: int | None = None
    mqar_pairs: int = 16
    mqar_queries: int = 16
    mqar_vocab: int = 64
    passkey_digits: int = 5
    passkey_depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])


def _err(key: str, expectation: str, value: object, fix: str) -> ValueError:
    return ValueError(f"data.{key} must be {expectation}; got {value!r}. {fix}")


def validate(cfg: DataConfig) -> None:
    """Raise ``ValueError`` naming the key and the fix for an impossible data config.

    Checks that need the tokenizer itself (an HF tokenizer's vocabulary, the passkey prompt's
    token length for it) run when the dataset is built.
    """
    if cfg.source not in SOURCES:
        close = difflib.get_close_matches(str(cfg.source), SOURCES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise _err("source", f"one of {list(SOURCES)}", cfg.source, f"Pick a valid source.{hint}")
    if not cfg.tokenizer:
        raise _err("tokenizer", "'bytes' or a local Hugging Face tokenizer", cfg.tokenizer, "Set tokenizer=bytes.")
    if not isinstance(cfg.seq_len, int) or cfg.seq_len < 2:
        raise _err("seq_len", "an integer >= 2", cfg.seq_len, "Set e.g. data.seq_len=256.")
    if not cfg.eval_lengths:
        raise _err("eval_lengths", "a non-empty list of lengths >= seq_len", cfg.eval_lengths,
                   f"Set e.g. data.eval_lengths=[{cfg.seq_len}].")
    short = [n for n in cfg.eval_lengths if n < cfg.seq_len]
    if short:
        raise _err("eval_lengths", f"all >= seq_len ({cfg.seq_len}), since evaluation measures the training "
                   "length and beyond", list(cfg.eval_lengths),
                   f"Drop {short} or lower data.seq_len to {min(cfg.eval_lengths)}.")

    if cfg.source in CORPUS_SOURCES:
        if not 0.0 < cfg.val_fraction < 1.0:
            raise _err("val_fraction", "strictly between 0 and 1", cfg.val_fraction, "Set e.g. data.val_fraction=0.05.")
        if cfg.max_bytes is not None and cfg.max_bytes <= 0:
            raise _err("max_bytes", "a positive byte count or null", cfg.max_bytes,
                       "Set data.max_bytes=null for no cap, or e.g. 2000000.")
    if cfg.source == "files" and not cfg.files:
        raise _err("files", "a non-empty list of globs when source=files", cfg.files,
                   "Set e.g. data.files='[\"corpus/**/*.txt\"]', or use source=stdlib.")
    if cfg.source == "hf":
        if not cfg.hf_dataset:
            raise _err("hf_dataset", "a dataset name or local path when source=hf", cfg.hf_dataset,
                       "Set e.g. data.hf_dataset=roneneldan/TinyStories, or use source=stdlib.")
        if not cfg.hf_text_field:
            raise _err("hf_text_field", "the name of the text column", cfg.hf_text_field, "Set e.g. data.hf_text_field=text.")
        if not cfg.hf_split:
            raise _err("hf_split", "a split name", cfg.hf_split, "Set e.g. data.hf_split=train.")

    if cfg.source == "mqar":
        _validate_mqar(cfg)
    if cfg.source == "passkey":
        _validate_passkey(cfg)


def _validate_mqar(cfg: DataConfig) -> None:
    if cfg.mqar_pairs < 1:
        raise _err("mqar_pairs", "at least 1", cfg.mqar_pairs, "Set e.g. data.mqar_pairs=16.")
    if cfg.mqar_queries < 1:
        raise _err("mqar_queries", "at least 1", cfg.mqar_queries, "Set e.g. data.mqar_queries=16.")
    if cfg.mqar_vocab < 4 or cfg.mqar_vocab > 256:
        raise _err("mqar_vocab", "between 4 and 256 (ids stay inside the byte range)", cfg.mqar_vocab,
                   "Set e.g. data.mqar_vocab=64.")
    n_keys = cfg.mqar_vocab // 2 - 1
    if cfg.mqar_pairs > n_keys:
        raise _err("mqar_pairs", f"at most mqar_vocab // 2 - 1 = {n_keys} (keys in a sequence are distinct)",
                   cfg.mqar_pairs, f"Lower data.mqar_pairs or raise data.mqar_vocab to {2 * (cfg.mqar_pairs + 1)}.")
    need = 2 * cfg.mqar_pairs + 2 * cfg.mqar_queries
    if need > cfg.seq_len:
        raise _err("seq_len", f">= 2*mqar_pairs + 2*mqar_queries = {need} for source=mqar", cfg.seq_len,
                   f"Raise data.seq_len to {need} or lower data.mqar_pairs/mqar_queries.")


def _validate_passkey(cfg: DataConfig) -> None:
    if not 1 <= cfg.passkey_digits <= 18:
        raise _err("passkey_digits", "between 1 and 18", cfg.passkey_digits, "Set e.g. data.passkey_digits=5.")
    if not cfg.passkey_depths:
        raise _err("passkey_depths", "a non-empty list of fractions in [0, 1]", cfg.passkey_depths,
                   "Set e.g. data.passkey_depths=[0.0,0.5,1.0].")
    bad = [d for d in cfg.passkey_depths if not 0.0 <= d <= 1.0]
    if bad:
        raise _err("passkey_depths", "fractions in [0, 1]", list(cfg.passkey_depths), f"Remove {bad}.")
    if cfg.tokenizer == "bytes":
        from .synthetic import passkey_min_length
        from .tokenizer import ByteTokenizer

        need = passkey_min_length(ByteTokenizer(), cfg.passkey_digits)
        if cfg.seq_len < need:
            raise _err("seq_len", f">= {need} for source=passkey with the bytes tokenizer (the pass-key line, "
                       "question and answer alone take that many tokens)", cfg.seq_len,
                       f"Raise data.seq_len to at least {need} (256 leaves room for filler).")

"""Tokenizers: the built-in ``bytes`` tokenizer and local Hugging Face tokenizers (design.md, "Data").

``bytes`` maps UTF-8 bytes to ids 0..255 and adds three specials: EOS=256, PAD=257, BOS=258
(vocab 259). It needs no download. Any other name is loaded with
``transformers.AutoTokenizer.from_pretrained(name, local_files_only=True)``: a local folder or a
tokenizer already in the Hugging Face cache; hybridlab never downloads one.
Documents are encoded without BOS and joined by EOS, as Samba's pretraining data is
(samba-facts.md §2.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Tokenizer", "ByteTokenizer", "HFTokenizer", "TokenizerUnavailable", "get_tokenizer"]


class TokenizerUnavailable(ValueError):
    """A tokenizer name that cannot be loaded here; the message says why and how to fix it."""


@runtime_checkable
class Tokenizer(Protocol):
    """What the data pipeline needs from a tokenizer."""

    name: str

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_id(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def encode_array(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Sequence[int] | np.ndarray) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255 plus the specials EOS=256, PAD=257, BOS=258."""

    name = "bytes"
    EOS = 256
    PAD = 257
    BOS = 258
    SPECIALS = {EOS: "<|eos|>", PAD: "<|pad|>", BOS: "<|bos|>"}

    @property
    def vocab_size(self) -> int:
        return 259

    @property
    def eos_id(self) -> int:
        return self.EOS

    @property
    def pad_id(self) -> int:
        return self.PAD

    @property
    def bos_id(self) -> int:
        return self.BOS

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, text: str) -> np.ndarray:
        """``encode`` as an int64 array, without a Python list in between."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> str:
        """Bytes decoded as UTF-8 with ``errors='replace'``; specials as ``<|eos|>`` etc. or dropped."""
        values = np.asarray(ids, dtype=np.int64).reshape(-1)
        if values.size and (values.min() < 0 or values.max() >= self.vocab_size):
            bad = values[(values < 0) | (values >= self.vocab_size)][0]
            raise ValueError(f"ByteTokenizer.decode: id {int(bad)} is outside 0..{self.vocab_size - 1}")
        parts: list[str] = []
        run: list[int] = []
        for v in values.tolist():
            if v < 256:
                run.append(v)
                continue
            if run:
                parts.append(bytes(run).decode("utf-8", errors="replace"))
                run = []
            if not skip_special:
                parts.append(self.SPECIALS[v])
        if run:
            parts.append(bytes(run).decode("utf-8", errors="replace"))
        return "".join(parts)

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=259, eos=256, pad=257, bos=258)"


class HFTokenizer:
    """A Hugging Face tokenizer found locally, with hybridlab's interface (no added BOS/EOS)."""

    def __init__(self, name: str, tok: Any) -> None:
        self.name = name
        self._tok = tok
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        if eos is None:
            raise TokenizerUnavailable(
                f"data.tokenizer={name!r}: the tokenizer defines neither an EOS nor a SEP token, and "
                "documents are joined by EOS. Fix: use a tokenizer with an eos_token, or tokenizer=bytes."
            )
        self._eos = int(eos)

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    @property
    def eos_id(self) -> int:
        return self._eos

    @property
    def pad_id(self) -> int:
        pad = self._tok.pad_token_id
        return self._eos if pad is None else int(pad)

    def encode(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=False)["input_ids"])

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> str:
        return self._tok.decode(np.asarray(ids).reshape(-1).tolist(), skip_special_tokens=skip_special)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, vocab_size={self.vocab_size}, eos={self.eos_id})"


def get_tokenizer(name: str) -> Tokenizer:
    """``ByteTokenizer`` for ``"bytes"``; otherwise a local or cached HF tokenizer, never downloaded.

    Raises:
        TokenizerUnavailable: ``transformers`` is missing or the tokenizer is not on this machine.
    """
    if name == "bytes":
        return ByteTokenizer()
    if not name:
        raise TokenizerUnavailable("data.tokenizer is empty. Fix: set tokenizer=bytes or a local HF tokenizer.")
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise TokenizerUnavailable(
            f"data.tokenizer={name!r}: names other than 'bytes' are Hugging Face tokenizers, but the "
            f"'transformers' package is not installed ({exc}). Fix: pip install 'hybridlab[hf]', "
            "or set data.tokenizer=bytes."
        ) from exc
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception as exc:
        raise TokenizerUnavailable(
            f"data.tokenizer={name!r}: no such tokenizer on this machine (hybridlab loads tokenizers "
            f"with local_files_only=True and never downloads): {type(exc).__name__}: {exc}. Fix: pass a "
            "local folder, download it first (e.g. huggingface-cli download NAME), or set "
            "data.tokenizer=bytes."
        ) from exc
    return HFTokenizer(name, tok)

"""Synthetic tasks: MQAR (Zoology, Arora et al. 2023) and passkey retrieval (Samba App. B/C).

Both return ``(inputs, targets)`` as int64 tensors of shape ``(B, L)`` where ``targets[b, t]`` is
the token the model must predict after reading ``inputs[b, :t+1]``, and every other position is
``IGNORE = -100`` (the default ``ignore_index`` of ``F.cross_entropy``). ``accuracy`` scores a
sequence as right only when every target position is right.

MQAR (multi-query associative recall), following zoology's ``multiquery_ar``: the sequence starts
with ``pairs`` key-value pairs ``k1 v1 k2 v2 ...`` (distinct keys from ids ``1..vocab//2-1``,
distinct values from ``vocab//2..vocab-1``); the rest is filler id 0 with ``queries`` key-value
pairs re-stated at random even offsets. A target sits on each re-stated key: its value.

Passkey (Mohtashami & Jaggi 2023 format, as Samba fine-tunes and evaluates it, samba-facts.md §5):
filler sentences, the line "The pass key is K. Remember it. K is the pass key. " inserted at a
sentence boundary at ``depth`` (0 = start, 1 = just before the question), then
"What is the pass key? The pass key is " and the answer digits; targets only on the digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .tokenizer import Tokenizer

__all__ = [
    "IGNORE",
    "mqar_batch",
    "PasskeyExample",
    "passkey_example",
    "passkey_batch",
    "passkey_min_length",
    "FILLER_SENTENCES",
    "KEY_LINE",
    "QUESTION",
    "sequence_correct",
    "accuracy",
]

IGNORE = -100
SeedLike = int | Sequence[int] | np.random.SeedSequence

FILLER_SENTENCES = (
    "The grass is green. ",
    "The sky is blue. ",
    "The sun is yellow. ",
    "Here we go. ",
    "There and back again. ",
)
KEY_LINE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "What is the pass key? The pass key is "


def _distinct(rng: np.random.Generator, rows: int, n: int, k: int) -> np.ndarray:
    """``k`` distinct indices in ``0..n-1`` per row, uniformly at random: shape (rows, k)."""
    return np.argsort(rng.random((rows, n)), axis=1)[:, :k]


def mqar_batch(
    batch_size: int, seq_len: int, pairs: int, queries: int, vocab: int, seed: SeedLike
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of MQAR sequences, deterministic in ``seed``.

    Args:
        batch_size: rows.
        seq_len: length of inputs and targets; needs ``2*pairs + 2*queries <= seq_len``.
        pairs: key-value pairs stated at the start.
        queries: keys re-stated later (without repeats when ``queries <= pairs``).
        vocab: ids used are ``0..vocab-1``; needs ``pairs <= vocab//2 - 1``.
        seed: anything ``np.random.default_rng`` accepts.

    Returns:
        ``(inputs, targets)``, int64 ``(batch_size, seq_len)``; targets are ``-100`` except
        ``queries`` positions per row, each holding the value of the key at that input position.
    """
    n_keys = vocab // 2 - 1
    if pairs < 1 or queries < 1 or pairs > n_keys:
        raise ValueError(f"mqar_batch: need 1 <= pairs <= vocab//2-1 = {n_keys} and queries >= 1; got "
                         f"pairs={pairs}, queries={queries}, vocab={vocab}")
    if 2 * pairs + 2 * queries > seq_len:
        raise ValueError(f"mqar_batch: seq_len={seq_len} is shorter than 2*pairs + 2*queries = "
                         f"{2 * pairs + 2 * queries}; raise seq_len or lower pairs/queries")
    rng = np.random.default_rng(seed)
    rows = np.arange(batch_size)[:, None]
    keys = 1 + _distinct(rng, batch_size, n_keys, pairs)  # (B, P)
    values = vocab // 2 + _distinct(rng, batch_size, vocab - vocab // 2, pairs)  # (B, P)

    seq = np.zeros((batch_size, seq_len + 1), dtype=np.int64)
    seq[:, 0 : 2 * pairs : 2] = keys
    seq[:, 1 : 2 * pairs : 2] = values

    n_slots = (seq_len + 1 - 2 * pairs) // 2
    slots = _distinct(rng, batch_size, n_slots, queries)  # (B, Q)
    if queries <= pairs:
        which = _distinct(rng, batch_size, pairs, queries)
    else:
        which = rng.integers(0, pairs, size=(batch_size, queries))
    pos = 2 * pairs + 2 * slots  # (B, Q): input index of each re-stated key
    seq[rows, pos] = keys[rows, which]
    seq[rows, pos + 1] = values[rows, which]

    inputs = seq[:, :-1]
    targets = np.full((batch_size, seq_len), IGNORE, dtype=np.int64)
    targets[rows, pos] = seq[rows, pos + 1]
    return torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(targets)


@dataclass(frozen=True)
class PasskeyExample:
    """One passkey document of ``len(tokens) == length + 1`` tokens.

    ``key_start``: index in ``tokens`` where the pass-key line begins; ``filler_tokens``: the
    number of filler tokens (the depth is ``key_start / filler_tokens`` up to a sentence);
    ``answer_start``: index where the answer digits begin (they run to the end).
    """

    tokens: np.ndarray
    key: str
    depth: float
    key_start: int
    filler_tokens: int
    answer_start: int


def _encode(tokenizer: Tokenizer, text: str) -> np.ndarray:
    return np.asarray(tokenizer.encode_array(text), dtype=np.int64)


def _key_text(rng: np.random.Generator, digits: int) -> str:
    return str(int(rng.integers(10 ** (digits - 1), 10**digits)))


def passkey_min_length(tokenizer: Tokenizer, digits: int = 5) -> int:
    """The shortest input length that fits the pass-key line, question and answer with no filler."""
    key = "9" * digits
    parts = (KEY_LINE.format(key=key), QUESTION, key)
    return sum(len(_encode(tokenizer, p)) for p in parts) - 1


def passkey_example(
    tokenizer: Tokenizer, length: int, depth: float, key: str, phase: int = 0
) -> PasskeyExample:
    """One passkey document with ``length`` input tokens (``length + 1`` tokens in all).

    The filler is the tail of the sentence cycle starting at sentence ``phase``, so only its
    first sentence may be cut; the key line goes at the sentence boundary closest to
    ``depth * filler_tokens``.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"passkey depth must be in [0, 1]; got {depth!r}")
    line = _encode(tokenizer, KEY_LINE.format(key=key))
    question = _encode(tokenizer, QUESTION)
    answer = _encode(tokenizer, key)
    budget = length + 1 - len(line) - len(question) - len(answer)
    if budget < 0:
        raise ValueError(
            f"passkey: length={length} is too short for the pass-key line, question and answer "
            f"({length - budget} tokens with tokenizer {tokenizer.name!r}). Fix: raise data.seq_len / "
            "the evaluation length."
        )
    sentences = [_encode(tokenizer, s) for s in FILLER_SENTENCES]
    stream: list[np.ndarray] = []
    starts: list[int] = []
    total = 0
    i = phase
    while total < budget:
        starts.append(total)
        piece = sentences[i % len(sentences)]
        stream.append(piece)
        total += len(piece)
        i += 1
    cycle = np.concatenate(stream) if stream else np.zeros(0, dtype=np.int64)
    filler = cycle[len(cycle) - budget :]
    offset = len(cycle) - budget
    bounds = sorted({0, budget, *(s - offset for s in starts if 0 <= s - offset <= budget)})
    target = depth * budget
    insert = min(bounds, key=lambda b: (abs(b - target), b))
    tokens = np.concatenate([filler[:insert], line, filler[insert:], question, answer])
    return PasskeyExample(
        tokens=tokens,
        key=key,
        depth=float(depth),
        key_start=int(insert),
        filler_tokens=int(budget),
        answer_start=int(len(tokens) - len(answer)),
    )


def passkey_batch(
    tokenizer: Tokenizer,
    length: int,
    batch_size: int,
    seed: SeedLike,
    depth: float | Sequence[float] | None = None,
    digits: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of passkey documents with random ``digits``-digit keys, deterministic in ``seed``.

    ``depth``: one fraction for every row, one per row, or ``None`` for a uniform random depth
    and a random filler phase per row (training data).

    Returns:
        ``(inputs, targets)``, int64 ``(batch_size, length)``; targets hold only the answer digits.
    """
    rng = np.random.default_rng(seed)
    if depth is None:
        depths = rng.random(batch_size).tolist()
        phases = rng.integers(0, len(FILLER_SENTENCES), size=batch_size).tolist()
    else:
        depths = [float(depth)] * batch_size if isinstance(depth, int | float) else [float(d) for d in depth]
        if len(depths) != batch_size:
            raise ValueError(f"passkey_batch: {len(depths)} depths for batch_size={batch_size}")
        phases = [0] * batch_size
    inputs = np.empty((batch_size, length), dtype=np.int64)
    targets = np.full((batch_size, length), IGNORE, dtype=np.int64)
    for b in range(batch_size):
        ex = passkey_example(tokenizer, length, depths[b], _key_text(rng, digits), phase=phases[b])
        inputs[b] = ex.tokens[:-1]
        targets[b, ex.answer_start - 1 :] = ex.tokens[ex.answer_start :]
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def sequence_correct(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE) -> torch.Tensor:
    """Per row: every non-ignored target position predicted exactly (argmax), shape ``(B,)`` bool.

    ``logits`` is ``(B, L, V)`` or already-decided predictions ``(B, L)``. Rows without targets
    count as correct; ``accuracy`` leaves them out.
    """
    pred = logits.argmax(dim=-1) if logits.dim() == targets.dim() + 1 else logits
    if pred.shape != targets.shape:
        raise ValueError(f"sequence_correct: predictions {tuple(pred.shape)} vs targets {tuple(targets.shape)}")
    mask = targets != ignore_index
    return ((pred == targets) | ~mask).all(dim=-1)


def accuracy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE) -> float:
    """Exact-match accuracy over rows with targets: a row counts only if all its answer tokens are right."""
    has = (targets != ignore_index).any(dim=-1)
    if not bool(has.any()):
        raise ValueError("accuracy: no target positions (every target is ignore_index)")
    return float(sequence_correct(logits, targets, ignore_index)[has].float().mean())

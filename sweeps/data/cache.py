"""Tokenized-corpus cache under ``HYBRIDLAB_HOME/cache`` (design.md, "Runs on disk" and "Data").

A corpus (source ``stdlib``, ``files`` or ``hf``) is tokenized once into two flat token streams,
``<key>.train.bin`` and ``<key>.val.bin`` (raw uint16 when the vocabulary fits, else int32), with a
JSON sidecar ``<key>.json`` that is written last and so marks the entry complete. Documents are
joined by EOS, without BOS, as in Samba's data pipeline (samba-facts.md §2.3). The key hashes the
source fingerprint (Python version for ``stdlib``; every file's size and mtime for ``files``), the
tokenizer, ``val_fraction`` and ``max_bytes``.

Concurrency: a builder holds an exclusive ``fcntl.flock`` on ``<key>.lock``, writes to temporary
files in the same folder and publishes them with ``os.replace``; processes that ask for the same
entry meanwhile wait on the lock and then read the finished files, so an entry is built once and
never read half-written.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import cache_dir
from . import sources
from .config import CORPUS_SOURCES, DataConfig
from .tokenizer import Tokenizer, get_tokenizer

__all__ = ["CacheEntry", "CACHE_FORMAT", "cache_key", "ensure_cached", "load_corpus", "token_dtype", "describe_entry"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
SPLITS = ("train", "val")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.int32)


@dataclass(frozen=True)
class CacheEntry:
    """A finished cache entry. ``built`` is true when this call built it (false: it was found)."""

    key: str
    folder: Path
    meta: dict[str, Any]
    built: bool

    def path(self, split: str) -> Path:
        return self.folder / self.meta["splits"][split]["file"]

    def load(self, split: str) -> np.memmap:
        """The split's tokens, memory-mapped read-only."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
        info = self.meta["splits"][split]
        return np.memmap(self.path(split), dtype=np.dtype(self.meta["dtype"]), mode="r", shape=(info["tokens"],))


def _key_material(cfg: DataConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "source": sources.source_fingerprint(cfg),
        "tokenizer": tokenizer.name,
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
        "val_fraction": float(cfg.val_fraction),
        "max_bytes": cfg.max_bytes,
    }


def cache_key(cfg: DataConfig, tokenizer: Tokenizer | None = None) -> str:
    """``<source>-`` and a 20-hex-digit hash of the source fingerprint, tokenizer, ``val_fraction`` and ``max_bytes``.

    The split is not part of the key: one entry holds both splits, built together.
    """
    tokenizer = get_tokenizer(cfg.tokenizer) if tokenizer is None else tokenizer
    return _key(cfg.source, _key_material(cfg, tokenizer))


def _key(source: str, material: dict[str, Any]) -> str:
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return f"{source}-{hashlib.sha256(blob.encode('utf-8')).hexdigest()[:20]}"


def _read_meta(folder: Path, key: str) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if meta.get("format") != CACHE_FORMAT:
        return None
    itemsize = np.dtype(meta["dtype"]).itemsize
    for split in SPLITS:
        info = meta["splits"][split]
        try:
            if (folder / info["file"]).stat().st_size != info["tokens"] * itemsize:
                return None
        except FileNotFoundError:
            return None
    return meta


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def _resplit_by_position(tmp: dict[str, Path], dtype: np.dtype, val_fraction: float) -> None:
    tokens = np.concatenate([np.fromfile(tmp[s], dtype=dtype) for s in SPLITS])
    cut = int(round(len(tokens) * (1.0 - val_fraction)))
    cut = min(max(cut, 1), len(tokens) - 1)
    tokens[:cut].tofile(tmp["train"])
    tokens[cut:].tofile(tmp["val"])


def _build(cfg: DataConfig, tokenizer: Tokenizer, key: str, folder: Path, material: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    dtype = token_dtype(tokenizer.vocab_size)
    limit = np.iinfo(dtype).max
    eos = np.asarray([tokenizer.eos_id], dtype=dtype)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    tmp = {s: folder / f".{key}.{s}.bin.tmp-{tag}" for s in SPLITS}
    counts = {s: {"tokens": 0, "documents": 0} for s in SPLITS}
    n_bytes = 0
    log.info("building token cache %s (source=%s, tokenizer=%s) in %s", key, cfg.source, tokenizer.name, folder)
    try:
        handles = {s: open(tmp[s], "wb") for s in SPLITS}
        try:
            for doc in sources.iter_documents(cfg):
                ids = tokenizer.encode_array(doc.text)
                if ids.size and (ids.min() < 0 or ids.max() > limit):
                    raise ValueError(f"tokenizer {tokenizer.name!r} produced an id outside 0..{limit}")
                split = sources.split_of(doc.id, cfg.val_fraction)
                handles[split].write(ids.astype(dtype).tobytes())
                handles[split].write(eos.tobytes())
                counts[split]["tokens"] += int(ids.size) + 1
                counts[split]["documents"] += 1
                n_bytes += len(doc.text.encode("utf-8"))
        finally:
            for handle in handles.values():
                handle.close()
        total = sum(c["tokens"] for c in counts.values())
        if total < 4:
            raise sources.SourceUnavailable(
                f"data.source={cfg.source!r}: the corpus is empty or almost empty ({total} tokens). "
                "Fix: point the source at more text, or raise data.max_bytes."
            )
        split_method = "path-hash"
        if min(c["tokens"] for c in counts.values()) == 0:
            empty = "val" if counts["val"]["tokens"] == 0 else "train"
            log.warning(
                "data: every document of %s hashed into one split (%s is empty); splitting the token "
                "stream by position instead: the last %.1f%% is validation",
                cfg.source, empty, 100 * cfg.val_fraction,
            )
            _resplit_by_position(tmp, dtype, cfg.val_fraction)
            for s in SPLITS:
                counts[s]["tokens"] = int(os.path.getsize(tmp[s]) // dtype.itemsize)
            split_method = "stream-tail"
        files = {s: f"{key}.{s}.bin" for s in SPLITS}
        for s in SPLITS:
            _fsync_replace(tmp[s], folder / files[s])
        meta = {
            "format": CACHE_FORMAT,
            "key": key,
            "dtype": dtype.name,
            "vocab_size": tokenizer.vocab_size,
            "eos_id": tokenizer.eos_id,
            "tokenizer": tokenizer.name,
            "source": cfg.source,
            "split_method": split_method,
            "text_bytes": n_bytes,
            "splits": {s: {"file": files[s], **counts[s]} for s in SPLITS},
            "build_seconds": round(time.perf_counter() - t0, 3),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "created_by": {"pid": os.getpid(), "host": socket.gethostname()},
            "key_material": material,
        }
        side_tmp = folder / f".{key}.json.tmp-{tag}"
        side_tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        _fsync_replace(side_tmp, folder / f"{key}.json")
        tmp["json"] = side_tmp
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    log.info("token cache %s: %d train / %d val tokens in %.2f s", key,
             counts["train"]["tokens"], counts["val"]["tokens"], meta["build_seconds"])
    return meta


def ensure_cached(cfg: DataConfig, tokenizer: Tokenizer | None = None) -> CacheEntry:
    """The finished cache entry for a corpus config, building it (both splits) if missing.

    Safe to call from many processes at once: exactly one builds, the others wait and reuse it.
    """
    if cfg.source not in CORPUS_SOURCES:
        raise ValueError(
            f"data.source={cfg.source!r} is synthetic and has no token cache; the cache holds "
            f"{list(CORPUS_SOURCES)}. Use sweeps.data.make_dataset(cfg) for every source."
        )
    tokenizer = get_tokenizer(cfg.tokenizer) if tokenizer is None else tokenizer
    material = _key_material(cfg, tokenizer)
    key = _key(cfg.source, material)
    folder = cache_dir()
    meta = _read_meta(folder, key)
    if meta is not None:
        return CacheEntry(key, folder, meta, built=False)
    with _locked(folder / f"{key}.lock"):
        meta = _read_meta(folder, key)
        if meta is not None:
            return CacheEntry(key, folder, meta, built=False)
        meta = _build(cfg, tokenizer, key, folder, material)
        return CacheEntry(key, folder, meta, built=True)


def load_corpus(cfg: DataConfig, split: str, tokenizer: Tokenizer | None = None) -> np.memmap:
    """The ``split`` (``"train"`` or ``"val"``) token stream of a corpus source, memory-mapped.

    Builds and caches the corpus on first use; see ``ensure_cached``.
    """
    return ensure_cached(cfg, tokenizer).load(split)


def describe_entry(entry: CacheEntry) -> dict[str, Any]:
    """A flat summary of an entry for logging."""
    out: dict[str, Any] = {"key": entry.key, "built": entry.built, "split_method": entry.meta["split_method"]}
    out.update({f"{s}_tokens": entry.meta["splits"][s]["tokens"] for s in SPLITS})
    return out

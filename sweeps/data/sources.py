"""Text sources for language-model corpora: ``stdlib``, ``files`` and ``hf`` (design.md, "Data").

Each source yields ``Document``s in a fixed order. A document goes to the validation split when a
hash of its id (the path relative to the stdlib root or to its glob's base folder; the row index
for ``hf``) falls below ``val_fraction``, so the split does not depend on the order, on the
machine or on which other files exist. ``max_bytes`` caps the UTF-8 text read, over both splits,
in document order. Synthetic sources (``mqar``, ``passkey``) live in ``synthetic.py``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DataConfig

__all__ = [
    "Document",
    "SourceUnavailable",
    "STDLIB_EXCLUDED_DIRS",
    "stdlib_root",
    "stdlib_files",
    "expand_globs",
    "split_of",
    "iter_documents",
    "source_fingerprint",
]

STDLIB_EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib-dynload"}
)
_STDLIB_RULES = "v1: *.py; sorted walk; skip dirs " + ",".join(sorted(STDLIB_EXCLUDED_DIRS)) + ",config-*"


class SourceUnavailable(ValueError):
    """A corpus source that cannot be read here; the message says why and how to fix it."""


@dataclass(frozen=True)
class Document:
    """One text document; ``id`` decides its split."""

    id: str
    text: str


def split_of(doc_id: str, val_fraction: float) -> str:
    """``"val"`` when sha256(id) read as a fraction in [0, 1) is below ``val_fraction``, else ``"train"``."""
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return "val" if u < val_fraction else "train"


def stdlib_root() -> Path:
    """The running interpreter's standard-library folder (``sysconfig.get_paths()["stdlib"]``)."""
    return Path(sysconfig.get_paths()["stdlib"])


def _skip_dir(name: str) -> bool:
    return name in STDLIB_EXCLUDED_DIRS or name.startswith("config-")


def stdlib_files(root: Path | None = None) -> list[tuple[str, Path]]:
    """``(relative posix path, path)`` of every stdlib ``*.py`` file outside test folders, sorted walk."""
    root = stdlib_root() if root is None else root
    if not root.is_dir():
        raise SourceUnavailable(
            f"data.source='stdlib': the standard-library folder {str(root)!r} does not exist on this "
            "Python. Fix: use source=files with your own text, or a Python that ships its stdlib source."
        )
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _skip_dir(d))
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = Path(dirpath) / name
                out.append((path.relative_to(root).as_posix(), path))
    if not out:
        raise SourceUnavailable(
            f"data.source='stdlib': no *.py files under {str(root)!r} (a stripped Python install?). "
            "Fix: use source=files with your own text."
        )
    return out


def _glob_base(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    if len(fixed) == len(parts):
        fixed = fixed[:-1]
    return os.path.join(*fixed) if fixed else "."


def expand_globs(patterns: list[str]) -> list[tuple[str, Path]]:
    """``(id, absolute path)`` for the files the globs match (``**`` recursive), unique, sorted by path.

    The id is the path relative to the glob's base folder (its leading non-wildcard part), so the
    same files give the same split whether the glob is written relative or absolute.

    Raises:
        SourceUnavailable: a glob matches no file.
    """
    seen: dict[Path, str] = {}
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        base = os.path.abspath(_glob_base(expanded))
        matches = [Path(os.path.abspath(p)) for p in glob.glob(expanded, recursive=True) if os.path.isfile(p)]
        if not matches:
            raise SourceUnavailable(
                f"data.files: the glob {pattern!r} matches no files (relative globs are resolved against "
                f"the current folder {os.getcwd()!r}). Fix: correct the glob or give an absolute one."
            )
        for path in matches:
            seen.setdefault(path, Path(os.path.relpath(path, base)).as_posix())
    return sorted(((doc_id, path) for path, doc_id in seen.items()), key=lambda item: str(item[1]))


def _load_hf(cfg: DataConfig) -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise SourceUnavailable(
            f"data.source='hf' needs the 'datasets' package, which is not installed ({exc}). "
            "Fix: pip install 'hybridlab[hf]', or use source=stdlib / source=files."
        ) from exc
    name = str(cfg.hf_dataset)
    try:
        if Path(name).is_dir() and (Path(name) / "dataset_info.json").exists():
            ds = datasets.load_from_disk(name)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[cfg.hf_split]
        else:
            ds = datasets.load_dataset(name, split=cfg.hf_split)
    except Exception as exc:
        raise SourceUnavailable(
            f"data.hf_dataset={name!r} (split {cfg.hf_split!r}) could not be loaded: {type(exc).__name__}: "
            f"{exc}. Fix: check the name and split; on a machine without network, download it first "
            "and set HF_DATASETS_OFFLINE=1, or save it with Dataset.save_to_disk and pass that folder; "
            "or use source=files."
        ) from exc
    if cfg.hf_text_field not in ds.column_names:
        raise SourceUnavailable(
            f"data.hf_text_field={cfg.hf_text_field!r} is not a column of {name!r}; columns: "
            f"{ds.column_names}. Fix: set data.hf_text_field to the text column."
        )
    return ds


def _raw_documents(cfg: DataConfig) -> Iterator[Document]:
    if cfg.source == "stdlib":
        for doc_id, path in stdlib_files():
            yield Document(doc_id, path.read_text(encoding="utf-8", errors="replace"))
    elif cfg.source == "files":
        for doc_id, path in expand_globs(list(cfg.files)):
            yield Document(doc_id, path.read_text(encoding="utf-8", errors="replace"))
    elif cfg.source == "hf":
        ds = _load_hf(cfg)
        for i, row in enumerate(ds):
            text = row[cfg.hf_text_field]
            yield Document(str(i), text if isinstance(text, str) else str(text))
    else:
        raise ValueError(f"data.source={cfg.source!r} is not a text corpus; expected one of stdlib, files, hf")


def iter_documents(cfg: DataConfig) -> Iterator[Document]:
    """All non-empty documents of a corpus source, both splits, in order, capped at ``max_bytes``."""
    budget = cfg.max_bytes
    for doc in _raw_documents(cfg):
        if not doc.text:
            continue
        if budget is None:
            yield doc
            continue
        data = doc.text.encode("utf-8")
        if len(data) >= budget:
            yield Document(doc.id, data[:budget].decode("utf-8", errors="ignore"))
            return
        budget -= len(data)
        yield doc


def _tree_stats(root: Path) -> list[list[Any]]:
    out: list[list[Any]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            out.append([os.path.relpath(os.path.join(dirpath, name), root), st.st_size, st.st_mtime_ns])
    return out


def source_fingerprint(cfg: DataConfig) -> dict[str, Any]:
    """What identifies a corpus's content without reading it: the cache-key input for the source.

    ``stdlib``: the Python version and stdlib folder; ``files``: every matched file with its size
    and mtime; ``hf``: dataset, split and text field (plus file stats for a local folder).
    """
    if cfg.source == "stdlib":
        return {
            "kind": "stdlib",
            "python": sys.version,
            "implementation": platform.python_implementation(),
            "root": str(stdlib_root()),
            "rules": _STDLIB_RULES,
        }
    if cfg.source == "files":
        files = []
        for doc_id, path in expand_globs(list(cfg.files)):
            st = path.stat()
            files.append([doc_id, str(path), st.st_size, st.st_mtime_ns])
        return {"kind": "files", "files": files}
    if cfg.source == "hf":
        fp: dict[str, Any] = {
            "kind": "hf",
            "dataset": cfg.hf_dataset,
            "split": cfg.hf_split,
            "text_field": cfg.hf_text_field,
        }
        local = Path(str(cfg.hf_dataset))
        if local.is_dir():
            fp["local"] = [str(local.resolve()), _tree_stats(local)]
        return fp
    raise ValueError(f"data.source={cfg.source!r} is not a text corpus; expected one of stdlib, files, hf")

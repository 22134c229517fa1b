"""Specification tests for ``sweeps.data``: tokenizer, sources, cache, synthetic tasks, loaders.

Every test works under a temporary ``HYBRIDLAB_HOME``; stdlib corpora are capped with
``max_bytes`` to stay quick.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeps.data import (
    IGNORE,
    ByteTokenizer,
    DataConfig,
    SourceUnavailable,
    TokenizerUnavailable,
    accuracy,
    ensure_cached,
    eval_batches,
    get_tokenizer,
    iter_documents,
    load_corpus,
    make_dataset,
    mqar_batch,
    passkey_batch,
    passkey_example,
    sequence_correct,
    split_of,
    stdlib_files,
    train_batches,
    validate,
)
from sweeps.data.synthetic import passkey_min_length
from sweeps.paths import hybridlab_home

REPO = Path(__file__).resolve().parents[2]
SMALL = 1_000_000


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HYBRIDLAB_HOME", str(home))
    return home


def stdlib_cfg(**kw: object) -> DataConfig:
    return DataConfig(source="stdlib", max_bytes=SMALL, **kw)  # type: ignore[arg-type]


# --- paths and tokenizer -------------------------------------------------------------------


def test_hybridlab_home_is_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HYBRIDLAB_HOME", "rel/home")
    monkeypatch.chdir(tmp_path)
    assert hybridlab_home() == tmp_path / "rel" / "home"
    monkeypatch.delenv("HYBRIDLAB_HOME")
    assert hybridlab_home() == tmp_path / "runs"


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_bytes_round_trip(text: str) -> None:
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text
    assert tok.encode_array(text).tolist() == ids


def test_bytes_tokenizer_specials() -> None:
    tok = get_tokenizer("bytes")
    assert tok.vocab_size == 259 and tok.eos_id == 256
    ids = tok.encode("héllo") + [tok.eos_id] + tok.encode("🙂")
    assert tok.decode(ids) == "héllo<|eos|>🙂"
    assert tok.decode(ids, skip_special=True) == "héllo🙂"
    assert tok.decode([0xFF, 0x41]) == "\ufffdA"
    with pytest.raises(ValueError, match="outside"):
        tok.decode([259])


def test_hf_tokenizer_unavailable_says_fix() -> None:
    with pytest.raises(TokenizerUnavailable) as err:
        get_tokenizer("some-org/some-tokenizer")
    msg = str(err.value)
    assert "some-org/some-tokenizer" in msg and "hybridlab[hf]" in msg and "tokenizer=bytes" in msg


# --- sources -------------------------------------------------------------------------------


def test_stdlib_files_exclude_tests_and_are_sorted() -> None:
    files = stdlib_files()
    ids = [doc_id for doc_id, _ in files]
    assert "os.py" in ids and "asyncio/base_events.py" in ids
    excluded = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
    assert not [i for i in ids if excluded & set(i.split("/")[:-1])]
    assert not [i for i in ids if i.startswith(("test/", "unittest/test/", "lib2to3/tests/"))]
    assert all(i.endswith(".py") for i in ids)
    assert ids == [doc_id for doc_id, _ in stdlib_files()]


def test_split_is_deterministic_hash_of_id() -> None:
    ids = [f"pkg/mod{i}.py" for i in range(2000)]
    splits = [split_of(i, 0.1) for i in ids]
    assert splits == [split_of(i, 0.1) for i in ids]
    assert 0.07 < splits.count("val") / len(ids) < 0.13
    assert all(split_of(i, 0.0) == "train" for i in ids[:50])


def test_stdlib_corpus_splits_disjoint_and_complete() -> None:
    cfg = stdlib_cfg()
    docs = list(iter_documents(cfg))
    assert sum(len(d.text.encode()) for d in docs) == SMALL
    by_split = {s: [d for d in docs if split_of(d.id, cfg.val_fraction) == s] for s in ("train", "val")}
    assert by_split["train"] and by_split["val"]
    assert not {d.id for d in by_split["train"]} & {d.id for d in by_split["val"]}
    tok = ByteTokenizer()
    for split, chunk in by_split.items():
        expected = np.concatenate([np.append(tok.encode_array(d.text), tok.eos_id) for d in chunk])
        assert np.array_equal(load_corpus(cfg, split), expected), split


def test_files_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    for i in range(40):
        (root / ("sub" if i % 2 else "") / f"doc{i:02d}.txt").write_text(f"document {i} " * 20)
    (root / "skip.md").write_text("not matched")
    cfg = DataConfig(source="files", files=[str(root / "**" / "*.txt")], val_fraction=0.2)
    ds = make_dataset(cfg)
    train, val = np.asarray(ds.train), np.asarray(ds.val)
    tok = ByteTokenizer()
    texts = tok.decode(np.concatenate([train, val])).split("<|eos|>")
    assert texts[-1] == "" and train[-1] == val[-1] == tok.eos_id
    assert sorted(texts[:-1]) == sorted(f"document {i} " * 20 for i in range(40))
    assert len(val) > 0 and len(train) > len(val)

    monkeypatch.chdir(tmp_path)
    from sweeps.data.sources import expand_globs

    assert [i for i, _ in expand_globs(["corpus/**/*.txt"])] == [i for i, _ in expand_globs(cfg.files)]
    with pytest.raises(SourceUnavailable, match="matches no files"):
        expand_globs(["corpus/*.nothing"])


def test_files_single_document_falls_back_to_stream_split(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("x" * 1000)
    ds = make_dataset(DataConfig(source="files", files=[str(tmp_path / "one.txt")], val_fraction=0.1))
    assert ds.info()["split_method"] == "stream-tail"
    assert len(ds.train) == 901 and len(ds.val) == 100


def test_hf_source_without_datasets_says_fix() -> None:
    if _has_module("datasets"):
        pytest.skip("datasets is installed here")
    with pytest.raises(SourceUnavailable) as err:
        make_dataset(DataConfig(source="hf", hf_dataset="roneneldan/TinyStories"))
    msg = str(err.value)
    assert "datasets" in msg and "hybridlab[hf]" in msg and "source=" in msg


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --- synthetic tasks -----------------------------------------------------------------------


def test_mqar_targets_are_values_of_queried_keys() -> None:
    pairs, queries, vocab, seq_len = 8, 6, 32, 64
    x, y = mqar_batch(16, seq_len, pairs, queries, vocab, seed=3)
    assert x.shape == y.shape == (16, seq_len) and x.dtype == y.dtype == torch.int64
    for row_x, row_y in zip(x.tolist(), y.tolist(), strict=True):
        keys, values = row_x[0 : 2 * pairs : 2], row_x[1 : 2 * pairs : 2]
        assert len(set(keys)) == pairs and all(1 <= k < vocab // 2 for k in keys)
        assert len(set(values)) == pairs and all(vocab // 2 <= v < vocab for v in values)
        table = dict(zip(keys, values, strict=True))
        positions = [t for t, v in enumerate(row_y) if v != IGNORE]
        assert len(positions) == queries and min(positions) >= 2 * pairs
        assert len({row_x[t] for t in positions}) == queries
        for t in positions:
            assert row_y[t] == table[row_x[t]]
            assert row_x[t + 1] == row_y[t] if t + 1 < seq_len else True
    x2, y2 = mqar_batch(16, seq_len, pairs, queries, vocab, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, mqar_batch(16, seq_len, pairs, queries, vocab, seed=4)[0])


def _one_hot_logits(targets: torch.Tensor, vocab: int = 259) -> torch.Tensor:
    logits = torch.zeros(*targets.shape, vocab)
    logits.scatter_(-1, targets.clamp(min=0).unsqueeze(-1), 1.0)
    return logits


def test_passkey_answer_and_depth() -> None:
    tok = ByteTokenizer()
    for depth in (0.0, 0.25, 0.5, 0.75, 1.0):
        ex = passkey_example(tok, 512, depth, "40719")
        assert len(ex.tokens) == 513
        text = tok.decode(ex.tokens)
        assert text.endswith("What is the pass key? The pass key is 40719")
        assert tok.decode(ex.tokens[ex.answer_start :]) == "40719"
        assert tok.decode(ex.tokens[ex.key_start :]).startswith("The pass key is 40719. Remember it.")
        assert abs(ex.key_start / ex.filler_tokens - depth) <= 25 / ex.filler_tokens
    assert passkey_example(tok, 512, 0.0, "40719").key_start == 0
    with pytest.raises(ValueError, match="too short"):
        passkey_example(tok, passkey_min_length(tok) - 1, 0.5, "12345")
    passkey_example(tok, passkey_min_length(tok), 0.5, "12345")


def test_passkey_batch_targets_and_accuracy() -> None:
    tok = ByteTokenizer()
    x, y = passkey_batch(tok, 300, 4, seed=7, depth=[0.0, 0.3, 0.6, 1.0])
    assert x.shape == y.shape == (4, 300)
    for b in range(4):
        answer = tok.decode(y[b][y[b] != IGNORE])
        assert len(answer) == 5 and answer.isdigit()
        assert f"The pass key is {answer}. Remember it. {answer} is the pass key." in tok.decode(x[b])
        assert (y[b, -5:] != IGNORE).all() and (y[b, :-5] == IGNORE).all()
    perfect = _one_hot_logits(y)
    assert accuracy(perfect, y) == 1.0
    wrong = perfect.clone()
    wrong[1, -2] = 0.0
    wrong[1, -2, 0] = 5.0
    assert sequence_correct(wrong, y).tolist() == [True, False, True, True]
    assert accuracy(wrong, y) == 0.75
    assert accuracy(wrong.argmax(-1), y) == 0.75
    mqx, mqy = mqar_batch(4, 64, 4, 4, 16, seed=0)
    assert accuracy(_one_hot_logits(mqy), mqy) == 1.0
    assert accuracy(torch.zeros(4, 64, 259), mqy) == 0.0


def test_synthetic_datasets() -> None:
    ds = make_dataset(DataConfig(source="mqar", seq_len=128, eval_lengths=[128, 256]))
    x, y = next(ds.train_batches(4, seed=1))
    assert ds.kind == "mqar" and x.shape == (4, 128) and (y != IGNORE).sum() == 4 * 16
    evals = list(ds.eval_batches(256, 2, 3))
    assert len(evals) == 3 and evals[0][0].shape == (2, 256)
    assert torch.equal(evals[1][0], list(ds.eval_batches(256, 2, 3))[1][0])

    pk = make_dataset(DataConfig(source="passkey", seq_len=200, eval_lengths=[200, 400]))
    x, y = next(pk.train_batches(3, seed=0))
    assert pk.kind == "passkey" and x.shape == (3, 200) and (y != IGNORE).sum() == 15
    (ex, ey), = list(pk.eval_batches(400, 5, 1))
    assert ex.shape == (5, 400)
    x2, _ = next(pk.train_batches(3, seed=0, start_step=0))
    assert torch.equal(x, x2), "synthetic training batches are a function of (seed, step)"


# --- cache ---------------------------------------------------------------------------------


def test_cache_hit_and_invalidation(_home: Path, tmp_path: Path) -> None:
    cfg = stdlib_cfg()
    first = ensure_cached(cfg)
    assert first.built and first.folder == _home / "cache"
    mtime = first.path("train").stat().st_mtime_ns
    second = ensure_cached(cfg)
    assert not second.built and second.key == first.key
    assert second.path("train").stat().st_mtime_ns == mtime
    meta = json.loads((first.folder / f"{first.key}.json").read_text())
    assert meta["dtype"] == "uint16" and meta["splits"]["train"]["tokens"] == len(second.load("train"))
    assert ensure_cached(stdlib_cfg(val_fraction=0.1)).key != first.key
    assert not list(first.folder.glob(".*tmp*"))

    (first.folder / f"{first.key}.json").write_text("{ half")
    assert ensure_cached(cfg).built
    with open(first.path("val"), "r+b") as handle:
        handle.truncate(10)
    assert ensure_cached(cfg).built

    f = tmp_path / "a.txt"
    f.write_text("hello world " * 100)
    files_cfg = DataConfig(source="files", files=[str(f)])
    key = ensure_cached(files_cfg).key
    f.write_text("changed text " * 100)
    os.utime(f, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    changed = ensure_cached(files_cfg)
    assert changed.built and changed.key != key


_CHILD = textwrap.dedent(
    """
    import hashlib, json, sys, time
    from pathlib import Path
    import sweeps.data.sources as sources
    from sweeps.data import DataConfig, ensure_cached

    orig = sources.iter_documents
    def slow(cfg):
        time.sleep(0.6)
        yield from orig(cfg)
    sources.iter_documents = slow

    barrier, me = Path(sys.argv[1]), sys.argv[2]
    (barrier / me).touch()
    while len(list(barrier.iterdir())) < 2:
        time.sleep(0.002)
    t0 = time.perf_counter()
    entry = ensure_cached(DataConfig(source="stdlib", max_bytes=int(sys.argv[3])))
    waited = time.perf_counter() - t0
    digest = {s: hashlib.sha256(entry.load(s).tobytes()).hexdigest() for s in ("train", "val")}
    print(json.dumps({"built": entry.built, "key": entry.key, "digest": digest, "seconds": waited}))
    """
)


def test_two_processes_build_once(_home: Path, tmp_path: Path) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "HYBRIDLAB_HOME": str(_home), "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(barrier), str(i), str(SMALL)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["key"] == results[1]["key"] and results[0]["digest"] == results[1]["digest"]
    assert min(r["seconds"] for r in results) > 0.4
    expected = ensure_cached(stdlib_cfg())
    assert not expected.built
    assert hashlib.sha256(expected.load("train").tobytes()).hexdigest() == results[0]["digest"]["train"]
    assert len(list((_home / "cache").glob("*.json"))) == 1


# --- loaders -------------------------------------------------------------------------------


def test_train_batches_deterministic_shifted_and_resumable() -> None:
    corpus = np.arange(10_000, dtype=np.uint16)
    stream = train_batches(corpus, 4, 32, seed=5)
    batches = [next(stream) for _ in range(3)]
    for x, y in batches:
        assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones_like(x))
    again = train_batches(corpus, 4, 32, seed=5)
    assert all(torch.equal(a[0], next(again)[0]) for a in batches)
    resumed = next(train_batches(corpus, 4, 32, seed=5, start_step=2))
    assert torch.equal(resumed[0], batches[2][0])
    assert not torch.equal(next(train_batches(corpus, 4, 32, seed=6))[0], batches[0][0])
    with pytest.raises(ValueError, match="fewer than seq_len"):
        next(train_batches(corpus[:32], 1, 32, seed=0))


def test_eval_batches_share_windows_across_lengths() -> None:
    corpus = np.arange(50_000, dtype=np.int32)
    short = list(eval_batches(corpus, 2, 64, 3, window=256))
    long = list(eval_batches(corpus, 2, 256, 3, window=256))
    assert len(short) == 3 and short[0][0].shape == (2, 64)
    for (xs, ys), (xl, yl) in zip(short, long, strict=True):
        assert torch.equal(xs, xl[:, :64]) and torch.equal(ys, yl[:, :64])
    assert long[-1][1][-1, -1].item() == 49_999
    with pytest.raises(ValueError, match="validation split"):
        list(eval_batches(corpus[:100], 1, 128, 1))


def test_corpus_dataset_interface() -> None:
    ds = make_dataset({"source": "stdlib", "max_bytes": SMALL, "seq_len": 64, "eval_lengths": [64, 128]})
    assert ds.vocab_size == 259 and ds.kind == "lm" and not ds.is_synthetic
    x, y = next(ds.train_batches(2, seed=0))
    assert x.shape == (2, 64) and int(x.max()) < ds.vocab_size
    (x64, _), = list(ds.eval_batch(64, 2, 1))
    (x128, _), = list(ds.eval_batches(128, 2, 1))
    assert torch.equal(x64, x128[:, :64])


def test_omegaconf_structured() -> None:
    from omegaconf import OmegaConf

    schema = OmegaConf.structured(DataConfig)
    cfg = OmegaConf.merge(schema, OmegaConf.from_dotlist(["source=mqar", "seq_len=128", "eval_lengths=[128]"]))
    assert make_dataset(cfg).kind == "mqar"
    with pytest.raises(Exception, match="seq_lenn"):
        OmegaConf.merge(schema, OmegaConf.from_dotlist(["seq_lenn=3"]))
    with pytest.raises(ValueError, match="unknown key"):
        make_dataset({"source": "stdlib", "seqlen": 4})


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"source": "stdlb"}, "data.source must be one of .* Did you mean 'stdlib'"),
        ({"eval_lengths": [128, 512]}, "data.eval_lengths must be all >= seq_len"),
        ({"eval_lengths": []}, "data.eval_lengths"),
        ({"seq_len": 1}, "data.seq_len"),
        ({"source": "files"}, "data.files must be a non-empty list"),
        ({"source": "hf"}, "data.hf_dataset must be"),
        ({"val_fraction": 0.0}, "data.val_fraction"),
        ({"max_bytes": 0}, "data.max_bytes"),
        ({"source": "mqar", "mqar_pairs": 16, "mqar_queries": 120}, "data.seq_len must be >= 2\\*mqar_pairs"),
        ({"source": "mqar", "mqar_pairs": 40, "mqar_vocab": 64}, "data.mqar_pairs must be at most"),
        ({"source": "mqar", "mqar_vocab": 1000}, "data.mqar_vocab"),
        ({"source": "passkey", "seq_len": 64, "eval_lengths": [64]}, "data.seq_len must be >= 101"),
        ({"source": "passkey", "passkey_depths": [0.5, 1.5]}, "data.passkey_depths"),
    ],
)
def test_validation_errors(overrides: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as err:
        validate(DataConfig(**overrides))
    head, _, fix = str(err.value).partition("; got ")
    assert head.startswith("data.") and ". " in fix


def test_defaults_validate() -> None:
    validate(DataConfig())
    for source in ("mqar", "passkey"):
        validate(DataConfig(source=source))

"""hybridlab data: tokenizers, corpus sources, the token cache, synthetic tasks and batch loaders.

Names follow design.md, "Data (names fixed)": tokenizer ``bytes`` (or a local HF tokenizer);
sources ``stdlib``, ``files``, ``hf``, ``mqar``, ``passkey``; tokenized corpora cached under
``HYBRIDLAB_HOME/cache``. ``make_dataset(cfg)`` is the entry point for the trainer.
"""

from .cache import CacheEntry, cache_key, ensure_cached, load_corpus
from .config import CORPUS_SOURCES, SOURCES, SYNTHETIC_SOURCES, DataConfig, validate
from .loader import (
    Batch,
    CorpusDataset,
    Dataset,
    MQARDataset,
    PasskeyDataset,
    as_data_config,
    eval_batches,
    make_dataset,
    train_batches,
)
from .sources import Document, SourceUnavailable, iter_documents, split_of, stdlib_files
from .synthetic import IGNORE, accuracy, mqar_batch, passkey_batch, passkey_example, sequence_correct
from .tokenizer import ByteTokenizer, HFTokenizer, Tokenizer, TokenizerUnavailable, get_tokenizer

__all__ = [
    "Batch",
    "ByteTokenizer",
    "CORPUS_SOURCES",
    "CacheEntry",
    "CorpusDataset",
    "DataConfig",
    "Dataset",
    "Document",
    "HFTokenizer",
    "IGNORE",
    "MQARDataset",
    "PasskeyDataset",
    "SOURCES",
    "SYNTHETIC_SOURCES",
    "SourceUnavailable",
    "Tokenizer",
    "TokenizerUnavailable",
    "accuracy",
    "as_data_config",
    "cache_key",
    "ensure_cached",
    "eval_batches",
    "get_tokenizer",
    "iter_documents",
    "load_corpus",
    "make_dataset",
    "mqar_batch",
    "passkey_batch",
    "passkey_example",
    "sequence_correct",
    "split_of",
    "stdlib_files",
    "train_batches",
    "validate",
]

"""Data for training: token shards on disk, tokenizers, the embedded Shakespeare corpus, the
documents of a preparation (``file_documents``, ``dataset_documents``) and ``prepare_data``
(those documents -> token shards + manifest)."""

from swat.data.corpus import default_data_dir, shakespeare_corpus
from swat.data.prepare import prepare_data
from swat.data.shards import (
    ShardWriter,
    TokenShards,
    read_manifest,
    token_dtype,
    write_manifest,
    write_split,
)
from swat.data.sources import Documents, dataset_documents, file_documents
from swat.data.tokenizer import load_tokenizer, train_bpe_tokenizer

__all__ = [
    "Documents",
    "ShardWriter",
    "TokenShards",
    "dataset_documents",
    "default_data_dir",
    "file_documents",
    "load_tokenizer",
    "prepare_data",
    "read_manifest",
    "shakespeare_corpus",
    "token_dtype",
    "train_bpe_tokenizer",
    "write_manifest",
    "write_split",
]

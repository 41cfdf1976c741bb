"""Data for training: token shards on disk, tokenizers, the embedded Shakespeare corpus, and
``prepare_data`` (text or a Hugging Face dataset -> token shards + manifest)."""

from swat.data.shards import (
    ShardWriter,
    TokenShards,
    read_manifest,
    token_dtype,
    write_manifest,
    write_split,
)

__all__ = ["ShardWriter", "TokenShards", "read_manifest", "token_dtype", "write_manifest", "write_split"]

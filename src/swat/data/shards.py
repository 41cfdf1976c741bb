"""Token shards on disk: the packed token stream of a prepared data directory.

A prepared data directory ``DIR`` holds::

    DIR/manifest.json        {"format": 1, "tokenizer": "tokenizer", "vocab_size": V, "eos_token_id": E,
                              "dtype": "uint16" | "uint32", "splits": {"train": {"shards": [...],
                              "tokens": N, "documents": D}, "heldout": {...}}, "source": {...}}
    DIR/tokenizer/           a saved Hugging Face tokenizer (``AutoTokenizer.from_pretrained``)
    DIR/train-00000.bin ...  raw little-endian token ids; every document is followed by one EOS

A split is read as one long stream, the concatenation of its shards in order; documents may
cross shard boundaries. A split prepared from text files also lists its documents' ``names``
in order. Every file is written under a temporary name and renamed into place,
and the manifest is written last, so a directory with a manifest is complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from swat.utils.io import atomic_write_json

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
DEFAULT_SHARD_TOKENS = 1 << 27  # 128M tokens: 256 MiB as uint16
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def token_dtype(vocab_size: int) -> str:
    """The on-disk dtype name for a vocabulary: ``uint16`` iff every id fits, else ``uint32``."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size > 1 << 32:
        raise ValueError(f"vocab_size {vocab_size} does not fit in uint32 token ids")
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a prepared data directory, checked for the fields readers rely on."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {data_dir} is not a prepared data directory (or its preparation "
            f"did not finish). Create one with `swat data prepare FILES... --out {data_dir}` or "
            f"`swat data shakespeare --out {data_dir}`."
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete {data_dir} and prepare it again") from e
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format {manifest.get('format')!r}, this version of swat reads format "
            f"{FORMAT_VERSION}; prepare the data again"
        )
    missing = [k for k in ("vocab_size", "eos_token_id", "dtype", "splits") if k not in manifest]
    if missing:
        raise ValueError(f"{path} lacks the fields {missing}; prepare the data again")
    if manifest["dtype"] not in _DTYPES:
        raise ValueError(f"{path} has dtype {manifest['dtype']!r}, expected one of {sorted(_DTYPES)}")
    return manifest


def write_manifest(data_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically. Call it after every shard it names is in place."""
    atomic_write_json(Path(data_dir) / MANIFEST_NAME, {"format": FORMAT_VERSION, **manifest})


def new_manifest(*, vocab_size: int, eos_token_id: int, tokenizer: str | None = "tokenizer",
                 source: dict[str, Any] | None = None) -> dict[str, Any]:
    """A manifest without splits. ``tokenizer`` is the tokenizer directory relative to the data
    directory, or None for synthetic token data that has no tokenizer."""
    if not 0 <= eos_token_id < vocab_size:
        raise ValueError(f"eos_token_id {eos_token_id} is outside the vocabulary [0, {vocab_size}): use an EOS id "
                         "that is one of the vocabulary's tokens")
    return {"format": FORMAT_VERSION, "tokenizer": tokenizer, "vocab_size": int(vocab_size),
            "eos_token_id": int(eos_token_id), "dtype": token_dtype(vocab_size), "splits": {},
            "source": source or {}}


class ShardWriter:
    """Streams documents of one split into ``{split}-00000.bin, ...`` of ``shard_tokens`` tokens
    each (the last one shorter), appending ``eos_token_id`` after every document. Each shard is
    written to a temporary name and renamed when full. Use as a context manager; ``close()``
    returns the split's manifest entry, which the caller puts into the manifest."""

    def __init__(self, data_dir: str | os.PathLike, split: str, *, vocab_size: int, eos_token_id: int,
                 shard_tokens: int = DEFAULT_SHARD_TOKENS):
        if shard_tokens <= 0:
            raise ValueError(f"shard_tokens must be positive, got {shard_tokens}")
        if not split or "/" in split or split.startswith("."):
            raise ValueError(f"invalid split name {split!r}: use a plain name such as 'train' or 'heldout'")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.split = split
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self.dtype = _DTYPES[token_dtype(vocab_size)]
        self.shard_tokens = shard_tokens
        self.shards: list[str] = []
        self.tokens = 0
        self.documents = 0
        self._file = None
        self._tmp: Path | None = None
        self._in_shard = 0
        self._eos = np.array([eos_token_id], dtype=self.dtype)

    def add(self, tokens: Iterable[int] | np.ndarray) -> None:
        """Append one document (its token ids, without EOS) and its EOS."""
        ids = np.asarray(tokens)
        if ids.ndim != 1:
            raise ValueError(f"a document must be a 1-D sequence of token ids, got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(
                f"document {self.documents} of split {self.split!r} has token ids in "
                f"[{ids.min()}, {ids.max()}], outside the vocabulary [0, {self.vocab_size})"
            )
        self._write(ids.astype(self.dtype, copy=False))
        self._write(self._eos)
        self.documents += 1

    def _write(self, ids: np.ndarray) -> None:
        while ids.size:
            if self._file is None:
                self._open_shard()
            take = min(ids.size, self.shard_tokens - self._in_shard)
            self._file.write(ids[:take].tobytes())
            self._in_shard += take
            self.tokens += take
            ids = ids[take:]
            if self._in_shard == self.shard_tokens:
                self._finish_shard()

    def _open_shard(self) -> None:
        name = f"{self.split}-{len(self.shards):05d}.bin"
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=f".{name}.", suffix=".tmp")
        self._file, self._tmp, self._in_shard = os.fdopen(fd, "wb"), Path(tmp), 0
        self.shards.append(name)

    def _finish_shard(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.data_dir / self.shards[-1])
        self._file = self._tmp = None

    def close(self) -> dict[str, Any]:
        """Finish the last shard; returns ``{"shards": [...], "tokens": N, "documents": D}``."""
        if self._file is not None:
            self._finish_shard()
        return {"shards": list(self.shards), "tokens": self.tokens, "documents": self.documents}

    def abort(self) -> None:
        """Drop the shard being written (finished shards stay; no manifest names them yet)."""
        if self._file is not None:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self.shards.pop()
            self._file = self._tmp = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_split(data_dir: str | os.PathLike, split: str, documents: Iterable[Iterable[int] | np.ndarray], *,
                vocab_size: int, eos_token_id: int, tokenizer: str | None = None,
                shard_tokens: int = DEFAULT_SHARD_TOKENS, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write one split of token documents (EOS appended to each) and add it to the manifest,
    creating the manifest if there is none. Returns the updated manifest.

    This is the simple way to build a data directory from token ids (tests, custom pipelines):
    ``write_split(d, "train", docs, vocab_size=V, eos_token_id=E)`` then the same for "heldout".
    """
    data_dir = Path(data_dir)
    if (data_dir / MANIFEST_NAME).is_file():
        manifest = read_manifest(data_dir)
        if (manifest["vocab_size"], manifest["eos_token_id"]) != (vocab_size, eos_token_id):
            raise ValueError(
                f"{data_dir} holds data with vocab_size={manifest['vocab_size']}, eos_token_id="
                f"{manifest['eos_token_id']}; cannot add split {split!r} with vocab_size={vocab_size}, "
                f"eos_token_id={eos_token_id}. Use another directory."
            )
        if manifest["splits"].pop(split, None) is not None:
            write_manifest(data_dir, manifest)  # the old split's shards are about to be overwritten
    else:
        manifest = new_manifest(vocab_size=vocab_size, eos_token_id=eos_token_id, tokenizer=tokenizer,
                                source=source)
    with ShardWriter(data_dir, split, vocab_size=vocab_size, eos_token_id=eos_token_id,
                     shard_tokens=shard_tokens) as writer:
        for doc in documents:
            writer.add(doc)
    manifest["splits"][split] = writer.close()
    write_manifest(data_dir, manifest)
    return manifest


class TokenShards:
    """Memory-mapped read access to one split of a prepared data directory, as one stream.

    >>> ts = TokenShards("data/shakespeare", "train")
    >>> x = ts.window(start, seq_len + 1)      # int64 token ids, may cross shard boundaries
    """

    def __init__(self, data_dir: str | os.PathLike, split: str):
        self.data_dir = Path(data_dir)
        self.split = split
        self.manifest = read_manifest(self.data_dir)
        splits = self.manifest["splits"]
        if split not in splits:
            raise ValueError(f"{self.data_dir} has no split {split!r}; it has {sorted(splits)}: prepare the data "
                             "again with `swat data prepare`, or pass a data directory that has it")
        self.vocab_size: int = self.manifest["vocab_size"]
        self.eos_token_id: int = self.manifest["eos_token_id"]
        self.dtype = _DTYPES[self.manifest["dtype"]]
        self.shard_paths = [self.data_dir / name for name in splits[split]["shards"]]
        sizes = [self._shard_tokens(p) for p in self.shard_paths]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        if int(self.offsets[-1]) != splits[split]["tokens"]:
            raise ValueError(
                f"split {split!r} of {self.data_dir}: the shards hold {int(self.offsets[-1])} tokens, the "
                f"manifest says {splits[split]['tokens']}; the directory is corrupt, prepare it again"
            )
        self._maps: list[np.memmap] | None = None

    def _shard_tokens(self, path: Path) -> int:
        if not path.is_file():
            raise FileNotFoundError(f"shard {path} named in the manifest is missing; prepare the data again")
        size = path.stat().st_size
        if size % self.dtype.itemsize:
            raise ValueError(f"shard {path} has {size} bytes, not a multiple of {self.dtype.itemsize} "
                             f"({self.manifest['dtype']}); the directory is corrupt, prepare it again")
        return size // self.dtype.itemsize

    @property
    def maps(self) -> list[np.memmap]:
        """The shards' memory maps, opened on first use (and again after unpickling)."""
        if self._maps is None:
            self._maps = [np.memmap(p, dtype=self.dtype, mode="r") for p in self.shard_paths]
        return self._maps

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}  # workers reopen the maps instead of copying data

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def documents(self) -> int:
        return self.manifest["splits"][self.split]["documents"]

    @property
    def document_names(self) -> list[str] | None:
        """The documents' names in stream order (text-file sources), else None."""
        return self.manifest["splits"][self.split].get("names")

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the stream as int64."""
        start, length = int(start), int(length)
        if start < 0 or length < 0 or start + length > len(self):
            raise IndexError(f"window [{start}, {start + length}) is outside split {self.split!r} "
                             f"of {len(self)} tokens")
        out = np.empty(length, dtype=np.int64)
        shard = int(np.searchsorted(self.offsets, start, side="right")) - 1
        filled = 0
        while filled < length:
            begin = start + filled - int(self.offsets[shard])
            take = min(length - filled, int(self.offsets[shard + 1] - self.offsets[shard]) - begin)
            out[filled:filled + take] = self.maps[shard][begin:begin + take]
            filled += take
            shard += 1
        return out

    def iter_chunks(self, chunk_tokens: int = 1 << 22) -> Iterator[np.ndarray]:
        """The whole stream in consecutive int64 chunks of at most ``chunk_tokens``."""
        for start in range(0, len(self), chunk_tokens):
            yield self.window(start, min(chunk_tokens, len(self) - start))

    def document_spans(self) -> np.ndarray:
        """``[D, 2]`` int64 ``(start, end)`` of every document, ``end`` exclusive and pointing at
        the document's EOS (so ``window(start, end - start)`` is the document without EOS)."""
        chunk, ends = 1 << 22, [np.zeros(0, dtype=np.int64)]
        for offset, ids in zip(range(0, len(self), chunk), self.iter_chunks(chunk), strict=True):
            ends.append(np.flatnonzero(ids == self.eos_token_id) + offset)
        end = np.concatenate(ends)
        start = np.concatenate([[0], end[:-1] + 1]) if end.size else end
        return np.stack([start, end], axis=1).astype(np.int64)

    def __repr__(self) -> str:
        return (f"TokenShards({str(self.data_dir)!r}, {self.split!r}: {len(self)} tokens, {self.documents} "
                f"documents, {len(self.shard_paths)} shards, vocab {self.vocab_size})")

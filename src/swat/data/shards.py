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

The manifest names files inside ``DIR`` only (no absolute path, no ``..``, no symlink out of it),
and carries a ``fingerprint`` of the tokenizer's files and the shards (their sizes and first and
last MiB) it was written with: a directory whose parts come from different preparations (two
processes, a copy over another) is refused before it is used (``check_fingerprint``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from swat.errors import UserError
from swat.utils.io import atomic_write_json, temp_file

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
DEFAULT_SHARD_TOKENS = 1 << 27  # 128M tokens: 256 MiB as uint16
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
_SAMPLE_BYTES = 1 << 20  # the fingerprint reads this much of each shard's start and end


def token_dtype(vocab_size: int) -> str:
    """The on-disk dtype name for a vocabulary: ``uint16`` iff every id fits, else ``uint32``."""
    if vocab_size <= 0:
        raise UserError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size > 1 << 32:
        raise UserError(f"vocab_size {vocab_size} does not fit in uint32 token ids")
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
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSON, or an int of 4300+ digits
        problem = "it nests too deep" if isinstance(e, RecursionError) else str(e).splitlines()[0]
        raise UserError(f"{path} is not valid JSON ({problem}); delete {data_dir} and prepare it again") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{path} holds a JSON {type(manifest).__name__}, not the object of a manifest; delete "
                        f"{data_dir} and prepare it again")
    if manifest.get("format") != FORMAT_VERSION:
        raise UserError(
            f"{path} has format {manifest.get('format')!r}, this version of swat reads format "
            f"{FORMAT_VERSION}; prepare the data again"
        )
    missing = [k for k in ("vocab_size", "eos_token_id", "dtype", "splits") if k not in manifest]
    if missing:
        raise UserError(f"{path} lacks the fields {missing}; prepare the data again")
    if manifest["dtype"] not in _DTYPES:
        raise UserError(f"{path} has dtype {manifest['dtype']!r}, expected one of {sorted(_DTYPES)}")
    problems = _schema_problems(manifest)
    if problems:
        raise UserError(f"{path} is not a manifest swat wrote: " + "; ".join(problems) + "; prepare the data again")
    if manifest["dtype"] != token_dtype(manifest["vocab_size"]):
        raise UserError(f"{path} says dtype {manifest['dtype']} for a vocabulary of {manifest['vocab_size']}, whose "
                        f"ids swat stores as {token_dtype(manifest['vocab_size'])}: the shards were written by "
                        "another program; prepare the data again")
    for name in _named_files(manifest):
        _confined(Path(data_dir), name, path)
    return manifest


def _int_problem(key: str, value: Any, low: int, high: int | None = None) -> list[str]:
    """``[message]`` when ``value`` is not an int in ``low .. high``, else ``[]``."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value and (high is None or value <= high):
        return []
    shown = repr(value) if not isinstance(value, int) or abs(value) < 10**18 else "a huge int"
    bounds = f">= {low}" if high is None else f"in {low} .. {high}"
    return [f"{key} must be an int {bounds}, got {shown}"]


def _schema_problems(manifest: dict[str, Any]) -> list[str]:
    """What is wrong with the types and ranges of a manifest's fields, one line per problem."""
    problems = _int_problem("vocab_size", manifest["vocab_size"], 1, 1 << 32)
    vocab = manifest["vocab_size"] if not problems else None
    problems += _int_problem("eos_token_id", manifest["eos_token_id"], 0, None if vocab is None else vocab - 1)
    if not isinstance(manifest.get("tokenizer"), str | None):
        problems.append(f"tokenizer must be the name of its directory (a string) or null, got {manifest['tokenizer']!r}")
    splits = manifest["splits"]
    if not isinstance(splits, dict):
        return [*problems, f"splits must be an object of split names (e.g. \"train\") to their shards, "
                           f"got a {type(splits).__name__}"]
    for split, info in splits.items():
        problems += _split_problems(split, info)
    return problems


def _split_problems(split: str, info: Any) -> list[str]:
    """What is wrong with one split's entry of a manifest."""
    if not isinstance(info, dict):
        return [f"splits.{split} must be an object (shards, tokens, documents), got a {type(info).__name__}"]
    problems = []
    missing = [key for key in ("shards", "tokens", "documents") if key not in info]
    if missing:
        problems.append(f"splits.{split} lacks {', '.join(missing)}")
    shards = info.get("shards", [])
    if not (isinstance(shards, list) and all(isinstance(name, str) for name in shards)):
        problems.append(f"splits.{split}.shards must be a list of file names, got {shards!r:.80}")
    for key in ("tokens", "documents"):
        if key in info:
            problems += _int_problem(f"splits.{split}.{key}", info[key], 0)
    names = info.get("names")
    if names is not None and not (isinstance(names, list) and all(isinstance(name, str) for name in names)
                                  and len(names) == info.get("documents")):
        problems.append(f"splits.{split}.names must be a list of one name (a string) per document")
    return problems


def _named_files(manifest: dict[str, Any]) -> list[str]:
    """The paths a manifest names: its tokenizer directory and every shard."""
    names = [manifest["tokenizer"]] if manifest.get("tokenizer") is not None else []
    return names + [name for _, info in sorted(manifest["splits"].items()) for name in info.get("shards", [])]


def _confined(data_dir: Path, name: Any, manifest_path: Path) -> Path:
    """``data_dir / name``, refused unless it stays inside ``data_dir`` (a relative path without
    ``..`` whose symlinks, if any, point inside too)."""
    path = Path(name) if isinstance(name, str) else None
    if path is None or not name or path.is_absolute() or ".." in path.parts \
            or not (data_dir / path).resolve().is_relative_to(data_dir.resolve()):
        raise UserError(f"{manifest_path} names {name!r}, which is not a file inside {data_dir} (an absolute path, "
                        "'..' or a symlink out of it): a manifest may only name files of its own directory; "
                        "prepare the data again")
    return data_dir / path


def data_fingerprint_of(data_dir: str | os.PathLike, manifest: dict[str, Any]) -> str:
    """A digest of the files a manifest names: every file of its tokenizer directory, and each
    shard's size with its first and last ``_SAMPLE_BYTES`` (enough to tell two preparations
    apart without reading a large corpus)."""
    data_dir, digest = Path(data_dir), hashlib.sha256()
    digest.update(json.dumps({k: manifest.get(k) for k in ("tokenizer", "vocab_size", "eos_token_id", "dtype",
                                                            "splits")}, sort_keys=True).encode())
    for name in _named_files(manifest):
        path = data_dir / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(f"{file.relative_to(data_dir)}:{file.stat().st_size if file.exists() else -1}\n".encode())
            if file.is_file():
                digest.update(_sampled(file))
    return digest.hexdigest()


def _sampled(file: Path) -> bytes:
    with open(file, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if size <= 2 * _SAMPLE_BYTES:
            return f.read()
        head = f.read(_SAMPLE_BYTES)
        f.seek(-_SAMPLE_BYTES, os.SEEK_END)
        return head + f.read()


def check_fingerprint(data_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """``UserError`` unless the tokenizer and shards in ``data_dir`` are the ones its manifest was
    written with (a manifest of an older swat, without a fingerprint, is taken as it is)."""
    saved = manifest.get("fingerprint")
    if saved is not None and saved != data_fingerprint_of(data_dir, manifest):
        raise UserError(f"{Path(data_dir) / MANIFEST_NAME} does not match the tokenizer and shards beside it (they "
                        "were written by another preparation, or changed since): prepare the data again, one "
                        "`swat data prepare` per --out at a time")


def write_manifest(data_dir: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically, with the fingerprint of the files it names. Call it
    after every shard it names and the tokenizer are in place."""
    manifest = {key: value for key, value in manifest.items() if key != "fingerprint"}
    manifest["fingerprint"] = data_fingerprint_of(data_dir, manifest)
    atomic_write_json(Path(data_dir) / MANIFEST_NAME, {"format": FORMAT_VERSION, **manifest})


def new_manifest(*, vocab_size: int, eos_token_id: int, tokenizer: str | None = "tokenizer",
                 source: dict[str, Any] | None = None) -> dict[str, Any]:
    """A manifest without splits. ``tokenizer`` is the tokenizer directory relative to the data
    directory, or None for synthetic token data that has no tokenizer."""
    if not 0 <= eos_token_id < vocab_size:
        raise UserError(f"eos_token_id {eos_token_id} is outside the vocabulary [0, {vocab_size}): use an EOS id "
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
            raise UserError(f"shard_tokens must be positive, got {shard_tokens}")
        if not split or "/" in split or split.startswith("."):
            raise UserError(f"invalid split name {split!r}: use a plain name such as 'train' or 'heldout'")
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
            raise UserError(f"a document must be a 1-D sequence of token ids, got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise UserError(
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
        fd, tmp = temp_file(self.data_dir, f".{name}.")
        self._file, self._tmp, self._in_shard = os.fdopen(fd, "wb"), tmp, 0
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
    A ``tokenizer`` directory is saved there first: the manifest's fingerprint covers it.
    """
    data_dir = Path(data_dir)
    if (data_dir / MANIFEST_NAME).is_file():
        manifest = read_manifest(data_dir)
        if (manifest["vocab_size"], manifest["eos_token_id"]) != (vocab_size, eos_token_id):
            raise UserError(
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
            raise UserError(f"{self.data_dir} has no split {split!r}; it has {sorted(splits)}: prepare the data "
                             "again with `swat data prepare`, or pass a data directory that has it")
        self.vocab_size: int = self.manifest["vocab_size"]
        self.eos_token_id: int = self.manifest["eos_token_id"]
        self.dtype = _DTYPES[self.manifest["dtype"]]
        self.shard_paths = [self.data_dir / name for name in splits[split]["shards"]]
        sizes = [self._shard_tokens(p) for p in self.shard_paths]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        if int(self.offsets[-1]) != splits[split]["tokens"]:
            raise UserError(
                f"split {split!r} of {self.data_dir}: the shards hold {int(self.offsets[-1])} tokens, the "
                f"manifest says {splits[split]['tokens']}; the directory is corrupt, prepare it again"
            )
        self._maps: list[np.memmap] | None = None
        check_fingerprint(self.data_dir, self.manifest)
        self._check_dtype()

    def _check_dtype(self) -> None:
        """Refuse shards whose ids are not of the manifest's dtype: every split ends with EOS, and
        uint32 ids read as uint16 show as a zero (their high half) at every odd position."""
        wrong = f"the shards of split {self.split!r} of {self.data_dir} are not {self.manifest['dtype']} token ids"
        if len(self) and int(self.window(len(self) - 1, 1)[0]) != self.eos_token_id:
            raise UserError(f"{wrong}: the split does not end with the EOS token {self.eos_token_id} that follows "
                            "every document; prepare the data again")
        head = self.window(0, min(len(self), 8192))
        if self.dtype.itemsize == 2 and head.size >= 64 and not head[1::2].any() and head[::2].any():
            raise UserError(f"{wrong}: every second id of its first {head.size} tokens is 0, as when uint32 ids "
                            "are read as uint16; prepare the data again")

    def _shard_tokens(self, path: Path) -> int:
        if not path.is_file():
            raise FileNotFoundError(f"shard {path} named in the manifest is missing; prepare the data again")
        size = path.stat().st_size
        if size % self.dtype.itemsize:
            raise UserError(f"shard {path} has {size} bytes, not a multiple of {self.dtype.itemsize} "
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

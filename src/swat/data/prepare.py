"""Text into token shards: ``prepare_data`` turns text files, directories of ``.txt`` files or a
Hugging Face dataset into a prepared data directory (``swat.data.shards`` describes the layout).

Each text file, or each row of a dataset, is one document; every document is followed by EOS.
Documents go to the ``train`` or ``heldout`` split whole: explicit held-out files, a held-out
dataset split, or a deterministic fraction of the documents (chosen by a hash of each document's
name or index, so the choice does not depend on ``num_proc`` or on the order of arrival).
A single text file with a held-out fraction is cut at a line break instead.

The tokenizer is either given (any Hugging Face tokenizer) or a byte-level BPE trained on the
training documents only; it is saved in ``DIR/tokenizer``. Re-running with the same inputs and
settings finds the same ``source`` fingerprint in the manifest and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from swat.data.shards import (
    DEFAULT_SHARD_TOKENS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ShardWriter,
    TokenShards,
    new_manifest,
    read_manifest,
    write_manifest,
)
from swat.data.tokenizer import encode_documents, load_tokenizer, train_bpe_tokenizer

SPLITS = ("train", "heldout")
TOKENIZER_DIR = "tokenizer"
DEFAULT_VOCAB_SIZE = 4096
DEFAULT_HELDOUT_FRACTION = 0.05
_BATCH_CHARS = 1 << 18


@dataclass
class Documents:
    """The documents of one preparation: ``texts()`` yields ``(is_heldout, text)`` in a fixed
    order (callable again for a second pass), ``count`` is their number when known, and
    ``fingerprint`` identifies the inputs for the no-op re-run check. ``names`` (text files
    only) names the documents in the order of ``texts()``; the manifest keeps them per split."""

    texts: Callable[[], Iterator[tuple[bool, str]]]
    count: int | None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    names: list[str] | None = None


def default_num_proc() -> int:
    return min(2, os.cpu_count() or 1)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_unit(key: str) -> float:
    """A uniform number in [0, 1) from a string, the same on every machine and run."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") / 2.0**64


def _heldout_keys(keys: Sequence[str], fraction: float) -> set[str]:
    """The ``round(fraction * n)`` keys (at least one, at most ``n - 1``) of smallest hash."""
    if fraction <= 0 or len(keys) < 2:
        return set()
    k = min(max(1, round(fraction * len(keys))), len(keys) - 1)
    return set(sorted(keys, key=_hash_unit)[:k])


def _check_fraction(fraction: float) -> None:
    if not 0 <= fraction < 1:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")


def expand_text_files(paths: Iterable[str | os.PathLike]) -> list[tuple[str, Path]]:
    """``(name, path)`` of every text file: files as given, directories expanded to their
    ``*.txt`` files (recursively, sorted); ``name`` is the path relative to the directory given."""
    files = []
    for item in paths:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise FileNotFoundError(f"directory {path} has no .txt files; give text files or a directory of them")
            files += [(str(p.relative_to(path)), p) for p in found]
        elif path.is_file():
            files.append((path.name, path))
        else:
            raise FileNotFoundError(f"{path} does not exist; give text files, directories of .txt files, "
                                    f"or a dataset with --dataset")
    names = [name for name, _ in files]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"several inputs have the same name {duplicated}; rename them or put them in one directory")
    return files


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}); convert it, e.g. `iconv -t UTF-8`") from e


def _split_tail(text: str, fraction: float) -> tuple[str, str]:
    """Cut one text after the last line break before ``(1 - fraction)`` of its length."""
    cut = int(len(text) * (1 - fraction))
    newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline > 0 else cut
    if not 0 < cut < len(text):
        raise ValueError(f"the text is too short ({len(text)} characters) to hold out a fraction {fraction} of "
                         f"it; pass --heldout-fraction 0 or held-out files")
    return text[:cut], text[cut:]


def file_documents(paths: Sequence[str | os.PathLike], *, heldout_files: Sequence[str | os.PathLike] = (),
                   heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> Documents:
    """Documents from text files and directories; held out: ``heldout_files`` if given (and
    removed from the training files, e.g. when a directory contains them), else a
    ``heldout_fraction`` of the files (or of the text, for a single file)."""
    _check_fraction(heldout_fraction)
    held = expand_text_files(heldout_files)
    held_paths = {p.resolve() for _, p in held}
    train = [(name, p) for name, p in expand_text_files(paths) if p.resolve() not in held_paths]
    if not train:
        raise ValueError("no training text files: every input file is also a held-out file")
    fingerprint = {"files": [[name, os.path.getsize(p), _sha256_file(p)] for name, p in train],
                   "heldout_files": [[name, os.path.getsize(p), _sha256_file(p)] for name, p in held]}
    if held:
        files = [(False, p) for _, p in train] + [(True, p) for _, p in held]
        names = [name for name, _ in train + held]
        return Documents(lambda: ((h, _read_text(p)) for h, p in files), len(files), fingerprint, names)
    fingerprint["heldout_fraction"] = heldout_fraction
    if len(train) == 1 and heldout_fraction > 0:
        def single() -> Iterator[tuple[bool, str]]:
            head, tail = _split_tail(_read_text(train[0][1]), heldout_fraction)
            yield False, head
            yield True, tail
        return Documents(single, 2, fingerprint, [train[0][0], f"{train[0][0]} (tail)"])
    chosen = _heldout_keys([name for name, _ in train], heldout_fraction)
    return Documents(lambda: ((name in chosen, _read_text(p)) for name, p in train), len(train), fingerprint,
                     [name for name, _ in train])


def load_text_dataset(name_or_path: str | os.PathLike, *, split: str = "train", config: str | None = None,
                      streaming: bool = False):
    """A ``datasets`` dataset from a directory saved with ``save_to_disk``, a local data file
    (.jsonl/.json/.csv/.parquet/.txt) or directory of them, or a hub name (online only)."""
    import datasets

    path = Path(name_or_path).expanduser()
    builders = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
    if not path.exists() and (str(name_or_path).startswith((".", "/", "~")) or path.suffix in builders):
        raise FileNotFoundError(f"dataset {str(name_or_path)!r} does not exist (a local path, not a hub name)")
    try:
        if path.is_dir() and any((path / f).is_file() for f in ("state.json", "dataset_dict.json")):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ValueError(f"{path} has splits {sorted(loaded)}, not {split!r}; choose one with --split")
                loaded = loaded[split]
            return loaded.to_iterable_dataset() if streaming else loaded
        if path.is_file():
            if path.suffix not in builders:
                raise ValueError(f"cannot read {path} as a dataset: use one of {sorted(builders)}")
            return datasets.load_dataset(builders[path.suffix], data_files=str(path), split="train",
                                         streaming=streaming)
        return datasets.load_dataset(str(name_or_path), config, split=split, streaming=streaming)
    except (FileNotFoundError, ConnectionError, OSError) as e:
        raise OSError(f"could not load the dataset {str(name_or_path)!r} (split {split!r}): {e}. A hub name "
                      f"needs network access; offline, give a local directory saved with save_to_disk or "
                      f"local data files.") from e


def _dataset_fingerprint(name_or_path: Any, split: str, config: str | None) -> dict[str, Any]:
    if not isinstance(name_or_path, (str, os.PathLike)):
        return {"object": getattr(name_or_path, "_fingerprint", None) or f"unhashable-{id(name_or_path)}"}
    path = Path(name_or_path).expanduser()
    if path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        return {"path": str(path.resolve()), "split": split,
                "files": [[str(p.relative_to(path)) if p != path else p.name, _sha256_file(p)] for p in files]}
    return {"hub": str(name_or_path), "config": config, "split": split}


def _dataset_texts(ds, text_column: str) -> Iterator[str]:
    names = ds.column_names
    if names is not None and text_column not in names:
        raise ValueError(f"the dataset has no column {text_column!r}; its columns are {names}: "
                         f"choose one with --text-column")
    for batch in ds.iter(batch_size=256):
        if text_column not in batch:
            raise ValueError(f"the dataset has no column {text_column!r}; its columns are {sorted(batch)}")
        for text in batch[text_column]:
            if not isinstance(text, str):
                raise ValueError(f"column {text_column!r} holds {type(text).__name__}, not text")
            yield text


def dataset_documents(dataset: Any, *, text_column: str = "text", split: str = "train",
                      config: str | None = None, streaming: bool = False, heldout_split: str | None = None,
                      heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> Documents:
    """Documents from a Hugging Face dataset (a ``Dataset``/``IterableDataset`` object or a name or
    path for ``load_text_dataset``), one per row of ``text_column``; held out: the rows of
    ``heldout_split`` if given, else a ``heldout_fraction`` of the rows (by a hash of the row index)."""
    _check_fraction(heldout_fraction)
    ds = dataset
    if isinstance(dataset, (str, os.PathLike)):
        ds = load_text_dataset(dataset, split=split, config=config, streaming=streaming)
    fingerprint = {"dataset": _dataset_fingerprint(dataset, split, config), "text_column": text_column,
                   "streaming": streaming}
    if heldout_split is not None:
        if not isinstance(dataset, (str, os.PathLike)):
            raise ValueError("heldout_split needs the dataset given by name or path; with a dataset object, "
                             "pass a held-out fraction")
        held = load_text_dataset(dataset, split=heldout_split, config=config, streaming=streaming)
        fingerprint["heldout_split"] = heldout_split

        def texts() -> Iterator[tuple[bool, str]]:
            yield from ((False, t) for t in _dataset_texts(ds, text_column))
            yield from ((True, t) for t in _dataset_texts(held, text_column))
        count = len(ds) + len(held) if hasattr(ds, "__len__") and hasattr(held, "__len__") else None
        return Documents(texts, count, fingerprint)
    fingerprint["heldout_fraction"] = heldout_fraction
    if hasattr(ds, "__len__"):
        chosen = _heldout_keys([str(i) for i in range(len(ds))], heldout_fraction)
        if heldout_fraction > 0 and not chosen:
            raise ValueError(f"the dataset has {len(ds)} row(s): too few to hold any out; pass a held-out "
                             f"fraction of 0 or a held-out split")
        return Documents(lambda: ((str(i) in chosen, t) for i, t in enumerate(_dataset_texts(ds, text_column))),
                         len(ds), fingerprint)
    return Documents(lambda: ((_hash_unit(str(i)) < heldout_fraction, t)
                              for i, t in enumerate(_dataset_texts(ds, text_column))), None, fingerprint)


_WORKER_TOKENIZER = None


def _init_worker(tokenizer_dir: str, single_threaded: bool = True) -> None:
    global _WORKER_TOKENIZER
    if single_threaded:  # one thread per worker process: num_proc is the parallelism
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_TOKENIZER = load_tokenizer(tokenizer_dir)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux (workers start in milliseconds; they only run the Rust tokenizer), spawn
    elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if sys.platform == "linux" and "fork" in methods else "spawn")


def _encode_batch(texts: list[str]) -> list[np.ndarray]:
    return [np.asarray(ids, dtype=np.int64) for ids in encode_documents(_WORKER_TOKENIZER, texts)]


def _batches(documents: Iterator[tuple[bool, str]]) -> Iterator[tuple[list[bool], list[str]]]:
    flags, texts, size = [], [], 0
    for heldout, text in documents:
        flags.append(heldout)
        texts.append(text)
        size += len(text)
        if size >= _BATCH_CHARS:
            yield flags, texts
            flags, texts, size = [], [], 0
    if texts:
        yield flags, texts


def _encoded(tokenizer_dir: Path, documents: Iterator[tuple[bool, str]],
             num_proc: int) -> Iterator[tuple[list[bool], list[np.ndarray]]]:
    """Encode batches of documents in ``num_proc`` worker processes, in order, with a bounded
    number of batches in flight (so streaming datasets are never read ahead without limit).
    ``num_proc=1`` encodes in this process (with the tokenizer's own threads)."""
    if num_proc <= 1:
        _init_worker(str(tokenizer_dir), single_threaded=False)
        for flags, texts in _batches(documents):
            yield flags, _encode_batch(texts)
        return
    with _pool_context().Pool(num_proc, _init_worker, (str(tokenizer_dir),)) as pool:
        pending: deque = deque()
        for flags, texts in _batches(documents):
            pending.append((flags, pool.apply_async(_encode_batch, (texts,))))
            if len(pending) >= 2 * num_proc:
                flags, result = pending.popleft()
                yield flags, result.get()
        while pending:
            flags, result = pending.popleft()
            yield flags, result.get()


def _save_tokenizer_atomically(tokenizer, out_dir: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{TOKENIZER_DIR}."))
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir / TOKENIZER_DIR, ignore_errors=True)
    os.replace(tmp, out_dir / TOKENIZER_DIR)


def _tokenizer_fingerprint(tokenizer) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{type(tokenizer).__name__}|{tokenizer.eos_token}|{vocab}".encode()).hexdigest()


def _is_up_to_date(out_dir: Path, source: dict[str, Any]) -> bool:
    if not (out_dir / MANIFEST_NAME).is_file():
        return False
    try:
        manifest = read_manifest(out_dir)
        if manifest.get("source") != source:
            return False
        for split in manifest["splits"]:
            TokenShards(out_dir, split)
        return (out_dir / TOKENIZER_DIR / "tokenizer_config.json").is_file()
    except (OSError, ValueError, KeyError):
        return False


def prepare_data(sources: Sequence[str | os.PathLike] = (), out_dir: str | os.PathLike = "data", *,
                 dataset: Any = None, text_column: str = "text", split: str = "train",
                 dataset_config: str | None = None, streaming: bool = False, heldout_split: str | None = None,
                 heldout_files: Sequence[str | os.PathLike] = (),
                 heldout_fraction: float = DEFAULT_HELDOUT_FRACTION, tokenizer: Any = None,
                 vocab_size: int = DEFAULT_VOCAB_SIZE, tokenizer_train_chars: int = 1 << 30,
                 num_proc: int | None = None, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                 progress: bool = True) -> dict[str, Any]:
    """Tokenize text files/directories (``sources``) or a Hugging Face ``dataset`` into
    ``out_dir`` (token shards of the ``train`` and ``heldout`` splits, the tokenizer, the
    manifest) and return the manifest.

    ``tokenizer``: a name, a path or a tokenizer object; None trains a byte-level BPE of
    ``vocab_size`` on (at most ``tokenizer_train_chars`` characters of) the training documents.
    ``num_proc`` tokenizing processes (default ``min(2, cpu count)``; where processes are
    spawned (macOS, Windows) a calling script needs the ``if __name__ == "__main__":`` guard).
    Re-running with the same inputs and settings is a no-op.
    """
    if bool(sources) == (dataset is not None):
        raise ValueError("give either text files/directories or a dataset (--dataset), not both or neither")
    out_dir = Path(out_dir).expanduser()
    num_proc = default_num_proc() if num_proc is None else max(1, int(num_proc))
    if dataset is not None:
        docs = dataset_documents(dataset, text_column=text_column, split=split, config=dataset_config,
                                 streaming=streaming, heldout_split=heldout_split, heldout_fraction=heldout_fraction)
    else:
        docs = file_documents(sources, heldout_files=heldout_files, heldout_fraction=heldout_fraction)

    loaded = None
    if tokenizer is None:
        tokenizer_source: dict[str, Any] = {"train_bpe": {"vocab_size": vocab_size, "max_chars": tokenizer_train_chars}}
    else:
        loaded = tokenizer if hasattr(tokenizer, "get_vocab") else load_tokenizer(tokenizer)
        if loaded.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token, which separates documents; set one first")
        tokenizer_source = {"given": _tokenizer_fingerprint(loaded)}
    source = {"format": FORMAT_VERSION, "inputs": docs.fingerprint, "tokenizer": tokenizer_source,
              "shard_tokens": shard_tokens}
    if _is_up_to_date(out_dir, source):
        print(f"{out_dir} is up to date (same inputs and settings): nothing to do")
        return read_manifest(out_dir)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # incomplete until the new manifest is written
    if loaded is None:
        loaded = _train_tokenizer(docs, vocab_size, tokenizer_train_chars, progress)
    _save_tokenizer_atomically(loaded, out_dir)
    manifest = new_manifest(vocab_size=len(loaded), eos_token_id=loaded.eos_token_id, tokenizer=TOKENIZER_DIR,
                            source=source)
    manifest["splits"] = _write_splits(out_dir, docs, manifest, num_proc, shard_tokens, progress)
    write_manifest(out_dir, manifest)
    _remove_stale_shards(out_dir, manifest)
    for name, info in manifest["splits"].items():
        print(f"{name}: {info['documents']} documents, {info['tokens']:,} tokens in {len(info['shards'])} shard(s)")
    print(f"wrote {out_dir} (vocab {manifest['vocab_size']}, {manifest['dtype']})")
    return read_manifest(out_dir)


def _train_tokenizer(docs: Documents, vocab_size: int, max_chars: int, progress: bool):
    def train_texts() -> Iterator[str]:
        seen = 0
        for heldout, text in docs.texts():
            if not heldout:
                yield text[:max_chars - seen]
                seen += len(text)
                if seen >= max_chars:
                    return
    print(f"training a byte-level BPE tokenizer ({vocab_size} entries) on the training documents")
    return train_bpe_tokenizer(train_texts(), vocab_size, show_progress=progress)


def _write_splits(out_dir: Path, docs: Documents, manifest: dict[str, Any], num_proc: int, shard_tokens: int,
                  progress: bool) -> dict[str, Any]:
    writers = {name: ShardWriter(out_dir, name, vocab_size=manifest["vocab_size"],
                                 eos_token_id=manifest["eos_token_id"], shard_tokens=shard_tokens)
               for name in SPLITS}
    names: dict[str, list[str]] = {name: [] for name in SPLITS}
    next_name = iter(docs.names or ())
    bar = tqdm(total=docs.count, unit="doc", desc=f"tokenizing ({num_proc} proc)", disable=not progress)
    try:
        for flags, encoded in _encoded(out_dir / TOKENIZER_DIR, docs.texts(), num_proc):
            for heldout, ids in zip(flags, encoded, strict=True):
                split = "heldout" if heldout else "train"
                writers[split].add(ids)
                if docs.names:
                    names[split].append(next(next_name))
            bar.update(len(flags))
            bar.set_postfix_str(f"{sum(w.tokens for w in writers.values()):,} tokens")
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        bar.close()
    splits = {name: writer.close() for name, writer in writers.items()}
    if docs.names:
        for name in SPLITS:
            splits[name]["names"] = names[name]
    if splits["train"]["documents"] == 0:
        raise ValueError("no training documents: every document went to the held-out split")
    return splits


def _remove_stale_shards(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Delete shard files of an earlier preparation that the new manifest no longer names, and
    temporary files left by an interrupted one."""
    keep = {name for info in manifest["splits"].values() for name in info["shards"]}
    for path in out_dir.glob("*-[0-9][0-9][0-9][0-9][0-9].bin"):
        if path.name not in keep and path.name.split("-")[0] in SPLITS:
            path.unlink()
    for path in out_dir.glob(".*.tmp"):
        path.unlink()
    for path in out_dir.glob(f".{TOKENIZER_DIR}.*"):
        shutil.rmtree(path, ignore_errors=True)

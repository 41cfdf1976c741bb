"""Text into token shards: ``prepare_data`` turns text files, directories of ``.txt`` files or a
Hugging Face dataset into a prepared data directory (``swat.data.shards`` describes the layout).

The jobs, in order: ``swat.data.sources`` finds the documents and their split and fingerprints
the inputs; a re-run with the same fingerprint and settings finds it in the manifest and does
nothing; the tokenizer is given (any Hugging Face tokenizer) or a byte-level BPE trained on the
training documents only, saved in ``DIR/tokenizer``; ``datasets``' ``map`` tokenizes (in
``num_proc`` processes, in order); ``ShardWriter`` writes the shards, the manifest last.

One preparation at a time per directory: it holds ``DIR/.lock`` (``flock``, dropped by the
operating system when the process ends, however it ends). ``DIR/.swat-data`` marks a directory
swat prepared: only such a directory (or an empty one) is prepared into without ``--overwrite``,
and only the files a preparation writes are ever replaced or deleted there.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from swat.data.shards import (
    DEFAULT_SHARD_TOKENS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ShardWriter,
    TokenShards,
    check_fingerprint,
    new_manifest,
    read_manifest,
    write_manifest,
)
from swat.data.sources import DEFAULT_HELDOUT_FRACTION, Documents, document_texts, file_documents
from swat.data.tokenizer import encode_documents, load_tokenizer, tokenizer_fingerprint, train_bpe_tokenizer
from swat.errors import UserError
from swat.utils.io import ExclusiveLock, atomic_write_json, naming_full_disk, temp_dir, umask_modes

SPLITS = ("train", "heldout")
TOKENIZER_DIR = "tokenizer"
PREPARING = ".swat-preparing"  # present while a preparation is under way or was interrupted
MARKER = ".swat-data"  # a directory swat prepared (its preparation's identity)
LOCK = ".lock"  # held (flock) by the process preparing the directory
DEFAULT_VOCAB_SIZE = 4096
_ROWS_PER_BATCH = 64


def default_num_proc() -> int:
    return min(2, os.cpu_count() or 1)


def prepare_data(inputs: Documents | Sequence[str | os.PathLike], out_dir: str | os.PathLike = "data", *,
                 heldout_files: Sequence[str | os.PathLike] = (), heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
                 tokenizer: Any = None, vocab_size: int = DEFAULT_VOCAB_SIZE, tokenizer_train_chars: int = 1 << 30,
                 num_proc: int | None = None, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                 progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Tokenize ``inputs`` into ``out_dir`` (token shards of the ``train`` and ``heldout`` splits,
    the tokenizer, the manifest) and return the manifest. ``inputs``: text files and directories
    (held out: ``heldout_files``, else a ``heldout_fraction``; see ``sources.file_documents``),
    or the ``Documents`` of a Hugging Face dataset (``sources.dataset_documents``).

    ``tokenizer``: a name, a path or a tokenizer object; None trains a byte-level BPE of
    ``vocab_size`` on (at most ``tokenizer_train_chars`` characters of) the training documents.
    ``num_proc`` tokenizing processes (default ``min(2, cpu count)``; a streamed dataset is
    tokenized in this process, by the tokenizer's own threads). Re-running with the same inputs
    and settings is a no-op.

    ``out_dir`` must be new, empty or an earlier output of ``prepare_data`` (``overwrite``:
    any directory); only the files a preparation writes are ever replaced or deleted there.
    """
    if isinstance(inputs, Documents):
        if heldout_files:
            raise UserError("heldout_files are for text-file inputs; a dataset's held-out rows are chosen by "
                             "dataset_documents (heldout_split or heldout_fraction)")
        docs = inputs
    elif not inputs:
        raise UserError("nothing to prepare: give text files or directories of .txt files, or a dataset (--dataset)")
    else:
        docs = file_documents(inputs, heldout_files=heldout_files, heldout_fraction=heldout_fraction)
    out_dir = Path(out_dir).expanduser()
    num_proc = default_num_proc() if num_proc is None else max(1, int(num_proc))

    loaded = None
    if tokenizer is None:
        tokenizer_source: dict[str, Any] = {"train_bpe": {"vocab_size": vocab_size, "max_chars": tokenizer_train_chars}}
    else:
        loaded = tokenizer if hasattr(tokenizer, "get_vocab") else load_tokenizer(tokenizer)
        if loaded.eos_token_id is None:
            raise UserError("the tokenizer has no eos_token, which separates documents; set one first")
        if not 0 <= loaded.eos_token_id < len(loaded):
            raise UserError(f"the tokenizer's eos_token_id {loaded.eos_token_id} is outside its vocabulary of "
                             f"{len(loaded)} entries: give a tokenizer whose eos_token is one of its tokens")
        tokenizer_source = {"given": tokenizer_fingerprint(loaded)}
    source = {"format": FORMAT_VERSION, "inputs": docs.fingerprint, "tokenizer": tokenizer_source,
              "shard_tokens": shard_tokens}
    done = _is_up_to_date(out_dir, source)  # whole and fingerprinted: nothing to write, no lock needed
    manifest = None if done else _prepare_locked(out_dir, overwrite, source, lambda: _prepare_into(
        out_dir, docs, loaded, source, vocab_size, tokenizer_train_chars, num_proc, shard_tokens, progress))
    if manifest is None:
        print(f"{out_dir} is up to date (same inputs and settings): nothing to do")
        return read_manifest(out_dir)
    for name, info in manifest["splits"].items():
        print(f"{name}: {info['documents']} documents, {info['tokens']:,} tokens in {len(info['shards'])} shard(s)")
    print(f"wrote {out_dir} (vocab {manifest['vocab_size']}, {manifest['dtype']})")
    return manifest


def _prepare_locked(out_dir: Path, overwrite: bool, source: dict[str, Any],
                    prepare: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """``prepare()`` under the directory's lock, after refusing a directory that is not swat's;
    None if another preparation made it up to date (``source``) meanwhile."""
    _refuse_foreign(out_dir, overwrite)  # before the lock, which adds a file there
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExclusiveLock(out_dir / LOCK, f"{out_dir} is being prepared by another process (pid {{pid}}): wait for it "
                                       "to finish, or choose another --out"):
        _refuse_foreign(out_dir, overwrite)  # again, under the lock: another process may have written meanwhile
        if _is_up_to_date(out_dir, source):
            return None
        with naming_full_disk(f"the disk is full (preparing {out_dir}): free space and run the same command again"):
            return prepare()


def _prepare_into(out_dir: Path, docs: Documents, loaded: Any, source: dict[str, Any], vocab_size: int,
                  tokenizer_train_chars: int, num_proc: int, shard_tokens: int, progress: bool) -> dict[str, Any]:
    """The preparation itself, under the directory's lock: mark the directory, write the
    tokenizer and the shards, the manifest last, then delete what an earlier preparation left."""
    if not (out_dir / MARKER).is_file():
        atomic_write_json(out_dir / MARKER, {"swat_data": uuid.uuid4().hex})
    (out_dir / PREPARING).write_text(f"{os.getpid()}\n")
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # incomplete until the new manifest is written
    if loaded is None:
        loaded = _train_tokenizer(docs, vocab_size, tokenizer_train_chars, progress)
    _save_tokenizer_atomically(loaded, out_dir)
    manifest = new_manifest(vocab_size=len(loaded), eos_token_id=loaded.eos_token_id, tokenizer=TOKENIZER_DIR,
                            source=source)
    manifest["splits"] = _write_splits(out_dir, docs, loaded, manifest, num_proc, shard_tokens, progress)
    write_manifest(out_dir, manifest)
    (out_dir / PREPARING).unlink()
    _remove_stale_files(out_dir, read_manifest(out_dir))
    return read_manifest(out_dir)


def _training_texts(docs: Documents, max_chars: int) -> Iterator[str]:
    """The training documents, ``max_chars`` characters of them at most."""
    seen = 0
    for batch in docs.rows.iter(batch_size=_ROWS_PER_BATCH):
        for heldout, text in zip(batch["heldout"], document_texts(batch), strict=True):
            if not heldout:
                yield text[:max_chars - seen]
                seen += len(text)
                if seen >= max_chars:
                    return


def _train_tokenizer(docs: Documents, vocab_size: int, max_chars: int, progress: bool):
    print(f"training a byte-level BPE tokenizer ({vocab_size} entries) on the training documents")
    return train_bpe_tokenizer(_training_texts(docs, max_chars), vocab_size, show_progress=progress)


def _encode(batch: dict[str, list], tokenizer) -> dict[str, list]:
    texts = document_texts(batch)
    for text in texts:
        if not isinstance(text, str):
            raise UserError(f"a document is {type(text).__name__}, not text: choose the text column with "
                             "--text-column")
    return {"input_ids": encode_documents(tokenizer, texts)}


def _tokenized(docs: Documents, tokenizer, num_proc: int, work_dir: Path,
               progress: bool) -> Iterator[tuple[bool, list[int]]]:
    """``(heldout, token ids)`` of every document, in order: ``docs.rows.map(_encode)``, in
    ``num_proc`` processes for a map-style dataset, its output in Arrow files under ``work_dir``."""
    rows = docs.rows
    options: dict[str, Any] = {"batched": True, "batch_size": _ROWS_PER_BATCH, "fn_kwargs": {"tokenizer": tokenizer}}
    if isinstance(rows, datasets.Dataset):
        if num_proc > 1:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the processes are the parallelism
        options.update(num_proc=num_proc if num_proc > 1 else None, desc=f"tokenizing ({num_proc} proc)",
                       remove_columns=[c for c in rows.column_names if c != "heldout"],
                       cache_file_name=str(work_dir / "tokens.arrow"))
    enabled = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        encoded = rows.map(_encode, **options)
        for batch in encoded.select_columns(["heldout", "input_ids"]).iter(batch_size=_ROWS_PER_BATCH):
            yield from zip(batch["heldout"], batch["input_ids"], strict=True)
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _write_splits(out_dir: Path, docs: Documents, tokenizer, manifest: dict[str, Any], num_proc: int,
                  shard_tokens: int, progress: bool) -> dict[str, Any]:
    writers = {name: ShardWriter(out_dir, name, vocab_size=manifest["vocab_size"],
                                 eos_token_id=manifest["eos_token_id"], shard_tokens=shard_tokens)
               for name in SPLITS}
    names: dict[str, list[str]] = {name: [] for name in SPLITS}
    work_dir = temp_dir(out_dir, ".tokenized.")
    try:
        for index, (heldout, ids) in enumerate(_tokenized(docs, tokenizer, num_proc, work_dir, progress)):
            split = "heldout" if heldout else "train"
            writers[split].add(np.asarray(ids, dtype=np.int64))
            if docs.names:
                names[split].append(docs.names[index])
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    splits = {name: writer.close() for name, writer in writers.items()}
    if docs.names:
        for name in SPLITS:
            splits[name]["names"] = names[name]
    train = splits["train"]
    if train["documents"] == 0:
        raise UserError("no training documents: every document went to the held-out split")
    if train["tokens"] == train["documents"]:  # nothing but the EOS after each document
        raise UserError(f"the {train['documents']} training document(s) hold no text (empty files or rows): "
                         "give non-empty text")
    return splits


def _save_tokenizer_atomically(tokenizer, out_dir: Path) -> None:
    tmp = temp_dir(out_dir, f".{TOKENIZER_DIR}.")
    tokenizer.save_pretrained(tmp)
    for module in tmp.glob("*.py"):  # code a tokenizer class copied along: never into a data directory
        module.unlink()
    umask_modes(tmp)
    shutil.rmtree(out_dir / TOKENIZER_DIR, ignore_errors=True)
    os.replace(tmp, out_dir / TOKENIZER_DIR)


def _is_up_to_date(out_dir: Path, source: dict[str, Any]) -> bool:
    if not (out_dir / MANIFEST_NAME).is_file():
        return False
    try:
        manifest = read_manifest(out_dir)
        if manifest.get("source") != source:
            return False
        if manifest.get("fingerprint") is None:
            return False  # an older swat's: prepared again, with a fingerprint
        check_fingerprint(out_dir, manifest)
        for split in manifest["splits"]:
            TokenShards(out_dir, split)
        return (out_dir / TOKENIZER_DIR / "tokenizer_config.json").is_file()
    except (OSError, ValueError, KeyError):
        return False


def _own_files(out_dir: Path) -> list[Path]:
    """What a preparation writes in ``out_dir``: the manifest, the tokenizer, the shards of its
    splits, and its temporaries."""
    patterns = [MANIFEST_NAME, TOKENIZER_DIR, PREPARING, f".{MANIFEST_NAME}.*.tmp", f".{TOKENIZER_DIR}.*.tmp",
                ".tokenized.*.tmp", f".{MARKER}.*.tmp"]
    patterns += [p for split in SPLITS for p in (f"{split}-[0-9][0-9][0-9][0-9][0-9].bin",
                                                 f".{split}-[0-9][0-9][0-9][0-9][0-9].bin.*.tmp")]
    return sorted({path for pattern in patterns for path in out_dir.glob(pattern)})


def _refuse_foreign(out_dir: Path, overwrite: bool) -> None:
    """Refuse an ``out_dir`` that holds files but is not an output of ``prepare_data`` (unless
    ``overwrite``: then only the files a preparation writes are replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file, not a data directory: choose another --out")
    if out_dir.is_dir() and not overwrite and not _is_own_output(out_dir):
        found = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK)
        if found:
            raise FileExistsError(f"{out_dir} is not empty and holds no prepared data (it holds {found[:5]}): "
                                  "choose an empty or new --out, or pass --overwrite to prepare there (only the "
                                  "files a preparation writes are replaced; others are kept)")


def _is_own_output(out_dir: Path) -> bool:
    """A directory swat prepared: its marker, or (prepared by an older swat) a preparation's
    in-progress mark or a manifest."""
    if (out_dir / MARKER).is_file() or (out_dir / PREPARING).is_file():
        return True
    try:
        read_manifest(out_dir)
    except (OSError, ValueError):
        return False
    return True


def _remove_stale_files(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Delete the files of an earlier preparation that the new manifest no longer names, and
    the temporaries of an interrupted one; nothing else."""
    keep = {MANIFEST_NAME, TOKENIZER_DIR, MARKER, *(name for info in manifest["splits"].values() for name in info["shards"])}
    for path in _own_files(out_dir):
        if path.name in keep:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

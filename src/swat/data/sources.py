"""Which documents a preparation reads, and which of them are held out.

Each text file, or each row of a Hugging Face dataset, is one document. Documents go to the
``train`` or ``heldout`` split whole: explicit held-out files, a held-out dataset split, or a
deterministic fraction of the documents (chosen by a hash of each document's name or index, so
the choice does not depend on ``num_proc`` or on the order of arrival). A single text file with
a held-out fraction is cut at a line break instead.

Either way the result is a :class:`Documents`: a ``datasets`` dataset with a ``heldout`` flag per
row and the document in a ``text`` column (or, for text files, the file in a ``path`` column,
read when it is tokenized), plus the fingerprint of the inputs for the no-op re-run check.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from swat.errors import UserError
from swat.utils.text import read_text

DEFAULT_HELDOUT_FRACTION = 0.05


@dataclass
class Documents:
    """The documents of one preparation, in order: ``rows`` has a bool ``heldout`` column and a
    ``text`` (the document) or ``path`` (a UTF-8 file holding it) column; a ``datasets.Dataset``
    or, when streaming, a ``datasets.IterableDataset``. ``fingerprint`` identifies the inputs;
    ``names`` (text files only) names the rows, and the manifest keeps them per split."""

    rows: datasets.Dataset | datasets.IterableDataset
    fingerprint: dict[str, Any] = field(default_factory=dict)
    names: list[str] | None = None


def document_texts(batch: dict[str, list]) -> list[str]:
    """The documents of a batch of ``Documents.rows``: the ``text`` column, or the files of ``path``."""
    if "path" in batch:
        return [read_text(Path(path)) for path in batch["path"]]
    return batch["text"]


def _sha256_file(path: Path, text: bool = False) -> str:
    """The SHA-256 of a file; with ``text``, checked on the way to be UTF-8 text (not binary)."""
    digest, decoder, offset = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            if not text:
                continue
            if b"\0" in block:
                raise UserError(f"{path} is binary, not text (a NUL byte at offset {offset + block.index(0)}): "
                                 "remove it from the inputs, or extract its text first")
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                raise UserError(f"{path} is not UTF-8 text (near byte {offset + e.start}); convert it, e.g. "
                                 "`iconv -t UTF-8`, or remove it from the inputs") from None
            offset += len(block)
    try:
        decoder.decode(b"", final=text)
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text (it ends inside a character); convert it, e.g. "
                         "`iconv -t UTF-8`") from None
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
        raise UserError(f"the held-out fraction must be in [0, 1), got {fraction}: pass e.g. "
                         f"--heldout-fraction {DEFAULT_HELDOUT_FRACTION}")


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
        raise UserError(f"several inputs have the same name {duplicated}; rename them or put them in one directory")
    return files


def _split_tail(text: str, fraction: float) -> tuple[str, str]:
    """Cut one text after the last line break before ``(1 - fraction)`` of its length."""
    cut = int(len(text) * (1 - fraction))
    newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline > 0 else cut
    if not 0 < cut < len(text):
        raise UserError(f"the text is too short ({len(text)} characters) to hold out a fraction {fraction} of "
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
        raise UserError("no training text files: every input file is also a held-out file")
    fingerprint = {"files": [[name, os.path.getsize(p), _sha256_file(p, text=True)] for name, p in train],
                   "heldout_files": [[name, os.path.getsize(p), _sha256_file(p, text=True)] for name, p in held]}
    if held:
        rows = _file_rows([p for _, p in train + held], [False] * len(train) + [True] * len(held))
        return Documents(rows, fingerprint, [name for name, _ in train + held])
    fingerprint["heldout_fraction"] = heldout_fraction
    if len(train) == 1 and heldout_fraction > 0:
        head, tail = _split_tail(read_text(train[0][1]), heldout_fraction)
        rows = datasets.Dataset.from_dict({"text": [head, tail], "heldout": [False, True]})
        return Documents(rows, fingerprint, [train[0][0], f"{train[0][0]} (tail)"])
    chosen = _heldout_keys([name for name, _ in train], heldout_fraction)
    rows = _file_rows([p for _, p in train], [name in chosen for name, _ in train])
    return Documents(rows, fingerprint, [name for name, _ in train])


def _file_rows(paths: list[Path], heldout: list[bool]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"path": [str(p) for p in paths], "heldout": heldout})


def load_text_dataset(name_or_path: str | os.PathLike, *, split: str = "train", config: str | None = None,
                      streaming: bool = False):
    """A ``datasets`` dataset from a directory saved with ``save_to_disk``, a local data file
    (.jsonl/.json/.csv/.parquet/.txt) or directory of them, or a hub name (online only)."""
    path = Path(name_or_path).expanduser()
    builders = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
    if not path.exists() and (str(name_or_path).startswith((".", "/", "~")) or path.suffix in builders):
        raise FileNotFoundError(f"dataset {str(name_or_path)!r} does not exist (a local path, not a hub name)")
    try:
        if path.is_dir() and any((path / f).is_file() for f in ("state.json", "dataset_dict.json")):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise UserError(f"{path} has splits {sorted(loaded)}, not {split!r}; choose one with --split")
                loaded = loaded[split]
            return loaded.to_iterable_dataset() if streaming else loaded
        if path.is_file():
            if path.suffix not in builders:
                raise UserError(f"cannot read {path} as a dataset: use one of {sorted(builders)}")
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


def _text_rows(ds: datasets.Dataset | datasets.IterableDataset, text_column: str):
    """The ``text_column`` of ``ds`` alone, as a column named ``text``."""
    names = ds.column_names
    if names is not None and text_column not in names:
        raise UserError(f"the dataset has no column {text_column!r}; its columns are {names}: "
                         f"choose one with --text-column")
    feature = (ds.features or {}).get(text_column)
    if feature is not None and getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise UserError(f"column {text_column!r} holds {feature}, not text: choose another with --text-column")
    ds = ds.select_columns([text_column])
    return ds if text_column == "text" else ds.rename_column(text_column, "text")


def _flagged(ds: datasets.Dataset | datasets.IterableDataset, heldout: Any):
    """``ds`` with a ``heldout`` column: ``heldout`` is a bool for every row, or a function of the row index."""
    flag = heldout if callable(heldout) else (lambda _: heldout)
    if isinstance(ds, datasets.Dataset):
        return ds.add_column("heldout", [bool(flag(i)) for i in range(len(ds))])
    return ds.map(lambda _, i: {"heldout": bool(flag(i))}, with_indices=True)


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
            raise UserError("heldout_split needs the dataset given by name or path; with a dataset object, "
                             "pass a held-out fraction")
        held = load_text_dataset(dataset, split=heldout_split, config=config, streaming=streaming)
        fingerprint["heldout_split"] = heldout_split
        rows = datasets.concatenate_datasets([_flagged(_text_rows(ds, text_column), False),
                                              _flagged(_text_rows(held, text_column), True)])
        return Documents(rows, fingerprint)
    fingerprint["heldout_fraction"] = heldout_fraction
    rows = _text_rows(ds, text_column)
    if isinstance(rows, datasets.Dataset):
        chosen = _heldout_keys([str(i) for i in range(len(rows))], heldout_fraction)
        if heldout_fraction > 0 and not chosen:
            raise UserError(f"the dataset has {len(rows)} row(s): too few to hold any out; pass a held-out "
                             f"fraction of 0 or a held-out split")
        return Documents(_flagged(rows, lambda i: str(i) in chosen), fingerprint)
    return Documents(_flagged(rows, lambda i: _hash_unit(str(i)) < heldout_fraction), fingerprint)

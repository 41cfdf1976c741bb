"""The package's dependency direction, as the folder names promise: a package imports only from
packages below it, and no module imports swat code inside a function to dodge a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import swat

ORDER = ("utils", "ops", "layers", "models", "inference", "data", "training", "evaluation", "experiments", "cli")
ROOT = Path(swat.__file__).parent
OPTIONAL_DEPENDENCIES = ("triton", "lm_eval")
BASE = ("errors",)  # top-level modules below every package (swat.errors: the one user-error type)


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node, [node.module or ""]


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        yield path, ast.parse(path.read_text())


def test_every_package_has_a_place_in_the_order():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ORDER)


def test_no_package_imports_from_a_package_above_it():
    upward = []
    for path, tree in _modules():
        parts = path.relative_to(ROOT).parts
        if len(parts) < 2:
            continue
        for _, names in _imports(tree):
            for name in names:
                target = name.split(".")
                if target[0] != "swat" or len(target) < 2 or target[1] in BASE:
                    continue
                if ORDER.index(target[1]) > ORDER.index(parts[0]):
                    upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert upward == []


def _needs_optional_dependency(module: str) -> bool:
    path = ROOT.joinpath(*module.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    top_level = [names for node, names in _imports(tree) if node in tree.body]
    return any(name.split(".")[0] in OPTIONAL_DEPENDENCIES for names in top_level for name in names)


def test_swat_modules_are_imported_at_module_level():
    """Except in the command modules of swat.cli, which import what a command needs where it runs, so
    that ``swat --help`` starts without torch (tests/test_cli_start.py)."""
    local = []
    for path, tree in _modules():
        if path.parent.name == "cli":
            continue
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for _, names in _imports(function):
                local += [f"{path.relative_to(ROOT)}:{function.name} imports {n}" for n in names
                          if n.split(".")[0] == "swat" and not _needs_optional_dependency(n)]
    assert local == []

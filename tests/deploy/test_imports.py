"""What the package imports, read from its source (ast): every library it imports is declared in pyproject.toml, and
the layers under the frontends import none of their frameworks."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pomogator"
# The layers every frontend (bot, web app, CLI) calls, and the frameworks of those frontends.
CORE_LAYERS = ("services", "store", "llm", "billing")
FRONTEND_FRAMEWORKS = frozenset({"aiogram", "starlette", "typer", "click", "uvicorn"})


def imported_modules(path: Path) -> Iterator[tuple[str, int]]:
    """The absolute modules ``path`` imports (anywhere: at the top, in functions, under TYPE_CHECKING), with the
    line."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def declared_distributions() -> set[str]:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {normalized(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0]) for spec in dependencies}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_library_the_package_imports_is_declared() -> None:
    """A library that arrives only as another one's dependency can be dropped by that one's next release."""
    distributions = packages_distributions()
    declared = declared_distributions()
    undeclared: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, line in imported_modules(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in {"pomogator", "piccolo_migrations", "__future__"}:
                continue
            providers = {normalized(name) for name in distributions.get(top, [])}
            assert providers, f"{path.relative_to(ROOT)}:{line}: {top} is not installed"
            if not providers & declared:
                undeclared.setdefault(top, f"{path.relative_to(ROOT)}:{line}")
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"


def test_the_core_layers_import_no_frontend_framework() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for layer in CORE_LAYERS
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for module, line in imported_modules(path)
        if module.split(".")[0] in FRONTEND_FRAMEWORKS
    ]
    assert not found, found


def test_the_import_reader_sees_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from aiogram.types import Message\n"
        "def f() -> None:\n"
        "    import starlette.requests\n"
        "from . import sibling\n"
    )
    assert sorted(imported_modules(source)) == [("aiogram.types", 3), ("starlette.requests", 5), ("typing", 1)]

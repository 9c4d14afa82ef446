"""Dependencies point one way (docs/architecture.md): web -> services -> stores.

Checked two ways: by what a fresh interpreter has loaded after importing the scheduler
and the runner (they must not drag in the web framework), and by the import statements of
every module (no layer imports one above it; SQL stays in :mod:`opus.storage`).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "opus"

#: Packages that must never import the web layer or the wiring (opus.app, opus.services
#: is allowed below the web only for the scheduler, which is wired like the app).
BELOW_WEB = ("activities", "execution", "provenance", "storage", "uws", "datalink")


def imported_modules(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports (absolute names), at any depth of the file, or only
    in its module-level statements."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules_under(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (PACKAGE / package).rglob("*.py"))


@pytest.mark.parametrize("entry", ["opus.execution.scheduler", "opus.execution.runner",
                                   "opus.services"])
def test_the_scheduler_and_the_runner_load_no_web_module(entry: str) -> None:
    code = (f"import json, sys, {entry}; "
            f"print(json.dumps(sorted(m for m in sys.modules if m == 'bottle' "
            f"or m == 'opus.app' or m.startswith('opus.web'))))")
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout
    assert json.loads(output) == []


@pytest.mark.parametrize("path", modules_under(*BELOW_WEB), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_layer_below_the_web_imports_it(path: Path) -> None:
    upward = {name for name in imported_modules(path)
              if name in {"opus.app", "bottle"} or name.startswith("opus.web")}
    assert not upward, f"{path.relative_to(PACKAGE)} imports {sorted(upward)}"


@pytest.mark.parametrize("path", [p for p in PACKAGE.rglob("*.py")
                                  if "storage" not in p.parts and "migrations" not in p.parts],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_sql_only_in_the_stores(path: Path) -> None:
    sql = {name for name in imported_modules(path) if name.split(".")[0] == "sqlalchemy"}
    assert not sql, f"{path.relative_to(PACKAGE)} imports {sorted(sql)}"


def test_the_stores_import_no_service() -> None:
    for path in modules_under("storage"):
        upward = {name for name in imported_modules(path)
                  if name.startswith(("opus.uws.service", "opus.uws.reports", "opus.services",
                                      "opus.execution", "opus.datalink"))}
        assert not upward, f"{path.relative_to(PACKAGE)} imports {sorted(upward)}"


def test_no_module_is_over_450_lines() -> None:
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 450}
    assert not long, long


def test_no_import_cycle() -> None:
    """Module-level imports between OPUS modules form no cycle (imports inside functions,
    done late on purpose, are not counted)."""
    def module_name(path: Path) -> str:
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    paths = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    graph = {name: {m for m in imported_modules(path, top_level_only=True)
                    if m in paths and m != name}
             for name, path in paths.items()}
    # Tarjan's strongly connected components, iteratively deep enough for this package.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert not cycles, cycles

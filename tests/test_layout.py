"""The layout rules of docs/development.md, checked on the source.

* dependency direction ``data`` ← ``pipeline`` ← ``trainer`` ← ``cli``; nothing imports upward, nothing imports the
  root package ``bcls`` (it may re-export everything), and only ``cli.py`` imports typer;
* no import cycle between bcls modules, counting every import (inside functions and ``TYPE_CHECKING`` too);
* every package folder is installed (listed in ``pyproject.toml``), and the version agrees;
* no library file over 500 lines;
* no two library modules share a file name (``__init__.py`` aside), so a name in a traceback or a search is one file.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from bcls.data.infra.version import __version__

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"data": 0, "pipeline": 1, "trainer": 2, "cli": 3}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    """Module name → file, for every module of the installed package (the repository root is ``bcls``)."""
    out = {"bcls": ROOT / "__init__.py", "bcls.cli": ROOT / "cli.py"}
    for top in ("data", "pipeline", "trainer"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(["bcls", *parts])] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> set[str]:
    """The bcls modules ``name`` imports (``from P import m`` of a submodule counts as importing ``P.m``)."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()

    def add(base: str, names: list[str]) -> None:
        subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
        found.update(subs)
        if len(subs) < len(names) and base in MODULES:
            found.add(base)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "bcls" or base.startswith("bcls."):
                add(base, [a.name for a in node.names])
    found.discard(name)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> int:
    parts = name.split(".")
    return 4 if len(parts) == 1 else LAYERS[parts[1]]


def test_modules_were_found():
    assert {"bcls.data.captions", "bcls.pipeline.building.label_build", "bcls.trainer.losses.kendall", "bcls.cli"} <= set(GRAPH)


def test_nothing_imports_upward_or_the_root_package():
    bad = [f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
           if m != "bcls" and (t == "bcls" or _layer(t) > _layer(m))]
    assert not bad, "upward imports (data <- pipeline <- trainer <- cli):\n" + "\n".join(bad)


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state:
            cycle = visit(module)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_only_the_cli_imports_typer():
    users = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(m == "typer" or m.startswith("typer.") for m in mods):
                users.append(name)
    assert users == ["bcls.cli"]


def test_every_package_is_installed_and_the_version_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    packages = {name for name in MODULES if _is_package(name)}
    assert packages <= listed, f"packages missing from pyproject.toml: {sorted(packages - listed)}"
    assert project["project"]["version"] == __version__


def test_library_files_stay_short():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by concern): {long}"


def test_no_two_library_modules_share_a_file_name():
    seen: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            seen.setdefault(path.name, []).append(name)
    shared = {file: names for file, names in seen.items() if len(names) > 1}
    assert not shared, f"library modules sharing a file name: {shared}"

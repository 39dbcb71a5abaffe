"""The package layout: imports at module top only, no import cycles, a Flask-free domain."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "backoffice"

#: modules that wire the domain to Flask and may import it; everything else is the domain
FLASK_SIDE = {"backoffice", "backoffice.cli", "backoffice.config", "backoffice.extensions",
              "backoffice.jobs"}
FLASK_PACKAGES = {"flask", "flask_login", "flask_wtf", "flask_admin"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(path): (path, ast.parse(path.read_text(), str(path)))
            for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name a ``from ... import`` refers to."""
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(module: str, path: Path, node: ast.AST) -> list[str]:
    """Every module name an import statement may load (``from p import m`` may load p.m)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = _resolve(module, path, node)
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    return []


def _project_imports(module: str) -> set[str]:
    path, tree = MODULES[module]
    found = set()
    for node in ast.walk(tree):
        for name in _imports(module, path, node):
            if name in MODULES and name != module:
                found.add(name)
    return found


def test_no_function_level_imports_of_project_modules():
    offenders = []
    for module, (path, tree) in MODULES.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            for inner in ast.walk(node):
                if any(name.startswith("backoffice") for name in _imports(module, path, inner)):
                    offenders.append(f"{module}:{inner.lineno}")
    assert offenders == []


def test_no_import_cycles():
    graph = {module: _project_imports(module) for module in MODULES}
    # ``from . import x`` names the package too; loading a package's own parent is Python's
    # doing, not an import of the app factory.
    for targets in graph.values():
        targets.discard("backoffice")
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_domain_does_not_import_flask():
    offenders = []
    for module, (path, tree) in MODULES.items():
        if module in FLASK_SIDE or module.startswith("backoffice.views"):
            continue
        for node in ast.walk(tree):
            for name in _imports(module, path, node):
                if name.split(".")[0] in FLASK_PACKAGES:
                    offenders.append(f"{module} imports {name}")
    assert offenders == []

"""No import circle in pipelines/ or convert/, and convert/ never imports pipelines/ (DESIGN.md, "Import direction")."""

from __future__ import annotations

import ast
from pathlib import Path

import tokenizer_zoo

PACKAGE = Path(tokenizer_zoo.__file__).parent
CHECKED = ("tokenizer_zoo.pipelines", "tokenizer_zoo.convert")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The tokenizer_zoo modules ``path`` imports (at import time only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tokenizer_zoo"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("tokenizer_zoo"))
    return found


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {target for target in _imports(path, top_level_only) if target in modules and target != name}
            for name, path in modules.items()}  # a package importing its own submodules is no circle


def test_convert_never_imports_pipelines():
    offenders = {name: sorted(t for t in targets if t.startswith("tokenizer_zoo.pipelines"))
                 for name, targets in _graph(top_level_only=False).items() if name.startswith("tokenizer_zoo.convert")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_import_circle_through_pipelines_or_convert():
    """Import-time circles (module level); lazy imports inside functions are checked for convert/ above."""
    graph = _graph(top_level_only=True)
    cycles = []

    def visit(node, path):
        for target in sorted(graph.get(node, ())):
            if target == path[0]:
                cycles.append(path + [target])
            elif target not in path and target.startswith(CHECKED):
                visit(target, path + [target])

    for start in sorted(graph):
        if start.startswith(CHECKED):
            visit(start, [start])
    assert cycles == []


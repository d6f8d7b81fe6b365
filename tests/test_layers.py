"""The package's layers, checked on its source: what may import what, and no cycles.

core (files, images, geometry, plug-in loading, executors, stores) → the pycolmap adapter,
evaluation and fold checks → stages (turn detection, extraction, pairs, matching,
verification, mapping, dense, and their plug-ins) → pipeline and settings → what uses a
finished run (IMC, report, export, viewer, georeferencing, video input) → the command
line. Only the adapter imports pycolmap.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lightsfm"
LAYERS = [
    {
        "errors",
        "io",
        "device",
        "geometry",
        "plugins",
        "weights",
        "workspace",
        "executor",
        "images",
        "store",
        "masks",
        "graph",
        "gps",
    },
    {"evaluate", "colmap", "checks"},
    {"orientation", "extract", "extractors", "match", "matchers", "pairs", "ensemble", "verify", "mapping", "dense"},
    {"config", "pipeline"},
    {"imc", "report", "export", "view", "georef", "video", "register"},
    {"cli", "__main__"},
]
ADAPTER = {"colmap"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], bool]:
    """lightsfm modules imported by a module (at any depth, outside ``if TYPE_CHECKING``),
    and whether it imports pycolmap."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    uses_pycolmap = False

    def visit(node: ast.AST) -> None:
        nonlocal uses_pycolmap
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = [p for p in package.split(".") if p]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{module}.{a.name}".strip(".") for a in node.names] or [module]
                targets = [t if t in modules else module for t in targets]
                targets = [f"lightsfm.{t}" if t else "lightsfm" for t in targets]
            else:
                targets = [node.module or ""]
                if node.module == "lightsfm":
                    targets = [f"lightsfm.{a.name}" for a in node.names]
        for t in targets:
            if t.split(".")[0] == "pycolmap":
                uses_pycolmap = True
            if t.startswith("lightsfm."):
                found.add(t.removeprefix("lightsfm."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found - {name}, uses_pycolmap


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"lightsfm.{module} is in no layer: add it to LAYERS in {__file__}")


def test_imports_go_down_the_layers():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        if not name:
            continue
        deps, _ = _imports(name, path, modules)
        wrong += [f"{name} -> {d}" for d in deps if d and d in modules and _layer(d) > _layer(name)]
    assert not wrong, f"imports against the layers: {sorted(wrong)}"


def test_no_import_cycles():
    modules = _modules()
    graph = {n: {d for d in _imports(n, p, modules)[0] if d in modules} for n, p in modules.items() if n}
    state: dict[str, int] = {}

    def walk(n: str, trail: list[str]) -> None:
        state[n] = 1
        for d in graph.get(n, ()):
            # a package's __init__ importing its own base module is how plug-in packages work
            if d.startswith(n + ".") or n.startswith(d + "."):
                continue
            if state.get(d) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*trail, n, d])}")
            if not state.get(d):
                walk(d, [*trail, n])
        state[n] = 2

    for n in graph:
        if not state.get(n):
            walk(n, [])


def test_only_the_adapter_imports_pycolmap():
    modules = _modules()
    found = {n for n, p in modules.items() if _imports(n, p, modules)[1] and n.split(".")[0] not in ADAPTER}
    assert not found, f"pycolmap imported outside lightsfm.colmap (move the calls into the adapter): {sorted(found)}"

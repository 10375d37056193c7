"""The house rules of the package, read from its source: ecosweep's own modules imported at the top of each file,
no import circle, every import downward in the layers (config <- cells <- plan / lanes <- run; analysis reads
results and statistics only), and no function over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

from conftest import REPO

PACKAGE = REPO / "ecosweep"

# Lowest first: a module may import its own layer and those below, never one above.
LAYERS: List[Tuple[str, ...]] = [
    ("ecosweep.errors", "ecosweep.stats", "ecosweep.results.schema", "ecosweep.results.folders",
     "ecosweep.config.paths"),
    ("ecosweep.config",),
    ("ecosweep.cells",),
    ("ecosweep.results", "ecosweep.lanes"),
    ("ecosweep.plan", "ecosweep.migrate", "ecosweep.workload", "ecosweep.measure", "ecosweep.profiling"),
    ("ecosweep.run", "ecosweep.tracking"),
    ("ecosweep.analysis",),
    ("ecosweep.cli", "ecosweep.__main__"),
]
# analysis reads results and statistics (and the settings it reports), nothing of the run
ANALYSIS_MAY_IMPORT = ("ecosweep.analysis", "ecosweep.results", "ecosweep.stats", "ecosweep.config", "ecosweep.errors")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(node: ast.AST, known: Set[str]) -> List[str]:
    """The ecosweep modules an import statement imports (``from ecosweep.x import y`` is ``ecosweep.x.y`` when
    that is a module)."""
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ecosweep"):
        return [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("ecosweep")]
    return []


def _type_checking_nodes(tree: ast.Module) -> Set[int]:
    return {id(n) for top in tree.body if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test)
            for n in ast.walk(top)}


def graph() -> Dict[str, Set[str]]:
    trees = modules()
    known = set(trees)
    edges: Dict[str, Set[str]] = {}
    for name, tree in trees.items():
        skip = _type_checking_nodes(tree)
        edges[name] = {t for n in ast.walk(tree) if id(n) not in skip for t in _targets(n, known) if t != name}
    return edges


def layer(module: str) -> int:
    if module == "ecosweep":  # the package itself: its version
        return 0
    best, level = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    assert level >= 0, f"{module} is in no layer of LAYERS: place it"
    return level


def test_ecosweeps_own_modules_are_imported_at_the_top_of_each_file():
    late = []
    for name, tree in modules().items():
        top = {id(n) for n in tree.body} | _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) not in top and _targets(node, {"ecosweep"}):
                late.append(f"{name}:{node.lineno}")
    assert not late, f"imports of ecosweep modules inside functions: {late}"


def test_there_is_no_import_circle():
    edges = graph()
    state: Dict[str, int] = {}
    cycles = []

    def visit(node: str, path: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt in edges and state.get(nxt) is None:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(edges):
        if state.get(module) is None:
            visit(module, [module])
    assert not cycles, f"import circles: {cycles}"


def test_every_import_goes_down_the_layers_and_analysis_reads_results_only():
    upward = []
    for module, targets in graph().items():
        for target in targets:
            if layer(target) > layer(module):
                upward.append(f"{module} (layer {layer(module)}) -> {target} (layer {layer(target)})")
            if module.startswith("ecosweep.analysis") and not target.startswith(ANALYSIS_MAY_IMPORT):
                upward.append(f"{module} -> {target}: analysis reads results and statistics only")
    assert not upward, "\n".join(upward)


def test_no_function_is_longer_than_60_lines():
    long = [f"{name}.{n.name}: {n.end_lineno - n.lineno + 1} lines" for name, tree in modules().items()
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > 60]
    assert not long, long


def test_the_readme_names_the_modules_a_study_flows_through():
    text = (REPO / "README.md").read_text().split("### How a study flows", 1)[1].split("\n## ", 1)[0]
    for module in ("cli/run.py", "config/compose.py", "cells.py", "plan.py", "lanes.py", "run/orchestrate.py",
                   "run/scheduler.py", "run/worker.py", "measure/protocol.py", "results/store.py", "analysis/report.py"):
        assert module in text, module

"""The import graph of mtbench, read from the source with ast: no circle, and no import from a lower layer to a
higher one (DESIGN.md §8: cli -> compare / tuning / report -> training -> workloads, data, model, metrics,
optim, ops -> presets, text, rundir).

Every import counts, at module level or inside a function: an import put in a function to dodge a circle
is still a circle. What a module imports is followed through the modules it imports (a trainer module that
imports a helper that imports the report reaches the report all the same).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that the source at ``path`` (module ``name``) imports anywhere in it.

    ``from package import name`` is an import of the submodule ``package.name`` where there is one, else of
    the package.
    """
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def import_graph(paths: list[Path], root: Path, known: set[str]) -> dict[str, set[str]]:
    return {module_name(p, root): imported(p, module_name(p, root), known) for p in paths}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def reached(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


SOURCES = sorted((ROOT / "mtbench").rglob("*.py"))
KNOWN = {module_name(p, ROOT) for p in SOURCES}
GRAPH = import_graph(SOURCES, ROOT, KNOWN)


def test_the_graph_is_read_from_every_kind_of_import():
    """The reader itself: a relative import, a submodule named in ``from package import``, a function-level
    import and an absolute one each make an edge."""
    graph = import_graph([ROOT / "mtbench/report/comparison.py", ROOT / "mtbench/tuning/results.py",
                          ROOT / "mtbench/compare/launch.py"], ROOT, KNOWN)
    assert {"mtbench.rundir", "mtbench.report.rows", "mtbench.locks"} <= graph["mtbench.report.comparison"]
    assert "mtbench.report.plotstyle" in graph["mtbench.tuning.results"]  # imported inside a function
    assert "mtbench.train" in graph["mtbench.compare.launch"]  # inside a function too


def test_circles_are_found_however_far_round():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_mtbench_imports_itself_round_a_circle():
    assert circles(GRAPH) == []


@pytest.mark.parametrize("lower", ["mtbench.train", "mtbench.training", "mtbench.data", "mtbench.metrics"])
def test_the_trainer_data_and_metrics_reach_neither_the_cli_nor_the_report(lower):
    found = {m: sorted(x for x in reached(GRAPH, m) if within(x, "mtbench.cli", "mtbench.report"))
             for m in GRAPH if within(m, lower)}
    assert {m: bad for m, bad in found.items() if bad} == {}


def test_the_report_never_reaches_the_trainer():
    found = {m: sorted(x for x in reached(GRAPH, m) if within(x, "mtbench.train", "mtbench.training"))
             for m in GRAPH if within(m, "mtbench.report")}
    assert {m: bad for m, bad in found.items() if bad} == {}


def test_only_the_cli_imports_the_cli():
    found = {m: sorted(x for x in targets if within(x, "mtbench.cli"))
             for m, targets in GRAPH.items() if not within(m, "mtbench.cli", "mtbench.__main__")}
    assert {m: bad for m, bad in found.items() if bad} == {}


def test_benchmarks_import_the_library_not_the_cli():
    benchmarks = sorted((ROOT / "benchmarks").glob("*.py"))
    assert benchmarks
    found = {}
    for path in benchmarks:
        modules = imported(path, f"benchmarks.{path.stem}", KNOWN)
        bad = {x for m in modules for x in {m} | reached(GRAPH, m) if within(x, "mtbench.cli")}
        if bad:
            found[path.name] = sorted(bad)
    assert found == {}

"""The shape of the code: imports run one way, bottom to top, with no cycle; no function longer than a screen.

Layers, one subpackage each (LAYERS): core -> data -> models -> hub -> inference -> train -> paper -> cli, then
zoo's light entry points (zoo/__init__.py, bridge.py), and export/ above zoo/. The test reads the source (module- and function-level imports) rather than
importing it, so a cycle that happens to resolve at run time still fails here. ruff (pyproject.toml) holds
the rest: no import inside a function unless its noqa says why (PLC0415), no module loaded by name outside
the light entry points (TID251).
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "export")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imported(node: ast.Import | ast.ImportFrom, current: str) -> list[str]:
    """The project modules an import statement loads (``from zoo.hub import cards`` is zoo.hub.cards, ``from zoo import x``
    an attribute of zoo)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = current.split(".")[: -node.level] if not MODULES[current].name == "__init__.py" else current.split(".")
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def edges() -> dict[str, dict[str, list[int]]]:
    """module -> imported project module -> [line]."""
    graph: dict[str, dict[str, list[int]]] = {m: {} for m in MODULES}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported(node, module):
                    if target != module:
                        graph[module].setdefault(target, []).append(node.lineno)
    return graph


GRAPH = edges()


def find_cycle(graph: dict[str, dict]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walker_sees_imports():
    assert "zoo.models.registry" in GRAPH["zoo.models.resnet"]
    assert "zoo" in GRAPH["export.onnx"]
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]  # negative control
    assert find_cycle({"a": {"b": []}, "b": {}}) is None


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH))}"


def test_zoo_never_imports_export():
    wrong = [(m, t) for m, targets in GRAPH.items() if m.startswith("zoo") for t in targets if t.startswith("export")]
    assert not wrong, wrong


LAYERS = ("zoo.core", "zoo.data", "zoo.models", "zoo.hub", "zoo.inference", "zoo.train", "zoo.paper", "zoo.cli", "zoo",
          "export")
"""zoo's subpackages, bottom to top, then the modules directly in zoo/ (the lazy API and the timm hook) and export/: a
module imports only from its own layer or from one below it (the README's Architecture section says why each file
sits where it does)."""


def layer(module: str) -> str:
    """The layer a module belongs to: the longest LAYERS name it is, or is inside."""
    return max((name for name in LAYERS if module == name or module.startswith(f"{name}.")), key=len)


def upward(graph: dict[str, dict[str, list[int]]]) -> list[str]:
    """Each import from a higher layer into a lower one, as "module:line -> imported"."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    return [f"{m}:{lines[0]} -> {t}" for m, targets in graph.items() for t, lines in targets.items()
            if rank[layer(t)] > rank[layer(m)]]


def test_imports_run_up_the_layers():
    assert not upward(GRAPH), f"imports from a higher layer (LAYERS): {upward(GRAPH)}"
    wrong = {**GRAPH, "zoo.data.loading": {**GRAPH["zoo.data.loading"], "zoo.train.loop": [1]}}
    assert upward(wrong) == ["zoo.data.loading:1 -> zoo.train.loop"]  # negative control: data importing the loop
    assert upward({"zoo.hub.weights": {"zoo.models.registry": [3]}, "zoo": {"zoo.core.errors": [1]}}) == []


def test_every_subpackage_is_a_layer():
    """A new folder under zoo/ takes its place in LAYERS, and every layer is a real package."""
    folders = {f"zoo.{p.parent.name}" for p in (REPO / "zoo").glob("*/*.py")}
    assert folders == set(LAYERS) - {"zoo", "export"}, folders ^ (set(LAYERS) - {"zoo", "export"})
    assert all(name in MODULES for name in LAYERS), [name for name in LAYERS if name not in MODULES]  # each has its __init__


CLI_ONLY = {"zoo.cli.cliutil": {"zoo.cli", "zoo.cli.commands"}}
"""Modules that belong to the command line, and the only modules that may import them: a library module (export's
bench and report among them) prints and parses with zoo.core.console instead."""


def test_only_the_cli_imports_the_cli_helpers():
    wrong = [(m, t) for m, targets in GRAPH.items() for t in targets if t in CLI_ONLY and m not in CLI_ONLY[t]]
    assert not wrong, f"library modules import the CLI: {wrong}; use zoo.core.console"
    assert all(importers <= set(MODULES) for importers in CLI_ONLY.values())  # the table names real modules


MAX_BODY_LINES = 50


def long_functions(source: str) -> list[str]:
    """Functions whose bodies (signature and docstring aside) are longer than a screen."""
    long = []
    for fn in (n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else fn.body
        if body and body[-1].end_lineno - body[0].lineno + 1 > MAX_BODY_LINES:
            long.append(f"{fn.name} ({body[-1].end_lineno - body[0].lineno + 1} lines)")
    return long


def test_no_function_longer_than_a_screen():
    """Data tables are module-level, not functions. (ruff's PLR0915 counts statements, not lines: this stays here.)"""
    long = {module: found for module, path in MODULES.items() if (found := long_functions(path.read_text()))}
    assert not long, long
    assert long_functions("def f():\n" + "    x = 1\n" * (MAX_BODY_LINES + 1)) == [f"f ({MAX_BODY_LINES + 1} lines)"]  # negative control

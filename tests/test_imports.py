"""Import layering of foveal: no import cycles, no lower floor importing a higher one, no private names
imported across modules.

Every module under ``foveal/`` is parsed with ``ast``; all its imports count, at module level and inside
functions (a function-level import hides a cycle from Python, not from this test), except those under
``if TYPE_CHECKING:``, which never run. Nothing is imported, so the test takes a fraction of a second.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Floors, lowest first. A module may import modules of its own floor (without a cycle) and of lower ones.
# A package's floor covers all its modules.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("foveal.errors", "foveal.atomic", "foveal.serialize", "foveal.config"),
    ("foveal.data", "foveal.models", "foveal.losses", "foveal.metrics", "foveal.ops"),
    # Rendering: plots, HTML pages and galleries from data, metrics and files on disk. It imports only
    # the floors below, and tasks (their plots), the engine (the run report), analysis and explain all
    # draw on it, so it sits under tasks as a whole rather than split in two.
    ("foveal.report",),
    ("foveal.tasks",),
    ("foveal.engine",),
    ("foveal.analysis", "foveal.explain", "foveal.export", "foveal.video"),
    ("foveal.cli", "foveal.demo", "foveal"),  # "foveal": the package __init__ (the lazy public API)
)


@dataclass(frozen=True)
class Import:
    """One import of a foveal module: ``source`` imports ``target`` (and from it ``name``, unless the
    imported name is itself a module) at ``path``:``line``; ``alias``: the local name bound to the
    ``target`` module (``import foveal.x as alias``, ``from foveal import x``), if any."""

    source: str
    target: str
    name: str | None
    path: Path
    line: int
    alias: str | None = None

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def find_modules(root: Path, package: str = "foveal") -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``package`` under ``root``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST):
    """Import / ImportFrom nodes anywhere under ``node``, skipping the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(other)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _import_nodes(child)


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The longest module name that ``name`` starts with (``foveal.x.y`` for ``foveal.x.y.attr``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def collect_imports(root: Path, package: str = "foveal") -> tuple[dict[str, Path], list[Import]]:
    """The modules of ``package`` and every import of one of them by another (or the same) module."""
    modules = find_modules(root, package)
    found: list[Import] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _import_nodes(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _owner(alias.name, modules)
                    if target is not None:
                        bound = alias.asname if target == alias.name else None
                        found.append(Import(module, target, None, path, node.lineno, bound))
                continue
            base = node.module or ""
            if node.level:
                parent = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = f"{parent}.{base}" if base else parent
            if base != package and not base.startswith(package + "."):
                continue
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    bound = alias.asname or alias.name
                    found.append(Import(module, f"{base}.{alias.name}", None, path, node.lineno, bound))
                elif (target := _owner(base, modules)) is not None:
                    found.append(Import(module, target, alias.name, path, node.lineno))
    return modules, found


def unit(module: str) -> str:
    """The layering unit of a module: its top-level package or module (``foveal.data``, ``foveal.errors``),
    or ``foveal`` for the package __init__."""
    return ".".join(module.split(".")[:2])


def floor_of(name: str) -> int | None:
    for index, floor in enumerate(FLOORS):
        if unit(name) in floor:
            return index
    return None


def find_cycles(edges: dict[str, dict[str, Import]]) -> list[tuple[list[str], list[str]]]:
    """Per strongly connected component: one shortest cycle through its first member (a list of nodes,
    the first repeated at the end) and all its members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan; the graphs are a few hundred nodes deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, {})):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    cycles = []
    for component in components:  # the shortest path from the first member back to itself
        members, start = set(component), component[0]
        paths = {start: [start]}
        queue = [start]
        while queue:
            node = queue.pop(0)
            for nxt in sorted(edges.get(node, {})):
                if nxt == start:
                    cycles.append(([*paths[node], start], component))
                    queue = []
                    break
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    queue.append(nxt)
    return cycles


def cycle_problems(root: Path, modules: dict[str, Path], imports: list[Import]) -> list[str]:
    """Import cycles between modules, and between packages (floor units), each with its imports."""
    problems = []
    for name_of in (lambda m: m, unit):
        edges: dict[str, dict[str, Import]] = defaultdict(dict)
        for imp in imports:
            a, b = name_of(imp.source), name_of(imp.target)
            if a != b:
                edges[a].setdefault(b, imp)
        for cycle, members in find_cycles(edges):
            steps = [edges[a][b] for a, b in zip(cycle, cycle[1:], strict=False)]
            lines = [f"\n    {imp.where(root)}: {imp.source} imports {imp.target}" for imp in steps]
            others = sorted(set(members) - set(cycle))
            also = f"\n    (tangled with it: {', '.join(others)})" if others else ""
            problems.append("import cycle: " + " -> ".join(cycle) + "".join(lines) + also)
    return problems


def floor_problems(root: Path, modules: dict[str, Path], imports: list[Import]) -> list[str]:
    """Modules on no floor, and imports of a higher floor's module."""
    problems = [
        f"{module}: on no floor; add {unit(module)} to FLOORS in tests/test_imports.py"
        for module in modules
        if floor_of(module) is None
    ]
    for imp in imports:
        low, high = floor_of(imp.source), floor_of(imp.target)
        if low is not None and high is not None and high > low:
            problems.append(
                f"{imp.where(root)}: {imp.source} (floor {low}: {unit(imp.source)}) imports {imp.target} "
                f"(floor {high}: {unit(imp.target)}), a higher floor"
            )
    return problems


def private_problems(root: Path, modules: dict[str, Path], imports: list[Import]) -> list[str]:
    """Private names (``_x``, not dunders; private modules too) imported from another foveal module, or
    read as an attribute of an imported foveal module (``module._x``)."""

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    problems = [
        f"{imp.where(root)}: {imp.source} imports private {imp.name or imp.target} from {imp.target}"
        for imp in imports
        if imp.source != imp.target
        and (private(imp.name or "") or any(private(part) for part in imp.target.split(".")))
    ]
    bound: dict[str, dict[str, str]] = defaultdict(dict)  # module -> local name -> foveal module
    for imp in imports:
        if imp.alias is not None and imp.target != imp.source:
            bound[imp.source][imp.alias] = imp.target
    for module, path in modules.items():
        if not bound[module]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                continue
            if private(node.attr) and node.value.id in bound[module]:
                problems.append(
                    f"{path.relative_to(root)}:{node.lineno}: {module} reads private "
                    f"{bound[module][node.value.id]}.{node.attr}"
                )
    return problems


def _report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    modules, imports = collect_imports(ROOT)
    problems = cycle_problems(ROOT, modules, imports)
    assert not problems, _report(problems)


def test_lower_floors_never_import_higher_ones() -> None:
    modules, imports = collect_imports(ROOT)
    problems = floor_problems(ROOT, modules, imports)
    assert not problems, _report(problems)


def test_no_private_names_across_modules() -> None:
    modules, imports = collect_imports(ROOT)
    problems = private_problems(ROOT, modules, imports)
    assert not problems, _report(problems)


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """A made-up foveal tree with one of each problem: a function-level cycle, an upward import, a
    private import and a private attribute; an import under TYPE_CHECKING counts for none of them."""
    files = {
        "__init__.py": "",
        "errors.py": "",
        "data/__init__.py": "",
        "data/a.py": "def f():\n    from foveal.data.b import g\n",
        "data/b.py": "from foveal.data import a\n\ndef g():\n    return a._hidden\n",
        "data/c.py": "import typing\nif typing.TYPE_CHECKING:\n    from foveal.engine.run import x\n",
        "ops/__init__.py": "",
        "ops/d.py": "from ..errors import _private\n",
        "engine/__init__.py": "",
        "engine/run.py": "import foveal.data.a\n",
        "metrics/e.py": "from foveal.engine.run import x\n",
        "newpkg.py": "",
    }
    for name, text in files.items():
        (tmp_path / "foveal" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "foveal" / name).write_text(text)
    modules, imports = collect_imports(tmp_path)
    cycles = cycle_problems(tmp_path, modules, imports)
    assert len(cycles) == 1 and "foveal.data.a -> foveal.data.b -> foveal.data.a" in cycles[0]
    assert "foveal/data/a.py:2" in cycles[0]
    floors = floor_problems(tmp_path, modules, imports)
    assert len(floors) == 2, floors
    assert "foveal.newpkg: on no floor" in floors[0]
    assert floors[1].startswith("foveal/metrics/e.py:1: foveal.metrics.e (floor 1: foveal.metrics) imports")
    privates = private_problems(tmp_path, modules, imports)
    assert len(privates) == 2, privates
    assert privates[0].startswith(
        "foveal/ops/d.py:1: foveal.ops.d imports private _private from foveal.errors"
    )
    assert privates[1].startswith("foveal/data/b.py:4: foveal.data.b reads private foveal.data.a._hidden")

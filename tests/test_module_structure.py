"""The import structure the code keeps: shared helpers live in `common/`, a leaf
that imports no app; the apps (apiaccess, inference, usage, batches) never import portal, the project (pages,
URLs, settings), which may import them; and no module, nor app, imports itself round a cycle.

Imports are read from the source with `ast`, every one of them: at the top, inside functions (a lazy
import still ties the two modules together) and under TYPE_CHECKING (a type-only import of a cycle is
still the cycle, only hidden). Apps read settings through django.conf.settings, so portal.settings is
never imported by name either.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("portal", "apiaccess", "inference", "usage", "batches")
PACKAGES = (*APPS, "common")
# Apps that may not import portal. (Celery tasks use celery.shared_task, so none needs portal.celery.)
BELOW_PORTAL = ("apiaccess", "inference", "usage", "batches")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(module imported, line) for every import in the file, each resolved to the deepest module of
    the project it names (`from inference import slots` is inference.scheduler.slots), or left as written when
    it names none (a third-party module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, `level - 1` packages up
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.append((submodule if submodule in modules else source, node.lineno))
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    """Module -> the project modules it imports, and where each edge is (file:line)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {module: set() for module in modules}
    where: dict[tuple[str, str], str] = {}
    for module, path in modules.items():
        for name, line in imported_names(module, path, modules):
            target = name
            while target and target not in modules:  # `import a.b.c` where only a.b is ours
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].add(target)
                where.setdefault((module, target), f"{path.relative_to(ROOT)}:{line}")
    return graph, where


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in {component}")


def describe(cycle: list[str], where: dict[tuple[str, str], str]) -> str:
    return "\n".join(f"  {a} -> {b}  ({where[(a, b)]})" for a, b in zip(cycle, cycle[1:], strict=False))


def test_common_imports_no_app():
    modules = project_modules()
    offending = dict.fromkeys(f"{path.relative_to(ROOT)}:{line} imports {name}"
                              for module, path in modules.items() if module.split(".")[0] == "common"
                              for name, line in imported_names(module, path, modules) if name.split(".")[0] in APPS)
    assert not offending, "common/ must stay a leaf that any app may import:\n" + "\n".join(offending)


def test_no_app_imports_portal():
    modules = project_modules()
    offending = dict.fromkeys(f"{path.relative_to(ROOT)}:{line} imports {name}"
                              for module, path in modules.items() if module.split(".")[0] in BELOW_PORTAL
                              for name, line in imported_names(module, path, modules) if name.split(".")[0] == "portal")
    assert not offending, ("portal (pages, URLs, settings) imports the apps, never the other way round; "
                           "move what they share to common/:\n" + "\n".join(offending))


def test_no_import_cycle_between_modules():
    graph, where = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n\n".join(describe(cycle, where) for cycle in found)


def test_no_import_cycle_between_apps():
    graph, where = import_graph()
    packages: dict[str, set[str]] = {package: set() for package in PACKAGES}
    package_where: dict[tuple[str, str], str] = {}
    for module, targets in graph.items():
        for target in targets:
            a, b = module.split(".")[0], target.split(".")[0]
            if a != b:
                packages[a].add(b)
                package_where.setdefault((a, b), where[(module, target)])
    found = cycles(packages)
    assert not found, "apps importing each other:\n" + "\n\n".join(describe(c, package_where) for c in found)


def test_the_checks_see_a_cycle_and_an_import_inside_a_function(tmp_path):
    # The checks above pass on a clean tree; this one shows they would catch what they look for.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from inference.scheduler import slots\n")
    assert ("inference.scheduler.slots", 2) in imported_names("x.m", source, {"inference.scheduler.slots": source})

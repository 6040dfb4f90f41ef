"""The import graph of dlcli/ (every import statement, at module level or inside a function): no
cycles, and every import points down the layers (README, "Layout"): a module imports its own layer
or the ones below it, never one above."""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "dlcli"
# Bottom to top. The config validator asks each task what it accepts, so tasks sit below config.
LAYERS = (("dlcli", "dlcli.errors", "dlcli.types", "dlcli.registry", "dlcli.compute", "dlcli.ranks"),
          ("dlcli.components", "dlcli.data", "dlcli.runs"),
          ("dlcli.tasks",),
          ("dlcli.config",),
          ("dlcli.training",),
          ("dlcli.inference",),
          ("dlcli.cli", "dlcli.__main__"))


def layer_of(module: str) -> int:
    """The highest layer that names `module` or a package above it (`dlcli` itself is the bottom)."""
    return max(i for i, names in enumerate(LAYERS) for name in names
               if module == name or (name != "dlcli" and module.startswith(name + ".")))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The dlcli modules `path` imports (a `from package import name` counts the submodule when
    `name` is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return {name for name in found if name in modules}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_every_module_belongs_to_a_layer():
    unplaced = [name for name in graph() if name != "dlcli" and layer_of(name) == 0
                and name not in LAYERS[0]]
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_imports_point_down_the_layers():
    upward = sorted(f"{name} imports {target}" for name, targets in graph().items()
                    for target in targets if layer_of(target) > layer_of(name))
    assert not upward, upward


def test_components_data_and_runs_import_only_their_own_package_and_the_bottom_layer():
    """Models, losses, optimizers, callbacks, datasets and run folders know nothing of one another, of
    tasks or of configs: each is usable alone."""
    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    wrong = sorted(f"{name} imports {target}" for name, targets in graph().items() if layer_of(name) == 1
                   for target in targets if layer_of(target) > 0 and package(target) != package(name))
    assert not wrong, wrong


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None

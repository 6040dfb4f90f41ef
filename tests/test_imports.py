"""The import graph of dlcli/ (every import statement, at module level or inside a function): no
cycles, and components (models, losses, optimizers, schedulers, callbacks, data) never import the
config, tasks or training layers above them."""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "dlcli"
COMPONENTS = ("dlcli.models", "dlcli.losses", "dlcli.gan_losses", "dlcli.optim", "dlcli.schedulers",
              "dlcli.callbacks", "dlcli.data")
ABOVE_COMPONENTS = ("dlcli.config", "dlcli.tasks", "dlcli.build", "dlcli.engine", "dlcli.training",
                    "dlcli.resume", "dlcli.inference", "dlcli.cli")


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


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_do_not_import_the_layers_above_them(component):
    wrong = {f"{name} imports {target}" for name, targets in graph().items()
             if name == component or name.startswith(component + ".")
             for target in targets if target.startswith(ABOVE_COMPONENTS)}
    assert not wrong, sorted(wrong)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None

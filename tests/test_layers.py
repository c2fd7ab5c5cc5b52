"""The package's layers, read from its imports: each layer imports only from those below it,
no two modules import each other (directly or round a circle), and the trainer and the data
layer know nothing of Optuna. (docs/ARCHITECTURE.md draws the same picture.)"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "maskopt"

# Lowest first. A module may import from a lower layer and from its own package; layers that
# share a rank are side by side and import nothing of each other.
LAYERS: dict[str, int] = {
    "maskopt": 0,  # the root: the version and the lazily loaded API
    "errors": 0,
    "outputs": 1,
    "progress": 1,
    "timing": 1,
    "data": 2,
    "trainer": 3,
    "store": 4,
    "spaces": 4,
    "search": 5,
    "studies": 5,
    "ensemble": 6,
    "bundle": 7,
    "export": 8,
    "api": 9,
    "cli": 10,
}
NO_OPTUNA = ("data", "trainer")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "maskopt"


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in the file: maskopt modules as the module imported (a
    name imported from a package that is a module of it counts as that module), others as
    written."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield node.lineno, sub if sub in MODULES else node.module


def maskopt_imports(path: Path) -> Iterator[tuple[int, str]]:
    for line, target in imports(path):
        if target == "maskopt" or target.startswith("maskopt."):
            yield line, target


def test_every_module_is_in_a_layer() -> None:
    assert sorted({layer(m) for m in MODULES} - set(LAYERS)) == []


def test_imports_run_down_the_layers() -> None:
    upward = []
    for name, path in MODULES.items():
        mine = layer(name)
        for line, target in maskopt_imports(path):
            theirs = layer(target)
            if theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mine} -> {target}")
    assert upward == []


def test_no_circles_between_modules() -> None:
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for _, target in maskopt_imports(path):
            if target in MODULES and target != name:
                graph[name].add(target)
    # Tarjan's strongly connected components: any of more than one module is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == []


def test_the_trainer_and_the_data_know_nothing_of_optuna() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {target}"
        for name, path in MODULES.items()
        if layer(name) in NO_OPTUNA
        for line, target in imports(path)
        if target == "optuna" or target.startswith("optuna.")
    ]
    assert found == []


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    """`maskopt --help` imports the CLI and the option dataclasses only: no torch, timm or
    optuna (they are imported inside the commands)."""
    import subprocess
    import sys

    code = (
        "import sys, maskopt.cli\n"
        "print(sorted(m for m in ('torch', 'timm', 'optuna', 'cv2', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""Cross-cutting, so at the top level: it reads every module of dgnam at once.

dgnam's imports flow one way: every module imports on its own, and neither its modules nor its
subpackages import each other in a circle (function-local imports included, so none can hide one)."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dgnam"


def _modules() -> dict[str, Path]:
    """Module name -> file, for every module of dgnam (a package by its ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The dgnam modules ``path`` imports anywhere in its body (absolute imports, as dgnam writes them), bar
    the top-level package: ``dgnam/__init__`` is the public API that re-exports the rest, not a layer."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules and name != "dgnam"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each one import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_modules_or_subpackages():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []
    # One level up: dgnam.nets, dgnam.prior, dgnam.engine, ... (and the top-level modules) form layers.
    layer = {name: ".".join(name.split(".")[:2]) for name in modules}
    layers = {}
    for name, targets in graph.items():
        layers.setdefault(layer[name], set()).update(layer[t] for t in targets if layer[t] != layer[name])
    assert _cycles(layers) == []
    assert layers["dgnam.nets"] <= {"dgnam.errors", "dgnam.io"}  # the bottom layer: what every other one reads


# A fresh interpreter loads dgnam's dependencies once, then forks one child per module, which imports
# that module alone into a process that has never imported any of dgnam.
FORK_EACH = """
import importlib, os, sys, traceback
import einops, numpy, PIL.Image, torch, torchvision, tqdm
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name)
print("failed:", " ".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own():
    names = sorted(_modules())
    assert "dgnam.cli.main" in names and "dgnam.engine.render" in names
    proc = subprocess.run([sys.executable, "-c", FORK_EACH, *names], capture_output=True, text=True,
                          cwd=PACKAGE.parent, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.strip() == "failed:"

"""The import graph of ``tulu_jax/`` (and ``data_pipeline/``) has no cycles and no upward arrows.

Every ``import`` counts, function-local ones included: a cycle hidden inside a function is still a cycle.
The layers are the ones ``docs/ARCHITECTURE.md`` draws; an arrow may only point to a lower layer, never to
the same layer's neighbour (``objectives`` never import ``models``) or above. A new package or top-level
module must be placed in ``LAYERS`` below.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tulu_jax", "data_pipeline")

# Top to bottom. A unit is a subpackage or a top-level module of tulu_jax, or data_pipeline as a whole.
LAYERS = [
    ["tulu_jax.cli"],
    ["tulu_jax.commands"],
    ["tulu_jax.planning"],  # stands above stages: it plans what they build
    ["tulu_jax.stages"],
    ["tulu_jax.training", "tulu_jax.generation"],
    ["tulu_jax.hf"],
    ["tulu_jax.checkpoint", "tulu_jax.reference_cache"],
    ["tulu_jax.checkpoint_fingerprint", "tulu_jax.distributed", "tulu_jax.sharding", "tulu_jax.config",
     "tulu_jax.models", "tulu_jax.objectives", "tulu_jax.rewards", "tulu_jax.jsonl"],
    ["tulu_jax", "tulu_jax.errors", "tulu_jax.ops"],
    ["data_pipeline"],  # never imports tulu_jax
]
RANK = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}  # larger is lower


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for file in (ROOT / package).rglob("*.py"):
            parts = list(file.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = file
    return modules


def imported_modules(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its body (a package's ``__init__`` for its name)."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def module_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, file, modules) for name, file in modules.items()}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "data_pipeline" else ".".join(parts[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = collections.defaultdict(set)
    for module, targets in graph.items():
        units[unit_of(module)].update(unit_of(target) for target in targets if unit_of(target) != unit_of(module))
    return dict(units)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
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


def upward_arrows(units: dict[str, set[str]]) -> list[str]:
    """Arrows to the same layer or above (``a -> b``)."""
    return [f"{unit} -> {target}" for unit, targets in sorted(units.items()) for target in sorted(targets)
            if RANK[target] <= RANK[unit]]


def test_every_unit_has_a_layer():
    units = {unit_of(module) for module in module_files()}
    assert sorted(units - set(RANK)) == [], "place the new unit in LAYERS (tests/test_import_graph.py)"


def test_no_module_cycles():
    assert cycles(module_graph()) == []


def test_no_package_cycles():
    assert cycles(package_graph(module_graph())) == []


def test_no_upward_arrows():
    assert upward_arrows(package_graph(module_graph())) == []


def test_benchmarks_never_import_tests():
    for file in (ROOT / "benchmarks").rglob("*.py"):
        tree = ast.parse(file.read_text())
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [name for name in names if name.split(".")[0] == "tests"], file


def test_rewards_never_import_jax():
    for file in (ROOT / "tulu_jax" / "rewards").rglob("*.py"):
        tree = ast.parse(file.read_text())
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [name for name in names if name.split(".")[0] in ("jax", "flax")], file


if __name__ == "__main__":  # the figures for a note: python tests/test_import_graph.py
    modules = module_graph()
    units = package_graph(modules)
    print(f"modules {len(modules)}, module cycles {len(cycles(modules))}: {cycles(modules)}")
    print(f"packages {len(units)}, package cycles {len(cycles(units))}: {cycles(units)}")
    print(f"upward arrows {len(upward_arrows(units))}: {upward_arrows(units)}")

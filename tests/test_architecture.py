"""The house rules of docs/architecture.md, read from the imports themselves (with ``ast``), so a new
feature cannot quietly break them."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reskd_infer"
# Floors that serve a deployed model: they never reach up into training, export or the command line.
SERVING = ("runtime", "backends", "video", "models", "io")
ABOVE_SERVING = ("train", "export", "cli")
# Optional extras: imported where they are used, so the package imports without them.
OPTIONAL = {"onnxruntime", "openvino", "tensorrt", "tritonclient", "ray", "cv2", "torchcodec", "matplotlib",
            "modelopt", "onnxconverter_common", "PIL", "nncf"}


def _modules() -> list[tuple[str, Path, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path, ast.parse(path.read_text(), str(path))))
    return out


MODULES = _modules()


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, ast.AST, bool]]:
    """(absolute module, node, at module level) for every import in ``tree``."""
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node, id(node) not in local) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, node, id(node) not in local))
    return out


def _floor(module: str) -> str | None:
    """The folder (or ground-floor module) a reskd_infer module belongs to."""
    parts = module.split(".")
    if parts[0] != "reskd_infer" or len(parts) < 2:
        return None
    return parts[1]


def test_serving_floors_never_import_training_export_or_the_cli():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {target}"
                 for name, path, tree in MODULES if _floor(name) in SERVING
                 for target, node, _ in _imports(tree, name, path.name == "__init__.py")
                 if _floor(target) in ABOVE_SERVING]
    assert not offenders, "\n".join(offenders)


def test_the_package_never_imports_the_demo_or_the_benchmarks():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {target}"
                 for name, path, tree in MODULES
                 for target, node, _ in _imports(tree, name, path.name == "__init__.py")
                 if target.split(".")[0] in ("demo", "benchmarks")]
    assert not offenders, "\n".join(offenders)


def _floor_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path, tree in MODULES:
        if path.name == "__main__.py":  # an entry point (python -m reskd_infer.train), the command line's floor
            continue
        here = _floor(name)
        for target, _, _ in _imports(tree, name, path.name == "__init__.py"):
            there = _floor(target)
            if here and there and there != here:
                graph[here].add(there)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle_between_folders():
    cycle = _cycle(_floor_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_function_local_imports_are_only_for_optional_extras():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {target} inside a function"
                 for name, path, tree in MODULES
                 for target, node, top in _imports(tree, name, path.name == "__init__.py")
                 if not top and target.split(".")[0] not in OPTIONAL]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("folder", ["runtime", "train", "export", "io", "cli", "bench", "card"])
def test_package_init_files_stay_thin(folder):
    init = PACKAGE / folder / "__init__.py"
    tree = ast.parse(init.read_text())
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert not defs, f"{init}: defines {defs}; put them in a module and re-export them"

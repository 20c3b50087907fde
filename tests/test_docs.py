"""Keep the documentation true.

* Every ```python block in ``docs/**/*.md`` runs: the blocks of one page in order, in a fresh
  namespace per page. A block whose first line is ``# doc-test: skip`` is left out (for long
  commands only).
* Every docstring example (doctest) of every module under ``pyroflows/`` and under ``models/common/``
  (the experiments' shared kit) passes, with ``torch`` and ``pyroflows`` available as they are to a
  reader of the reference.
* The API reference names every public module, and the commands the docs give for the paper
  reproductions name registered experiments.
* ``mkdocs build --strict`` succeeds (skipped where mkdocs or mkdocstrings is not installed).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import models.common
import pyroflows

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
_SKIP = "# doc-test: skip"


def _blocks(page: Path, lang: str = "python") -> list[tuple[int, str]]:
    """``(first line number, code)`` of every fenced block of ``lang`` on ``page``."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        if m.group("lang") != lang:
            continue
        line = text.count("\n", 0, m.start("body")) + 1
        body = m.group("body")
        indent = m.group("indent")
        if indent:
            body = "".join(s[len(indent) :] if s.startswith(indent) else s for s in body.splitlines(keepends=True))
        out.append((line, body))
    return out


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


PAGES_WITH_CODE = [p for p in PAGES if _blocks(p)]


@pytest.fixture
def clean_state(tmp_path, monkeypatch):
    """Run in a scratch folder on one thread; restore Pyro's param store, the RNG, validation, the
    default dtype and the thread count afterwards."""
    import pyro

    monkeypatch.chdir(tmp_path)
    pyro.clear_param_store()
    validation, dtype, rng, threads = (
        pyroflows.is_validation_enabled(),
        torch.get_default_dtype(),
        torch.get_rng_state(),
        torch.get_num_threads(),
    )
    # The examples use tiny networks: one thread is faster than several fighting over shared cores.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    pyro.clear_param_store()
    pyroflows.set_validation(validation)
    torch.set_default_dtype(dtype)
    torch.set_rng_state(rng)
    torch.set_num_threads(threads)


def test_docs_have_pages():
    assert (DOCS / "index.md").exists() and (ROOT / "mkdocs.yml").exists()
    assert PAGES_WITH_CODE, "no ```python blocks found under docs/"


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_rel)
def test_page_examples_run(page, clean_state):
    # a module of its own, as a script's __main__ is, so that classes a page defines pickle
    module = types.ModuleType(f"docs_example_{page.stem}")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    for line, code in _blocks(page):
        if code.lstrip().startswith(_SKIP):
            continue
        # Pad with newlines so tracebacks point at the line of the .md file.
        compiled = compile("\n" * (line - 1) + code, str(page), "exec")
        try:
            exec(compiled, namespace)
        except Exception as err:  # add where the block is; the traceback has the line
            raise AssertionError(f"{_rel(page)}: the ```python block at line {line} raised {type(err).__name__}: {err}") from err


# ----------------------------------------------------------------------------- doctests


def _public_modules(package) -> list[str]:
    names = [package.__name__]
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


MODULES = _public_modules(pyroflows)


@pytest.mark.parametrize("name", MODULES + _public_modules(models.common))
def test_docstring_examples(name, clean_state):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    # The docstrings use torch and the module's own names without importing them.
    globs = dict(vars(module))
    globs.update(torch=torch, pyroflows=pyroflows)
    report, failed = [], 0
    for test in finder.find(module, name, globs=globs):
        torch.manual_seed(0)
        failed += runner.run(test, out=report.append).failed
    assert failed == 0, f"{name}: {failed} failing docstring example(s)\n" + "".join(report)


# ----------------------------------------------------------------------------- what the docs name


def _hook(name: str):
    """A module of docs/hooks/ (the build's own code), to check the docs the way the build reads them."""
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", DOCS / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_summary_page_matches_the_code():
    hook = _hook("api_summary")
    page = hook.PAGE.read_text(encoding="utf-8")
    assert page == hook.render(), "docs/reference/summary.md differs from the code: run python docs/hooks/api_summary.py"
    for package in hook.PACKAGES:
        for name in hook.public_names(package):
            assert f"| `{name}` |" in page, (package, name)


def test_reference_covers_every_module():
    hook = _hook("submodules")
    named = hook.named_in_docs(DOCS)
    expanded = set()
    for page in PAGES:
        for m in hook.MARKER.finditer(page.read_text(encoding="utf-8")):
            expanded.update(hook.module_files(ROOT, m.group("package")))
    missing = [name for name in MODULES if name != "pyroflows" and name not in named and name not in expanded]
    assert not missing, (
        f"modules the API reference leaves out: {missing}. A new subpackage needs a page under docs/reference/ "
        "(with '::: package' and '<!-- submodules: package -->') and an entry in mkdocs.yml's nav."
    )
    unknown = [name for name in named if not _resolves(name)]
    assert not unknown, f"'::: name' blocks naming nothing importable: {unknown}"


def _resolves(identifier: str) -> bool:
    try:
        importlib.import_module(identifier)
        return True
    except ImportError:
        parent, _, attr = identifier.rpartition(".")
        try:
            return hasattr(importlib.import_module(parent), attr)
        except ImportError:
            return False


def test_documented_experiment_names_are_registered():
    from models import EXPERIMENTS

    named, modules = set(), set()
    for page in PAGES:
        for _, code in _blocks(page, "bash"):
            for module, args in re.findall(r"python -m (models(?:\.\w+)?)\b([^\n#]*)", code):
                if module != "models":
                    modules.add(module)
                only = re.search(r"--only((?:\s+[\w-]+)+)", args)
                if only:
                    named.update(n for n in only.group(1).split() if not n.startswith("-"))
    unknown = sorted(named - set(EXPERIMENTS))
    assert not unknown, f"the docs tell users to run experiments that models.EXPERIMENTS does not register: {unknown}"
    missing = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    assert not missing, f"the docs tell users to run modules that do not exist: {missing}"


# ----------------------------------------------------------------------------- the site builds


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(
    not (_have("mkdocs") and _have("mkdocstrings") and _have("mkdocstrings_handlers.python")), reason="needs pip install -e '.[docs]'"
)
def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "reference" / "transforms" / "index.html").exists()

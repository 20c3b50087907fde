"""MkDocs hook: list a package's modules on its reference page without naming each one by hand.

A line ``<!-- submodules: pyroflows.transforms -->`` in a page is replaced by one mkdocstrings
block (``::: pyroflows.transforms.<module>``) for every public module file of that package that no
page of the docs names in a ``:::`` block already. So a page can list its modules in the order
it wants, and a module added later appears at the marker without a change to the docs.
Subpackages are not expanded: each gets a page of its own (tests/test_docs.py checks this).
"""

from __future__ import annotations

import re
from pathlib import Path

MARKER = re.compile(r"^<!-- submodules: (?P<package>[\w.]+) -->[ \t]*$", re.M)
DIRECTIVE = re.compile(r"^::: (?P<id>[\w.]+)", re.M)


def module_files(root: Path, package: str) -> list[str]:
    """Public modules that are plain files directly inside ``package`` (sorted)."""
    folder = root.joinpath(*package.split("."))
    return [f"{package}.{p.stem}" for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_")]


def named_in_docs(docs_dir: Path) -> set[str]:
    return {m.group("id") for page in docs_dir.rglob("*.md") for m in DIRECTIVE.finditer(page.read_text(encoding="utf-8"))}


def on_page_markdown(markdown: str, page, config, files) -> str:
    if not MARKER.search(markdown):
        return markdown
    root = Path(config.config_file_path).parent
    named = named_in_docs(Path(config.docs_dir))

    def expand(match: re.Match) -> str:
        modules = [m for m in module_files(root, match.group("package")) if m not in named]
        return "\n\n".join(f"::: {m}" for m in modules)

    return MARKER.sub(expand, markdown)

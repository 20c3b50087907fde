"""MkDocs hook: render the reST roles used in pyroflows docstrings.

The docstrings follow Pyro's habit of reST math (``.. math::`` blocks and ``:math:`` roles) and
cross-reference roles (``:class:``, ``:func:``, ``:meth:``, ``:mod:``) inside Google-style sections.
mkdocstrings renders docstrings as Markdown, which leaves those roles as literal text. This hook
rewrites the rendered HTML of every page:

* ``<p>.. math::</p><pre><code>TEX</code></pre>`` and ``<p>.. math:: TEX</p>`` become display math,
* ``:math:<code>TEX</code>`` becomes inline math (both typeset by MathJax through arithmatex's
  ``arithmatex`` class, the same markup the hand-written pages use),
* ``:class:<code>Name</code>`` and friends become links (autorefs, resolved after all pages are
  rendered) when the name can be resolved, plain code otherwise,
* a paragraph ending in ``::`` (a reST literal-block marker such as ``Example::``) ends in ``:``.
"""

from __future__ import annotations

import bisect
import re

_DISPLAY_BLOCK = re.compile(r"<p>\.\. math::\s*</p>\s*<pre><code>(?P<tex>.*?)</code></pre>", re.DOTALL)
_DISPLAY_INLINE = re.compile(r"<p>\.\. math::\s+(?P<tex>.+?)</p>", re.DOTALL)
_INLINE = re.compile(r":math:<code>(?P<tex>.*?)</code>", re.DOTALL)
_XREF = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):<code>(?P<target>~?[\w.]+)(?:\(\))?</code>")
_LITERAL_MARKER = re.compile(r"::</p>")
_ANCHOR = re.compile(r'id="(?P<id>pyroflows(?:\.\w+)+)"')


def _display(match: re.Match) -> str:
    return '<div class="arithmatex">\\[\n' + match.group("tex").strip() + "\n\\]</div>"


def _inline(match: re.Match) -> str:
    return '<span class="arithmatex">\\(' + match.group("tex") + "\\)</span>"


def _resolver(html: str):
    """Resolve a name as Python would from the object documented just above it on the page."""
    anchors = [(m.start(), m.group("id")) for m in _ANCHOR.finditer(html)]
    positions = [p for p, _ in anchors]
    known = {a for _, a in anchors}

    def resolve(match: re.Match) -> str:
        target = match.group("target")
        shown = target.lstrip("~")
        identifier = shown
        if target.startswith("~"):
            shown = shown.rsplit(".", 1)[-1]
        code = f"<code>{shown}</code>"
        if "." not in identifier or not identifier.startswith("pyroflows"):
            i = bisect.bisect_right(positions, match.start()) - 1
            scope = anchors[i][1].split(".") if i >= 0 else []
            for k in range(len(scope), 0, -1):
                candidate = ".".join(scope[:k] + [identifier])
                if candidate in known:
                    identifier = candidate
                    break
            else:
                return code
        return f'<autoref identifier="{identifier}" optional>{code}</autoref>'

    return resolve


def on_page_content(html: str, **kwargs) -> str:
    html = _DISPLAY_BLOCK.sub(_display, html)
    html = _DISPLAY_INLINE.sub(_display, html)
    html = _INLINE.sub(_inline, html)
    html = _XREF.sub(_resolver(html), html)
    return _LITERAL_MARKER.sub(":</p>", html)

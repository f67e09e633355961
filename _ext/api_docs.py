"""Sphinx extension: the API reference (api/*.md) as a reader of the package expects it.

The docstrings are written for notebooks and `help()`, in Markdown: `name` is inline code. The
pages are rendered by sphinx-autoapi's autodoc-style directives, which read docstrings as
reStructuredText, where a single backquote means something else (and a stray one is a warning).
This extension

- turns Markdown inline code (`x`) into reStructuredText literals (``x``), and escapes a lone `*`
  that would start emphasis (`*args`);
- drops the "Docs: <url>" line that nbdev writes as each module's docstring (the page is the docs);
- documents a module's public names, those in its `__all__`, and skips the ones it only imports from
  an earlier chapter (`from .gpt import GPT`): each name appears once, on its own module's page;
- reads the API pages again on every build, since Sphinx cannot know that they depend on the package.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

_CODE = re.compile(r"(?<![`\\])`([^`]+)`(?![`_])")


def _literal(m: re.Match) -> str:
    "A reStructuredText literal for the Markdown code span `m`, escaped from the words around it."
    s, i, j = m.string, m.start(), m.end()
    before = "\\ " if i > 0 and not (s[i - 1].isspace() or s[i - 1] in "'\"([{<-/:") else ""
    after = "\\ " if j < len(s) and not (s[j].isspace() or s[j] in "-.,:;!?\\/'\")]}>") else ""
    return before + "``" + m.group(1) + "``" + after


def markdown_to_rst(lines: list[str]) -> list[str]:
    "The docstring `lines` with Markdown inline code as reStructuredText literals (a span may cross lines)."
    text = "\n".join(line for line in lines if not line.startswith("Docs: http"))
    if "``" in text:                                      # already reStructuredText
        return text.split("\n")
    segs = re.split(r"(`[^`]+`)", text)
    # In prose (even segments), a lone * would start emphasis.
    text = "".join(seg if k % 2 else re.sub(r"(?<![\w\\])\*(?=\w)", r"\\*", seg) for k, seg in enumerate(segs))
    return _CODE.sub(_literal, text).split("\n")


def process_docstring(app, what, name, obj, options, lines):
    lines[:] = markdown_to_rst(lines)


def public_names(package: Path) -> dict[str, set[str]]:
    "Each module's `__all__` (nbdev writes one for the names a chapter exports), read without importing."
    names = {}
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                names[f"{package.name}.{path.stem}"] = set(ast.literal_eval(node.value))
    return names


_PUBLIC: dict[str, set[str]] = {}


def skip_imported(app, what, name, obj, skip, options):
    "Skip a module-level name that is not in its module's `__all__` (an import); else keep autoapi's choice."
    full = getattr(obj, "id", None) or getattr(obj, "name", None) or ""
    module, _, short = str(full).rpartition(".")
    if module in _PUBLIC and short not in _PUBLIC[module]:
        return True
    return None


def read_public_names(app, config):
    for d in config.autoapi_dirs:
        _PUBLIC.update(public_names(Path(app.srcdir) / d))


def reread_api_pages(app, env, added, changed, removed):
    "The API pages change whenever the package does: read them again on every build (13 short pages)."
    return [d for d in env.found_docs if d.startswith("api/")]


def setup(app):
    app.connect("env-get-outdated", reread_api_pages)
    app.connect("config-inited", read_public_names)
    app.connect("autodoc-process-docstring", process_docstring)
    app.connect("autoapi-skip-member", skip_imported)
    app.connect("autodoc-skip-member", skip_imported)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}

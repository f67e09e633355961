"""Sphinx extension: honour nbdev's `#|` cell directives in the rendered book.

nbdev reads directives such as `#| export` or `#| hide` from the first lines of a code cell.
Jupyter-book (myst-nb) knows nothing about them and would print them as code. This extension
runs after myst-nb has turned each notebook into a document tree and

- removes every leading `#|` line from the code shown to the reader,
- removes a cell marked `#| hide` entirely (input and output),
- removes the input of a cell marked `#| echo: false` and the output of one marked `#| output: false`,
- removes a cell that is left with no code and no output (e.g. `#| default_exp attention`).

So notebooks stay ordinary nbdev notebooks, and the book shows only what a reader needs.
"""
from __future__ import annotations

import re

from docutils import nodes

_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.*?)\s*$")


def _split_directives(code: str) -> tuple[list[str], str]:
    "Split the leading `#|` directive lines of `code` from the rest."
    lines = code.split("\n")
    directives = []
    while lines and (m := _DIRECTIVE.match(lines[0])):
        directives.append(m.group(1))
        lines.pop(0)
    return directives, "\n".join(lines).strip("\n")


def _has(directives: list[str], name: str, value: str | None = None) -> bool:
    for d in directives:
        key, _, val = d.partition(":")
        if key.strip() == name and (value is None or val.strip().lower() == value):
            return True
    return False


def strip_nbdev_directives(app, doctree: nodes.document) -> None:
    for cell in list(doctree.findall(nodes.container)):
        if cell.get("nb_element") != "cell_code":
            continue
        source = next((c for c in cell.children if isinstance(c, nodes.container)
                       and c.get("nb_element") == "cell_code_source"), None)
        output = next((c for c in cell.children if isinstance(c, nodes.container)
                       and c.get("nb_element") == "cell_code_output"), None)
        block = next(source.findall(nodes.literal_block), None) if source is not None else None
        if block is None:
            continue
        directives, code = _split_directives(block.astext())
        if not directives:
            continue
        if _has(directives, "hide"):
            cell.parent.remove(cell)
            continue
        block.rawsource = code
        block.children = [nodes.Text(code)]
        if output is not None and _has(directives, "output", "false"):
            cell.remove(output)
            output = None
        if _has(directives, "echo", "false") or not code.strip():
            cell.remove(source)
        if output is None and (not code.strip() or _has(directives, "echo", "false")):
            cell.parent.remove(cell)


def setup(app):
    app.connect("doctree-read", strip_nbdev_directives)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}

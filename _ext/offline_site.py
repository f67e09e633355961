"""Sphinx extension: keep the built book self-contained and free of console errors.

- Drops sphinx-thebe's scripts. Jupyter-book always loads sphinx-thebe, whose "live code" button
  fetches its code from unpkg.com at run time (this book is read offline), and whose inline
  configuration script gets added twice, which makes the browser log
  "Identifier 'THEBE_JS_URL' has already been declared".
- The theme's colour mode is set in `_config.yml` (`html_context.default_mode`); without it the
  theme logs "Got invalid theme mode" on a first visit.
"""
from __future__ import annotations


def _is_thebe(script) -> bool:
    name = str(getattr(script, "filename", script) or "")
    body = str(getattr(script, "attributes", {}).get("body", ""))
    return "thebe" in name or "THEBE_JS_URL" in body


def drop_thebe_scripts(app, pagename, templatename, context, doctree):
    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if not _is_thebe(s)]


def setup(app):
    app.connect("html-page-context", drop_thebe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}

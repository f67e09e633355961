"""Sphinx extension: the book in two languages from one source.

The English pages are the source; the Chinese site is the same build with `language = "zh_CN"` and the
message catalogs in `locales/zh_CN/LC_MESSAGES/` (Sphinx's own gettext machinery, see `tools/i18n.py`).
This extension adds what Sphinx leaves out:

- **Stale is an error.** In a translated build, every message of a page that needs translation and did
  not get one (missing from the catalog, empty, or fuzzy because its English changed) is reported as a
  warning naming the page and the sentence; the book builds with `-W`, so the build fails.
- **Anchors stay English.** A section's anchor comes from its English heading on both sites, so a
  link to a section resolves in both languages (see `KeepHeadingAnchors`).
- **A link to the twin page.** Every page gets a visible link to the same page in the other language:
  English pages live in `_build/html/`, Chinese pages in `_build/html/zh_CN/`.
"""
from __future__ import annotations

import re

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx.util.nodes import extract_messages

logger = logging.getLogger(__name__)

TRANSLATED_DIR = "zh_CN"                               # where the Chinese site sits inside the English one
_INLINE_CODE = re.compile(r"`[^`]*`|\$[^$]*\$|\{[a-z:]+\}`[^`]*`")


def needs_translation(msg: str) -> bool:
    """A message needs translating when it has words outside its code, roles and inline maths.

    Formulas (`$$...$$` blocks arrive as messages too), bare code spans and numbers read the same in
    Chinese, so a catalog may leave them untranslated."""
    if msg.startswith("\n") or msg.lstrip().startswith("\\"):
        return False                                      # a display formula
    rest = _INLINE_CODE.sub(" ", msg)
    return re.search(r"[A-Za-z]{2,}", rest) is not None


def report_stale(docname: str, msg: str, node) -> None:
    "The build's warning (an error under -W) for a message of `docname` left in English."
    logger.warning("untranslated or stale message in %s (run `make translations`): %r", docname, msg[:120],
                   location=node, type="translations", subtype="stale")


class ReportUntranslated(SphinxTransform):
    """Warn, naming the page and the sentence, for every message left in English in a translated build."""

    default_priority = 21                                 # right after sphinx.transforms.i18n.Locale (20)

    def apply(self, **kwargs) -> None:
        from sphinx.builders.gettext import MessageCatalogBuilder
        if isinstance(self.app.builder, MessageCatalogBuilder) or self.config.language in (None, "", "en"):
            return
        if self.env.docname.startswith("api/"):
            return                                        # the API reference is the docstrings, in English
        for node, msg in extract_messages(self.document):
            if node.get("translated") or not needs_translation(msg):
                continue
            if isinstance(node, nodes.term) and self.env.docname == "glossary":
                continue                                  # glossary terms are bilingual already
            report_stale(self.env.docname, msg, node)


class KeepHeadingAnchors(SphinxTransform):
    """Keep a translated page's heading anchors those of its English source.

    Sphinx translates a title by parsing the translation as a heading of its own; MyST then records that
    lone heading's anchor as *the page's* anchors (`env.metadata[doc]["myst_slugs"]`), and every link to
    a section of the page (`[](nbs/03_multi_head.ipynb#the-layer)`) would stop resolving. The page's
    own parse left the full, English set on the document: put it back after the translation, with each
    anchor's link text the translated title."""

    default_priority = 21

    def apply(self, **kwargs) -> None:
        slugs = getattr(self.document, "myst_slugs", None)
        if not slugs or self.config.language in (None, "", "en"):
            return
        titles = {}                                           # section id -> its (translated) title
        for section in self.document.findall(nodes.section):
            if section.children and isinstance(section[0], nodes.title):
                for id_ in section["ids"]:
                    titles[id_] = section[0].astext()
        # A link with no text of its own, [](page#anchor), shows the section's title: the translated one.
        self.env.metadata[self.env.docname]["myst_slugs"] = {
            slug: (line, id_, titles.get(id_, text)) for slug, (line, id_, text) in slugs.items()}


class TranslateToctreeCaptions(SphinxTransform):
    """Translate the part captions of the navigation (`caption:` in `_toc.yml`).

    sphinx-external-toc inserts the toctrees from `_toc.yml` at priority 100, after Sphinx's own
    translation pass (20), so their captions would stay English; the gettext builder does extract them
    (into the root page's catalog), and this pass applies their translations."""

    default_priority = 101

    def apply(self, **kwargs) -> None:
        if self.config.language in (None, "", "en"):
            return
        from os import path
        from sphinx import addnodes
        from sphinx.locale import init as init_locale
        from sphinx.util.i18n import docname_to_domain
        domain = docname_to_domain(self.env.docname, self.config.gettext_compact)
        dirs = [path.join(self.env.srcdir, d) for d in self.config.locale_dirs]
        catalog, found = init_locale(dirs, self.config.language, domain)
        if not found:
            return
        for node in self.document.findall(addnodes.toctree):
            raw = node.get("rawcaption")
            if raw and (text := catalog.gettext(raw)) != raw:
                node["caption"] = text
            elif raw and needs_translation(raw):
                report_stale(self.env.docname, raw, node)


def twin_link(app, pagename, templatename, context, doctree):
    """Put a link to the same page in the other language at the top of every page."""
    if doctree is None or "body" not in context:
        return
    up = "../" * pagename.count("/")
    if app.config.language in (None, "", "en"):
        href, label, lang = f"{up}{TRANSLATED_DIR}/{pagename}.html", "中文", "zh-CN"
    else:
        href, label, lang = f"{up}../{pagename}.html", "English", "en"
    context["body"] = (f'<p class="lang-switch"><a class="lang-switch-link" href="{href}" hreflang="{lang}" '
                       f'lang="{lang}">{label}</a></p>\n' + context["body"])


def interface_strings(app, config):
    """The search box text, which jupyter-book sets in English; the theme's other strings come from its
    own catalogs and from `locales/<lang>/LC_MESSAGES/sphinx.po` for the few it lacks."""
    if config.language not in (None, "", "en"):
        config.html_theme_options = {**config.html_theme_options, "search_bar_text": "搜索本书……"}


def setup(app):
    app.connect("config-inited", interface_strings)
    app.add_transform(ReportUntranslated)
    app.add_transform(KeepHeadingAnchors)
    app.add_transform(TranslateToctreeCaptions)
    app.connect("html-page-context", twin_link)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}

"""The Chinese edition: message catalogs, their check, the Chinese build's config and Chinese notebooks.

The English text (notebooks and pages) is the one source. Sphinx's internationalisation extracts every
paragraph, heading, list item, table cell and caption as a *message*; the Chinese text of each lives in a
gettext catalog per page, `locales/zh_CN/LC_MESSAGES/<page>.po`. A Chinese page is the English page with
its messages replaced and nothing else: code, outputs and figures are the English build's own.

    python tools/i18n.py update              # after editing English text: refresh the catalogs (make translations)
    python tools/i18n.py check               # every message translated and none fuzzy (make test runs it)
    python tools/i18n.py config [--quick]    # print the Chinese build's jupyter-book config
    python tools/i18n.py notebooks OUT_DIR   # write the chapter notebooks with Chinese markdown
    python tools/i18n.py stats               # messages per page
    python tools/i18n.py todo PAGE FILE      # a translator's work list: the page's untranslated/fuzzy messages
    python tools/i18n.py fill PAGE FILE      # write a filled work list back, checking the markup survived

`update` marks a message *fuzzy* when its English changed (the old translation is kept beside it for the
translator) and adds new messages untranslated; `check` and the Chinese build both fail on either.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LANG = "zh_CN"
LOCALES = ROOT / "locales"
CATALOGS = LOCALES / LANG / "LC_MESSAGES"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "_ext"))
from translations import needs_translation  # noqa: E402  (one rule for the build and for this check)


def toc_pages() -> list[str]:
    """Every translated page of the book, in `_toc.yml` order (docnames without suffix).

    The API reference (`api/`) is generated from the package's English docstrings and stays English."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    pages = [toc["root"]]

    def walk(entries):
        for e in entries:
            if "file" in e:
                pages.append(e["file"])
            walk(e.get("sections", []) + e.get("chapters", []))
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return [p for p in pages if not p.startswith("api/")]


def translated_config(quick: bool = False) -> str:
    "The jupyter-book config of the Chinese build: the English one with the language and search set."
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    cfg["title"] = cfg["title"] + " 中文版"
    # The Chinese build reuses the English build's executed notebooks: the code cells are identical, so
    # jupyter-cache finds every notebook's outputs and runs nothing (quick mode executes nothing at all).
    cfg["execute"]["execute_notebooks"] = "off" if quick else "cache"
    cfg["execute"]["cache"] = str(ROOT / "_build" / ".jupyter_cache")
    conf = cfg["sphinx"]["config"]
    conf["language"] = LANG
    conf["html_search_language"] = "zh"          # Sphinx segments Chinese words for its search with jieba
    conf["nb_code_prompt_show"] = "显示代码"      # myst-nb's button on a collapsed cell (English: "Show code cell source")
    conf["nb_code_prompt_hide"] = "隐藏代码"
    return yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False)


def build_pot(out: Path) -> Path:
    "Extract every message of the English book into .pot templates (no notebook is executed)."
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    cfg["execute"]["execute_notebooks"] = "off"
    cfg_path = ROOT / ".gettext_config.yml"
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    try:
        subprocess.run([str(BIN / "jupyter-book"), "build", str(ROOT), "--builder", "custom",
                        "--custom-builder", "gettext", "--config", str(cfg_path), "--path-output", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
    finally:
        cfg_path.unlink()
    return out / "_build" / "gettext"


def prefill(po_path: Path) -> int:
    "Copy messages that read the same in Chinese (formulas, bare code, glossary terms) into their msgstr."
    with po_path.open("rb") as f:
        cat = read_po(f)
    n = 0
    for m in cat:
        if m.id and (not m.string or m.fuzzy) and (not needs_translation(m.id) or _glossary_term(po_path, m)):
            m.string = m.id
            m.flags.discard("fuzzy")
            n += 1
    if n:
        from babel.messages.pofile import write_po
        with po_path.open("wb") as f:
            write_po(f, cat, width=0)
    return n


def _glossary_term(po_path: Path, m) -> bool:
    "A glossary entry's term lines are bilingual already (`attention`, `注意力（注意力机制）`)."
    if po_path.stem != "glossary":
        return False
    return "\n" not in m.id and len(m.id) < 60 and not m.id.endswith(".") and " " not in m.id.strip()


def update(args) -> None:
    pot = build_pot(ROOT / "_build" / "gettext_src")
    subprocess.run([str(BIN / "sphinx-intl"), "update", "-p", str(pot), "-d", str(LOCALES), "-l", LANG,
                    "-w", "0", "--no-obsolete"], check=True)
    for po in sorted(CATALOGS.rglob("*.po")):
        if po.name == "sphinx.po":
            continue                                      # the interface strings the theme lacks in Chinese
        if po.relative_to(CATALOGS).with_suffix("").as_posix() not in toc_pages():
            po.unlink()                                   # a page that left the book, or the API reference
        else:
            prefill(po)
    for d in sorted(CATALOGS.rglob("*"), reverse=True):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    check(args, exit_on_error=False)


def problems() -> list[str]:
    "Every untranslated, fuzzy or missing message, as 'page: sentence' lines."
    out = []
    for page in toc_pages():
        po = CATALOGS / f"{page}.po"
        if not po.exists():
            out.append(f"{page}: no catalog {po.relative_to(ROOT)} (run `make translations`)")
            continue
        with po.open("rb") as f:
            cat = read_po(f)
        for m in cat:
            if not m.id:
                continue
            if m.fuzzy:
                out.append(f"{page}: fuzzy (the English changed): {m.id[:100]!r}")
            elif not m.string and needs_translation(m.id):
                out.append(f"{page}: untranslated: {m.id[:100]!r}")
            elif m.string and (bad := markup_errors(m.id, m.string)):
                out.append(f"{page}: the translation breaks the markup ({'; '.join(bad)}): {m.id[:100]!r}")
    return out


def check(args, exit_on_error: bool = True) -> None:
    found = problems()
    for line in found:
        print(line)
    n_pages = len(toc_pages())
    if found:
        print(f"{len(found)} messages need translating ({LANG}); see README, 'Translations'.")
        if exit_on_error:
            sys.exit(1)
    else:
        print(f"translations: all {n_pages} pages complete in {LANG}")


def stats(args) -> None:
    total = 0
    for page in toc_pages():
        with (CATALOGS / f"{page}.po").open("rb") as f:
            cat = read_po(f)
        n = sum(1 for m in cat if m.id and m.string and needs_translation(m.id))
        total += n
        print(f"{page:40} {n:5d}")
    print(f"{'total':40} {total:5d}")


_LOCATION = re.compile(r"^(.*\.ipynb):(\d+)$")


def translate_notebook(nb_path: Path, po_path: Path) -> dict:
    """The notebook with each markdown cell's messages replaced by their translations; code untouched.

    myst-nb numbers a notebook's lines as `(cell + 1) * 10000 + line`, so each message's location in the
    catalog names the cell it came from; inside that cell the English text is found (line breaks may
    differ) and replaced, last message first so earlier offsets stay valid."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    with po_path.open("rb") as f:
        cat = read_po(f)
    by_cell: dict[int, list[tuple[int, str, str]]] = {}
    for m in cat:
        if not (m.id and m.string) or m.string == m.id or m.fuzzy:
            continue
        for loc, line in m.locations:
            if loc.endswith(nb_path.name) and line:
                by_cell.setdefault(int(line) // 10000 - 1, []).append((int(line) % 10000, m.id, m.string))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown" or i not in by_cell:
            continue
        src = "".join(cell["source"])
        lines = src.split("\n")
        for line_no, msgid, msgstr in sorted(by_cell[i], key=lambda t: (-t[0], -len(t[1]))):
            start = sum(len(x) + 1 for x in lines[:max(line_no - 1, 0)])
            pattern = r"\s+".join(re.escape(w) for w in msgid.split())
            hit = re.compile(pattern).search(src, start)
            if hit is None:
                hit = re.compile(pattern).search(src)
            if hit is None:
                raise ValueError(f"{nb_path.name} cell {i}: message not found in the markdown: {msgid[:80]!r}")
            src = src[:hit.start()] + msgstr + src[hit.end():]
            lines = src.split("\n")
        cell["source"] = src.splitlines(keepends=True)
    return nb


def notebooks(args) -> None:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for nb_path in sorted((ROOT / "nbs").glob("[0-9][0-9]_*.ipynb")):
        nb = translate_notebook(nb_path, CATALOGS / "nbs" / f"{nb_path.stem}.po")
        tmp = out / f".{nb_path.name}.tmp"
        tmp.write_text(json.dumps(nb, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        tmp.replace(out / nb_path.name)
        print(f"{out / nb_path.name}")


# One left-to-right scan, so that a `{` inside a code span is not read as a role, nor a `$` as maths.
_TOKEN = re.compile(r"(?P<formula>\$\$.*?\$\$|\$[^$\n]+\$)|\{(?P<role>[a-z:]+)\}`(?P<body>[^`]*)`|`(?P<code>[^`]+)`"
                    r"|\]\((?P<link>[^)\s]*)\)", re.S)


def markup(text: str) -> dict[str, list[str]]:
    """What a translation must keep: formulas, code spans, link targets, numbers, emphasis, role targets.

    `{term}`attention`` and `{term}`注意力 <attention>`` have the same target, so a translation may (and
    should) give a role its Chinese text; `{cite:p}`vaswani2017`` must stay as it is."""
    found = {"formulas": [], "roles": [], "code": [], "links": [], "numbers": []}
    plain = []
    last = 0
    for m in _TOKEN.finditer(text):
        plain.append(text[last:m.start()])
        last = m.end()
        if m.group("formula"):
            found["formulas"].append(m.group("formula"))
        elif m.group("role"):
            role, body = m.group("role"), m.group("body")
            t = re.search(r"<([^<>]+)>\s*$", body)
            target = (t.group(1) if t else body).strip()
            found["roles"].append(f"{role}:{target.lower() if role == 'term' else target}")
        elif m.group("code") is not None:
            found["code"].append(m.group("code"))
        else:
            found["links"].append(m.group("link"))
    plain.append(text[last:])
    found["numbers"] = re.findall(r"\d+(?:[.,]\d+)*", " ".join(plain))
    found["emphasis"] = _emphasis(text)
    return {k: sorted(v) for k, v in found.items()}


_MD = None


def _emphasis(text: str) -> list[str]:
    """Bold and italic spans as Markdown parses them, and any `*` left as a literal character: in Chinese,
    `**` next to a full-width character or a role often does not open or close, and shows as stars."""
    global _MD
    if _MD is None:
        from markdown_it import MarkdownIt
        from mdit_py_plugins.dollarmath import dollarmath_plugin
        from mdit_py_plugins.myst_role import myst_role_plugin
        _MD = MarkdownIt("commonmark").use(myst_role_plugin).use(dollarmath_plugin)
    out = []
    for token in _MD.parseInline(text):
        for child in token.children or []:
            if child.type in ("strong_open", "em_open"):
                out.append(child.type[:-5])
            elif child.type == "text" and "*" in child.content:
                out.append("literal *")
    return out


def markup_errors(msgid: str, msgstr: str) -> list[str]:
    a, b = markup(msgid), markup(msgstr)
    return [f"{k}: English has {a[k]}, translation has {b[k]}" for k in a if a[k] != b[k]]


def _catalog(page: str):
    po = CATALOGS / f"{page}.po"
    with po.open("rb") as f:
        return po, read_po(f)


def todo(args) -> None:
    """Write a translator's work list: one `EN:` line per message that needs a translation, then a `ZH:`
    line to fill in (a fuzzy message shows its old translation as an `OLD:` line). Plain text: no
    escaping of the backslashes in formulas."""
    po, cat = _catalog(args.page)
    lines = [f"# {args.page}: write each translation after 'ZH: ' on one line; keep formulas, code, roles' targets."]
    n = 0
    for m in cat:
        if m.id and (m.fuzzy or not m.string) and (needs_translation(m.id) or args.page == "glossary"):
            if "\n" in m.id:
                raise ValueError(f"{args.page}: a message spans lines, which the work list cannot hold: {m.id[:60]!r}")
            lines += ["", f"EN: {m.id}"] + ([f"OLD: {m.string}"] if m.fuzzy and m.string else []) + ["ZH: "]
            n += 1
    Path(args.file).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{n} messages to translate in {args.page} -> {args.file}")


def _heading_number(en: str, zh: str) -> str:
    "A translated `1. Attention` must not read as a Markdown list: `1\\. 注意力`."
    return re.sub(r"^(\d+)\. ", r"\1\\. ", zh) if re.match(r"^\d+\. ", en) else zh


def fill(args) -> None:
    """Write a work list's translations into the page's catalog, refusing any whose formulas, code
    spans, link targets, role targets or numbers differ from the English."""
    from babel.messages.pofile import write_po
    po, cat = _catalog(args.page)
    pairs, en = [], None
    for line in Path(args.file).read_text(encoding="utf-8").splitlines():
        if line.startswith("EN: "):
            en = line[4:]
        elif line.startswith("ZH:") and en is not None:
            pairs.append((en, line[3:].strip()))
            en = None
    errors, n = [], 0
    for en, zh in pairs:
        if not zh:
            continue
        m = cat.get(en)
        if m is None:
            errors.append(f"not in the catalog: {en[:80]!r}")
            continue
        bad = markup_errors(en, zh)
        if bad:
            errors.append(f"{en[:80]!r}: " + "; ".join(bad))
            continue
        m.string, n = _heading_number(en, zh), n + 1
        m.flags.discard("fuzzy")
    tmp = po.with_suffix(".po.tmp")
    with tmp.open("wb") as f:
        write_po(f, cat, width=0)
    tmp.replace(po)
    for e in errors:
        print("refused:", e)
    print(f"{n} translations written to {po}; {len(errors)} refused")
    if errors:
        sys.exit(1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("update").set_defaults(fn=update)
    sub.add_parser("check").set_defaults(fn=check)
    sub.add_parser("stats").set_defaults(fn=stats)
    c = sub.add_parser("config")
    c.add_argument("--quick", action="store_true")
    c.set_defaults(fn=lambda a: print(translated_config(a.quick), end=""))
    for name, fn in (("todo", todo), ("fill", fill)):
        t = sub.add_parser(name)
        t.add_argument("page")
        t.add_argument("file")
        t.set_defaults(fn=fn)
    n = sub.add_parser("notebooks")
    n.add_argument("out_dir")
    n.set_defaults(fn=notebooks)
    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()

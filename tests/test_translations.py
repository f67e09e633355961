"""The Chinese edition's machinery (tools/i18n.py, _ext/translations.py) and the Chinese notebooks.

`make test` runs `tools/i18n.py check` (every message translated, none fuzzy) and builds the Chinese site
with -W (no English sentence left on a Chinese page); these tests check the pieces those rely on, and
that `make notebooks-zh` writes notebooks whose code is the English notebooks' code.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "_ext"))
import i18n  # noqa: E402
from translations import needs_translation  # noqa: E402

CHAPTERS = sorted((ROOT / "nbs").glob("[0-9][0-9]_*.ipynb"))


def test_every_page_has_a_catalog():
    pages = i18n.toc_pages()
    assert "intro" in pages and "nbs/01_attention" in pages and not any(p.startswith("api/") for p in pages)
    missing = [p for p in pages if not (i18n.CATALOGS / f"{p}.po").is_file()]
    assert not missing, f"pages without a Chinese catalog (run `make translations`): {missing}"


def test_what_needs_translating():
    assert needs_translation("The weights sum to one.")
    assert needs_translation("{term}`attention <attention>` is a soft look-up")
    assert not needs_translation("\nq_i = x_i W^Q\n")                  # a display formula
    assert not needs_translation("`causal_mask(T)`")                   # bare code
    assert not needs_translation("$d_k$, $d_v$")
    assert not needs_translation("注意力（注意力机制）")


def test_markup_must_survive_a_translation():
    en = "See {doc}`chapter 10 <10_gpt>`, {term}`masks <mask>` and $x_1$ in 2 steps {cite:p}`vaswani2017`, [here](a.ipynb#b), `f(1)`."
    good = "见{doc}`第 10 章 <10_gpt>`、{term}`掩码 <mask>` 与 $x_1$，2 步 {cite:p}`vaswani2017`，[这里](a.ipynb#b)，`f(1)`。"
    assert i18n.markup_errors(en, good) == []
    for bad, what in [(good.replace("<mask>", "<masks>"), "roles"), (good.replace("$x_1$", "$x_2$"), "formulas"),
                      (good.replace("2 步", "两步"), "numbers"), (good.replace("`f(1)`", "`f(2)`"), "code"),
                      (good.replace("a.ipynb#b", "a.ipynb"), "links"), (good.replace(" {cite:p}`vaswani2017`", ""), "roles")]:
        errors = i18n.markup_errors(en, bad)
        assert errors and any(e.startswith(what) for e in errors), (bad, errors)


def test_a_numbered_heading_stays_a_heading():
    assert i18n._heading_number("4. Positional encoding", "4. 位置编码") == "4\\. 位置编码"
    assert i18n._heading_number("The 4 heads", "4 个头") == "4 个头"


def test_fill_writes_checked_translations_and_refuses_the_rest(tmp_path, monkeypatch):
    po = tmp_path / "LC_MESSAGES" / "page.po"
    po.parent.mkdir()
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                  'msgid "One $x$ per row."\nmsgstr ""\n\n'
                  'msgid "Two {term}`heads <head>`."\nmsgstr ""\n\n'
                  '#, fuzzy\nmsgid "Three steps."\nmsgstr "两步。"\n', encoding="utf-8")
    monkeypatch.setattr(i18n, "CATALOGS", po.parent)
    work = tmp_path / "work.txt"
    i18n.todo(type("A", (), {"page": "page", "file": str(work)}))
    text = work.read_text(encoding="utf-8")
    assert text.count("EN: ") == 3 and "OLD: 两步。" in text            # the fuzzy one shows its old translation
    text = (text.replace("EN: One $x$ per row.\nZH: ", "EN: One $x$ per row.\nZH: 每行一个 $x$。")
                .replace("EN: Two {term}`heads <head>`.\nZH: ", "EN: Two {term}`heads <head>`.\nZH: 两个{term}`头 <heads>`。")
                .replace("Three steps.\nOLD: 两步。\nZH: ", "Three steps.\nOLD: 两步。\nZH: 三步。"))
    work.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit):
        i18n.fill(type("A", (), {"page": "page", "file": str(work)}))     # the role's target changed: refused
    from babel.messages.pofile import read_po
    with po.open("rb") as f:
        cat = {m.id: m for m in read_po(f) if m.id}
    assert cat["One $x$ per row."].string == "每行一个 $x$。"
    assert cat["Two {term}`heads <head>`."].string == ""                # refused, left for the translator
    assert cat["Three steps."].string == "三步。" and not cat["Three steps."].fuzzy


@pytest.fixture(scope="module")
def chinese_notebooks(tmp_path_factory):
    out = tmp_path_factory.mktemp("nbs_zh")
    subprocess.run([sys.executable, str(ROOT / "tools" / "i18n.py"), "notebooks", str(out)], check=True,
                   capture_output=True)
    return out


@pytest.mark.parametrize("english", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chinese_notebook_has_the_english_code(chinese_notebooks, english):
    zh = json.loads((chinese_notebooks / english.name).read_text(encoding="utf-8"))
    en = json.loads(english.read_text(encoding="utf-8"))
    assert [c["cell_type"] for c in zh["cells"]] == [c["cell_type"] for c in en["cells"]]
    assert [c["source"] for c in zh["cells"] if c["cell_type"] == "code"] == \
           [c["source"] for c in en["cells"] if c["cell_type"] == "code"]
    assert zh["metadata"] == en["metadata"]
    zh_md = "".join("".join(c["source"]) for c in zh["cells"] if c["cell_type"] == "markdown")
    en_md = "".join("".join(c["source"]) for c in en["cells"] if c["cell_type"] == "markdown")
    cjk = len(re.findall(r"[\u4e00-\u9fff]", zh_md))
    assert cjk > 0.5 * len(en_md.split()), f"{english.name}: only {cjk} Chinese characters in the Chinese notebook"
    title_zh = next(c for c in zh["cells"] if c["cell_type"] == "markdown")["source"][0]
    assert title_zh.startswith("# ") and re.search(r"[\u4e00-\u9fff]", title_zh), title_zh

"""The built book as a reader sees it, in a real browser.

Playwright drives Debian's Chromium (/usr/bin/chromium) over every page of the built site and checks
that MathJax typeset every formula (no raw TeX left), every image loaded, no request failed and no
console error was logged. The site is read from $TRANSFORMER_LIT_SITE (default _build/html). The pages
expected are those that `_toc.yml` lists; in the executed book ($TRANSFORMER_LIT_SITE_EXECUTED=1) every
chapter that draws figures must show them.

Without Chromium the tests skip with the reason, except under CI (CI=true), where that is a failure.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SITE = (ROOT / os.environ.get("TRANSFORMER_LIT_SITE", "_build/html")).resolve()
CHROMIUM = Path(os.environ.get("TRANSFORMER_LIT_CHROMIUM", "/usr/bin/chromium"))
# Set by `make site-test` for the full, executed book: figures must then be present.
EXECUTED = os.environ.get("TRANSFORMER_LIT_SITE_EXECUTED") == "1"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# Sphinx's own generated pages carry no content of ours.
SKIP_PAGES = {"genindex.html", "search.html", "index.html"}


def _need(condition: bool, reason: str):
    if not condition:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: the browser test may not be skipped)")
        pytest.skip(reason)


def _pages() -> list[Path]:
    return sorted(p for p in SITE.rglob("*.html")
                  if p.name not in SKIP_PAGES and "_static" not in p.parts and "_sources" not in p.parts)


@pytest.fixture(scope="module")
def browser():
    _need(CHROMIUM.exists(), f"Chromium not found at {CHROMIUM}; install Debian's chromium")
    _need(SITE.is_dir(), f"no built site at {SITE}; run `make book` (or `make quick-book`) first")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _toc_files() -> list[str]:
    "Every page `_toc.yml` lists (root, parts, chapters, nested sections), as paths without suffix."
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    return files


def _figure_cells(notebook: Path) -> int:
    "Code cells of a chapter whose top-level `plt.show()` always draws a figure (not inside an if or a loop)."
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(c["cell_type"] == "code" and any(line.startswith("plt.show()") for line in "".join(c["source"]).splitlines())
               for c in cells)


def test_toc_lists_the_chapters():
    files = _toc_files()
    assert files[0] == "intro" and "nbs/01_attention" in files and len(set(files)) == len(files), files
    for f in files:
        assert any((ROOT / f).with_suffix(s).is_file() for s in (".md", ".ipynb")), f"_toc.yml lists {f}, which does not exist"


def test_site_has_every_page_of_the_toc():
    _need(SITE.is_dir(), f"no built site at {SITE}")
    missing = [f for f in _toc_files() if not (SITE / f"{f}.html").is_file()]
    assert not missing, f"pages listed in _toc.yml but not built under {SITE}: {missing}"


# Text that MathJax would have replaced had it run: $$...$$, \( \), \[ \], or a bare TeX command.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\(frac|sqrt|sum|mathbb|operatorname|begin|left|right)\b")


def test_every_page_renders(browser):
    pages = _pages()
    assert pages, f"no pages under {SITE}"
    problems: list[str] = []
    n_math = n_img = 0
    for page_path in pages:
        page = browser.new_page()
        failed, errors = [], []
        page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri(), wait_until="load")
        n_formulas = page.locator(".math").count()
        if n_formulas:
            # MathJax 3 resolves this promise when typesetting is done.
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
            page.evaluate("() => MathJax.startup.promise")
            untypeset = page.evaluate(
                "() => [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length")
            if untypeset:
                problems.append(f"{page_path.name}: {untypeset} of {n_formulas} formulas not typeset")
            if page.locator("mjx-merror").count():
                problems.append(f"{page_path.name}: MathJax reported a TeX error")
        # Visible prose (code blocks excluded) must not contain TeX source.
        prose = page.evaluate("""() => {
            const main = document.querySelector('main') || document.body;
            const clone = main.cloneNode(true);
            clone.querySelectorAll('pre, code, mjx-container, script, style, .highlight').forEach(e => e.remove());
            return clone.innerText; }""")
        if m := RAW_TEX.search(prose):
            problems.append(f"{page_path.name}: raw TeX visible: ...{prose[max(0, m.start() - 40):m.end() + 40]!r}...")
        images = page.evaluate("""() => [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])""")
        for src, ok in images:
            if not ok:
                problems.append(f"{page_path.name}: image not loaded: {src}")
        n_math += n_formulas
        n_img += len(images)
        problems += [f"{page_path.name}: request failed: {f}" for f in failed]
        problems += [f"{page_path.name}: console error: {e}" for e in errors]
        page.close()
    print(f"checked {len(pages)} pages, {n_math} formulas, {n_img} images")
    assert not problems, "\n".join(problems)


def test_every_chapter_shows_its_figures(browser):
    if not EXECUTED:
        pytest.skip("the quick book of `make test` is built without executing the notebooks: no figures to check")
    problems, counts = [], {}
    for f in _toc_files():
        notebook = (ROOT / f).with_suffix(".ipynb")
        if not notebook.is_file() or not (expected := _figure_cells(notebook)):
            continue
        page = browser.new_page()
        page.goto((SITE / f"{f}.html").as_uri(), wait_until="load")
        shown = page.evaluate("""() => [...document.querySelectorAll('.cell_output img')]
                                 .filter(i => i.complete && i.naturalWidth > 0).length""")
        page.close()
        counts[f] = (shown, expected)
        if shown < expected:
            problems.append(f"{f}: {shown} figures shown, but {expected} cells draw one")
    print("figures shown / cells that draw one:", counts)
    assert counts, "no chapter with figures found"
    assert not problems, "\n".join(problems)


def test_chapter_one_shows_formulas_and_figures(browser):
    page = browser.new_page()
    page.goto((SITE / "nbs" / "01_attention.html").as_uri(), wait_until="load")
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
    page.evaluate("() => MathJax.startup.promise")
    assert page.locator("mjx-container").count() >= 20
    if EXECUTED:  # the quick book of `make test` is built without executing the notebooks
        assert page.locator(".cell_output img").count() >= 3
    # nbdev directives never reach the reader.
    assert "#|" not in page.inner_text("main")
    page.close()

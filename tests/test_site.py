"""The built book as a reader sees it, in a real browser.

Playwright drives Debian's Chromium (/usr/bin/chromium) over every page of the built site and checks
that MathJax typeset every formula (no raw TeX left), every image loaded, no request failed and no
console error was logged. The site is read from $TRANSFORMER_LIT_SITE (default _build/html).

Without Chromium the tests skip with the reason, except under CI (CI=true), where that is a failure.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

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


def test_site_has_the_chapters():
    _need(SITE.is_dir(), f"no built site at {SITE}")
    names = {p.name for p in _pages()}
    assert "intro.html" in names and "01_attention.html" in names, names


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

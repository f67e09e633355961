"""The built book as a reader sees it, in a real browser.

Playwright drives Debian's Chromium (/usr/bin/chromium) over every page that `_toc.yml` lists, loading
each once at a desktop width (1280 px) and narrowing it to a phone's (390 px), and checks that

- every page of the toc is built and linked from the navigation sidebar;
- MathJax typeset every formula (no raw TeX left), every image loaded, no request failed and no
  console error was logged;
- every internal link (pages, anchors, downloads) resolves: the file exists and the anchor is an id
  on the page it points to; a link that reads "chapter 5" leads to the page titled "5. ...";
- at both widths no page scrolls horizontally and no display formula is cut off: a formula wider
  than the column scrolls inside its own box (`_static/book.css`);
- the site's search finds the attention chapter for "attention" and the glossary for "注意力";
- each glossary entry's link lands on the section it names (the browser scrolls the section into view).

All of this holds for the Chinese edition too, built beside the English one in `zh_CN/`: every page of
the toc exists in Chinese and is reached from the Chinese navigation, its internal links stay in the
Chinese site, its CJK text is drawn with a font that has the glyphs (Chromium's own report of the fonts
it used, checked against fontconfig's list of fonts for Chinese), every page links its twin in the
other language and back, and the Chinese search finds 注意力, 多头注意力 and 位置编码 on their chapters.

The site is read from $TRANSFORMER_LIT_SITE (default _build/html): the quick book of `make test`
(built without execution) or the executed book of `make book`. In the executed book
($TRANSFORMER_LIT_SITE_EXECUTED=1) every chapter that draws figures must show them.

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


def _need(condition: bool, reason: str):
    if not condition:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: the browser test may not be skipped)")
        pytest.skip(reason)


LANGS = {"en": SITE, "zh_CN": SITE / "zh_CN"}         # the Chinese edition sits inside the English site


def _pages(site: Path = SITE) -> list[Path]:
    "The built pages of the toc (a stale page left in the build folder by an older toc is not the book's)."
    return [site / f"{f}.html" for f in _toc_files() if (site / f"{f}.html").is_file()]


@pytest.fixture(scope="module", params=list(LANGS))
def site(request) -> Path:
    "The root of one language's site: the English book, then its Chinese edition."
    return LANGS[request.param]


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


def _chapter_markdown(doc: str) -> str:
    cells = json.loads((ROOT / f"{doc}.ipynb").read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_results_page_quotes_its_chapters():
    "Every decimal figure and percentage of a row of results.md appears in the text of the chapter it names."
    stale, rows = [], 0
    for line in (ROOT / "results.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| \{doc\}`(nbs/\w+)` \|(.*)\|[^|]*\|\s*$", line)   # the last column is the command
        if not m:
            continue
        rows += 1
        text = _chapter_markdown(m.group(1))
        for number in re.findall(r"(?<![\w.^{-])\d+(?:\.\d+)?%|(?<![\w.^{-])\d+\.\d+", m.group(2)):
            if number not in text:
                stale.append(f"{m.group(1)}: {number} ({line[:90]}...)")
    assert rows >= 20, f"only {rows} result rows found in results.md"
    assert not stale, "results.md quotes figures its chapters no longer state:\n" + "\n".join(stale)


def test_site_has_every_page_of_the_toc(site):
    _need(site.is_dir(), f"no built site at {site}")
    missing = [f for f in _toc_files() if not (site / f"{f}.html").is_file()]
    assert not missing, f"pages listed in _toc.yml but not built under {site}: {missing}"


# Text that MathJax would have replaced had it run: $$...$$, \( \), \[ \], or a bare TeX command.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\(frac|sqrt|sum|mathbb|operatorname|begin|left|right)\b")


WIDTHS = (1280, 390)

# Run in the page after MathJax: the facts the tests below check, gathered in one visit.
_INSPECT = """() => {
    const main = document.querySelector('main') || document.body;
    const clone = main.cloneNode(true);
    clone.querySelectorAll('pre, code, mjx-container, script, style, .highlight').forEach(e => e.remove());
    const doc = document.documentElement;
    const column = (document.querySelector('article.bd-article') || main).getBoundingClientRect();
    const clipped = [];
    for (const f of document.querySelectorAll('mjx-container[display="true"]')) {
        const box = f.getBoundingClientRect();
        const style = getComputedStyle(f);
        const scrolls = ['auto', 'scroll'].includes(style.overflowX);
        const wider = f.scrollWidth > f.clientWidth + 1;
        if (box.right > column.right + 1 || box.left < column.left - 1 || (wider && !scrolls))
            clipped.push((f.getAttribute('aria-label') || f.textContent || '').slice(0, 60) +
                         ` (box ${Math.round(box.left)}-${Math.round(box.right)} px, column ` +
                         `${Math.round(column.left)}-${Math.round(column.right)} px, content ${f.scrollWidth} px)`);
    }
    const wide = [];
    if (doc.scrollWidth > doc.clientWidth + 1)
        for (const e of main.querySelectorAll('*')) {
            const r = e.getBoundingClientRect();
            if (r.right > doc.clientWidth + 1 && r.width > 0 && getComputedStyle(e).position !== 'fixed')
                wide.push(e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ')[0] : ''));
            if (wide.length > 4) break;
        }
    return {
        prose: clone.innerText,
        formulas: document.querySelectorAll('.math').length,
        untypeset: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length,
        merror: document.querySelectorAll('mjx-merror').length,
        images: [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
        links: [...document.querySelectorAll('a[href]:not(.lang-switch-link)')].map(a => a.href),
        twin: [...document.querySelectorAll('a.lang-switch-link')].map(a => a.href),
        chapter_links: [...document.querySelectorAll('main a.reference.internal')]
            .filter(a => /^(chapters? |第 ?)?\\d+( ?章)?$/i.test(a.innerText.trim())).map(a => [a.href, a.innerText.trim()]),
        title: (document.querySelector('main h1') || {innerText: ''}).innerText.replace(/#$/, '').trim(),
        ids: [...document.querySelectorAll('[id]')].map(e => e.id),
        nav: [...document.querySelectorAll('nav.bd-docs-nav a[href]')].map(a => a.href),
        scroll: [doc.scrollWidth, doc.clientWidth],
        wide: wide,
        clipped: clipped,
    };
}"""


def _visit(page, path: Path) -> dict[int, dict]:
    """Open `path` at the first of `WIDTHS`, wait for MathJax, and return what `_INSPECT` finds at each width
    (the page is narrowed in place: the layout and MathJax's output follow the viewport, as on a phone
    turned or a window resized), with the failed requests and console errors of the visit."""
    failed, errors = [], []
    on_failed = lambda r: failed.append(f"{r.url} ({r.failure})")
    on_console = lambda m: errors.append(m.text) if m.type == "error" else None
    on_error = lambda e: errors.append(str(e))
    page.on("requestfailed", on_failed)
    page.on("console", on_console)
    page.on("pageerror", on_error)
    try:
        page.set_viewport_size({"width": WIDTHS[0], "height": 900})
        page.goto(path.as_uri(), wait_until="load")
        if page.locator(".math").count():
            # MathJax 3 resolves this promise when typesetting is done.
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
            page.evaluate("() => MathJax.startup.promise")
        out = {}
        for w in WIDTHS:
            if w != WIDTHS[0]:
                page.set_viewport_size({"width": w, "height": 900})
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")   # relaid out
            out[w] = page.evaluate(_INSPECT) | {"failed": failed if w == WIDTHS[0] else [],
                                                "errors": errors if w == WIDTHS[0] else []}
        return out
    finally:
        page.remove_listener("requestfailed", on_failed)
        page.remove_listener("console", on_console)
        page.remove_listener("pageerror", on_error)


@pytest.fixture(scope="module")
def visits(browser, site) -> dict[tuple[str, int], dict]:
    "Every page of the toc, loaded once and inspected at each width: {(page relative to the site, width): facts}."
    _need(site.is_dir(), f"no built site at {site}")
    pages = _pages(site)
    assert pages, f"no pages under {site}"
    context = browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
    page = context.new_page()
    try:
        return {(p.relative_to(site).as_posix(), w): facts for p in pages for w, facts in _visit(page, p).items()}
    finally:
        context.close()


def test_every_page_renders(visits):
    problems: list[str] = []
    n_math = n_img = 0
    for (name, width), f in visits.items():
        if width != WIDTHS[0]:
            continue
        if f["untypeset"]:
            problems.append(f"{name}: {f['untypeset']} of {f['formulas']} formulas not typeset")
        if f["merror"]:
            problems.append(f"{name}: MathJax reported a TeX error")
        # Visible prose (code blocks excluded) must not contain TeX source.
        if m := RAW_TEX.search(f["prose"]):
            problems.append(f"{name}: raw TeX visible: ...{f['prose'][max(0, m.start() - 40):m.end() + 40]!r}...")
        problems += [f"{name}: image not loaded: {src}" for src, ok in f["images"] if not ok]
        n_math += f["formulas"]
        n_img += len(f["images"])
    for (name, width), f in visits.items():      # at either width
        problems += [f"{name} at {width} px: request failed: {x}" for x in f["failed"]]
        problems += [f"{name} at {width} px: console error: {x}" for x in f["errors"]]
    print(f"checked {len(visits) // len(WIDTHS)} pages, {n_math} formulas, {n_img} images")
    assert not problems, "\n".join(problems)


def test_every_toc_page_is_in_the_navigation(visits, site):
    "The sidebar of the first page links every page of the toc (so every page can be reached by clicking)."
    start = visits[("intro.html", WIDTHS[0])]
    linked = {_site_path(url, site)[0] for url in start["nav"]}
    missing = [f for f in _toc_files()[1:] if f"{f}.html" not in linked]
    assert not missing, f"pages of _toc.yml that the navigation does not link: {missing}"


def _site_path(url: str, site: Path = SITE) -> tuple[str | None, str]:
    "(path relative to the site, fragment) of a file:// URL inside the site; (None, '') for any other URL."
    from urllib.parse import unquote, urlsplit
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None, ""
    path = Path(unquote(parts.path))
    try:
        relative = path.relative_to(site).as_posix()
    except ValueError:
        return None, ""
    if site == SITE and relative.startswith("zh_CN/"):
        return None, ""                      # the English site's view: the Chinese edition is another site
    return relative, unquote(parts.fragment)


def _ids_of(relative: str, visits: dict, site: Path = SITE) -> set[str]:
    if (relative, WIDTHS[0]) in visits:
        return set(visits[(relative, WIDTHS[0])]["ids"])
    text = (site / relative).read_text(encoding="utf-8", errors="replace")
    return set(re.findall(r"""\sid=["']([^"']+)["']""", text))


def test_every_internal_link_resolves(visits, site):
    "Every link of every page to a file of its own language's site finds the file and the anchor it names."
    problems, checked = set(), 0
    for (name, width), f in visits.items():
        if width != WIDTHS[0]:
            continue
        for url in f["links"]:
            if url.startswith("file:") and _site_path(url, site)[0] is None:
                problems.add(f"{name}: link leaves the site: {url}")
                continue
            target, fragment = _site_path(url, site)
            if target is None:
                continue                     # http(s), mailto: not ours to check offline
            checked += 1
            if not (site / target).is_file():
                problems.add(f"{name}: link to a missing file: {target}")
            elif fragment and target.endswith(".html") and fragment not in _ids_of(target, visits, site):
                problems.add(f"{name}: link to a missing anchor: {target}#{fragment}")
    print(f"checked {checked} internal links")
    assert not problems, "\n".join(sorted(problems))


def test_chapter_numbers_in_links_match_their_targets(visits, site):
    "A cross-reference written as \"chapter 5\" ({doc}`chapter 5 <05_encoder>`) leads to the page titled \"5. ...\"."
    titles = {name: f["title"] for (name, width), f in visits.items()}
    problems, checked = [], 0
    for (name, width), f in visits.items():
        if width != WIDTHS[0]:
            continue
        for url, text in f["chapter_links"]:
            target, _ = _site_path(url, site)
            if not (target or "").startswith("nbs/"):
                continue                        # a citation's year, say
            number = re.search(r"\d+", text).group(0)
            title = titles.get(target, "")
            checked += 1
            if not title.startswith(f"{number}."):
                problems.append(f"{name}: the link {text!r} leads to {target}, titled {title!r}")
    print(f"checked {checked} chapter cross-references")
    assert checked, "no chapter cross-reference found"
    assert not problems, "\n".join(problems)


def test_no_page_scrolls_sideways_or_clips_a_formula(visits):
    problems = []
    for (name, width), f in visits.items():
        scroll, client = f["scroll"]
        if scroll > client + 1:
            problems.append(f"{name} at {width} px: the page scrolls horizontally ({scroll} > {client} px): {f['wide']}")
        problems += [f"{name} at {width} px: display formula cut off: {c}" for c in f["clipped"]]
    assert not problems, "\n".join(problems)


def _search(browser, query: str, site: Path = SITE) -> list[str]:
    "The result pages (relative to the site) that the built site's own search lists for `query`."
    from urllib.parse import quote
    page = browser.new_page()
    page.goto((site / "search.html").as_uri() + "?q=" + quote(query), wait_until="load")
    # Sphinx's search writes a summary paragraph when it is done (in the page's language).
    page.wait_for_function("""() => { const s = document.querySelector('#search-results p.search-summary');
                                      return s && s.innerText.trim().length > 0 && !/^(Searching|搜索中)/.test(s.innerText.trim()); }""",
                           timeout=30000)
    hrefs = page.evaluate("() => [...document.querySelectorAll('#search-results ul.search li a')].map(a => a.href)")
    page.close()
    return [_site_path(h, site)[0] for h in hrefs]


@pytest.mark.parametrize("lang, query, expected", [
    ("en", "attention", "nbs/01_attention.html"), ("en", "注意力", "glossary.html"),
    ("zh_CN", "注意力", "nbs/01_attention.html"), ("zh_CN", "多头注意力", "nbs/03_multi_head.html"),
    ("zh_CN", "位置编码", "nbs/04_positional_encoding.html")])
def test_search_finds(browser, lang, query, expected):
    _need(LANGS[lang].is_dir(), f"no built site at {LANGS[lang]}")
    results = _search(browser, query, LANGS[lang])
    assert expected in results, f"searching {query!r} in the {lang} site does not list {expected}: {results[:10]}"


def test_every_page_links_its_twin(visits, site):
    "Each page links the same page in the other language, and that page links back."
    other = LANGS["zh_CN"] if site == SITE else SITE
    problems = []
    for (name, width), f in visits.items():
        if width != WIDTHS[0]:
            continue
        twins = [_site_path(u, other)[0] for u in f["twin"]]
        if twins != [name]:
            problems.append(f"{name}: links to its twin {f['twin']} (expected {other / name})")
        elif not (other / name).is_file():
            problems.append(f"{name}: its twin {other / name} does not exist")
    assert not problems, "\n".join(problems)


def _cjk_font_families() -> set[str]:
    "Font families that fontconfig says cover Chinese (`fc-list :lang=zh family`)."
    import subprocess
    out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    return {name.strip() for line in out.splitlines() for name in line.split(",") if name.strip()}


def test_chinese_text_has_a_font_with_its_glyphs(browser):
    """The Chinese chapter's prose is drawn with a font that has CJK glyphs (no tofu boxes): Chromium
    reports the platform fonts it used for a paragraph, and one of them must be a Chinese font."""
    zh = LANGS["zh_CN"]
    _need((zh / "nbs" / "01_attention.html").is_file(), f"no Chinese site at {zh}")
    families = _cjk_font_families()
    _need(bool(families) or IN_CI, "no font for Chinese installed (Debian: fonts-noto-cjk)")
    assert families, "fontconfig lists no font for Chinese: install fonts-noto-cjk"
    page = browser.new_page()
    page.goto((zh / "nbs" / "01_attention.html").as_uri(), wait_until="load")
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    used: dict[str, int] = {}
    for selector in ("main h1", "main section p"):
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        assert node, f"no {selector} on the Chinese chapter 1"
        for font in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]:
            used[font["familyName"]] = used.get(font["familyName"], 0) + font["glyphCount"]
    text = page.inner_text("main section p")
    page.close()
    assert re.search(r"[\u4e00-\u9fff]", text), f"the Chinese chapter's first paragraph has no Chinese: {text[:80]!r}"
    cjk = {f: n for f, n in used.items() if f in families and n > 0}
    assert cjk, f"Chinese text drawn with {used}, none of them a font for Chinese ({sorted(families)[:5]})"


def test_glossary_links_land_on_their_sections(browser, site):
    "Each glossary entry links a chapter's section; opening the link scrolls that section into view."
    _need(site.is_dir(), f"no built site at {site}")
    glossary = browser.new_page()
    glossary.goto((site / "glossary.html").as_uri(), wait_until="load")
    hrefs = glossary.evaluate("() => [...document.querySelectorAll('dl.glossary dd a.reference.internal')].map(a => a.href)")
    glossary.close()
    targets: dict[str, list[str]] = {}
    for h in hrefs:
        page, fragment = _site_path(h, site)
        if fragment:
            targets.setdefault(page, []).append(fragment)
    assert len(targets) >= 10, f"the glossary links sections of only {len(targets)} pages: {hrefs[:5]}"
    problems = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    for target, fragments in targets.items():
        for fragment in fragments:
            page.goto((site / target).as_uri() + "#" + fragment, wait_until="load")
            where = page.evaluate("""(id) => { const e = document.getElementById(id);
                if (!e) return null;
                const h = e.querySelector('h1, h2, h3, h4') || e;
                return [e.tagName.toLowerCase(), h.getBoundingClientRect().top, window.innerHeight, h.innerText]; }""", fragment)
            if where is None:
                problems.append(f"{target}#{fragment}: no such section")
            elif where[0] != "section" or not (-5 <= where[1] < where[2] - 40):
                problems.append(f"{target}#{fragment}: lands at {where[1]:.0f} px of {where[2]} ({where[0]} {where[3]!r})")
    page.close()
    assert not problems, "\n".join(problems)


def test_every_chapter_shows_its_figures(browser, site):
    if not EXECUTED:
        pytest.skip("the quick book of `make test` is built without executing the notebooks: no figures to check")
    problems, counts = [], {}
    for f in _toc_files():
        notebook = (ROOT / f).with_suffix(".ipynb")
        if not notebook.is_file() or not (expected := _figure_cells(notebook)):
            continue
        page = browser.new_page()
        page.goto((site / f"{f}.html").as_uri(), wait_until="load")
        shown = page.evaluate("""() => [...document.querySelectorAll('.cell_output img')]
                                 .filter(i => i.complete && i.naturalWidth > 0).length""")
        page.close()
        counts[f] = (shown, expected)
        if shown < expected:
            problems.append(f"{f}: {shown} figures shown, but {expected} cells draw one")
    print("figures shown / cells that draw one:", counts)
    assert counts, "no chapter with figures found"
    assert not problems, "\n".join(problems)


def test_chapter_one_shows_formulas_and_figures(browser, site):
    _need(site.is_dir(), f"no built site at {site}")
    page = browser.new_page()
    page.goto((site / "nbs" / "01_attention.html").as_uri(), wait_until="load")
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
    page.evaluate("() => MathJax.startup.promise")
    assert page.locator("mjx-container").count() >= 20
    if EXECUTED:  # the quick book of `make test` is built without executing the notebooks
        assert page.locator(".cell_output img").count() >= 3
    # nbdev directives never reach the reader.
    assert "#|" not in page.inner_text("main")
    page.close()

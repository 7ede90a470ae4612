#!/usr/bin/env python3
"""Checks the built documentation site in a real headless browser.

    .venv/bin/python scripts/browser_check.py [site]

Two parts:
1. A crawl of the HTML files of site/en and site/zh_CN: every local link and asset (href, src)
   must name an existing file, a link to a page with a #fragment must find that id, every
   page must link to its twin in the other language, and a zh_CN page must show the same
   display math as its twin (only the words of \\text{...} labels may differ).
2. Debian's Chromium (/usr/bin/chromium, driven by Playwright; nothing is downloaded) opens every
   page: it must load with no failed request and no script error; math must be typeset by
   MathJax (no raw \\( ... \\) left); every image must load with a nonzero natural size; a
   zh_CN page must show Chinese text in its body and none of it in italics; the language link of the home page must lead
   to the twin page; searching finds a chapter among the first results (zh_CN: 槽位, 锁页内存,
   交换, 块表; en: slot_mapping, pinned) and lists no source listing; no English theme text
   (Furo, Sphinx, copy buttons) shows on zh_CN pages, the search page after a search included.
   The chapters' code views, in both languages ({compare-sources}, {annotated-source}): every
   side-by-side view shows its two columns next to each other at 1280 px, with at least one
   line marked as differing, a translated legend and no line wider than its column; at 400 px
   it shows two tabs and one column, and a click on (or the arrow key to) the other tab shows
   the other column; without JavaScript the columns are stacked there; every annotated excerpt
   shows its trick markers, each linking to a line id L-<n> of the file's listing page, and
   clips no line (at 1280 and 400 px).
   The notebook page, in both languages: links to download it as .ipynb (a valid notebook) and
   .md; under every cell tagged gpu, a labelled block of recorded GPU output or the note that
   none is recorded yet (in Chinese on zh_CN); the plumbing cells' code hidden (set-up, helpers)
   while the teaching cells' code shows; on zh_CN, Chinese printed output and toggles.
   Links (docs/_ext/pagedkv_links.py), in both languages: every chapter has code names that
   link into the API reference (at least LINKED_NAMES_MIN, among them its SAMPLE_NAMES, and
   each link lands on an element that exists); every row of the op map links to a chapter
   section that exists and links back to that row; every chapter ends with its Sources
   section of external links.
Screenshots of the home page in each language go to build/artefacts/ (site-en.png,
site-zh_CN.png), and of the first code views at 400 px (code-<lang>-400.png). Exit status 1
with the list of problems on any failure.
"""

from __future__ import annotations

import argparse
import os
import json
import re
import sys
import time
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("en", "zh_CN")
HOME = "docs/index.html"
CJK = re.compile(r"[\u4e00-\u9fff]")
DISPLAY_MATH = re.compile(r'<div class="math notranslate nohighlight">\s*\\\[(.*?)\\\]</div>', re.S)
TEXT_LABEL = re.compile(r"\\text\{[^{}]*\}")

# Pages that are only code (generated source listings) or only a form need no Chinese text.
NO_PROSE = re.compile(r"^(docs/_generated/sources/|search\.html$)")
# Words whose search must list a chapter among the first SEARCH_TOP results.
SEARCH_WORDS = {"en": ("slot_mapping", "pinned"), "zh_CN": ("槽位", "锁页内存", "交换", "块表")}
SEARCH_TOP = 5
CHAPTER_PREFIXES = ("chapters/",)
# zh_CN pages on which no English theme text may show (plus the search page after a search).
# The chapters' code views: side-by-side views ({compare-sources}) and annotated excerpts
# ({annotated-source}) each page must show (at least this many).
CODE_VIEWS = {
    "chapters/moving_blocks.html": {"compare": 1, "annotated": 1},
    "chapters/reshape_and_cache_flash.html": {"compare": 1, "annotated": 1},
    "chapters/reshape_and_cache.html": {"compare": 1, "annotated": 1},
    "chapters/rms_norm.html": {"compare": 1, "annotated": 2},
    "chapters/fused_add_rms_norm.html": {"compare": 1, "annotated": 1},
    "chapters/silu_and_mul.html": {"compare": 1, "annotated": 1},
    "chapters/apply_repetition_penalties.html": {"compare": 1, "annotated": 1},
    "chapters/rotary_embedding.html": {"compare": 1, "annotated": 1},
    "chapters/quantize_and_insert_k_cache.html": {"compare": 1, "annotated": 1},
    "chapters/dequantize_and_gather_k_cache.html": {"compare": 1, "annotated": 1},
    "chapters/compute_global_topk_indices_and_lens.html": {"compare": 1, "annotated": 1},
    "chapters/combine_topk_swa_indices.html": {"compare": 1, "annotated": 1},
    "chapters/build_flashinfer_mixed_sparse_indices.html": {"compare": 1, "annotated": 1},
    "chapters/process_kv.html": {"compare": 1, "annotated": 1},
    "chapters/flatten_kv.html": {"compare": 1, "annotated": 1},
}
LISTING_LINE = re.compile(r"^L-[0-9]+$")
THEME_TEXT_PAGES = ("docs/index.html", "chapters/moving_blocks.html", "docs/glossary.html")
# The notebook page (docs/_ext/pagedkv_notebooks.py): downloads, recorded GPU output, hidden
# plumbing, localised output. NOTEBOOK_PLUMBING: code of cells a reader should not see unfolded;
# NOTEBOOK_TEACHING: code that must show.
NOTEBOOK_PAGE = "notebooks/paged_kv_cache_hands_on.html"
NOTEBOOK_PLUMBING = ("import pagedkv", "def find_results_dir", "def draw_block_tables")
NOTEBOOK_TEACHING = ("pagedkv.cpu.reshape_and_cache_flash(", "def same_bytes", "slot_mapping.append(")
NOTEBOOK_LABEL = {"en": re.compile(r"Output (of this cell )?on a GPU[:,]"),
                  "zh_CN": re.compile(r"GPU 上的输出")}
# Code names that must be links into the API reference, per chapter (an op, an argument row, a
# C++ entity, a source listing), and how many code links into docs/api/ a chapter has at least.
OP_MAP = "docs/ops.html"
SAMPLE_NAMES = {
    "chapters/what_is_a_paged_kv_cache.html": ("slot_mapping",),
    "chapters/moving_blocks.html": ("block_mapping", "choose_swap_strategy", "kLargeBatch",
                                    "kernels/swap_blocks/optimized.cu"),
    "chapters/writing_the_cache.html": ("reshape_and_cache_flash", "slot_mapping", "encode_fp8"),
    "chapters/reshape_and_cache_flash.html": ("slot_mapping", "pick_vector_width"),
    "chapters/reshape_and_cache.html": ("slot_mapping",),
    "chapters/normalizing_hidden_states.html": ("residual", "RowLayout::row_start"),
    "chapters/rms_norm.html": ("weight", "pick_vector_width"),
    "chapters/fused_add_rms_norm.html": ("residual",),
}
LINKED_NAMES_MIN = 3
SOURCES_MIN = 3  # external links in a chapter's last section
# English text of Furo, Sphinx and sphinx-copybutton (visible text, tooltips, aria labels).
# Page content (the article) is not looked at, except the search page's title and summary.
ENGLISH_THEME_TEXT = re.compile(
    r"\b(Next|Previous|On this page|Back to top|Search|Searching|Preparing search|"
    r"Copyright|Made with|Contents|Copy|Copied|Copy to clipboard|Skip to content|Toggle|"
    r"Light mode|Dark mode|Expand|Menu|Home|Index|Error|Please activate|"
    r"Search finished|Your search did not match|Hide Search Matches)\b|'s\b")


class PageParser(HTMLParser):
    """Collects the local references and the ids of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str]] = []  # (attribute, value)
        self.ids: set[str] = set()
        self.language_links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if a.get(key) and not (tag == "a" and key == "src"):
                if tag == "link" and a.get("rel") in ("canonical", "alternate"):
                    continue
                self.refs.append((key, a[key]))
        if tag == "a" and "pagedkv-language-link" in (a.get("class") or ""):
            self.language_links.append(a.get("href", ""))


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and not url.startswith(("mailto:", "data:",
                                                                         "javascript:"))


def crawl(site: Path) -> tuple[list[str], list[Path]]:
    problems: list[str] = []
    pages = sorted(p for lang in LANGUAGES for p in (site / lang).rglob("*.html"))
    parsed: dict[Path, PageParser] = {}

    def parse(path: Path) -> PageParser:
        if path not in parsed:
            parser = PageParser()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            parsed[path] = parser
        return parsed[path]

    root_index = site / "index.html"
    if not root_index.is_file():
        problems.append("index.html: missing (the site root that opens en/docs/index.html)")
    else:
        for _, url in parse(root_index).refs:
            if is_local(url) and not (site / urlsplit(url).path).is_file():
                problems.append(f"index.html: link {url!r} -> missing file")

    for page in pages:
        rel = page.relative_to(site).as_posix()
        lang, _, pagename = rel.partition("/")
        info = parse(page)
        for attr, url in info.refs:
            if not url or url.startswith("#") and url == "#" or not is_local(url):
                continue
            parts = urlsplit(url)
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: {attr}={url!r} -> missing {target.relative_to(site.resolve()) if target.is_relative_to(site.resolve()) else target}")
                continue
            if parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in parse(target).ids:
                    problems.append(f"{rel}: link {url!r}: no id {parts.fragment!r} in {target.name}")
        other = "zh_CN" if lang == "en" else "en"
        if not info.language_links:
            problems.append(f"{rel}: no language link")
        for href in info.language_links:
            target = (page.parent / href).resolve()
            expected = (site / other / pagename).resolve()
            if target != expected:
                problems.append(f"{rel}: language link {href!r} leads to {target}, not its twin")
        # A translated page keeps every formula: the same display math as its English twin,
        # except for the words of \\text{...} labels.
        twin = site / "en" / pagename
        if lang == "zh_CN" and twin.is_file():
            ours, theirs = (display_math(p) for p in (page, twin))
            if ours != theirs:
                lost = next((f"{a!r} instead of {b!r}" for a, b in zip(ours, theirs) if a != b),
                            f"{len(ours)} formulas instead of {len(theirs)}")
                problems.append(f"{rel}: display math differs from the English twin's "
                                f"(a formula lost in translation?): {lost[:160]}")
    return problems, pages


def display_math(page: Path) -> list[str]:
    """The LaTeX of a page's display-math blocks, \\text{...} labels and spaces left out."""
    html = page.read_text(encoding="utf-8", errors="replace")
    # "\\%" and spacing commands go too: "\\%\\ \\text{of copy}" is one label, 等量拷贝占比.
    return [re.sub(r"\s+|\\%|\\[ ,;!]", "", TEXT_LABEL.sub("", unescape(m)))
            for m in DISPLAY_MATH.findall(html)]


def english_theme_text(page, where: str, search_page: bool = False) -> list[str]:
    """English theme strings on an open zh_CN page: text, title, aria-label, placeholder and
    tooltip outside the page content, the copy buttons' tooltips and SVG icon titles."""
    texts = page.evaluate("""(searchPage) => {
        const out = [];
        const article = document.querySelector('article');
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            const el = n.parentElement;
            if (!el || el.closest('script, style')) continue;
            if (article && article.contains(el) && !(searchPage && el.closest(
                '#search-results > h2, #search-results .search-summary, #fallback'))) continue;
            const t = n.textContent.trim();
            if (t) out.push(t);
        }
        for (const el of document.querySelectorAll(
                '[title], [aria-label], [placeholder], [data-tooltip]')) {
            if (article && article.contains(el) && !el.matches('.copybtn')) continue;
            for (const a of ['title', 'aria-label', 'placeholder', 'data-tooltip'])
                if (el.getAttribute(a)) out.push(el.getAttribute(a));
        }
        out.push(document.title);
        return out;
    }""", search_page)
    found = sorted({t for t in texts if ENGLISH_THEME_TEXT.search(t)})
    return [f"{where}: English theme text {t[:80]!r}" for t in found]


def browse(site: Path, pages: list[Path], artefacts: Path, chromium: str) -> list[str]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium,
                                    args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        events: list[str] = []
        page.on("requestfailed", lambda r: events.append(
            f"request failed: {r.url} ({r.failure})"))
        page.on("pageerror", lambda e: events.append(f"script error: {e}"))

        def open_page(path: Path) -> None:
            events.clear()
            page.goto(path.resolve().as_uri(), wait_until="load", timeout=30000)
            # MathJax 2 typesets asynchronously: wait for its queue to drain.
            page.evaluate("""() => new Promise(done => {
                if (!document.querySelector('.math')) return done();
                const wait = () => window.MathJax && MathJax.Hub && MathJax.Hub.Queue
                    ? MathJax.Hub.Queue(done) : setTimeout(wait, 50);
                wait(); setTimeout(done, 15000);
            })""")
            page.evaluate("""() => Promise.all([...document.images].map(
                img => img.decode().catch(() => null)))""")

        for path in pages:
            rel = path.relative_to(site).as_posix()
            lang, _, pagename = rel.partition("/")
            try:
                open_page(path)
            except PlaywrightError as e:
                problems.append(f"{rel}: did not load: {e}")
                continue
            problems += [f"{rel}: {e}" for e in events]
            raw = page.evaluate("""() => [...document.querySelectorAll('.math')]
                .filter(m => !m.querySelector('.MathJax_CHTML, .MJXc-display, .mjx-chtml'))
                .map(m => m.textContent.trim().slice(0, 60))""")
            problems += [f"{rel}: math not typeset: {t!r}" for t in raw]
            broken = page.evaluate("""() => [...document.images]
                .filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0))
                .map(i => i.getAttribute('src'))""")
            problems += [f"{rel}: image did not load: {src}" for src in broken]
            if lang == "zh_CN" and not NO_PROSE.match(pagename):
                body = page.evaluate("""() => (document.querySelector('article') ||
                    document.body).innerText""")
                if not CJK.search(body):
                    problems.append(f"{rel}: no Chinese text in the page body")
                # No faux italic: Chinese text set in an italic or oblique style.
                slanted = page.evaluate("""() => [...document.querySelectorAll('article *')]
                    .filter(e => /italic|oblique/.test(getComputedStyle(e).fontStyle) &&
                        [...e.childNodes].some(n => n.nodeType === 3 &&
                                               /[\\u4e00-\\u9fff]/.test(n.textContent)))
                    .map(e => e.textContent.trim().slice(0, 40))""")
                problems += [f"{rel}: Chinese text in italics (faux italic): {t!r}"
                             for t in slanted]

        # The language link of the home page leads to its twin, both ways.
        for lang, other in (("en", "zh_CN"), ("zh_CN", "en")):
            open_page(site / lang / HOME)
            page.screenshot(path=str(artefacts / f"site-{lang}.png"), full_page=False)
            link = page.locator("a.pagedkv-language-link").first
            if link.count() == 0:
                problems.append(f"{lang}/{HOME}: no language link in the browser")
                continue
            link.click()
            page.wait_for_load_state("load")
            landed = Path(unquote(urlsplit(page.url).path)).resolve()
            if landed != (site / other / HOME).resolve():
                problems.append(f"{lang}/{HOME}: language link led to {landed}")

        # Search finds chapters: the zh_CN index is segmented by jieba with the glossary's terms
        # as a user dictionary, and the source listings are left out of the index.
        for lang, words in SEARCH_WORDS.items():
            for word in words:
                search = (site / lang / "search.html").resolve().as_uri() + "?q=" + quote(word)
                page.goto(search, wait_until="load")
                try:
                    page.wait_for_function("""() => {
                        const s = document.querySelector('#search-results .search-summary');
                        return s && s.innerText.trim().length > 0; }""", timeout=15000)
                except PlaywrightError:
                    problems.append(f"{lang}/search.html?q={word}: the search did not finish")
                    continue
                found = page.evaluate("""() => [...document.querySelectorAll(
                    '#search-results ul.search > li > a:first-of-type')].map(a => a.href)""")
                pages_found = [unquote(urlsplit(h).path) for h in found]
                top = [p.split(f"/{lang}/", 1)[-1] for p in pages_found[:SEARCH_TOP]]
                if not any(t.startswith(CHAPTER_PREFIXES) for t in top):
                    problems.append(f"{lang}/search.html?q={word}: no chapter among the first "
                                    f"{SEARCH_TOP} results ({len(found)} results: {top})")
                listed = [t for t in pages_found if "/_generated/sources/" in t]
                if listed:
                    problems.append(f"{lang}/search.html?q={word}: source listings in the "
                                    f"results ({len(listed)}, e.g. {listed[0]})")
                if lang == "zh_CN" and word == words[0]:
                    problems += english_theme_text(page, f"{lang}/search.html?q={word}",
                                                   search_page=True)

        # The start page teaches at a glance: the three-versions picture, the start path, the
        # headline results table and the two commands, in both languages.
        for lang, heading, picture in (("en", "Start here", "three_versions.png"),
                                       ("zh_CN", "从这里开始", "three_versions.zh_CN.png")):
            open_page(site / lang / HOME)
            facts = page.evaluate("""(picture) => {
                const img = [...document.images].find(i => i.src.endsWith('/' + picture));
                const text = document.querySelector('article').innerText;
                return {picture: !!img && img.naturalWidth > 0, text: text,
                        tables: document.querySelectorAll('article table').length}; }""", picture)
            if not facts["picture"]:
                problems.append(f"{lang}/{HOME}: start page without its {picture}")
            for needed in (heading, "scripts/compare.sh", "scripts/test.sh"):
                if needed not in facts["text"]:
                    problems.append(f"{lang}/{HOME}: start page does not show {needed!r}")
            if facts["tables"] < 1:
                problems.append(f"{lang}/{HOME}: start page without its results table")

        # The chapters' code views ({compare-sources}, {annotated-source}), wide and narrow.
        narrow = browser.new_context(viewport={"width": 400, "height": 900})
        narrow_page = narrow.new_page()
        narrow_page.on("pageerror", lambda e: events.append(f"script error: {e}"))
        for lang in LANGUAGES:
            for pagename, wanted in CODE_VIEWS.items():
                where = f"{lang}/{pagename}"
                path = site / lang / pagename
                if not path.is_file():
                    problems.append(f"{where}: missing (the code view check opens it)")
                    continue
                open_page(path)
                problems += check_wide_code_views(page, where, wanted, lang)
                problems += check_listing_links(page, where, site)
                events.clear()
                narrow_page.goto(path.resolve().as_uri(), wait_until="load", timeout=30000)
                problems += check_narrow_code_views(narrow_page, where, wanted)
                problems += [f"{where} at 400 px: {e}" for e in events]
            # Without JavaScript, a narrow screen gets the two columns stacked, and no tabs.
            problems += check_stacked_without_script(browser, site / lang / next(iter(CODE_VIEWS)),
                                                     f"{lang}/{next(iter(CODE_VIEWS))}")
            shot = site / lang / next(iter(CODE_VIEWS))
            narrow_page.goto(shot.resolve().as_uri(), wait_until="load")
            narrow_page.locator("article .pagedkv-compare").first.scroll_into_view_if_needed()
            narrow_page.screenshot(path=str(artefacts / f"code-{lang}-400.png"))
        narrow.close()

        problems += check_notebook_page(site, open_page, page)

        problems += check_links(site, open_page, page)

        # The site root chooses the reader's language from the browser, and a choice made on it
        # is remembered.
        root = (site / "index.html").resolve().as_uri()
        for languages, expected in ((["zh-CN", "zh"], "zh_CN"), (["de-DE", "de"], "en")):
            chooser = browser.new_context(locale=languages[0])
            chooser.add_init_script(
                "Object.defineProperty(navigator, 'languages', {get: () => %s});"
                % json.dumps(languages))
            tab = chooser.new_page()
            tab.goto(root, wait_until="load")
            landed = landed_page(tab)
            if f"/{expected}/" not in landed:
                problems.append(f"index.html with navigator.languages {languages}: landed on "
                                f"{landed}, expected the {expected} site")
            chooser.close()
        chooser = browser.new_context(locale="zh-CN")
        tab = chooser.new_page()
        tab.goto(root + "#choose", wait_until="load")
        english = tab.locator("a[href*='en/']").first
        if english.count() == 0:
            problems.append("index.html#choose: no link to the English site")
        else:
            # Wait for each navigation to finish: the root page redirects with
            # location.replace() after its load event, so "load" alone can report the root.
            with tab.expect_navigation(wait_until="load"):
                english.click()
            # localStorage reaches other pages asynchronously (another renderer may serve the
            # next page): wait until a fresh page of the root sees the choice, as a reader's
            # next visit would, before asking the root to redirect.
            probe = chooser.new_page()
            probe.goto(root + "#choose", wait_until="load")
            remembered = None
            for _ in range(50):
                remembered = probe.evaluate(
                    "() => window.localStorage.getItem('pagedkv-language')")
                if remembered == "en":
                    break
                probe.wait_for_timeout(100)
            probe.close()
            tab.goto(root, wait_until="load")
            landed = landed_page(tab)
            if "/en/" not in landed:
                problems.append("index.html: the reader's choice of English was not remembered "
                                f"(stored {remembered!r}, landed on {landed})")
        chooser.close()

        # No English theme text (Furo, Sphinx, sphinx-copybutton) on zh_CN pages.
        for pagename in THEME_TEXT_PAGES:
            path = site / "zh_CN" / pagename
            if not path.is_file():
                problems.append(f"zh_CN/{pagename}: missing (the theme text check opens it)")
                continue
            open_page(path)
            problems += english_theme_text(page, f"zh_CN/{pagename}")
        browser.close()
    return problems


WIDE_VIEWS = """() => {
    const box = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
        return {left: r.left, right: r.right, top: r.top, width: r.width, height: r.height,
                shown: s.display !== 'none' && s.visibility !== 'hidden' && r.height > 0}; };
    const compares = [...document.querySelectorAll('article .pagedkv-compare')].map(block => {
        block.scrollIntoView();
        const cols = [...block.querySelectorAll('.pagedkv-cmp-col')].map(c => Object.assign(box(c), {
            lines: c.querySelectorAll('.pagedkv-cmp-line').length,
            marked: c.querySelectorAll('.pagedkv-cmp-line.pagedkv-cmp-diff').length,
            clipped: [...c.querySelectorAll('.pagedkv-cmp-text, pre')]
                .filter(t => t.scrollWidth > t.clientWidth + 1).length}));
        const tabs = block.querySelector('.pagedkv-cmp-tabs');
        const legend = block.querySelector('.pagedkv-cmp-legend');
        return {cols: cols, tabsShown: !!tabs && box(tabs).shown,
                legend: legend ? legend.innerText.trim() : ''};
    });
    return {compares: compares, width: document.documentElement.clientWidth,
            annotated: annotatedFacts()};
}"""

# Shared by both widths: the markers of each annotated excerpt and the lines that overflow.
ANNOTATED_FACTS = """() => { window.annotatedFacts = () =>
    [...document.querySelectorAll('article .pagedkv-annotated')].map(block => ({
        markers: [...block.querySelectorAll('a.pagedkv-ann-marker')].map(a => ({
            label: a.textContent.trim(), href: a.href,
            shown: a.getBoundingClientRect().width > 0})),
        clipped: [...block.querySelectorAll('.pagedkv-ann-text')]
            .filter(t => t.scrollWidth > t.clientWidth + 1).length,
        overflow: block.querySelector('pre').scrollWidth > block.querySelector('pre').clientWidth + 1,
    })); }"""


def check_annotated(facts: list[dict], where: str, wanted: int) -> list[str]:
    problems = []
    if len(facts) < wanted:
        problems.append(f"{where}: {len(facts)} annotated excerpts, expected {wanted}")
    for n, block in enumerate(facts, start=1):
        shown = [m for m in block["markers"] if m["shown"]]
        if not shown:
            problems.append(f"{where}: annotated excerpt {n} shows no trick marker")
        if block["clipped"] or block["overflow"]:
            problems.append(f"{where}: annotated excerpt {n} clips or overflows "
                            f"({block['clipped']} lines wider than their column)")
    return problems


def check_wide_code_views(page, where: str, wanted: dict, lang: str) -> list[str]:
    """At 1280 px: each side-by-side view has its two columns next to each other, inside the
    viewport, no tabs, a marked line and a (translated) legend; the annotated excerpts show
    their markers and clip nothing."""
    page.evaluate(ANNOTATED_FACTS)
    view = page.evaluate(WIDE_VIEWS)
    problems = []
    if len(view["compares"]) < wanted["compare"]:
        problems.append(f"{where}: {len(view['compares'])} side-by-side views, expected "
                        f"{wanted['compare']}")
    for n, block in enumerate(view["compares"], start=1):
        cols = block["cols"]
        name = f"{where}: side-by-side view {n}"
        if len(cols) != 2:
            problems.append(f"{name} has {len(cols)} columns, not 2")
            continue
        left, right = cols
        if not all(c["shown"] and c["width"] > 100 and c["lines"] > 0 for c in cols):
            problems.append(f"{name}: a column is not visible at 1280 px: {cols}")
        if not (left["right"] <= right["left"] + 1 and abs(left["top"] - right["top"]) < 2
                and left["left"] >= 0 and right["right"] <= view["width"]):
            problems.append(f"{name}: the two columns are not side by side at 1280 px: {cols}")
        if block["tabsShown"]:
            problems.append(f"{name}: tabs show at 1280 px")
        if left["clipped"] + right["clipped"]:
            problems.append(f"{name}: {left['clipped'] + right['clipped']} lines are wider than "
                            f"their column (clipped or scrolled)")
        if left["marked"] + right["marked"] < 1:
            problems.append(f"{name}: no marked (differing) line")
        if not block["legend"] or (lang == "zh_CN" and not CJK.search(block["legend"])):
            problems.append(f"{name}: the legend is missing or untranslated: "
                            f"{block['legend'][:80]!r}")
    return problems + check_annotated(view["annotated"], where, wanted["annotated"])


def check_narrow_code_views(page, where: str, wanted: dict) -> list[str]:
    """At 400 px: each side-by-side view shows a tab list of two tabs and one column; a click on
    the other tab shows the other column, and the arrow key goes back."""
    problems = []
    page.evaluate(ANNOTATED_FACTS)
    problems += check_annotated(page.evaluate("() => annotatedFacts()"), f"{where} at 400 px",
                                wanted["annotated"])
    state = """(block) => ({
        tabs: [...block.querySelectorAll('[role=tab]')].map(t => ({
            text: t.textContent.trim(), selected: t.getAttribute('aria-selected') === 'true',
            shown: t.getBoundingClientRect().width > 0})),
        cols: [...block.querySelectorAll('.pagedkv-cmp-col')].map(c =>
            getComputedStyle(c).display !== 'none' && c.getBoundingClientRect().height > 0),
        clipped: [...block.querySelectorAll('.pagedkv-cmp-text, pre')]
            .filter(t => t.clientWidth > 0 && t.scrollWidth > t.clientWidth + 1).length,
        tablist: !!block.querySelector('[role=tablist][aria-label]')})"""
    blocks = page.locator("article .pagedkv-compare")
    for n in range(blocks.count()):
        block = blocks.nth(n)
        name = f"{where} at 400 px: side-by-side view {n + 1}"
        block.scroll_into_view_if_needed()
        before = block.evaluate(state)
        tabs = before["tabs"]
        if len(tabs) != 2 or not all(t["shown"] and t["text"] for t in tabs) \
                or not before["tablist"]:
            problems.append(f"{name}: expected a labelled tab list of two visible tabs: {before}")
            continue
        if before["cols"] != [True, False] or [t["selected"] for t in tabs] != [True, False]:
            problems.append(f"{name}: expected the first column alone, its tab selected: {before}")
        if before["clipped"]:
            problems.append(f"{name}: {before['clipped']} lines are wider than the column")
        block.locator("[role=tab]").nth(1).click()
        after = block.evaluate(state)
        if after["cols"] != [False, True] or [t["selected"] for t in after["tabs"]] != [False, True]:
            problems.append(f"{name}: a click on the second tab did not show the second column "
                            f"alone: {after}")
        block.locator("[role=tab]").nth(1).press("ArrowLeft")
        back = block.evaluate(state)
        if back["cols"] != [True, False]:
            problems.append(f"{name}: the arrow key did not go back to the first column: {back}")
    return problems


def check_stacked_without_script(browser, path: Path, where: str) -> list[str]:
    """At 400 px with JavaScript off: the first side-by-side view shows both columns, one under
    the other, and no tab (bounding boxes come from the browser, not from page scripts)."""
    context = browser.new_context(viewport={"width": 400, "height": 900},
                                  java_script_enabled=False)
    tab = context.new_page()
    tab.goto(path.resolve().as_uri(), wait_until="load")
    block = tab.locator("article .pagedkv-compare").first
    columns = block.locator(".pagedkv-cmp-col")
    boxes = [columns.nth(i).bounding_box() for i in range(columns.count())]
    tabs = block.locator("[role=tab]").count()
    context.close()
    if len(boxes) != 2 or None in boxes or tabs:
        return [f"{where} at 400 px without JavaScript: expected two columns and no tabs "
                f"({boxes}, {tabs} tabs)"]
    first, second = boxes
    if not (first["height"] > 0 and second["height"] > 0
            and second["y"] >= first["y"] + first["height"] - 1):
        return [f"{where} at 400 px without JavaScript: the columns are not stacked: {boxes}"]
    return []


def check_listing_links(page, where: str, site: Path) -> list[str]:
    """Each marker of an annotated excerpt links to an L-<n> id of an existing listing page."""
    problems = []
    ids: dict[Path, set[str]] = {}
    for block in page.evaluate("() => annotatedFacts()"):
        for marker in block["markers"]:
            parts = urlsplit(marker["href"])
            target = Path(unquote(parts.path))
            if "/_generated/sources/" not in parts.path or not LISTING_LINE.match(parts.fragment):
                problems.append(f"{where}: marker {marker['label']} does not link to a line of a "
                                f"listing: {marker['href']}")
                continue
            if not target.is_file():
                problems.append(f"{where}: marker {marker['label']}: missing page {target}")
                continue
            if target not in ids:
                parser = PageParser()
                parser.feed(target.read_text(encoding="utf-8", errors="replace"))
                ids[target] = parser.ids
            if parts.fragment not in ids[target]:
                problems.append(f"{where}: marker {marker['label']}: no id {parts.fragment} in "
                                f"{target.relative_to(site)}")
    return problems


def check_notebook_page(site: Path, open_page, page) -> list[str]:
    """The notebook page in both languages (docs/_ext/pagedkv_notebooks.py)."""
    problems: list[str] = []
    for lang in LANGUAGES:
        where = f"{lang}/{NOTEBOOK_PAGE}"
        path = site / lang / NOTEBOOK_PAGE
        if not path.is_file():
            problems.append(f"{where}: missing (the notebook check opens it)")
            continue
        open_page(path)
        facts = page.evaluate("""() => {
            const article = document.querySelector('article');
            const shown = el => !!el && el.checkVisibility();
            const links = {};
            for (const a of article.querySelectorAll('.pagedkv-nb-downloads a'))
                links[a.getAttribute('href')] = shown(a);
            const gpuCells = [...article.querySelectorAll('div.cell.tag_gpu')];
            const blocks = [...article.querySelectorAll('.pagedkv-recorded')].map(b => ({
                after_gpu_cell: !!b.previousElementSibling &&
                    b.previousElementSibling.matches('div.cell.tag_gpu'),
                label: (b.querySelector('.pagedkv-recorded-label') || b).innerText.trim(),
                shown: shown(b)}));
            const inputs = [...article.querySelectorAll('div.cell')].map(c => ({
                code: (c.querySelector('.cell_input') || {textContent: ''}).textContent,
                shown: shown(c.querySelector('.cell_input'))}));
            return {links: links, gpu_cells: gpuCells.length, blocks: blocks, inputs: inputs,
                    outputs: [...article.querySelectorAll('.cell_output')].map(o => o.innerText),
                    toggles: [...article.querySelectorAll('details.hide summary')]
                        .map(s => s.innerText.trim())};
        }""")
        # Downloads: both links shown, the files there, the .ipynb a notebook of code cells.
        for suffix in (".ipynb", ".md"):
            href = Path(NOTEBOOK_PAGE).stem + suffix
            if not facts["links"].get(href):
                problems.append(f"{where}: no visible download link to {href}")
                continue
            target = path.parent / href
            if not target.is_file():
                problems.append(f"{where}: download {href} -> missing file")
            elif suffix == ".ipynb":
                try:
                    nb = json.loads(target.read_text(encoding="utf-8"))
                    if nb.get("nbformat") != 4 or not any(
                            c.get("cell_type") == "code" for c in nb.get("cells", [])):
                        problems.append(f"{where}: {href} is not a notebook with code cells")
                except ValueError as e:
                    problems.append(f"{where}: {href} is not JSON: {e}")
        # Recorded GPU output (or the note that there is none) under every gpu cell, labelled.
        blocks = facts["blocks"]
        if facts["gpu_cells"] == 0:
            problems.append(f"{where}: no cell tagged gpu")
        if len(blocks) != facts["gpu_cells"] or not all(b["after_gpu_cell"] for b in blocks):
            problems.append(f"{where}: {len(blocks)} recorded-output blocks for "
                            f"{facts['gpu_cells']} gpu cells, or one not right under its cell")
        for block in blocks:
            if not block["shown"] or not NOTEBOOK_LABEL[lang].search(block["label"]):
                problems.append(f"{where}: a recorded-output block is hidden or unlabelled "
                                f"({block['label'][:80]!r})")
                break
        # Plumbing hidden, teaching shown.
        for needle in NOTEBOOK_PLUMBING + NOTEBOOK_TEACHING:
            cells = [c for c in facts["inputs"] if needle in c["code"]]
            visible = any(c["shown"] for c in cells)
            if needle in NOTEBOOK_PLUMBING and visible:
                problems.append(f"{where}: plumbing code {needle!r} shows (hide-input/remove-input)")
            if needle in NOTEBOOK_TEACHING and not visible:
                problems.append(f"{where}: teaching code {needle!r} does not show")
        # Chinese printed output and toggles on zh_CN.
        if lang == "zh_CN":
            if not any(CJK.search(o) for o in facts["outputs"]):
                problems.append(f"{where}: no Chinese in the cells' printed output")
            if not facts["toggles"] or not all(CJK.search(t) for t in facts["toggles"]):
                problems.append(f"{where}: hidden-code toggles not in Chinese: {facts['toggles'][:2]}")
    return problems


def _target_exists(href_path: Path, fragment: str) -> bool:
    if not href_path.is_file():
        return False
    if not fragment:
        return True
    parser = PageParser()
    parser.feed(href_path.read_text(encoding="utf-8", errors="replace"))
    return unquote(fragment) in parser.ids


def check_links(site: Path, open_page, page) -> list[str]:
    """Code names -> API reference, op map <-> chapter sections, each chapter's Sources."""
    problems: list[str] = []
    for lang in LANGUAGES:
        for pagename, names in SAMPLE_NAMES.items():
            where = f"{lang}/{pagename}"
            path = site / lang / pagename
            if not path.is_file():
                problems.append(f"{where}: missing (the link check opens it)")
                continue
            open_page(path)
            facts = page.evaluate("""() => {
                const links = [...document.querySelectorAll('article a.pagedkv-code-link')]
                    .map(a => ({text: a.textContent.trim(), href: a.href}));
                const top = document.querySelector('article section');
                const parts = top ? [...top.querySelectorAll(':scope > section')] : [];
                const last = parts.length ? parts[parts.length - 1] : null;
                return {links: links, sources: last ? [...last.querySelectorAll(
                    'a.reference.external')].map(a => a.href) : [],
                    lastTitle: last ? last.querySelector('h2').innerText : ''};
            }""")
            api = [l for l in facts["links"] if "/docs/api/" in l["href"]]
            if len(api) < LINKED_NAMES_MIN:
                problems.append(f"{where}: only {len(api)} code names link into the API "
                                f"reference (at least {LINKED_NAMES_MIN} expected)")
            linked = {l["text"] for l in facts["links"]}
            for name in names:
                if name not in linked:
                    problems.append(f"{where}: code name {name!r} is not a link")
            for link in facts["links"]:
                parts = urlsplit(link["href"])
                if parts.scheme != "file":
                    continue
                if not _target_exists(Path(unquote(parts.path)), parts.fragment):
                    problems.append(f"{where}: code link {link['text']!r} -> {link['href']} "
                                    "lands nowhere")
            external = [h for h in facts["sources"] if h.startswith(("http://", "https://"))]
            if len(external) < SOURCES_MIN:
                problems.append(f"{where}: the last section ({facts['lastTitle']!r}) has "
                                f"{len(external)} external links; a Sources section with at "
                                f"least {SOURCES_MIN} expected")

        # The op map's rows link to chapter sections, which link back to the rows.
        where = f"{lang}/{OP_MAP}"
        open_page(site / lang / OP_MAP)
        rows = page.evaluate("""() => [...document.querySelectorAll('tr[id^="op-map-"]')].map(
            tr => ({id: tr.id, chapters: [...tr.querySelectorAll('a')].map(a => a.href)
                    .filter(h => h.includes('/chapters/'))}))""")
        if not rows:
            problems.append(f"{where}: no op rows with an id op-map-<op>")
        for row in rows:
            if len(row["chapters"]) != 1:
                problems.append(f"{where}: row {row['id']} has {len(row['chapters'])} chapter "
                                "links, expected 1")
                continue
            href = urlsplit(row["chapters"][0])
            chapter = Path(unquote(href.path))
            open_page(chapter)
            back = page.evaluate("""(frag) => {
                const target = document.getElementById(frag);
                if (!target) return null;
                const section = target.closest('section') || target;
                return [...section.querySelectorAll('.pagedkv-op-backlink a')].map(a => a.href);
            }""", unquote(href.fragment))
            if back is None:
                problems.append(f"{where}: row {row['id']} links to {chapter.name}#"
                                f"{href.fragment}, which does not exist")
            elif not any(urlsplit(b).fragment == row["id"] and b.split("#")[0].endswith(
                    "/" + OP_MAP) for b in back):
                problems.append(f"{where}: section {chapter.name}#{href.fragment} does not "
                                f"link back to row {row['id']} (links: {back})")
    return problems


def landed_page(tab) -> str:
    """The path a tab ends on after the site root has redirected it (or the root, if it did not
    within 10 s)."""
    try:
        tab.wait_for_url(re.compile(r".*/(en|zh_CN)/docs/index\.html$"), timeout=10_000)
    except Exception:  # noqa: BLE001 - the caller reports where the tab stayed
        pass
    return unquote(urlsplit(tab.url).path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", type=Path, default=ROOT / "site")
    parser.add_argument("--artefacts", type=Path, default=ROOT / "build" / "artefacts")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    site = args.site.resolve()
    start = time.time()
    for lang in LANGUAGES:
        if not (site / lang / HOME).is_file():
            print(f"browser check: FAILED: {site / lang / HOME} not found; build the site with "
                  "scripts/docs.sh first", file=sys.stderr)
            return 1
    if not Path(args.chromium).is_file():
        print(f"browser check: FAILED: {args.chromium} not found (apt-get install chromium)",
              file=sys.stderr)
        return 1
    args.artefacts.mkdir(parents=True, exist_ok=True)

    problems, pages = crawl(site)
    print(f"browser check: crawled {len(pages)} pages, {len(problems)} link problems")
    problems += browse(site, pages, args.artefacts, args.chromium)
    seconds = time.time() - start
    problems = list(dict.fromkeys(problems))  # a link used twice on a page is one problem
    if problems:
        print(f"browser check: FAILED ({len(problems)} problems, {seconds:.0f} s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"browser check: ok: {len(pages)} pages in {', '.join(LANGUAGES)} load, links and "
          f"assets resolve, math typeset, images load, language links reach their twins, "
          f"search finds chapters, no English theme text on zh_CN pages, the start page shows its picture, path, results and commands, the chapters' code views work wide and narrow, the notebook page has its downloads, recorded GPU output blocks, hidden plumbing and localised output, code names link into the API reference, op map and chapters link both ways, every chapter ends with its Sources, the site root picks and remembers the language; screenshots in {args.artefacts} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

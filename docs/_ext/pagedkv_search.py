"""Search and theme text of the zh_CN site.

1. Chinese search that finds the glossary's terms. Sphinx's Chinese search splits text with
   jieba (``jieba.cut_for_search``), which only emits a word it knows. At ``config-inited`` of a
   zh_CN build this writes a jieba user dictionary made of every Chinese term of the glossary's
   中文 column (docs/glossary.md) into the build's doctree folder and points
   ``html_search_options["dict"]`` at it, so 槽位, 锁页内存, 块表 ... become index terms.
   Print the dictionary with ``python docs/_ext/pagedkv_search.py``.
2. The per-file source listings (docs/_generated/sources/**) are code only: they get the
   ``nosearch`` metadata, so the search index leaves them out and a search finds chapters.
3. No English theme text on zh_CN pages. Sphinx's zh_CN catalog translates most of Sphinx's and
   Furo's strings; Furo hard-codes some (aria labels, icon titles, the footer) and Sphinx's
   zh_CN JavaScript catalog lacks the search summary of Sphinx 8. docs/_templates/page.html pipes
   Furo's page body through the ``pagedkv_theme_text`` filter (THEME_TEXT below), and
   docs/_static/pagedkv-zh.js adds the missing JavaScript messages. scripts/browser_check.py
   fails when an English theme string shows on a zh_CN page.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from markupsafe import Markup

GLOSSARY = Path(__file__).resolve().parents[1] / "glossary.md"
# jieba's own dictionary gives common words frequencies up to a few hundred thousand; a term of
# the glossary must win against splitting it into smaller known words.
TERM_FREQUENCY = 200000
CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")

# Furo text that no catalog reaches (hard-coded in furo/theme/furo/page.html, partials/icons.html),
# plus the footer, whose {% trans %} messages carry Furo's template whitespace. Exact HTML
# fragments of the pinned furo (docs/requirements.txt); a fragment that no longer matches leaves
# English behind, which scripts/browser_check.py reports.
THEME_TEXT = {
    'aria-label="Toggle site navigation sidebar"': 'aria-label="显示或隐藏导航侧栏"',
    'aria-label="Toggle table of contents sidebar"': 'aria-label="显示或隐藏本页目录"',
    'aria-label="Toggle Light / Dark / Auto color theme"': 'aria-label="切换浅色 / 深色 / 自动配色"',
    "<title>Contents</title>": "<title>目录</title>",
    "<title>Menu</title>": "<title>菜单</title>",
    "<title>Expand</title>": "<title>展开</title>",
    "<title>Light mode</title>": "<title>浅色模式</title>",
    "<title>Dark mode</title>": "<title>深色模式</title>",
    "<title>Auto light/dark, in light mode</title>": "<title>自动浅色 / 深色，当前浅色</title>",
    "<title>Auto light/dark, in dark mode</title>": "<title>自动浅色 / 深色，当前深色</title>",
    "Skip to content": "跳到正文",
    "<span>Back to top</span>": "<span>回到顶部</span>",
    "<span>Next</span>": "<span>下一页</span>",
    "<span>Previous</span>": "<span>上一页</span>",
    "On this page": "本页内容",
    "Copyright &#169;": "版权所有 &#169;",
    'aria-label="Toggle navigation of ': 'aria-label="展开或折叠：',
    "Please activate JavaScript to enable the search functionality.": "请启用 JavaScript 以使用搜索功能。",
}
# The footer's "Made with Sphinx and @pradyunsg's Furo", whatever the whitespace between its parts.
MADE_WITH = re.compile(
    r"Made with\s*(<a href=\"https://www.sphinx-doc.org/\">Sphinx</a>)\s*and\s*"
    r"(<a class=\"muted-link\" href=\"https://pradyunsg.me\">@pradyunsg</a>)'s\s*"
    r"(<a href=\"https://github.com/pradyunsg/furo\">Furo</a>)")


def glossary_terms(glossary: Path = GLOSSARY) -> list[str]:
    """Every Chinese term of the glossary's 中文 column: its runs of Chinese characters.

    "布局（NHD、HND）" gives 布局, "分页 KV 缓存" gives 分页 and 缓存 (and 分页KV缓存 is not
    a word a reader types), "换出换入、卸载" gives 换出换入 and 卸载. Single characters (块, 流)
    are left out: jieba knows them and a one-character term is no index word.
    """
    terms: list[str] = []
    for line in glossary.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.lstrip().startswith("|") or set(cells[0]) <= set("-: "):
            continue
        if cells[1] == "中文":  # the header row
            continue
        for run in CJK_RUN.findall(cells[1]):
            if len(run) > 1 and run not in terms:
                terms.append(run)
    if not terms:
        raise RuntimeError(f"{glossary}: no Chinese terms found in the glossary table")
    return terms


def write_dictionary(path: Path, glossary: Path = GLOSSARY) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{term} {TERM_FREQUENCY}\n" for term in glossary_terms(glossary))
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def _zh(config) -> bool:
    return bool(config.language) and config.language.startswith("zh")


def _config_inited(app, config) -> None:
    if not _zh(config):
        return
    options = dict(config.html_search_options or {})
    if "dict" not in options:
        options["dict"] = str(write_dictionary(Path(app.doctreedir) / "jieba_userdict.txt"))
    config.html_search_options = options
    if config.copyright == "the pagedkv developers":  # the footer's "版权所有 © ..."
        config.copyright = "pagedkv 开发者"


def _doctree_read(app, doctree) -> None:
    if app.env.docname.startswith("docs/_generated/sources/"):
        app.env.metadata[app.env.docname]["nosearch"] = True


def _theme_text(html: str) -> Markup:
    for english, chinese in THEME_TEXT.items():
        html = html.replace(english, chinese)
    html = MADE_WITH.sub(r"由 \1 和 \3 主题（\2）构建", html)
    return Markup(html)


def _builder_inited(app) -> None:
    templates = getattr(app.builder, "templates", None)
    if templates is None or not hasattr(templates, "environment"):
        return
    zh = _zh(app.config)
    templates.environment.filters["pagedkv_theme_text"] = (
        _theme_text if zh else (lambda html: html))
    if zh:
        app.add_js_file("pagedkv-zh.js")


def setup(app):
    app.connect("config-inited", _config_inited)
    app.connect("builder-inited", _builder_inited)
    # After Sphinx's MetadataCollector (priority 500), which fills env.metadata from the page.
    app.connect("doctree-read", _doctree_read, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    sys.stdout.write("".join(f"{t} {TERM_FREQUENCY}\n" for t in glossary_terms()))

# Sphinx configuration of the pagedkv documentation site.
#
# Build everything with scripts/docs.sh. The source directory is the REPOSITORY ROOT and this
# folder (docs/) is only the configuration directory:
#   sphinx-build -c docs <repo> site/en
# so that chapters/ and notebooks/ are read where they live, and a relative path written in a
# chapter (```{literalinclude} ../kernels/...```) means what it means in the repository.
# Pages: docs/**, chapters/**, notebooks/** (include_patterns below).
#
# Environment (set by scripts/docs.sh):
#   PAGEDKV_DOXYGEN_XML   Doxygen XML folder (default build/docs/doxygen/xml)
#   PAGEDKV_MATHJAX_DIR   folder holding mathjax/ (offline MathJax 2; default build/docs/mathjax-static)
#   PAGEDKV_NB_EXECUTION  MyST-NB execution mode: "force" (default) or "off" (gettext builds)

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "pagedkv"
author = "the pagedkv developers"
copyright = "the pagedkv developers"
release = "0.1.0"

# -- Sources ------------------------------------------------------------------------------------
root_doc = "docs/index"
include_patterns = ["docs/**", "chapters/**", "notebooks/**"]
exclude_patterns = [
    ".*", "build", "site", "results", "python", "tests", "tools", "kernels", "reference_cpu",
    "include", "core", "cmake", "scripts",
    "docs/_ext", "docs/tools", "docs/tests", "docs/locales", "docs/_templates", "docs/_static",
    "docs/_generated/*.md",  # snippets pulled in by {include}; the pages under it are real pages
    "**/build", "**/.ipynb_checkpoints", "**/README.md",
]
extensions = [
    "myst_nb",  # MyST Markdown pages and MyST-NB text notebooks (includes myst_parser)
    "breathe",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
    "sphinx_design",
    "matplotlib.sphinxext.plot_directive",
    "pagedkv_i18n",  # Doxygen text into the translation catalogs
    "pagedkv_breathe",  # {doxygenfile} by repository path (many files are called naive.cu)
    "pagedkv_search",  # zh_CN search dictionary from the glossary, zh_CN theme text
    "pagedkv_compare",  # {compare-sources}: two excerpts side by side, differing lines marked
    "pagedkv_sources",  # {source-listing} pages with linkable lines; {source}`path:line` links
    "pagedkv_measured",  # {measured} values from results/*.json, {lab} dated notes, {spec}
    "pagedkv_annotated",  # {annotated-source}: excerpts with the trick labels as linked markers
    "pagedkv_notebooks",  # notebooks: recorded GPU output, downloads, output language
    "pagedkv_links",  # code names -> API entries; API entries -> source lines; op map <-> chapters
]
suppress_warnings = []

# -- MyST ---------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline"]
myst_dmath_double_inline = True  # $$..$$ inside a translated paragraph stays display math
myst_heading_anchors = 3
myst_update_mathjax = False  # MathJax 2 config below; MyST's MathJax 3 settings would break it

# -- Notebooks (MyST-NB) --------------------------------------------------------------------------
# A notebook is a MyST Markdown file with a `kernelspec` in its front matter (MyST-NB's text
# format, e.g. notebooks/*.md). It is executed during every HTML build, in both languages, with
# PAGEDKV_NB_LANGUAGE set to the build's language (docs/_ext/pagedkv_notebooks.py, which also
# shows the newest recorded GPU run of results/notebooks/ under the cells tagged gpu).
nb_execution_mode = os.environ.get("PAGEDKV_NB_EXECUTION", "force")
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_execution_excludepatterns = []

# -- Doxygen through Breathe ----------------------------------------------------------------------
DOXYGEN_XML = Path(os.environ.get("PAGEDKV_DOXYGEN_XML", ROOT / "build/docs/doxygen/xml"))
breathe_projects = {"pagedkv": str(DOXYGEN_XML)}
breathe_default_project = "pagedkv"
breathe_domain_by_extension = {"h": "cpp", "hpp": "cpp", "cpp": "cpp", "cu": "cpp", "cuh": "cpp"}
breathe_show_include = False
# The Doxyfile keeps __global__, __device__ and __host__ visible so a reader sees what is a kernel;
# PAGEDKV_HOST_DEVICE (pagedkv/row_layout.h) is the macro for "__host__ __device__".
# PAGEDKV_TM_FN (pagedkv/turbomind_kv.h) is "__host__ __device__ __forceinline__" or "inline".
cpp_id_attributes = ["__global__", "__device__", "__host__", "__forceinline__", "PAGEDKV_HOST_DEVICE",
                     "PAGEDKV_TM_FN"]
cpp_paren_attributes = ["__launch_bounds__"]
primary_domain = "cpp"
highlight_language = "cpp"

# -- Math without internet: Debian's MathJax 2, copied into _static/mathjax by scripts/docs.sh ----
MATHJAX_DIR = Path(os.environ.get("PAGEDKV_MATHJAX_DIR", ROOT / "build/docs/mathjax-static"))
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": True,
        # Code never holds math: skip highlighted blocks, inline literals and signatures.
        "ignoreClass": "tex2jax_ignore|mathjax_ignore|highlight|literal|sig",
        "processClass": "math|output_area|cell_output",
    },
    "CommonHTML": {"linebreaks": {"automatic": True}},
    "showMathMenu": False,
}

# -- Translation ----------------------------------------------------------------------------------
language = "en"
locale_dirs = ["docs/locales/"]  # relative to the SOURCE dir (the repo root): <page>.po files
gettext_compact = False
gettext_uuid = False
gettext_location = True
gettext_allow_fuzzy_translations = False
# Localised figures: perf_W1.zh_CN.png replaces perf_W1.png in the zh_CN build.
figure_language_filename = "{root}.{language}{ext}"

# -- Figures drawn by code in pages (```{plot}```) ----------------------------------------------
plot_formats = [("png", 110)]
plot_html_show_formats = False
plot_html_show_source_link = False
plot_include_source = False

# -- HTML -----------------------------------------------------------------------------------------
html_theme = "furo"
html_title = "pagedkv"
html_static_path = ["_static"] + ([str(MATHJAX_DIR)] if MATHJAX_DIR.is_dir() else [])
html_css_files = ["pagedkv.css"]
# Search: the zh_CN build's html_search_options["dict"] (a jieba user dictionary of the
# glossary's Chinese terms) is set by docs/_ext/pagedkv_search.py, which also keeps the source
# listings (docs/_generated/sources/**) out of the index.
html_search_options = {}
templates_path = ["_templates"]
html_sidebars = {
    "**": [
        "sidebar/brand.html",
        "language-switcher.html",
        "sidebar/search.html",
        "sidebar/scroll-start.html",
        "sidebar/navigation.html",
        "sidebar/scroll-end.html",
    ]
}
html_theme_options = {"navigation_with_keys": True}
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_exclude = ".linenos, .gp, .go"


try:  # the zh_CN search index is segmented by jieba; keep its start-up chatter out of the log
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
except ImportError:
    pass


def _check_inputs(app, config):
    """Fail early, with the command to run, when a generated input is missing."""
    if app.builder.name in ("html", "gettext"):
        if not (DOXYGEN_XML / "index.xml").is_file():
            raise RuntimeError(
                f"Doxygen XML not found at {DOXYGEN_XML}; build the docs with scripts/docs.sh "
                "(it runs Doxygen first)")
        generated = DOCS / "_generated" / "op_table.md"
        if not generated.is_file():
            raise RuntimeError(
                f"{generated} is missing; build the docs with scripts/docs.sh (it generates the "
                "op table and the performance page first)")
    if app.builder.name == "html" and not (MATHJAX_DIR / "mathjax" / "MathJax.js").is_file():
        raise RuntimeError(
            f"offline MathJax not found in {MATHJAX_DIR}; build the docs with scripts/docs.sh "
            "(it copies Debian's libjs-mathjax there)")


def setup(app):
    app.connect("builder-inited", lambda app: _check_inputs(app, app.config))
    return {"parallel_read_safe": True, "parallel_write_safe": True}

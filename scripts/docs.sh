#!/usr/bin/env bash
# Builds the pagedkv documentation site in English and 简体中文:
#   site/en/, site/zh_CN/ and site/index.html (which opens site/en/docs/index.html).
#
#   PAGEDKV_BIN=$PWD/build/cpu/tools/compare/pagedkv scripts/docs.sh
#
# Steps. A missing tool or input stops the script at once. Doxygen warnings, an incomplete
# translation and Sphinx warnings are errors too, but the script goes on to build as much of
# the site as it can (so the problem can be looked at) and exits 1 at the end with the list.
#   1. Doxygen XML from include/ core/ reference_cpu/ kernels/ (every warning is an error)
#   2. generated pages: the API pages docs/api/<op>.md (`$PAGEDKV_BIN list --json` and the
#      Doxygen XML; git-ignored), the op table, the performance page (newest committed results/*.json), the chapters' figures and
#      results tables (docs/tools/make_figures.py); then the generators' unit tests
#   3. sphinx-build -b gettext, the notebooks' output messages (docs/tools/notebook_messages.py)
#      -> sphinx-intl update -> auto-fill of code/math-only messages
#      -> the translation gate (no untranslated or fuzzy message in docs/locales/zh_CN)
#      -> the term check (docs/tools/check_terms.py: one Chinese term per concept, per docs/glossary.md)
#      -> the measured-number check (docs/tools/check_measured.py: measured numbers only through
#         {measured}/{lab}/{spec}, in the English pages and in the zh_CN catalogs)
#   4. sphinx-build -b html -W --keep-going, en and zh_CN; notebooks are executed in both, in
#      the build's language, with the newest recorded GPU run shown under their gpu cells
#      (docs/_ext/pagedkv_notebooks.py)
#
# Environment:
#   PAGEDKV_BIN         the comparison tool (required)
#   PYTHON              Python with docs/requirements.txt installed (default .venv/bin/python)
#   PAGEDKV_PYTHONPATH  folder holding the `pagedkv` Python package, put first on the notebooks'
#                       PYTHONPATH (default: none when `import pagedkv` works in $PYTHON, else
#                       build/python/python when it holds a hand-built package)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$SECONDS

fail() {
  echo "docs: FAILED: $*" >&2
  exit 1
}
errors=()
error() {  # records a failure, goes on
  echo "docs: ERROR: $*" >&2
  errors+=("$*")
}
step() { echo "docs: [$((SECONDS - start)) s] $*"; }

python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || fail "$python not found: run scripts/setup.sh (it creates .venv with docs/requirements.txt)"
"$python" -c "import sphinx, breathe, myst_nb, furo, sphinx_intl, matplotlib" 2>/dev/null ||
  fail "$python lacks the docs packages: run scripts/setup.sh (or pip install -r docs/requirements.txt)"
for tool in doxygen msgfmt msgattrib; do
  command -v "$tool" >/dev/null || fail "$tool not found: apt-get install doxygen gettext (scripts/setup.sh does)"
done
mathjax_src=/usr/share/javascript/mathjax
[ -f "$mathjax_src/MathJax.js" ] || fail "$mathjax_src not found: apt-get install libjs-mathjax (offline math)"
[ -n "${PAGEDKV_BIN:-}" ] || fail "PAGEDKV_BIN is not set. Build the comparison tool and name it:
  cmake --preset cpu && cmake --build build/cpu --target pagedkv_compare
  PAGEDKV_BIN=\$PWD/build/cpu/tools/compare/pagedkv scripts/docs.sh"
[ -x "$PAGEDKV_BIN" ] || fail "PAGEDKV_BIN=$PAGEDKV_BIN is not an executable file; build it first (cmake --build build/<preset> --target pagedkv_compare)"
PAGEDKV_BIN=$(cd "$(dirname "$PAGEDKV_BIN")" && pwd)/$(basename "$PAGEDKV_BIN")
export PAGEDKV_BIN

build=$root/build/docs
locales=$root/docs/locales/zh_CN/LC_MESSAGES
rm -rf "$build/doxygen" "$build/gettext" "$build/doctrees" "$build/jupyter_execute" site \
  "$root/docs/_generated"
mkdir -p "$build/doxygen" site

# 1. Doxygen ------------------------------------------------------------------------------------
step "Doxygen XML"
export DOXY_OUT=$build/doxygen
if ! doxygen docs/Doxyfile >"$build/doxygen/doxygen.out" 2>&1; then
  echo "docs: Doxygen reported warnings (the Doxyfile makes every warning an error):" >&2
  "$python" docs/tools/doxygen_report.py "$build/doxygen/warnings.log" "$build/doxygen/xml" "$root" >&2 || true
  if [ ! -s "$build/doxygen/warnings.log" ]; then cat "$build/doxygen/doxygen.out" >&2; fi
  echo "docs: fix the comments above: every public function needs \\brief, a \\param for every" >&2
  echo "      parameter and \\return for a non-void result; every documented struct/enum a \\brief." >&2
  error "Doxygen warnings in the source comments (listed above; full log $build/doxygen/warnings.log)"
fi
[ -f "$build/doxygen/xml/index.xml" ] || fail "Doxygen wrote no XML (see $build/doxygen/doxygen.out)"

# 2. Generated pages ----------------------------------------------------------------------------
step "generated pages"
"$python" docs/tools/generate.py --xml "$build/doxygen/xml" || error "page generation (messages above)"
"$python" docs/tools/make_figures.py || fail "chapter figures and results tables (docs/tools/make_figures.py)"
"$python" -m pytest -q -p no:cacheprovider docs/tests >"$build/generator-tests.log" 2>&1 ||
  { cat "$build/generator-tests.log" >&2; fail "unit tests of the page generators (docs/tests)"; }

# Offline MathJax 2: the parts the TeX-AMS_CHTML configuration loads, copied into _static/mathjax.
mathjax=$build/mathjax-static/mathjax
if [ ! -f "$mathjax/MathJax.js" ]; then
  mkdir -p "$mathjax"
  for part in MathJax.js config/TeX-AMS_CHTML.js extensions jax/input/TeX jax/output/CommonHTML \
    jax/element fonts/HTML-CSS/TeX/woff localization/en localization/zh-hans; do
    mkdir -p "$mathjax/$(dirname "$part")"
    cp -rL "$mathjax_src/$part" "$mathjax/$part"
  done
fi
export PAGEDKV_MATHJAX_DIR=$build/mathjax-static PAGEDKV_DOXYGEN_XML=$build/doxygen/xml

# The notebooks' Python: the kernel is this Python (MyST-NB starts "python3" = sys.executable).
if [ -n "${PAGEDKV_PYTHONPATH:-}" ]; then
  export PYTHONPATH=$PAGEDKV_PYTHONPATH${PYTHONPATH:+:$PYTHONPATH}
elif ! "$python" -c "import pagedkv" 2>/dev/null && [ -d build/python/python/pagedkv ]; then
  export PYTHONPATH=$root/build/python/python${PYTHONPATH:+:$PYTHONPATH}
fi
export MPLBACKEND=Agg PYDEVD_DISABLE_FILE_VALIDATION=1 JUPYTER_PLATFORM_DIRS=1
if "$python" -c "import pagedkv" 2>/dev/null; then
  step "notebooks import pagedkv from $("$python" -c 'import os, pagedkv; print(os.path.dirname(pagedkv.__file__))')"
else
  step "note: the pagedkv Python package is not importable (notebooks that import it will fail)"
fi

sphinx=("$python" -m sphinx -c docs -W --keep-going -q)

# 3. Catalogs and the translation gate ----------------------------------------------------------
step "gettext catalogs"
PAGEDKV_NB_EXECUTION=off "${sphinx[@]}" -b gettext -d "$build/doctrees/gettext" . "$build/gettext" ||
  error "sphinx-build -b gettext: warnings above"
# Drops catalogs without messages (the source listings) and checks that Doxygen text is there.
"$python" docs/tools/check_catalogs.py "$build/gettext" "$build/doxygen/xml" ||
  error "Doxygen text did not reach the catalogs (docs/_ext/pagedkv_i18n.py vs the pinned Sphinx/Breathe)"
# The notebooks' printed and drawn words (their _() messages) get a template of their own, so
# that sphinx-intl makes notebooks/output.po and the gate below covers it.
"$python" docs/tools/notebook_messages.py "$build/gettext/notebooks/output.pot" ||
  error "notebook messages (docs/tools/notebook_messages.py): messages above"
"$python" -m sphinx_intl update -p "$build/gettext" -l zh_CN -d docs/locales -w 76 >"$build/sphinx-intl.log" ||
  { cat "$build/sphinx-intl.log" >&2; fail "sphinx-intl update"; }
"$python" docs/tools/po_autofill.py "$locales" | tail -1
step "translation gate"
docs/tools/translation_gate.sh "$locales" "$build/gettext" ||
  error "translation gate: untranslated or fuzzy messages (listed above; the zh_CN site shows them in English)"
step "term check"
"$python" docs/tools/check_terms.py --locales "$locales" ||
  error "term check: forbidden variants of glossary terms in the zh_CN catalogs (listed above; the terms are docs/glossary.md's, the variants docs/tools/check_terms.py's)"
step "measured-number check"
"$python" docs/tools/check_measured.py --locales "$locales" ||
  error "measured-number check: a measured number retyped instead of quoted with {measured} (or dated with {lab}, or marked {spec}); listed above"

# 4. HTML in both languages ---------------------------------------------------------------------
for lang in en zh_CN; do
  step "HTML ($lang)"
  "${sphinx[@]}" -b html -D language="$lang" -d "$build/doctrees/$lang" . "site/$lang" ||
    error "sphinx-build -b html ($lang): warnings above"
done
cp docs/tools/site_index.html site/index.html
if ((${#errors[@]})); then
  echo "docs: FAILED after $((SECONDS - start)) s; the site was built anyway for a look. Errors:" >&2
  printf '  - %s\n' "${errors[@]}" >&2
  exit 1
fi
step "done: site/index.html, site/en/docs/index.html, site/zh_CN/docs/index.html"

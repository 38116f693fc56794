#!/usr/bin/env bash
# Runs the whole test suite (needs ./install.sh first; run as root).
set -euo pipefail
cd "$(dirname "$0")"
exec .venv/bin/python -m pytest -q "$@"

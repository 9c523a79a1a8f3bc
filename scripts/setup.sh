#!/usr/bin/env bash
# Create .venv (if needed) and install the project; "dev" adds the test tools.
# Versions are pinned by constraints.txt (the set the test suite last passed with),
# so a fresh machine installs what CI tested, not whatever PyPI released since.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  if [ -n "$extras" ]; then
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
  else
    .venv/bin/python -m pip install -q -c constraints.txt -e .
  fi
  touch "$stamp"
fi

#!/usr/bin/env bash
# Lint: ruff's errors, line length and import order, as configured in pyproject.toml.
# .ci/run runs it before the tests. Creates the .venv first if needed; needs no server.
#   scripts/lint.sh [ruff check arguments, e.g. --fix]
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
ensure_venv
cd "$REPO_ROOT"
exec "$VENV/bin/ruff" check "$@" .

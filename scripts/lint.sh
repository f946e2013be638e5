#!/usr/bin/env bash
# Lint and type check, as configured in pyproject.toml: ruff (errors, line length, import order,
# bugbear, pyupgrade, simplify) over the whole tree, then mypy over migrator/ and app/.
# .ci/run runs it before the tests. Creates the .venv first if needed; needs no server.
#   scripts/lint.sh [ruff check arguments, e.g. --fix]
# Exit code: ruff's if it found something, else mypy's; both always run.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
ensure_venv
cd "$REPO_ROOT"
status=0
"$VENV/bin/ruff" check "$@" . || status=$?
"$VENV/bin/mypy" || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
exit "$status"

#!/usr/bin/env bash
# Run the test suite against a real server: builds and starts its own FerretDB, or uses MONGODB_URL.
# Installs what it needs first (a venv with the requirements; the Go build of the local server;
# Wine and docker-compose for the tests of the Windows and Docker wrappers, when it can).
# Only tests/unit asked for: no server, so neither Go nor those tools are needed.
#   scripts/test.sh [pytest arguments]
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"

unit_tier_only() {  # some test path is asked for, each in tests/unit (a server test would build it anyway)
  local arg paths=0
  for arg in "$@"; do
    case "$arg" in
      tests/unit|tests/unit/*|./tests/unit|./tests/unit/*) paths=1 ;;
      tests*|./tests*) return 1 ;;
    esac
  done
  [ "$paths" = 1 ]
}

ensure_venv
if ! unit_tier_only "$@"; then
  bash "$REPO_ROOT/scripts/install-test-tools.sh"  # Wine, docker-compose: once, when it can; never fails
  if [ -z "${MONGODB_URL:-}" ]; then bash "$REPO_ROOT/scripts/local-db.sh" build >/dev/null; fi
fi
cd "$REPO_ROOT"
exec "$PY" -m pytest "$@"

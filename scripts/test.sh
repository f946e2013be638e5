#!/usr/bin/env bash
# Run the test suite against a real server: builds and starts its own FerretDB, or uses MONGODB_URL.
# Installs what it needs first (a venv with the requirements; the Go build of the local server;
# Wine and docker-compose for the tests of the Windows and Docker wrappers, when it can).
#   scripts/test.sh [pytest arguments]
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
ensure_venv
bash "$REPO_ROOT/scripts/install-test-tools.sh"  # Wine, docker-compose: once, when it can; never fails
if [ -z "${MONGODB_URL:-}" ]; then bash "$REPO_ROOT/scripts/local-db.sh" build >/dev/null; fi
cd "$REPO_ROOT"
exec "$PY" -m pytest "$@"

#!/usr/bin/env bash
# Run the test suite against a real server: builds and starts its own FerretDB (one per worker), or uses MONGODB_URL.
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

chooses_workers() {  # the arguments say how to run in parallel (or that a debugger needs a single process)
  local arg
  for arg in "$@"; do
    case "$arg" in
      -n|-n*|--numprocesses|--numprocesses=*|no:xdist|-pno:xdist|--pdb|--trace) return 0 ;;
    esac
  done
  return 1
}

ensure_venv
workers=()
if ! unit_tier_only "$@"; then
  bash "$REPO_ROOT/scripts/install-test-tools.sh"  # Wine, docker-compose: once, when it can; never fails
  # Built here, once, before the workers start: each then starts its own server from this binary.
  if [ -z "${MONGODB_URL:-}" ]; then bash "$REPO_ROOT/scripts/local-db.sh" build >/dev/null; fi
  # The server tests mostly wait (on the server, on subprocesses, on --max-rate): run them in parallel workers
  # (pytest-xdist), each with its own server (tests/conftest.py); with MONGODB_URL, each test its own database.
  # TEST_WORKERS changes how many (0: none); so does -n among the arguments. Two tests at a time to a worker:
  # the slow ones, collected first (tests/conftest.py), spread over all workers.
  if ! chooses_workers "$@"; then workers=(-n "${TEST_WORKERS:-4}" --maxschedchunk 2); fi
fi
cd "$REPO_ROOT"
exec "$PY" -m pytest ${workers[@]+"${workers[@]}"} "$@"

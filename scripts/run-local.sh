#!/usr/bin/env bash
# The main job on a laptop, from nothing: start the local server (FerretDB, port 27020), load sample
# chat messages into an empty flowise_proxy_test, run every migration, verify.
#   scripts/run-local.sh                                 --all, then --verify
#   scripts/run-local.sh [run_migrations.py arguments]   those arguments only, e.g. --status
# LOCALDB_PORT / LOCALDB_DATA choose the server (see scripts/local-db.sh), MONGODB_DATABASE_NAME the
# database, SAMPLE_MESSAGES how many messages an empty database gets (1000). Exit code: the runner's.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
ensure_venv
bash "$REPO_ROOT/scripts/local-db.sh" start
# Our local server has no users: connect without the credentials of .env.test (which are for MongoDB).
export MONGODB_URL="mongodb://127.0.0.1:${LOCALDB_PORT:-27020}/"
export MONGODB_DATABASE_NAME="${MONGODB_DATABASE_NAME:-flowise_proxy_test}"
cd "$REPO_ROOT"
"$PY" scripts/sample_messages.py --count "${SAMPLE_MESSAGES:-1000}"
if [ $# -gt 0 ]; then exec "$PY" migrations/run_migrations.py "$@"; fi
"$PY" migrations/run_migrations.py --all
"$PY" migrations/run_migrations.py --verify

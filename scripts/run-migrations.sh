#!/usr/bin/env bash
# Run the migrations with this machine's Python against the test database of .env.test (MongoDB in
# the mongodb-test container, localhost:27020: scripts/rebuild-docker-dbonly.sh). The Linux twin of
# scripts\run-migrations.bat; the Python is the project's venv (.venv, created when missing).
#   scripts/run-migrations.sh [run_migrations.py arguments]   (default: --all), e.g. --status
# MONGODB_URL / MONGODB_DATABASE_NAME in the environment win over .env.test.
# Exit code: the runner's: 0 ok, 1 failed, 2 usage or settings, 3 lock held, 4 verification failed,
# 5 cannot reach the database, 6 --check: not up to date, 7 stopped by --cancel, 130 interrupted (Ctrl-C),
# 143 stopped by SIGTERM (7, 130 and 143: run the same command again to resume); 2 also when no Python 3.11+ is found.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
ensure_venv
export ENV_FILE="$REPO_ROOT/.env.test"
exec "$PY" "$REPO_ROOT/migrations/run_migrations.py" "${@:---all}"

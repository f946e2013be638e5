#!/usr/bin/env bash
# Everything in Docker (Linux): rebuild the test stack of docker-compose.test.yml from nothing, then
# run the migrations inside the app container.
#   scripts/rebuild-docker-test.sh [run_migrations.py arguments]   (default: --all)
# Deletes the test database (its volume). MONGO_READY_TIMEOUT bounds the wait for MongoDB (60 s).
# Exit code: the runner's; 2 when a tool is missing, 5 when MongoDB does not get ready, or that of
# the failing docker command.
source "$(dirname "${BASH_SOURCE[0]}")/_docker.sh"
require_compose
echo "==> removing the test stack and its data"
compose down -v --remove-orphans
echo "==> building the app image"
compose build
echo "==> starting $MONGO_CONTAINER and $APP_CONTAINER"
compose up -d
wait_healthy "$MONGO_CONTAINER"
echo "==> running the migrations in $APP_CONTAINER"
if migrate_in_container "$@"; then
  echo "test stack ready: MongoDB on localhost:27020, the app on http://localhost:8000/health"
else
  code=$?
  echo "error: the migrations failed (exit $code): see the runner's output above" >&2
  exit "$code"
fi

#!/usr/bin/env bash
# MongoDB alone in Docker, the migrations (and the app) on this machine: the Linux twin of
# scripts\rebuild-docker-dbonly.bat. Recreates the mongodb-test container (its data volume is
# kept), waits for it, then asks whether to run the migrations (scripts/run-migrations.sh).
#   scripts/rebuild-docker-dbonly.sh      (answer on stdin: `echo yes | scripts/rebuild-docker-dbonly.sh`)
# MONGO_READY_TIMEOUT bounds the wait (60 s). Exit code: the runner's when it runs; 2 when a tool is
# missing, 5 when MongoDB does not get ready, or that of the failing docker command.
source "$(dirname "${BASH_SOURCE[0]}")/_docker.sh"
require_compose
echo "==> recreating $MONGO_CONTAINER"
compose up -d --force-recreate "$MONGO_CONTAINER"
wait_healthy "$MONGO_CONTAINER"
echo "MongoDB is ready on localhost:27020 (database flowise_proxy_test, the settings of .env.test)"
printf 'Run migrations now? (yes/no) '
read -r answer || answer=""
case "${answer,,}" in
  y|yes) exec bash "$REPO_ROOT/scripts/run-migrations.sh" ;;
  *) echo "not running the migrations: run scripts/run-migrations.sh when you are ready" ;;
esac

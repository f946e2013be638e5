#!/usr/bin/env bash
# Run the migrations inside the running app container, flowise-proxy-test (the test stack of
# docker-compose.test.yml, started by scripts/rebuild-docker-test.sh).
#   scripts/run-migrations-docker.sh [run_migrations.py arguments]   (default: --all), e.g. --status
# Exit code: the runner's (0 ok, 1 failed, 2 usage, 3 lock held, 4 verify failed, 5 cannot reach the
# database); also 2 when docker is missing, 5 when the container is not running.
source "$(dirname "${BASH_SOURCE[0]}")/_docker.sh"
require_docker
migrate_in_container "$@"

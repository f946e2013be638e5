# Sourced by the Docker scripts: the checks and steps they share around docker-compose.test.yml
# (mongodb-test: MongoDB on localhost:27020; flowise-proxy-test: the app, with the migrations inside).
# Exit codes of the checks: 2 a tool is missing or the engine is down, 5 MongoDB or the app's
# container is not up (like the runner's "cannot reach the database").
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
COMPOSE_YML="$REPO_ROOT/docker-compose.test.yml"
MONGO_CONTAINER=mongodb-test
APP_CONTAINER=flowise-proxy-test

require_docker() {
  command -v docker >/dev/null \
    || { echo "error: docker not found: install Docker (https://docs.docker.com/engine/install/)" >&2; exit 2; }
  docker info >/dev/null 2>&1 || { echo "error: the Docker engine does not answer (docker info failed): start it" \
    "(sudo systemctl start docker) or check your access to it (the docker group)" >&2; exit 2; }
}

# Sets COMPOSE to `docker compose` (v2) or `docker-compose` (v1), whichever is installed.
require_compose() {
  require_docker
  if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1; then COMPOSE=(docker-compose)
  else echo "error: Docker Compose not found: install the compose plugin (docker compose) or docker-compose" >&2; exit 2
  fi
}

compose() { "${COMPOSE[@]}" -f "$COMPOSE_YML" "$@"; }

# Waits until the container's health check passes: MONGO_READY_TIMEOUT seconds (60), polling every
# MONGO_READY_INTERVAL seconds (1).
wait_healthy() {
  local container=$1 timeout=${MONGO_READY_TIMEOUT:-60} status
  local deadline=$((SECONDS + timeout))
  echo "waiting for $container to be healthy (up to $timeout s) ..."
  while :; do
    status="$(docker inspect -f '{{.State.Health.Status}}' "$container" 2>/dev/null)" || status="no such container"
    if [ "$status" = healthy ]; then echo "$container is healthy"; return 0; fi
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep "${MONGO_READY_INTERVAL:-1}"
  done
  echo "error: MongoDB not ready after $timeout s ($container: $status). See why: docker logs $container" >&2
  exit 5
}

# Runs migrations/run_migrations.py inside the app's container with these arguments (default: --all);
# returns the runner's exit code.
migrate_in_container() {
  local running
  running="$(docker inspect -f '{{.State.Running}}' "$APP_CONTAINER" 2>/dev/null)" || running=false
  if [ "$running" != true ]; then
    echo "error: container $APP_CONTAINER is not running: start the test stack with scripts/rebuild-docker-test.sh" \
      "(see why it stopped: docker logs $APP_CONTAINER)" >&2
    exit 5
  fi
  local options=(-i)  # stdin for the runner's confirmations; a terminal when there is one
  if [ -t 0 ] && [ -t 1 ]; then options=(-it); fi
  docker exec "${options[@]}" "$APP_CONTAINER" python migrations/run_migrations.py "${@:---all}"
}

#!/usr/bin/env bash
# The local MongoDB-compatible server: FerretDB v1.24.2 (SQLite) embedded in localdb/, on loopback.
#   scripts/local-db.sh build                 build (cached) and print the binary's path
#   scripts/local-db.sh start|stop|status     the server on LOCALDB_PORT
# LOCALDB_PORT   the port (27020)
# LOCALDB_DATA   its data folder (default .localdb/data-PORT; port 27020 keeps an existing .localdb/data).
#                One server per folder: a second one on the same folder refuses to start.
# LOCALDB_STOP_TIMEOUT   seconds `stop` waits for the server to end before it kills it (10)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$REPO_ROOT/.localdb"
BIN="$STATE/bin/localdb"
PORT="${LOCALDB_PORT:-27020}"
if [ -n "${LOCALDB_DATA:-}" ]; then DATA="$LOCALDB_DATA"
elif [ "$PORT" = 27020 ] && [ -d "$STATE/data" ] && [ ! -d "$STATE/data-27020" ]; then DATA="$STATE/data"  # before per-port folders
else DATA="$STATE/data-$PORT"
fi
PIDFILE="$STATE/localdb-$PORT.pid"
LOG="$STATE/localdb-$PORT.log"
STOP_TIMEOUT="${LOCALDB_STOP_TIMEOUT:-10}"

build() {
  command -v go >/dev/null || { echo "error: Go not found: install Go 1.24 or newer (https://go.dev/dl)" >&2; exit 2; }
  # Rebuild only when our sources are newer than the binary; Go's own cache makes a rebuild quick.
  if [ ! -x "$BIN" ] || [ -n "$(find "$REPO_ROOT/localdb" -newer "$BIN" -type f 2>/dev/null)" ]; then
    echo "building the local FerretDB server (the first build takes a few minutes) ..." >&2
    mkdir -p "$STATE/bin"
    (cd "$REPO_ROOT/localdb" && CGO_ENABLED=0 go build -o "$BIN" .)
  fi
  echo "$BIN"
}

# The pid file's process is alive and is our server (not a process that got its pid after a reboot).
running() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  alive "$pid" || return 1
  [ ! -r "/proc/$pid/cmdline" ] || tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$BIN"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# A process that ended but was not yet reaped by its parent (a zombie) is no longer alive.
alive() { kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }

start() {
  if running; then echo "local database already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; return; fi
  rm -f "$PIDFILE"
  if listening; then echo "error: port $PORT is taken by another program (set LOCALDB_PORT)" >&2; exit 1; fi
  build >/dev/null
  mkdir -p "$DATA"
  nohup "$BIN" -listen "127.0.0.1:$PORT" -data "$DATA" >"$LOG" 2>&1 &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  for _ in $(seq 100); do
    if listening; then echo "local database running on 127.0.0.1:$PORT (data: $DATA, log: $LOG)"; return; fi
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi  # not listening after 10 s
  rm -f "$PIDFILE"
  echo "error: the local database did not start; see $LOG:" >&2; tail -5 "$LOG" >&2; exit 1
}

stop() {
  if ! running; then rm -f "$PIDFILE"; echo "local database not running"; return; fi
  local pid deadline
  pid="$(cat "$PIDFILE")"
  kill "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if alive "$pid"; then
    echo "the local database (pid $pid) did not stop within $STOP_TIMEOUT s: killing it (SIGKILL)" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" && sleep 0.1; done
  fi
  rm -f "$PIDFILE"
  echo "local database stopped"
}

status() {
  if running; then echo "running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), data: $DATA)"; else echo "not running"; return 1; fi
}

case "${1:-}" in
  build|start|stop|status) "$1" ;;
  *) echo "usage: $0 build|start|stop|status   (port: LOCALDB_PORT=$PORT, data: LOCALDB_DATA=$DATA)" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The local MongoDB-compatible server: FerretDB v1.24.2 (SQLite) embedded in localdb/, on loopback.
#   scripts/local-db.sh build                 build (cached) and print the binary's path
#   scripts/local-db.sh start|stop|status     on LOCALDB_PORT (27020), data in .localdb/data
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$REPO_ROOT/.localdb"
BIN="$STATE/bin/localdb"
PORT="${LOCALDB_PORT:-27020}"
DATA="${LOCALDB_DATA:-$STATE/data}"
PIDFILE="$STATE/localdb-$PORT.pid"
LOG="$STATE/localdb-$PORT.log"

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

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start() {
  if running; then echo "local database already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; return; fi
  if listening; then echo "error: port $PORT is taken by another program (set LOCALDB_PORT)" >&2; exit 1; fi
  build >/dev/null
  mkdir -p "$DATA"
  nohup "$BIN" -listen "127.0.0.1:$PORT" -data "$DATA" >"$LOG" 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 100); do
    if listening; then echo "local database running on 127.0.0.1:$PORT (data: $DATA, log: $LOG)"; return; fi
    running || break
    sleep 0.1
  done
  echo "error: the local database did not start; see $LOG:" >&2; tail -5 "$LOG" >&2; exit 1
}

stop() {
  if running; then kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; echo "local database stopped"
  else rm -f "$PIDFILE"; echo "local database not running"; fi
}

status() {
  if running; then echo "running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; else echo "not running"; return 1; fi
}

case "${1:-}" in
  build|start|stop|status) "$1" ;;
  *) echo "usage: $0 build|start|stop|status   (port: LOCALDB_PORT=$PORT)" >&2; exit 2 ;;
esac

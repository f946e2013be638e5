# Sourced by the other scripts: the repo root, and a venv with the project's requirements.
# Installs the dev lock (requirements-dev.txt: every package pinned and hashed; scripts/lock.sh makes it),
# only when a lock changed since the last run (keyed on the two lock files' contents).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"

ensure_venv() {
  local python="${PYTHON:-python3}"
  command -v "$python" >/dev/null || { echo "error: $python not found: install Python 3.11 or newer" >&2; exit 2; }
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "error: Python 3.11 or newer is needed ($("$python" --version 2>&1))" >&2; exit 2; }
  [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
  local stamp="$VENV/.requirements.sha256" want
  want="$(cat "$REPO_ROOT/requirements.txt" "$REPO_ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing Python requirements into $VENV ..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
      -r "$REPO_ROOT/requirements-dev.txt"
    echo "$want" > "$stamp"
  fi
  PY="$VENV/bin/python"
}

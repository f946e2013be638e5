#!/usr/bin/env bash
# System tools some tests use, installed when missing: Wine (runs the .bat wrappers under cmd) and
# docker-compose v1 (validates docker-compose.test.yml). Called by scripts/test.sh.
# Installs only as root with apt-get, tries once per machine (stamp in .localdb/), and never fails:
# without the tools, the tests that need them are skipped with the reason.
#   scripts/install-test-tools.sh         (retry a failed install: delete .localdb/test-tools.stamp)
set -uo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAMP="$REPO_ROOT/.localdb/test-tools.stamp"
LOG="$REPO_ROOT/.localdb/test-tools.log"

mkdir -p "$REPO_ROOT/.localdb"
exec 9>"$REPO_ROOT/.localdb/test-tools.lock" && flock 9  # test runs started together install once
missing=()
command -v wine >/dev/null || missing+=(wine wine64)
command -v docker-compose >/dev/null || missing+=(docker-compose)
[ ${#missing[@]} -gt 0 ] || exit 0
# Tried already (with this list): do not pay for apt-get again on every test run.
[ "$(cat "$STAMP" 2>/dev/null | head -1)" = "${missing[*]}" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: ${missing[*]} not installed (needs root and apt-get): the tests that use them will be skipped" >&2
  exit 0
fi

echo "installing test tools with apt-get, once: ${missing[*]} ..." >&2
started=$SECONDS
apt_options=(-qq -o Acquire::Retries=1 -o Acquire::http::Timeout=20 -o Dpkg::Use-Pty=0)
if apt-get "${apt_options[@]}" update >"$LOG" 2>&1 &&
   DEBIAN_FRONTEND=noninteractive apt-get "${apt_options[@]}" install -y --no-install-recommends \
     "${missing[@]}" >>"$LOG" 2>&1; then
  result="installed in $((SECONDS - started)) s"
else
  result="failed (see $LOG): the tests that need them will be skipped"
fi
printf '%s\n%s\n' "${missing[*]}" "$result" >"$STAMP"
echo "test tools: $result" >&2
exit 0

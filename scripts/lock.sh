#!/usr/bin/env bash
# Regenerates the locks, requirements.txt (runtime: the Dockerfile, the Windows set-up) and
# requirements-dev.txt (runtime + tests, lint, type check: the .venv), from requirements.in and
# requirements-dev.in, with every package pinned and hashed (pip-tools, itself pinned in the dev lock).
#   scripts/lock.sh                           after editing a .in file; every other pin stays
#   scripts/lock.sh --upgrade-package NAME    move one package (and what it needs) to its newest allowed version
#   scripts/lock.sh --upgrade                 move every package to its newest allowed version
# Run it on Linux with Python 3.11, the Docker image's version (PYTHON=python3.11 if python3 is another);
# needs PyPI. Commit the .in and .txt files together: scripts/_bootstrap.sh installs the new lock on next use.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
ensure_venv
cd "$REPO_ROOT"
export CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh"  # what the locks' headers name
compile=("$VENV/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras
         --no-emit-find-links --no-emit-trusted-host --no-emit-index-url)
# The runtime lock first: the dev lock takes its pins as constraints (-c requirements.txt).
"${compile[@]}" "$@" --output-file requirements.txt requirements.in
"${compile[@]}" "$@" --output-file requirements-dev.txt requirements-dev.in

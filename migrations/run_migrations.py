"""Apply, verify and roll back the project's migrations: `python migrations/run_migrations.py --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find app/ and migrator/ when run as a script

if __name__ == "__main__":
    from migrator.cli import exit_with, runner_main

    exit_with(runner_main())

"""How the toolkit talks in a terminal and in logs: whole lines, logs on stderr, levels that mean something."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from conftest import MIGRATIONS, Result
from sample_messages import chat_messages

MIGRATION = "add_metadata_to_chat_messages"
TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def run_in_a_terminal(argv: list[str], env: dict, columns: int, stdout_too: bool) -> Result:
    """stderr on a pseudo-terminal `columns` wide (as a narrow window); stdout too, or on a pipe."""
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environment = {k: v for k, v in env.items() if k not in {"COLUMNS", "LINES"}} | {"TERM": "xterm-256color"}
    process = subprocess.Popen([sys.executable, *argv], stdin=subprocess.DEVNULL,
                               stdout=terminal if stdout_too else subprocess.PIPE, stderr=terminal, env=environment)
    os.close(terminal)
    shown, deadline = b"", time.monotonic() + 90
    try:
        while time.monotonic() < deadline:  # until the terminal closes with the process
            if not select.select([master], [], [], 0.2)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        stdout, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        os.close(master)
    return Result(subprocess.CompletedProcess(argv, process.returncode, (stdout or b"").decode(),
                                              shown.decode(errors="replace")))


@pytest.mark.parametrize("stdout_too", [True, False], ids=["stdout-and-stderr-on-the-terminal", "stdout-piped"])
def test_in_a_narrow_terminal_a_long_backup_path_prints_whole_on_one_line(db, env, tmp_path, stdout_too):
    backups = tmp_path / "backups-kept-for-the-on-call-engineer" / "flowise-proxy-migrations"
    db.chat_messages.insert_many(chat_messages(8, with_metadata_every=4))
    result = run_in_a_terminal([str(MIGRATIONS / "run_migrations.py"), "--all", "--backup"],
                               {**env, "MIGRATIONS_BACKUP_DIR": str(backups)}, columns=60, stdout_too=stdout_too)
    assert result.code == 0, result
    [saved] = backups.glob(f"*-{MIGRATION}-apply-*.bson.gz")
    assert len(str(saved)) > 60
    lines = TERMINAL_CODES.sub("", result.stderr).splitlines()
    assert [line for line in lines if line.endswith(f"saved to {saved}")], result.stderr  # not folded at 60 columns
    assert "\x1b[" in result.stderr  # still rich: coloured for the terminal
    assert "saved to" not in result.stdout, result  # log lines go to stderr; stdout is for results


def test_a_migration_not_in_place_is_a_warning(cli, db, env, tmp_path):
    db.chat_messages.insert_many(chat_messages(8, with_metadata_every=4))
    assert cli("run_migrations.py", "--all").code == 0
    db.chat_messages.update_one({}, {"$unset": {"metadata": ""}})
    result = cli("run_migrations.py", "--verify")
    assert result.code == 4, result
    assert re.search(rf"^\S+ \S+ WARNING {MIGRATION}: NOT in place \(", result.stderr, re.MULTILINE), result

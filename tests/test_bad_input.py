"""Bad input, as one matrix: every row is one bad input a user can give the toolkit.

For each row the command must exit with the documented code (migrator/errors.py), print exactly one
error line that says what is wrong (no traceback without --debug, no password), and leave every
document of the database as it was: chat_messages, migrations_changelog and migrations_lock.

Bad inputs tried: len(CASES), i.e. BAD_INPUTS_TRIED below (test_the_matrix_is_counted keeps them equal).
"""

import gzip
import json
import os
import pty
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import MIGRATIONS, Result, digest, run, run_here
from migrator import backup
from sample_messages import chat_messages

BAD_INPUTS_TRIED = 25

PASSWORD = "Bad1nput-Pa55"
MIGRATION = "add_metadata_to_chat_messages"
RUNNER = "run_migrations.py --migrations-dir {folder}"
RESET = "reset_chat_messages_session_test.py"
RESTORE = RUNNER + " --restore {tmp}/{file} --yes"


@dataclass
class Scene:
    """Where a case runs: a seeded database, its migrations folder and a backup the seed took."""
    tmp: Path
    folder: Path
    backup: Path
    host: str
    password: str = PASSWORD
    closed_port: int = 0


@dataclass
class Case:
    id: str
    code: int  # the exit code
    says: str | tuple[str, ...]  # the one error line contains this (each of these)
    command: str  # a script of migrations/ and its arguments, with {Scene fields}
    env: dict = field(default_factory=dict)  # changes to the environment ({Scene fields}); None removes one
    prepare: Callable[[Scene], None] | None = None  # writes the bad file the command reads
    file: str = ""  # the {file} the command names (written by prepare)
    live_database: bool = False  # the database's name does not end in _test
    ctrl_c: bool = False  # run at a terminal, then Ctrl-C at the confirmation prompt
    within_s: float = 60.0


def write(name: str, text: str) -> Callable[[Scene], None]:
    return lambda scene: (scene.folder / name).write_text(text)


def backup_lines(scene: Scene) -> list[bytes]:
    return gzip.decompress(scene.backup.read_bytes()).splitlines(keepends=True)


def backup_with(name: str, change: Callable[[list[bytes]], list[bytes]]) -> Callable[[Scene], None]:
    return lambda scene: (scene.tmp / name).write_bytes(gzip.compress(b"".join(change(backup_lines(scene)))))


def manifest_of_database(database: str) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        manifest = backup.seal({**json.loads(lines[0]), "database": database})  # a genuine one: its checksum holds
        return [json.dumps(manifest).encode() + b"\n", *lines[1:]]
    return change


def edit_last_document(lines: list[bytes]) -> list[bytes]:
    body = b"".join(lines[1:])  # raw BSON: the last `role` key is the last document's
    at = body.rindex(b"role\x00")
    return [lines[0], body[:at] + b"rolf\x00" + body[at + 5:]]


def truncated(scene: Scene) -> None:
    data = scene.backup.read_bytes()
    (scene.tmp / "truncated.jsonl.gz").write_bytes(data[:len(data) // 2])


CASES = [
    # settings and the server
    Case("malformed URL", 2, "MONGODB_URL is not a valid MongoDB URL", RUNNER + " --all",
         env={"MONGODB_URL": "mongodb//admin:{password}@{host}/"}),
    Case("invalid URL option", 2, "The value of tls must be 'true' or 'false'", RUNNER + " --all",
         env={"MONGODB_URL": "mongodb://admin:{password}@{host}/?tls=maybe"}),
    Case("unreadable tlsCAFile", 2, "tlscafile file is not readable", RUNNER + " --all",
         env={"MONGODB_URL": "mongodb://admin:{password}@{host}/?tls=true&tlsCAFile={tmp}/no-such-ca.pem"}),
    Case("unreachable host", 5, ("cannot reach MongoDB at 127.0.0.1:", "(mongodb://admin:****@127.0.0.1:"),
         RUNNER + " --all --server-timeout 1",
         env={"MONGODB_URL": "mongodb://admin:{password}@127.0.0.1:{closed_port}/app?authSource=admin"}, within_s=15),
    Case("wrong credentials", 5, ("authentication to", "failed (mongodb://intruder:****@"), RUNNER + " --all",
         env={"MONGODB_URL": "mongodb://intruder:{password}@{host}/app?authSource=admin"}),
    Case("MONGODB_URL missing", 2, "MONGODB_URL is not set", RUNNER + " --all", env={"MONGODB_URL": None}),
    Case("database name missing", 2, "MONGODB_DATABASE_NAME is not set and MONGODB_URL names no database",
         RUNNER + " --all", env={"MONGODB_DATABASE_NAME": None, "MONGODB_URL": "mongodb://{host}/"}),
    Case("env file missing", 2, "env file 'nope.env' not found", RUNNER + " --all", env={"ENV_FILE": "nope.env"}),
    # migrations
    Case("unknown migration", 2, f"unknown migration 'no_such_thing' (known: {MIGRATION}, zz_pending)",
         RUNNER + " --migration no_such_thing"),
    Case("migration file with a syntax error", 2, "broken.py: syntax error at line 5", RUNNER + " --all",
         prepare=write("broken.py", '"""broken\n\nDate: 2025-01-01\n"""\nasync def up(db)\n    pass\n')),
    Case("migration file without verify()", 2, "half.py: missing `async def verify(db)`", RUNNER + " --all",
         prepare=write("half.py", '"""half\n\nDate: 2025-01-01\n"""\nasync def up(db):\n    pass\n')),
    Case("migration file that fails to import", 2, "crash.py: failed to load: ModuleNotFoundError", RUNNER + " --all",
         prepare=write("crash.py", '"""crash\n\nDate: 2025-01-01\n"""\nimport no_such_module_here\n\n'
                                   'async def up(db):\n    pass\n\nasync def verify(db):\n    return True\n')),
    # rollbacks and the reset
    Case("rollback of a migration not applied", 2, "zz_pending is not applied: nothing to roll back",
         RUNNER + " --rollback zz_pending --yes"),
    Case("rollback-to a migration not applied", 2,
         "zz_pending is not applied: --rollback-to needs an applied migration",
         RUNNER + " --rollback-to zz_pending --yes"),
    Case("rollback without confirmation, not a terminal", 2, f"refusing to roll back {MIGRATION}",
         RUNNER + " --rollback-last"),
    Case("reset without confirmation, not a terminal", 2, "refusing to delete every document", RESET),
    Case("reset of a database not named *_test", 2, "its name does not end in _test", RESET + " --yes",
         live_database=True),
    # --restore
    Case("restore of a missing file", 2, "no such file", RESTORE, file="missing.jsonl.gz"),
    Case("restore of a truncated file", 2, "not a readable gzip file, truncated or corrupt", RESTORE,
         file="truncated.jsonl.gz", prepare=truncated),
    Case("restore of a file that is not a backup", 2, "its first line is not the manifest", RESTORE,
         file="other.jsonl.gz", prepare=lambda scene: (scene.tmp / "other.jsonl.gz").write_bytes(
             gzip.compress(b'{"hello": "world"}\n'))),
    Case("restore of an edited backup", 2, "checksum mismatch", RESTORE,
         file="edited.jsonl.gz", prepare=backup_with("edited.jsonl.gz", edit_last_document)),
    Case("restore of another database's backup", 2, "it is a backup of database other_test", RESTORE,
         file="other-db.jsonl.gz", prepare=backup_with("other-db.jsonl.gz", manifest_of_database("other_test"))),
    # Ctrl-C at a confirmation prompt
    Case("Ctrl-C at the rollback prompt", 130, "cancelled at the prompt: nothing was changed",
         RUNNER + " --rollback-last", ctrl_c=True),
    Case("Ctrl-C at the reset prompt", 130, "cancelled at the prompt: nothing was changed", RESET, ctrl_c=True),
    Case("Ctrl-C at the restore prompt", 130, "cancelled at the prompt: nothing was changed",
         RUNNER + " --restore {backup}", ctrl_c=True),
]


def test_the_matrix_is_counted():
    assert len(CASES) == BAD_INPUTS_TRIED
    assert len({case.id for case in CASES}) == len(CASES)


# ----- how a case runs --------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(database, env: dict, scene: Scene) -> None:
    """Messages, one migration applied with a backup (changelog, lock, backup file), one pending."""
    shutil.copy(MIGRATIONS / f"{MIGRATION}.py", scene.folder)
    (scene.folder / "zz_pending.py").write_text(
        '"""zz_pending\n\nDate: 2025-12-01\n"""\n\n'
        'async def up(db):\n    return await db.chat_messages.update_many({}, {"$set": {"zz": 1}})\n\n'
        'async def verify(db):\n    return await db.chat_messages.count_documents({"zz": {"$exists": False}}) == 0\n')
    database.chat_messages.insert_many(chat_messages(6, with_metadata_every=3))
    applied = run_here("run_migrations.py", "--migration", MIGRATION, "--backup", "--migrations-dir", str(scene.folder),
                       env=env)
    assert applied.code == 0, applied
    scene.backup = next((scene.tmp / "backups").glob(f"*-{MIGRATION}-apply-*.bson.gz"))


def run_and_press_ctrl_c(argv: list[str], env: dict) -> Result:
    """Run with a terminal as stdin, wait for the confirmation prompt, then Ctrl-C (SIGINT, as the terminal sends)."""
    master, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, *argv], stdin=terminal, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    os.close(terminal)
    shown, deadline = b"", time.monotonic() + 60
    try:
        while b"[yes/no]" not in shown and process.poll() is None and time.monotonic() < deadline:
            if select.select([process.stderr], [], [], 0.2)[0]:
                shown += os.read(process.stderr.fileno(), 65536)
        assert b"[yes/no]" in shown, f"no prompt: {shown.decode()}"
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            pytest.fail(f"still waiting 20 s after Ctrl-C at the prompt:\n{(shown + stderr).decode()}")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        os.close(master)
    return Result(subprocess.CompletedProcess(argv, process.returncode, stdout.decode(), (shown + stderr).decode()))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case, mongo, env, db_name, server_url, tmp_path):
    name = db_name.removesuffix("_test") + "_live" if case.live_database else db_name
    database = mongo[name]
    host = server_url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    folder = tmp_path / "migrations"
    folder.mkdir()
    scene = Scene(tmp=tmp_path, folder=folder, backup=Path(), host=host, closed_port=closed_port())
    (tmp_path / "empty.env").write_text("")  # no .env of the developer's is read
    base = {**env, "MONGODB_DATABASE_NAME": name, "MIGRATIONS_BACKUP_DIR": str(tmp_path / "backups"),
            "ENV_FILE": str(tmp_path / "empty.env")}
    try:
        seed(database, base, scene)
        if case.prepare:
            case.prepare(scene)
        fields = {**scene.__dict__, "file": case.file}
        environment = {**base, **{k: v.format(**fields) for k, v in case.env.items() if v is not None}}
        environment = {k: v for k, v in environment.items() if case.env.get(k, "") is not None}
        script, *args = shlex.split(case.command.format(**fields))
        before = digest(database)
        assert {"chat_messages", "migrations_changelog", "migrations_lock"} <= set(before)

        started = time.monotonic()
        if case.ctrl_c:
            result = run_and_press_ctrl_c([str(MIGRATIONS / script), *args], environment)
        else:
            result = run(script, *args, env=environment, cwd=tmp_path)
        seconds = time.monotonic() - started

        assert result.code == case.code, result
        errors = [line for line in result.output.splitlines() if " ERROR " in f" {line} "]
        assert len(errors) == 1, result
        for text in (case.says,) if isinstance(case.says, str) else case.says:
            assert text in errors[0], result
        assert "Traceback" not in result.output, result
        assert PASSWORD not in result.output, result
        assert seconds < case.within_s, result
        assert digest(database) == before, result
    finally:
        mongo.drop_database(name)

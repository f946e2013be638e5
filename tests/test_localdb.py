"""Our local server (localdb/) and scripts/local-db.sh. FerretDB's lookups by `_id` reach an index (idindex.go).

FerretDB v1.24.2 indexes `_ferretdb_sjson->"_id"` but queries `_ferretdb_sjson->'$._id'`; SQLite uses an
index only for the expression it was built on. These tests read the server's SQLite files directly.
"""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymongo import MongoClient

from conftest import REPO, Result
from local_server import build_local_server

LOOKUP = "_ferretdb_sjson->'$._id'"  # the expression FerretDB's find/update/delete by _id use


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sqlite_file(local_server, db):
    if local_server is None:
        pytest.skip("MONGODB_URL names a server that is not our FerretDB")
    return local_server.data / f"{db.name}.sqlite"


def table_of(path, collection: str) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT table_name FROM _ferretdb_collections WHERE name = ?",
                                  (collection,)).fetchone()[0]


def plan_of_update_by_id(path, table: str) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute(f'EXPLAIN QUERY PLAN UPDATE "{table}" SET _ferretdb_sjson = ? WHERE {LOOKUP} = ?',
                                  ("{}", "x")).fetchall()
    return " ".join(row[-1] for row in rows)


def wait_for_index(path, table: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        plan = plan_of_update_by_id(path, table)
        if "USING INDEX" in plan or time.monotonic() > deadline:
            return plan
        time.sleep(0.05)


def test_an_update_by_id_uses_an_index_on_a_new_collection_and_after_it_is_recreated(db, sqlite_file):
    db.chat_messages.insert_many([{"n": i} for i in range(10)])
    table = table_of(sqlite_file, "chat_messages")
    assert f"USING INDEX {table}$localdb_id" in wait_for_index(sqlite_file, table)  # without it: SCAN

    db.drop_collection("chat_messages")
    db.chat_messages.insert_one({"n": 1})
    table = table_of(sqlite_file, "chat_messages")
    assert "USING INDEX" in wait_for_index(sqlite_file, table)


def test_the_extra_index_is_invisible_to_clients_and_changes_no_result(db, sqlite_file):
    ids = db.items.insert_many([{"n": i} for i in range(20)]).inserted_ids
    wait_for_index(sqlite_file, table_of(sqlite_file, "items"))

    assert [index["name"] for index in db.items.list_indexes()] == ["_id_"]
    assert db.items.find_one({"_id": ids[7]})["n"] == 7
    assert db.items.update_one({"_id": ids[3]}, {"$set": {"n": 33}}).modified_count == 1
    assert db.items.delete_one({"_id": ids[4]}).deleted_count == 1
    assert sorted(doc["n"] for doc in db.items.find()) == sorted([n for n in range(20) if n not in (3, 4)] + [33])


def test_the_sqlite_files_keep_ferretdbs_pragmas_and_commits_do_not_wait_for_the_disk(local_server, db, sqlite_file):
    db.items.insert_one({"n": 1})

    with sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True) as connection:
        journal_mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        auto_vacuum = connection.execute("PRAGMA auto_vacuum").fetchone()[0]
    assert (journal_mode, auto_vacuum) == ("wal", 0)  # FerretDB's own, kept beside ours
    # synchronous is a setting of each connection, not of the file: the URL the server was given shows it
    assert f"(data: file:{local_server.data}/?_pragma=synchronous(normal))" in local_server.log.read_text()


# ----- scripts/local-db.sh, run from a copy of its own with the built server or a stand-in as its binary -----

@pytest.fixture(scope="session")
def localdb_binary() -> str:
    try:
        return build_local_server()
    except RuntimeError as exc:
        pytest.skip(str(exc))


STAND_IN = '''#!{python}
"""A stand-in for localdb: {behaviour}."""
import signal, socket, sys, time
behaviour = {behaviour!r}
if behaviour == "exits at start":
    sys.exit("localdb: cannot open the data folder")
host, port = sys.argv[sys.argv.index("-listen") + 1].split(":")
listener = socket.create_server((host, int(port)))
if behaviour == "ignores SIGTERM":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:  # takes a moment to stop, as a server finishing its writes does
    signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.5), sys.exit(0)))
while True:
    time.sleep(1)
'''


class Sandbox:
    """scripts/local-db.sh copied into ROOT/scripts, so its .localdb (pid files, logs, data) is ROOT/.localdb."""

    def __init__(self, root: Path, binary: str | None = None, behaviour: str | None = None):
        (root / "scripts").mkdir(parents=True)
        shutil.copy(REPO / "scripts" / "local-db.sh", root / "scripts")
        self.state = root / ".localdb"
        (self.state / "bin").mkdir(parents=True)
        self.bin = self.state / "bin" / "localdb"
        if binary:
            self.bin.symlink_to(binary)
        else:
            self.bin.write_text(STAND_IN.format(python=sys.executable, behaviour=behaviour))
            self.bin.chmod(0o755)
        self.root = root
        self.pids: set[int] = set()  # every server started, killed at the end should one be left

    def run(self, action: str, port: int, **env: str) -> Result:
        completed = subprocess.run(["bash", str(self.root / "scripts" / "local-db.sh"), action],
                                   env={**self.environment(), "LOCALDB_PORT": str(port), **env},
                                   capture_output=True, text=True, timeout=60)
        if self.has_pid_file(port):
            self.pids.add(self.pid(port))
        return Result(completed)

    @staticmethod
    def environment() -> dict:
        return {k: v for k, v in os.environ.items() if not k.startswith("LOCALDB_")}

    def pid(self, port: int) -> int:
        return int((self.state / f"localdb-{port}.pid").read_text())

    def has_pid_file(self, port: int) -> bool:
        return (self.state / f"localdb-{port}.pid").exists()

    def clean_up(self) -> None:
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.fixture
def sandbox(tmp_path):
    made = []

    def make(**kw) -> Sandbox:
        made.append(Sandbox(tmp_path / f"repo{len(made)}", **kw))
        return made[-1]
    yield make
    for box in made:
        box.clean_up()


def test_each_port_gets_a_data_folder_of_its_own(sandbox, localdb_binary):
    box = sandbox(binary=localdb_binary)
    first, second = free_port(), free_port()
    try:
        started = [box.run("start", port) for port in (first, second)]
        assert [s.code for s in started] == [0, 0], started
        with MongoClient(f"mongodb://127.0.0.1:{first}/", serverSelectionTimeoutMS=5000) as client:
            client.only_here_test.items.insert_one({"n": 1})
    finally:
        stopped = [box.run("stop", port) for port in (first, second)]

    assert [s.code for s in stopped] == [0, 0], stopped
    for port, result in zip((first, second), started, strict=True):
        assert f"(data: {box.state}/data-{port}, log: {box.state}/localdb-{port}.log)" in result.stdout
    assert (box.state / f"data-{first}" / "only_here_test.sqlite").exists()
    assert not (box.state / f"data-{second}" / "only_here_test.sqlite").exists()
    assert not (box.state / "data").exists()


@pytest.mark.parametrize("port, legacy_folder, data", [
    (27020, True, "data"), (27020, False, "data-27020"), (27021, True, "data-27021")])
def test_port_27020_keeps_an_existing_data_folder_and_other_ports_do_not_share_it(sandbox, port, legacy_folder, data):
    box = sandbox(behaviour="exits at start")
    if legacy_folder:
        (box.state / "data").mkdir()

    usage = box.run("help", port)  # says which folder it would use, starts nothing

    assert usage.code == 2
    assert f"LOCALDB_DATA={box.state}/{data})" in usage.stderr


def test_a_second_server_on_the_same_data_folder_refuses_and_leaves_no_pid_file(sandbox, localdb_binary, tmp_path):
    box = sandbox(binary=localdb_binary)
    first, second = free_port(), free_port()
    shared = str(tmp_path / "shared")
    try:
        assert box.run("start", first, LOCALDB_DATA=shared).code == 0
        refused = box.run("start", second, LOCALDB_DATA=shared)
        still_running = box.run("status", first)
    finally:
        box.run("stop", first)

    assert refused.code == 1, refused
    assert f"localdb: data directory {shared} is in use by another localdb" in refused.stderr
    assert not box.has_pid_file(second)
    assert still_running.code == 0, still_running


def test_a_server_that_exits_at_start_leaves_no_pid_file(sandbox):
    box = sandbox(behaviour="exits at start")
    port = free_port()

    result = box.run("start", port)

    assert result.code == 1, result
    assert "error: the local database did not start; see" in result.stderr
    assert "localdb: cannot open the data folder" in result.stderr  # the log's tail
    assert not box.has_pid_file(port)
    assert box.run("status", port).stdout == "not running\n"


def test_stop_returns_once_the_server_has_ended(sandbox):
    box = sandbox(behaviour="takes a moment to stop")
    port = free_port()
    assert box.run("start", port).code == 0, box
    pid = box.pid(port)

    stopped = box.run("stop", port)

    assert stopped.code == 0 and stopped.stdout == "local database stopped\n", stopped
    assert not alive(pid)
    assert not box.has_pid_file(port)


def test_stop_kills_a_server_that_does_not_end_in_time_and_says_so(sandbox):
    box = sandbox(behaviour="ignores SIGTERM")
    port = free_port()
    assert box.run("start", port).code == 0, box
    pid = box.pid(port)

    started = time.monotonic()
    stopped = box.run("stop", port, LOCALDB_STOP_TIMEOUT="1")

    assert stopped.code == 0, stopped
    assert stopped.stderr == f"the local database (pid {pid}) did not stop within 1 s: killing it (SIGKILL)\n"
    assert not alive(pid)
    assert time.monotonic() - started < 10

"""A real server for every test: our FerretDB on a free port, or the server MONGODB_URL names.

Each test gets its own throwaway database whose name ends in `_test`, dropped afterwards.
"""

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pymongo import MongoClient

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = REPO / "migrations"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"FerretDB exited at start:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"FerretDB did not listen on {port} within 30 s:\n{log.read_text()}")


class LocalServer:
    """Our FerretDB, started and stopped by the tests (also restarted by the fault tests)."""

    def __init__(self, binary: str, data: Path):
        self.binary, self.data = binary, data
        self.port = _free_port()
        self.log = data.parent / f"ferretdb-{self.port}.log"
        self.process = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-listen", f"127.0.0.1:{self.port}", "-data", str(self.data)],
                stdout=log, stderr=subprocess.STDOUT)
        _wait_listening(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    if os.environ.get("MONGODB_URL"):
        yield None
        return
    built = subprocess.run(["bash", str(REPO / "scripts" / "local-db.sh"), "build"],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.exit(f"could not build the local FerretDB server:\n{built.stderr}", returncode=1)
    server = LocalServer(built.stdout.strip(), tmp_path_factory.mktemp("ferretdb-data"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server_url(local_server) -> str:
    return os.environ.get("MONGODB_URL") or local_server.url


@pytest.fixture(scope="session")
def is_ferretdb(mongo) -> bool:
    return "ferretdbVersion" in mongo.admin.command("buildInfo")


@pytest.fixture(scope="session")
def mongo(server_url):
    client = MongoClient(server_url, serverSelectionTimeoutMS=5000, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def db_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}_test"


@pytest.fixture
def db(mongo, db_name):
    database = mongo[db_name]
    yield database
    mongo.drop_database(db_name)


@pytest.fixture
def env(server_url, db_name, tmp_path) -> dict:
    """The environment a command of the toolkit runs with: the test server and database."""
    environment = {k: v for k, v in os.environ.items() if k not in {"ENV_FILE", "MONGODB_DATABASE_NAME"}}
    environment.update(MONGODB_URL=server_url, MONGODB_DATABASE_NAME=db_name, PYTHONUNBUFFERED="1",
                       COLUMNS="200")
    return environment


class Result:
    def __init__(self, completed: subprocess.CompletedProcess):
        self.code = completed.returncode
        self.stdout, self.stderr = completed.stdout, completed.stderr
        self.output = completed.stdout + completed.stderr

    def __repr__(self) -> str:
        return f"exit {self.code}\n{self.output}"


def run(script: str, *args: str, env: dict, input: str | None = None, cwd: Path = REPO, timeout: float = 120) -> Result:
    """Run a script of migrations/ as a user would: `python migrations/<script> args...`."""
    path = script if os.path.isabs(script) else str(MIGRATIONS / script)
    completed = subprocess.run([sys.executable, path, *args], env=env, cwd=cwd, input=input if input is not None else "",
                               capture_output=True, text=True, timeout=timeout)
    return Result(completed)


@pytest.fixture
def cli(env):
    """`cli("run_migrations.py", "--all")`: run a toolkit command against this test's database."""
    return lambda script, *args, **kw: run(script, *args, env=kw.pop("env", env), **kw)


def without_timestamps(text: str) -> str:
    return re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", text, flags=re.MULTILINE)

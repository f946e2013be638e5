"""A real server for every test: our FerretDB on a free port, or the server MONGODB_URL names.

Each test gets its own throwaway database whose name ends in `_test`, dropped afterwards.
"""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pymongo import MongoClient

from local_server import LocalServer, build_local_server

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = REPO / "migrations"


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    if os.environ.get("MONGODB_URL"):
        yield None
        return
    try:
        binary = build_local_server()
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=1)
    server = LocalServer(binary, tmp_path_factory.mktemp("ferretdb-data"))
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

"""A real server for the tests that ask for one, and the helpers the test modules share.

The server is our FerretDB on a free port, or the one MONGODB_URL names; it starts only when a test
asks for a fixture that needs it (db, cli, env, mongo, ...): tests/unit/ asks for none. Each test gets
its own throwaway database whose name ends in `_test`, dropped afterwards.
"""

import hashlib
import io
import json
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
import textwrap
import time
import traceback
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import bson
import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from local_server import LocalServer, build_local_server
from migrator import redact as redact_module
from migrator.migration import Migration
from migrator.profile import ServerProfile, profile_of
from sample_messages import generate_messages
from wire_proxy import WireProxy

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = REPO / "migrations"
UNIT = REPO / "tests" / "unit"


def pytest_collection_modifyitems(items):
    """tests/unit/ runs with no server: a test there that asks for one (db, cli, env, mongo...) is refused.
    The tests marked slow go first: parallel workers take them one by one before the rest (scripts/test.sh), so
    that none is left to start at the end."""
    for item in items:
        if UNIT in item.path.parents and "local_server" in item.fixturenames:
            raise pytest.UsageError(f"{item.nodeid} asks for the server, but tests/unit/ runs without one: "
                                    "move it to tests/")
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: otherwise in their order


@pytest.fixture(scope="session")
def local_server(tmp_path_factory):
    if os.environ.get("MONGODB_URL"):
        yield None
        return
    try:
        binary = build_local_server()
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=1)
    # One per pytest process: with pytest-xdist, one per worker, each with its own data folder (under the
    # worker's own temporary folder) and a free port; should another worker take that port first, another one.
    for attempt in range(3):
        server = LocalServer(binary, tmp_path_factory.mktemp("ferretdb-data"))
        try:
            server.start()
            break
        except RuntimeError:
            server.stop()
            if attempt == 2:
                raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server_url(local_server) -> str:
    return os.environ.get("MONGODB_URL") or local_server.url


@pytest.fixture(scope="session")
def is_ferretdb(mongo) -> bool:
    return "ferretdbVersion" in mongo.admin.command("buildInfo")


@pytest.fixture(scope="session")
def server_profile(mongo) -> ServerProfile:
    return profile_of(mongo.admin.command("buildInfo"), mongo.admin.command("hello"))


@pytest.fixture(scope="session")
def mongo(server_url):
    client = MongoClient(server_url, serverSelectionTimeoutMS=5000, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def db_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}_test"


def databases(mongo, db_name: str) -> list[str]:
    """The server's databases, sorted, to show that a command created none. On a server of our own, all of them;
    on the one MONGODB_URL names, which parallel workers share, the other tests create and drop theirs meanwhile:
    then only those named like this test's (its name's first 13 characters: "t" and 12 hex digits)."""
    names = sorted(mongo.list_database_names())
    if os.environ.get("MONGODB_URL"):
        names = [name for name in names if name.startswith(db_name[:13])]
    return names


@pytest.fixture
def db(mongo, db_name):
    database = mongo[db_name]
    yield database
    mongo.drop_database(db_name)


def proxy_to(server_url: str, **options) -> WireProxy:
    """The fault-injecting proxy (tests/wire_proxy.py) in front of the test server, to use with `with`."""
    where = urlsplit(server_url)
    return WireProxy(where.hostname, where.port or 27017, **options)


@pytest.fixture
def proxy(server_url):
    with proxy_to(server_url) as running:
        yield running


@pytest.fixture
def proxied_env(env, proxy):
    """The test's environment, through `proxy`."""
    return {**env, "MONGODB_URL": proxy.url}


@pytest.fixture
def primary(server_url):
    """The proxy, presenting the test server as a replica set's primary (WireProxy's replica_set mode)."""
    with proxy_to(server_url, replica_set=True) as running:
        yield running


@pytest.fixture
def primary_env(env, primary):
    return {**env, "MONGODB_URL": primary.url}


@pytest.fixture
def env(server_url, db_name, tmp_path) -> dict:
    """The environment a command of the toolkit runs with: the test server and database."""
    environment = {k: v for k, v in os.environ.items() if k not in {"ENV_FILE", "MONGODB_DATABASE_NAME"}}
    environment.update(MONGODB_URL=server_url, MONGODB_DATABASE_NAME=db_name, PYTHONUNBUFFERED="1",
                       COLUMNS="200", MIGRATIONS_BACKUP_DIR=str(tmp_path / "backups"))  # never the checkout's
    return environment


class Result:
    def __init__(self, completed: subprocess.CompletedProcess):
        self.code = completed.returncode
        self.stdout, self.stderr = completed.stdout, completed.stderr
        self.output = completed.stdout + completed.stderr

    def __repr__(self) -> str:
        return f"exit {self.code}\n{self.output}"


def run(script: str, *args: str, env: dict, input: str | None = None, cwd: Path = REPO, timeout: float = 120) -> Result:
    """Run a script of migrations/ as a user would, in a process of its own: `python migrations/<script> args...`.
    For what only a process shows: signals, kill -9, a terminal, what reaches a traceback, the interpreter itself."""
    path = script if os.path.isabs(script) else str(MIGRATIONS / script)
    completed = subprocess.run([sys.executable, path, *args], env=env, cwd=cwd,
                               input=input if input is not None else "",
                               capture_output=True, text=True, timeout=timeout)
    return Result(completed)


def run_here(script: str, *args: str, env: dict, input: str | None = None, cwd: Path = REPO,
             timeout: float | None = None) -> Result:
    """`run`, in this process: the script's own `__main__` block (runner_main / standalone_main) with that
    environment, arguments, working folder and stdin, its stdout and stderr captured, its exit code from
    SystemExit, an escaped exception printed as Python would (exit 1). What a run sets globally (the log
    handler, the passwords to mask, sys.path) is put back. Ten times cheaper than a process (0.02 s, not 0.3 s).
    `timeout` is not enforced here."""
    path = script if os.path.isabs(script) else str(MIGRATIONS / script)
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_environ = dict(os.environ)
    saved_sys = sys.argv, sys.stdin, sys.stdout, sys.stderr, sys.path[:]
    saved_cwd = os.getcwd()
    log = logging.getLogger("migrator")
    saved_log = log.handlers[:], log.level, log.propagate
    saved_secrets = redact_module._remembered[:]  # the passwords a run learns from its MONGODB_URL
    saved_modules = {name for name in sys.modules if name.startswith("migrations.")}
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [path, *args]
    sys.stdin = io.StringIO(input or "")
    sys.stdout, sys.stderr = stdout, stderr
    os.chdir(cwd)
    try:
        runpy.run_path(path, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code, stderr)
    except Exception:  # what Python does with an exception nothing caught (a Ctrl-C of pytest's own goes on up)
        traceback.print_exc(file=stderr)
        code = 1
    finally:
        os.chdir(saved_cwd)
        sys.argv, sys.stdin, sys.stdout, sys.stderr, sys.path[:] = saved_sys
        os.environ.clear()
        os.environ.update(saved_environ)
        log.handlers[:], log.level, log.propagate = saved_log
        redact_module._remembered[:] = saved_secrets
        for name in [name for name in sys.modules if name.startswith("migrations.")]:
            if name not in saved_modules:
                del sys.modules[name]
    return Result(subprocess.CompletedProcess([sys.executable, path, *args], code, stdout.getvalue(),
                                              stderr.getvalue()))


def _exit_code(code, stderr) -> int:
    """sys.exit(code) as the interpreter ends with it: None is 0, a number is itself, anything else is printed, 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


@pytest.fixture
def cli(env):
    """`cli("run_migrations.py", "--all")`: run a toolkit command against this test's database, in this process
    (see run_here). Where the process matters (signals, kill -9, a terminal, what reaches a traceback), a test
    runs it in a process of its own: `run(script, ..., env=env)`, or `start` and `finish` below."""
    return lambda script, *args, **kw: run_here(script, *args, env=kw.pop("env", env), **kw)


def without_timestamps(text: str) -> str:
    return re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", text, flags=re.MULTILINE)


# ----- helpers the test modules share ----------------------------------------------------------------

RUNNER = "run_migrations.py"

# `{name}` set on every message, unset by its rollback; runs on its own too (its `__main__` guard)
UNDOABLE = '''
    async def up(db):
        return await db.chat_messages.update_many({{}}, {{"$set": {{"{name}": 1}}}})

    async def verify(db):
        return await db.chat_messages.count_documents({{"{name}": {{"$exists": False}}}}) == 0

    async def rollback(db):
        return await db.chat_messages.update_many({{}}, {{"$unset": {{"{name}": ""}}}})

    if __name__ == "__main__":
        from migrator.cli import exit_with, standalone_main

        exit_with(standalone_main(__file__))
    '''


# `up` and `rollback` change every document, then wait a minute unless the `flags` collection says go on
STUCK = '''
    import asyncio

    async def up(db):
        await db.chat_messages.update_many({}, {"$set": {"slow": 1}})
        if await db.flags.count_documents({}) == 0:
            await asyncio.sleep(60)

    async def verify(db):
        return await db.chat_messages.count_documents({"slow": {"$exists": False}}) == 0

    async def rollback(db):
        await db.chat_messages.update_many({}, {"$unset": {"slow": ""}})
        if await db.flags.count_documents({"rollback": "wait"}):
            await asyncio.sleep(60)
    '''


def write_migration(folder, name, date="2025-08-01", body=None, depends_on=None):
    body = body or f'''
        async def up(db):
            return await db.chat_messages.update_many({{"{name}": {{"$exists": False}}}}, {{"$set": {{"{name}": 1}}}})

        async def verify(db):
            return await db.chat_messages.count_documents({{"{name}": {{"$exists": False}}}}) == 0
        '''
    header = f'"""{name}\n\nDate: {date}\nDescription: sets {name}\n"""\n'
    if depends_on:
        header += f"depends_on = {depends_on!r}\n"
    (folder / f"{name}.py").write_text(header + textwrap.dedent(body))


def finish_draft(path, field="language"):
    """What an author does to the --new template: delete the DRAFT line, describe it, name the real field."""
    text = re.sub(r"^DRAFT:.*\n", "", path.read_text(), flags=re.MULTILINE)
    text = text.replace("Description: TODO: one line saying what this changes and why",
                        f"Description: set {field}=null where it is missing")
    path.write_text(text.replace('"TODO_field"', f'"{field}"'))


def the_error(result) -> str:
    """The one ERROR line of a run that must fail cleanly: no traceback, no usage block."""
    errors = [line for line in result.output.splitlines() if " ERROR " in f" {line} "]
    assert len(errors) == 1, result
    assert "Traceback" not in result.output and "usage:" not in result.output, result
    return errors[0]


async def _noop(db):
    return True


def a_migration(name, date="2025-01-01", depends_on=(), **fields) -> Migration:
    """A Migration that is never run, for the parts that only order and plan."""
    return Migration(name=name, date=date, description="", up=_noop, verify=_noop, depends_on=tuple(depends_on),
                     **fields)


def names(migrations):
    return [x.name for x in migrations]


SLOW = '''
    import asyncio

    async def up(db):
        await asyncio.sleep(0.3)
        async for doc in db.chat_messages.find({"{name}": {"$exists": False}}):
            await db.chat_messages.update_one({"_id": doc["_id"]}, {"$inc": {"{name}": 1}})

    async def verify(db):
        return await db.chat_messages.count_documents({"{name}": {"$exists": False}}) == 0
    '''


def applies(db, name):
    return db.migrations_changelog.count_documents({"name": name, "action": "apply", "state": "applied"})


def status_json(cli, *args):
    result = cli(RUNNER, "--status", "--json", *args)
    assert result.code == 0, result
    return {row["name"]: row for row in json.loads(result.stdout)}


def plant_lock(db, expires_in_s, owner="deploy-7:4242:abcd", legacy=False):
    """Another runner's lock: the one lock document, or (legacy) an epoch of the previous version's shape."""
    now = db.command("hello")["localTime"]
    times = {"acquired_at": now - timedelta(seconds=5), "expires_at": now + timedelta(seconds=expires_in_s),
             "released_at": None}
    if legacy:
        db.migrations_lock.insert_one({"_id": 1, "owner": owner, **times})
    else:
        db.migrations_lock.insert_one({"_id": "lock", "epoch": 1, "owner": owner, "seq": 0, **times})


def indexes(db, collection: str = "chat_messages") -> dict[str, dict]:
    """{name: keys} of a collection's indexes."""
    return {index["name"]: dict(index["key"]) for index in db[collection].list_indexes()}


def schema_runs(db) -> list[tuple]:
    """(action, state, names created, names dropped) of each changelog entry of the schema's runs, in order."""
    return [(entry["action"], entry["state"], sorted(d["name"] for d in entry.get("schema", {}).get("created", [])),
             sorted(d["name"] for d in entry.get("schema", {}).get("dropped", [])))
            for entry in db.migrations_changelog.find({"name": "schema"}, sort=[("seq", 1)])]


def digest(database) -> dict[str, str]:
    """{collection: "count sha256"} over every document of every collection, in _id order."""
    found = {}
    for name in sorted(database.list_collection_names()):
        documents = list(database[name].find().sort("_id", 1))
        found[name] = f"{len(documents)} " + hashlib.sha256(b"".join(bson.encode(d) for d in documents)).hexdigest()
    return found


# The first migration, run as its own script under faults: kills, restarts, failovers.
SCRIPT = "add_metadata_to_chat_messages.py"
NAME = "add_metadata_to_chat_messages"
HAS = {"metadata": {"$exists": True}}


def load(db, count: int) -> dict:
    messages = list(generate_messages(count, with_metadata_every=10))
    for start in range(0, count, 5000):
        db.chat_messages.insert_many(messages[start:start + 5000])
    return {doc["_id"]: doc for doc in db.chat_messages.find()}


def assert_nothing_lost(db, before: dict) -> None:
    """Same documents; each lacking metadata now has null, every other field identical."""
    after = {doc["_id"]: doc for doc in db.chat_messages.find()}
    assert len(after) == len(before)
    assert after.keys() == before.keys()
    expected = lambda old: old if "metadata" in old else {**old, "metadata": None}  # noqa: E731
    changed = [_id for _id, old in before.items() if after[_id] != expected(old)]
    assert changed == []
    assert db.migrations_changelog.count_documents({"name": NAME, "state": "applied"}) == 1
    assert db.migrations_checkpoints.count_documents({}) == 0


def start(env, *args, script=SCRIPT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(MIGRATIONS / script), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 180) -> Result:
    output, _ = process.communicate(timeout=timeout)
    return Result(subprocess.CompletedProcess(process.args, process.returncode, output, ""))


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the runner ended before {what}:\n{finish(process)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# ----- proving a migration on scratch copies (--selftest, --chaos) -----

def contents(mongo, db) -> tuple:
    """The database list, the collection list and every document as its exact bytes."""
    raw = CodecOptions(document_class=RawBSONDocument)
    documents = {name: [d.raw for d in db.get_collection(name, codec_options=raw).find().sort("_id", 1)]
                 for name in sorted(db.list_collection_names())}
    return databases(mongo, db.name), sorted(db.list_collection_names()), documents


def proving_folder(tmp_path, env) -> Path:
    """A migrations folder with the project's migration; its files find the toolkit through PYTHONPATH."""
    env["PYTHONPATH"] = str(REPO)
    path = tmp_path / "migrations"
    path.mkdir()
    shutil.copy(MIGRATIONS / "add_metadata_to_chat_messages.py", path)
    return path


def write_proving_migration(folder, name: str, body: str, touches: str = '{"chat_messages": {}}') -> None:
    """A migration on chat_messages whose touches("apply") is `touches` (rollback: the same)."""
    (folder / f"{name}.py").write_text(f'"""{name}\n\nDate: 2025-09-01\nDescription: test migration {name}\n"""\n'
                                       "import asyncio, json, os\nfrom migrator import Outcome, Verification\n\n"
                                       f"def touches(action, purge=False):\n    return {touches}\n"
                                       + textwrap.dedent(body))


def selftest(cli, folder, name: str, *args: str):
    return cli("run_migrations.py", "--selftest", name, "--migrations-dir", str(folder), *args)


def verdicts(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]

"""No password, token or credentialed URL in anything the toolkit prints or writes.

Every command runs with a distinctive password in MONGODB_URL. Our FerretDB has no authentication
and accepts any user and password with `authMechanism=PLAIN`, so with it the commands do their real
work while carrying the password; without PLAIN the client tries SCRAM and gets AuthenticationFailed
(18), the failing path. Then everything is searched: stdout and stderr of every command (--debug
tracebacks included), every document of the database (migrations_changelog and migrations_lock
included), every file under the backups folder and the migrations folders, and what mongodump got.
Migrations and the stand-in mongodump repeat the password where a credential stands (URLs, decoded or
not, `password=`, JSON and dict pairs): a password is masked there, not wherever its text appears, so
a short one (`test`) leaves the database `adv_secret_test` and its backup paths as they are.
"""

import asyncio
import gzip
import json
import logging
import re
import shutil
import socket
import sys
import threading
from datetime import datetime
from pathlib import Path
from urllib.parse import quote_plus

import certifi
import pytest
from bson import json_util
from pymongo.errors import ConfigurationError

from conftest import MIGRATIONS, RUNNER, run
from migrator import connection
from migrator.errors import MigrationError
from migrator.output import _RedactFilter
from migrator.redact import remember_secret_of
from migrator.settings import load_settings
from sample_messages import chat_messages

PASSWORD = "Zx9!S3cr3t@Pa55"
IN_URL = quote_plus(PASSWORD)  # Zx9%21S3cr3t%40Pa55
CORE = "S3cr3t"  # in every form the password can take
MIGRATION = "add_metadata_to_chat_messages"


def leaks(texts: dict[str, str]) -> dict[str, list[str]]:
    """{where: [its lines that show the password]}"""
    found = {label: [line for line in text.splitlines() if CORE in line or IN_URL in line]
             for label, text in texts.items()}
    return {label: lines for label, lines in found.items() if lines}


def host_of(server_url: str) -> str:
    return server_url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE_MONGODUMP = '''#!{python}
"""Stands in for mongodump: records its arguments; fails like it when it cannot connect, repeating the URI
as given and decoded (the real one never prints the password on its own)."""
import json, os, sys
from urllib.parse import unquote_plus
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
config = args["--config"]
uri = json.load(open(config))["uri"]
with open({calls!r}, "a") as calls:
    calls.write(json.dumps({{"argv": sys.argv[1:], "config": config}}) + "\\n")
if os.environ.get("FAKE_MONGODUMP_FAIL"):
    print("Failed: can't create session: failed to connect to " + uri + " (" + unquote_plus(uri) + ")", file=sys.stderr)
    sys.exit(1)
open(args["--archive"], "wb").write(b"an archive")
'''

LEAKY_MIGRATIONS = {
    # up() fails with the URL, decoded too, and the password in a dict: the error line, the changelog, the traceback
    "raises_with_the_url": '''
import os
from urllib.parse import unquote_plus

async def up(db):
    url = os.environ["MONGODB_URL"]
    password = unquote_plus(url.split(":")[2].split("@")[0])
    raise ValueError(f"cannot use {url} ({unquote_plus(url)}): {dict(password=password)}")

async def verify(db):
    return False
''',
    # the migration raises the toolkit's own error with the URL in it
    "raises_migration_error": '''
import os
from migrator.errors import MigrationError

async def up(db):
    raise MigrationError("gave up on " + os.environ["MONGODB_URL"])

async def verify(db):
    return False
''',
    # a result the engine does not expect: the "unexpected error" path, with the password in the exception
    "unexpected_error": '''
import os
from urllib.parse import unquote_plus

class Odd:
    @property
    def matched_count(self):
        url = os.environ["MONGODB_URL"]
        raise RuntimeError(f"odd result from {url} (password={unquote_plus(url.split(':')[2].split('@')[0])})")

async def up(db):
    return Odd()

async def verify(db):
    return False
''',
    # a file that fails to load, repeating the password in JSON: found before the database is even reached
    "fails_to_load": '''
import json, os
from urllib.parse import unquote_plus

password = unquote_plus(os.environ["MONGODB_URL"].split(":")[2].split("@")[0])
raise RuntimeError("no, with " + json.dumps({"password": password}))

async def up(db):
    pass

async def verify(db):
    return True
''',
}


class Scene:
    """A database of 8 messages (6 lacking metadata), the project's migration in a folder of its own, a stand-in
    mongodump first on PATH; every command run with a password in MONGODB_URL, its output kept to search."""

    def __init__(self, db, env: dict, server_url: str, tmp_path: Path):
        self.db, self.tmp_path = db, tmp_path
        self.host = host_of(server_url)
        self.url = f"mongodb://migrator:{IN_URL}@{self.host}/?authMechanism=PLAIN"
        self.folder, self.scratch, self.backups, self.bin_dir = (tmp_path / n for n in
                                                                 ("migrations", "new", "backups", "bin"))
        for path in (self.folder, self.scratch, self.bin_dir):
            path.mkdir()
        shutil.copy(MIGRATIONS / f"{MIGRATION}.py", self.folder)
        self.calls = tmp_path / "mongodump-calls.jsonl"
        (self.bin_dir / "mongodump").write_text(FAKE_MONGODUMP.format(python=sys.executable, calls=str(self.calls)))
        (self.bin_dir / "mongodump").chmod(0o755)
        self.environment = {**env, "MONGODB_URL": self.url, "MIGRATIONS_BACKUP_DIR": str(self.backups),
                            "PATH": f"{self.bin_dir}:{env.get('PATH', '')}"}
        db.chat_messages.insert_many(chat_messages(8, with_metadata_every=4))
        self.texts: dict[str, str] = {}

    def command(self, code: int, *args: str, script: str = "run_migrations.py", migrations: Path | None = None,
                **changes):
        migrations = migrations or self.folder
        argv = [*args, *(("--migrations-dir", str(migrations)) if script == "run_migrations.py" else ())]
        result = run(script, *argv, env={**self.environment, **changes})
        self.texts[f"output {len(self.texts)} of {script} {' '.join(argv)} {changes or ''}"] = result.output
        assert result.code == code, (args, result)
        return result

    def written(self) -> dict[str, str]:
        """What was printed, and everything written: the database, the backups, the migrations folders, what
        mongodump was given."""
        for name in self.db.list_collection_names():
            self.texts[f"collection {name}"] = json_util.dumps(list(self.db[name].find()))
        for path in self.tmp_path.rglob("*"):
            if path.is_file() and path.parent != self.bin_dir:
                data = path.read_bytes()
                self.texts[f"file {path.relative_to(self.tmp_path)}"] = (
                    gzip.decompress(data) if path.suffix == ".gz" and data[:2] == b"\x1f\x8b" else data
                ).decode(errors="replace")
        return self.texts


@pytest.fixture
def scene(db, env, server_url, is_ferretdb, tmp_path) -> Scene:
    if not is_ferretdb:
        pytest.skip("needs FerretDB, which accepts any user and password with authMechanism=PLAIN")
    return Scene(db, env, server_url, tmp_path)


@pytest.mark.slow
def test_every_command_with_a_password_in_the_url_leaks_it_nowhere(scene, db):
    command = scene.command
    # the work, on a database that starts with 6 messages lacking metadata
    command(0, "--list")
    command(0, "--new", "added_here", migrations=scene.scratch)
    command(0, "--status")
    command(0, "--all", "--dry-run", "--debug")
    command(0, "--migration", MIGRATION, "--dry-run")
    command(0, "--all", "--backup", "--backup-full", "--debug")
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0  # it really ran
    command(0, "--status", "--json")
    command(0, "--verify", "--debug")
    command(0, "--rollback-last", "--yes", "--debug")  # saves a backup first, by default
    command(4, "--mark-applied", MIGRATION)
    command(1, "--migration", MIGRATION, "--backup-full", "--debug", FAKE_MONGODUMP_FAIL="1")
    command(0, "--dry-run", script=f"{MIGRATION}.py")
    command(0, "--debug", script=f"{MIGRATION}.py")
    command(0, "--verify", script=f"{MIGRATION}.py")
    command(0, "--rollback", "--yes", "--debug", script=f"{MIGRATION}.py")
    command(0, "--mark-applied", MIGRATION, "--force", "--yes")
    command(0, "--rollback", MIGRATION, "--yes", "--no-backup")
    command(0, "--migration", MIGRATION, "--backup", "--debug")
    command(0, "--rollback-to", MIGRATION, "--yes")
    command(0, "--mark-applied-all", MIGRATION, "--debug")
    command(0, "--rollback-last", "--purge", "--yes", "--debug")
    db.migrations_lock.insert_one({"_id": 1000, "owner": "elsewhere:1:dead", "acquired_at": datetime(2020, 1, 1),
                                   "expires_at": datetime(2999, 1, 1), "released_at": None})  # a live lock
    command(3, "--all", "--lock-timeout", "0", "--debug")
    command(0, "--force-unlock", "--yes", "--debug")
    before_apply = sorted(scene.backups.glob(f"*-{MIGRATION}-apply-*.bson.gz"))[-1]
    command(0, "--restore", str(before_apply), "--yes", "--debug")
    command(0, "--status")

    texts = scene.written()
    assert len(list(scene.backups.glob("*.bson.gz"))) >= 3 and len(list(scene.backups.glob("*.archive.gz"))) == 1
    dumps = [json.loads(line) for line in scene.calls.read_text().splitlines()]
    assert len(dumps) == 2 and not any(Path(d["config"]).exists() for d in dumps)  # the URI's file is gone
    command(0, "--yes", "--debug", script="reset_chat_messages_session_test.py")

    assert leaks(texts) == {}


@pytest.mark.slow
def test_every_failing_command_with_a_password_in_the_url_leaks_it_nowhere(scene, db, tmp_path):
    command, host, url = scene.command, scene.host, scene.url
    # the failing paths, with and without --debug
    for debug in ((), ("--debug",)):
        command(5, "--all", *debug, MONGODB_URL=f"mongodb://migrator:{IN_URL}@{host}/app?authSource=admin")  # SCRAM
        command(5, "--all", "--server-timeout", "0.5", *debug,
                MONGODB_URL=f"mongodb://migrator:{IN_URL}@127.0.0.1:{closed_port()}/?authMechanism=PLAIN")
        command(2, "--all", *debug, MONGODB_URL=f"mongodb//migrator:{IN_URL}@{host}/")
        command(2, "--all", *debug, MONGODB_URL=f"{url}&tls=maybe")
        command(2, "--all", *debug, MONGODB_URL=f"{url}&tls=true&tlsCAFile={tmp_path}/missing.pem")
        for name, body in LEAKY_MIGRATIONS.items():
            leaky = tmp_path / f"leaky-{name}"
            leaky.mkdir(exist_ok=True)
            (leaky / f"{name}.py").write_text(f'"""{name}\n\nDate: 2025-01-01\n"""\n{body}')
            command(2 if name == "fails_to_load" else 1, "--all", *debug, migrations=leaky)
        command(2, "--list", *debug, migrations=tmp_path / "leaky-fails_to_load")  # no database needed, still masked
    assert "unexpected error: RuntimeError: odd result from mongodb://migrator:****@" in "".join(scene.texts.values())

    texts = scene.written()
    assert db.migrations_changelog.count_documents({"error": {"$regex": "mongodb://migrator:"}}) >= 2

    assert leaks(texts) == {}


def test_tls_options_in_the_url_reach_the_driver_untouched(monkeypatch, tmp_path):
    ca = Path(__file__).resolve()  # any readable file: the driver only opens it once it connects
    url = (f"mongodb://migrator:{IN_URL}@db.example:27017/app?authSource=admin&tls=true&tlsCAFile={ca}"
           "&tlsAllowInvalidHostnames=false&tlsCertificateKeyFilePassword=Kf7keypass")
    monkeypatch.setenv("MONGODB_URL", url)
    (tmp_path / "empty.env").write_text("")
    monkeypatch.setenv("ENV_FILE", str(tmp_path / "empty.env"))  # no .env of the developer's
    settings = load_settings()
    assert settings.mongodb_url == url

    given = {}

    def client(url, **options):
        given.update(url=url, **options)
        raise ConfigurationError("stopped here by the test")

    monkeypatch.setattr(connection, "AsyncMongoClient", client)
    with pytest.raises(MigrationError) as caught:
        asyncio.run(connection.connect(settings.mongodb_url, settings.database_name, 1))
    assert given["url"] == url
    assert CORE not in str(caught.value) and "migrator:****@db.example" in str(caught.value)


def test_tls_from_the_url_makes_the_driver_start_a_tls_handshake(env, tmp_path):
    """A listener that records the first byte it gets: 0x16 opens a TLS handshake, not a MongoDB message."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    first_bytes = []

    def accept() -> None:
        listener.settimeout(10)
        try:
            peer, _ = listener.accept()
            peer.settimeout(5)
            first_bytes.append(peer.recv(1))
            peer.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    ca = certifi.where()  # a real CA bundle: the driver loads it before the handshake
    port = listener.getsockname()[1]
    url = f"mongodb://migrator:{IN_URL}@127.0.0.1:{port}/?authMechanism=PLAIN&tls=true&tlsCAFile={ca}"
    try:
        result = run("run_migrations.py", "--status", "--server-timeout", "2", "--debug",
                     env={**env, "MONGODB_URL": url})
    finally:
        thread.join(15)
        listener.close()
    assert result.code == 5, result
    assert first_bytes == [b"\x16"], result
    assert CORE not in result.output and "Traceback" in result.output  # --debug: the traceback, masked


def test_the_log_filter_masks_tracebacks_too():
    remember_secret_of(f"mongodb://u:{IN_URL}@h/")
    try:
        raise ValueError(f"bad: mongodb://u:{IN_URL}@h/ and password={PASSWORD}")
    except ValueError:
        record = logging.LogRecord("migrator", logging.ERROR, __file__, 1, "failed: %s", ({"password": PASSWORD},),
                                   sys.exc_info())
    assert _RedactFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "Traceback" in text and CORE not in text and "mongodb://u:****@h/" in text


SHORT_PASSWORD_DATABASE = "adv_secret_test"


def test_a_short_password_leaves_the_database_name_and_the_backup_path_whole(mongo, env, server_url, is_ferretdb,
                                                                            tmp_path):
    """Password `test`, database adv_secret_test: the name prints whole, and the printed backup path restores
    (it was adv_secret_****-..., a path that does not exist)."""
    if not is_ferretdb:
        pytest.skip("needs FerretDB, which accepts any user and password with authMechanism=PLAIN")
    folder, backups = tmp_path / "migrations", tmp_path / "backups"
    folder.mkdir()
    shutil.copy(MIGRATIONS / f"{MIGRATION}.py", folder)
    environment = {**env, "MONGODB_URL": f"mongodb://migrator:test@{host_of(server_url)}/?authMechanism=PLAIN",
                   "MONGODB_DATABASE_NAME": SHORT_PASSWORD_DATABASE, "MIGRATIONS_BACKUP_DIR": str(backups)}
    mongo.drop_database(SHORT_PASSWORD_DATABASE)
    database = mongo[SHORT_PASSWORD_DATABASE]
    try:
        database.chat_messages.insert_many(chat_messages(8, with_metadata_every=4))
        applied = run("run_migrations.py", "--all", "--backup", "--migrations-dir", str(folder), env=environment)
        assert applied.code == 0, applied
        assert f"database {SHORT_PASSWORD_DATABASE} at mongodb://migrator:****@" in applied.output, applied
        assert "_****" not in applied.output and "migrator:test@" not in applied.output, applied
        [printed] = re.findall(r"saved to (\S+\.bson\.gz)", applied.output)
        assert Path(printed).is_file() and Path(printed).name.startswith(f"{SHORT_PASSWORD_DATABASE}-"), printed
        assert database.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0

        restored = run("run_migrations.py", "--restore", printed, "--yes", "--migrations-dir", str(folder),
                       env=environment)
        assert restored.code == 0, restored
        assert database.chat_messages.count_documents({"metadata": {"$exists": False}}) == 6
        assert f"of {SHORT_PASSWORD_DATABASE}.chat_messages" in restored.output and "_****" not in restored.output
    finally:
        mongo.drop_database(SHORT_PASSWORD_DATABASE)


def test_the_password_password_leaves_the_hint_whole(env, server_url):
    """Wrong credentials with the password `password`: the hint names the password (it was "..., **** and ...")."""
    url = f"mongodb://migrator:password@{host_of(server_url)}/?authSource=admin"  # SCRAM: AuthenticationFailed
    result = run("run_migrations.py", "--status", "--server-timeout", "5", env={**env, "MONGODB_URL": url})
    assert result.code == 5, result
    assert "check the user name, password and authSource" in result.output, result
    assert "migrator:****@" in result.output and "migrator:password@" not in result.output, result


def test_a_userinfo_percent_encoded_whole_never_appears_in_the_output(env):
    result = run(RUNNER, "--status", env={**env, "MONGODB_URL": "mongodb://admin%3AZq9SecretPa55@127.0.0.1:9/"})
    assert result.code == 2, result
    assert "Zq9SecretPa55" not in result.stdout + result.stderr
    assert "mongodb://****@127.0.0.1:9/" in result.stderr, result

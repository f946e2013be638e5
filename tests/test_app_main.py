"""app/main.py: GET /health and the start-up check of the migrations, against the real server."""

import socket
import subprocess
import sys
import threading
from contextlib import contextmanager

import httpx
import pytest
from fastapi.testclient import TestClient
from pymongo import MongoClient

from app.main import app
from conftest import REPO
from local_server import LocalServer
from sample_messages import chat_messages

MIGRATION = "add_metadata_to_chat_messages"
MISSING_INDEXES = [
    {"name": "chat_messages.session_id_1_created_at_1", "kind": "missing_index",
     "detail": "missing index chat_messages.session_id_1_created_at_1 {session_id: 1, created_at: 1}"},
    {"name": "chat_messages.user_id_1", "kind": "missing_index",
     "detail": "missing index chat_messages.user_id_1 {user_id: 1}"}]
BROKEN_MIGRATION = '"""broken\n\nDate: 2025-01-01\n"""\nasync def up(db)\n    pass\n'  # line 5: no colon


@pytest.fixture
def settings(monkeypatch, server_url, db_name, db):
    """The app's settings: this test's database on the test server (dropped afterwards by `db`)."""
    for name in ("ENV_FILE", "REQUIRE_MIGRATIONS", "MONGODB_TIMEOUT_MS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONGODB_URL", server_url)
    monkeypatch.setenv("MONGODB_DATABASE_NAME", db_name)
    return monkeypatch


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


def test_health_is_200_when_the_database_answers_and_nothing_is_pending(settings, db, db_name, cli):
    db.chat_messages.insert_many(chat_messages(3))
    assert cli("run_migrations.py", "--all").code == 0

    with TestClient(app) as client:
        response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": db_name, "reachable": True, "pending_migrations": []}


def test_health_is_503_and_start_up_warns_while_a_migration_is_pending(settings, db, db_name, caplog):
    db.chat_messages.insert_many(chat_messages(3))

    with TestClient(app) as client:
        response = client.get("/health")

    assert response.status_code == 503
    assert response.json() == {"status": "migrations pending", "database": db_name, "reachable": True,
                               "pending_migrations": [MIGRATION],
                               "problems": [{"name": MIGRATION, "kind": "pending"}, *MISSING_INDEXES]}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(MIGRATION in w and "run_migrations.py --all" in w for w in warnings), warnings


def test_health_is_503_naming_an_index_dropped_by_hand_and_require_migrations_refuses(settings, db, db_name, cli):
    """The schema's drift is a problem of /health as of --check (migrator.schema.diff.drift); an unknown index is
    none."""
    db.chat_messages.insert_many(chat_messages(3))
    assert cli("run_migrations.py", "--all").code == 0
    db.chat_messages.create_index("content", name="by_hand")
    db.chat_messages.drop_index("user_id_1")

    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "migrations not current", "database": db_name, "reachable": True,
                               "pending_migrations": [], "problems": MISSING_INDEXES[1:]}

    settings.setenv("REQUIRE_MIGRATIONS", "1")
    refused = (r"^refusing to start \(REQUIRE_MIGRATIONS is set\): database .* is not current: "
               r"chat_messages.user_id_1 \(missing index chat_messages.user_id_1 \{user_id: 1\}\): see")
    with pytest.raises(RuntimeError, match=refused), TestClient(app):
        pass


def test_health_is_503_naming_an_applied_migration_whose_file_is_gone_or_changed(settings, db, db_name, cli,
                                                                                    tmp_path):
    """/health and --check agree: older code on a newer database, or an applied file edited, is not current."""
    migration_file = REPO / "migrations" / f"{MIGRATION}.py"
    settings.setenv("MIGRATIONS_DIR", str(tmp_path))
    (tmp_path / f"{MIGRATION}.py").write_text(migration_file.read_text())
    db.chat_messages.insert_many(chat_messages(3))
    assert cli("run_migrations.py", "--all", "--migrations-dir", str(tmp_path)).code == 0

    (tmp_path / f"{MIGRATION}.py").write_text(migration_file.read_text().replace("async def up(", "async def up_(", 1)
                                         + "\nup = up_\n")
    with TestClient(app) as client:
        changed = client.get("/health")
    assert changed.status_code == 503
    assert changed.json() == {"status": "migrations not current", "database": db_name, "reachable": True,
                              "pending_migrations": [], "problems": [{"name": MIGRATION, "kind": "changed"}]}

    (tmp_path / f"{MIGRATION}.py").unlink()
    with TestClient(app) as client:
        gone = client.get("/health")
    assert gone.status_code == 503
    assert gone.json()["problems"] == [{"name": MIGRATION, "kind": "missing_file"}]


def test_health_is_503_without_the_password_when_the_database_is_unreachable(settings, caplog):
    settings.setenv("MONGODB_URL", f"mongodb://admin:s3cret-pw@127.0.0.1:{closed_port()}/?authSource=admin")
    settings.setenv("MONGODB_TIMEOUT_MS", "300")

    with TestClient(app) as client:  # starts anyway: REQUIRE_MIGRATIONS is not set
        response = client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "database unreachable" and body["reachable"] is False
    assert body["error"] == "no answer from the database server within 300 ms"
    assert "s3cret-pw" not in response.text
    assert "s3cret-pw" not in caplog.text and "cannot reach database" in caplog.text


def test_require_migrations_refuses_to_start_until_they_have_run(settings, db, cli):
    settings.setenv("REQUIRE_MIGRATIONS", "1")
    db.chat_messages.insert_many(chat_messages(3))

    with pytest.raises(RuntimeError, match=f"refusing to start .*REQUIRE_MIGRATIONS.*{MIGRATION}"), TestClient(app):
        pass

    assert cli("run_migrations.py", "--all").code == 0
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200


def test_require_migrations_refuses_an_unreachable_database(settings):
    settings.setenv("MONGODB_URL", f"mongodb://127.0.0.1:{closed_port()}/")
    settings.setenv("MONGODB_TIMEOUT_MS", "300")
    settings.setenv("REQUIRE_MIGRATIONS", "true")

    with pytest.raises(RuntimeError, match="refusing to start .*cannot reach database"), TestClient(app):
        pass


def uvicorn(env: dict, **settings: str) -> subprocess.CompletedProcess:
    """The image's command, for real: uvicorn app.main:app, in the project folder, for a start-up that fails."""
    return subprocess.run([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", "0"],
                          env={**env, **settings}, cwd=REPO, capture_output=True, text=True, timeout=60)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ERROR:")]


def test_uvicorn_exits_with_the_reason_in_one_line_when_migrations_are_required(env, db):
    completed = uvicorn(env, REQUIRE_MIGRATIONS="1")

    assert completed.returncode == 3, completed.stderr  # uvicorn's exit code for a failed start-up
    assert "Traceback" not in completed.stderr
    assert error_lines(completed.stderr) == [
        f"ERROR:    refusing to start (REQUIRE_MIGRATIONS is set): 1 migration(s) pending on database {db.name} "
        f"({MIGRATION}): run `python migrations/run_migrations.py --all`",
        "ERROR:    Application startup failed. Exiting."]


def test_uvicorn_exits_with_one_line_on_a_settings_error(env):
    completed = uvicorn(env, MONGODB_DATABASE_NAME="flowise proxy_test")

    assert completed.returncode == 3, completed.stderr
    assert "Traceback" not in completed.stderr
    assert error_lines(completed.stderr)[0] == (
        "ERROR:    cannot start: MONGODB_DATABASE_NAME 'flowise proxy_test' (from the environment) contains a space: "
        'a MongoDB database name has at most 63 bytes and none of / \\ . " $, a space or NUL')
    assert len(error_lines(completed.stderr)) == 2


# ----- a broken migration file, the document models (Beanie) -----

@contextmanager
def serving(env: dict):
    """uvicorn app.main:app on a free port, once it says its start-up is complete; stopped afterwards."""
    port = closed_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    shown, started = [], threading.Event()

    def read_stderr():
        for line in process.stderr:
            shown.append(line)
            if "Application startup complete" in line:
                started.set()
        started.set()  # ended: the assertion below shows why

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert started.wait(timeout=60) and process.poll() is None, "".join(shown)
        yield port, shown
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)


def test_a_migration_file_with_a_syntax_error_is_a_warning_and_a_503_naming_it(env, db, db_name, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "broken.py").write_text(BROKEN_MIGRATION)

    with serving({**env, "MIGRATIONS_DIR": str(folder)}) as (port, shown):
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30)

    assert response.status_code == 503
    error = "broken.py: syntax error at line 5: expected ':'"
    assert response.json() == {"status": "migrations not current", "database": db_name, "reachable": True,
                               "pending_migrations": ["broken"],
                               "problems": [{"name": "broken", "kind": "broken_file", "error": error}]}
    warnings = [line for line in shown if line.startswith("WARNING:")]
    assert warnings == [f"WARNING:  database {db_name} is not current: broken (broken file: {error}): see `python "
                        "migrations/run_migrations.py --check`; the app reads a fixed file when it restarts; GET "
                        "/health answers 503 until then\n"], shown


def test_health_names_a_broken_file_beside_an_applied_migration(settings, db, db_name, cli, tmp_path):
    """/health and --check agree: a broken file is a problem, whatever else is applied."""
    (tmp_path / f"{MIGRATION}.py").write_text((REPO / "migrations" / f"{MIGRATION}.py").read_text())
    settings.setenv("MIGRATIONS_DIR", str(tmp_path))
    db.chat_messages.insert_many(chat_messages(3))
    assert cli("run_migrations.py", "--all", "--migrations-dir", str(tmp_path)).code == 0
    (tmp_path / "broken.py").write_text(BROKEN_MIGRATION)

    with TestClient(app) as client:
        response = client.get("/health")

    assert response.status_code == 503
    assert response.json() == {"status": "migrations not current", "database": db_name, "reachable": True,
                               "pending_migrations": ["broken"], "problems": [
                                   {"name": "broken", "kind": "broken_file",
                                    "error": "broken.py: syntax error at line 5: expected ':'"}]}


def test_require_migrations_refuses_a_broken_migration_file_in_one_line(env, db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "broken.py").write_text(BROKEN_MIGRATION)

    completed = uvicorn(env, MIGRATIONS_DIR=str(folder), REQUIRE_MIGRATIONS="yes")

    assert completed.returncode == 3, completed.stderr
    assert "Traceback" not in completed.stderr
    assert error_lines(completed.stderr)[0].startswith(
        "ERROR:    refusing to start (REQUIRE_MIGRATIONS is set): database ")
    assert "is not current: broken (broken file: broken.py: syntax error at line 5" in error_lines(completed.stderr)[0]


def test_a_missing_migrations_folder_stops_the_start_up(settings, tmp_path):
    settings.setenv("MIGRATIONS_DIR", str(tmp_path / "nowhere"))
    refused = r"^cannot start: migrations folder .*nowhere not found \(MIGRATIONS_DIR\)$"
    with pytest.raises(RuntimeError, match=refused), TestClient(app):
        pass


@pytest.mark.slow
def test_models_are_initialised_by_the_first_health_check_that_reaches_the_database(settings, local_server, env,
                                                                                    db_name, cli, tmp_path):
    """The app started while the database was down: /health initialises Beanie once the database answers."""
    if local_server is None:
        pytest.skip("MONGODB_URL names a server this test cannot start later")
    later = LocalServer(local_server.binary, tmp_path, port=closed_port())
    settings.setenv("MONGODB_URL", later.url)
    settings.setenv("MONGODB_TIMEOUT_MS", "2000")

    with TestClient(app) as client:
        down = client.get("/health")
        later.start()
        try:
            assert cli("run_migrations.py", "--all", env={**env, "MONGODB_URL": later.url}).code == 0
            up = client.get("/health")
            with MongoClient(later.url) as mongo:
                indexes = mongo[db_name].chat_messages.index_information()
        finally:
            later.stop()

    assert (down.status_code, down.json()["status"]) == (503, "database unreachable")
    assert up.status_code == 200, up.json()
    assert indexes["user_id_1"]["key"] == [("user_id", 1)]  # built by --all (migrations/_schema.py)


def test_the_app_starts_without_building_an_index(settings, db):
    """The indexes are the migrations' (--all builds what _schema.py declares): Beanie builds none at start-up, nor
    when /health initialises the models, so an index of the name Beanie would give its own stops nothing."""
    db.chat_messages.insert_many(chat_messages(3))
    db.chat_messages.create_index([("role", 1)], name="session_id_1")

    with TestClient(app) as client:
        client.get("/health")
        assert client.app.state.readiness.models_ready

    assert {index["name"]: dict(index["key"]) for index in db.chat_messages.list_indexes()} == {
        "_id_": {"_id": 1}, "session_id_1": {"role": 1}}


def test_require_migrations_refuses_to_start_while_the_schema_is_behind(settings, db, cli, tmp_path):
    settings.setenv("REQUIRE_MIGRATIONS", "1")
    settings.setenv("MIGRATIONS_DIR", str(tmp_path))
    (tmp_path / "_schema.py").write_text('from pymongo import IndexModel\n\n'
                                         'INDEXES = {"chat_messages": [IndexModel([("user_id", 1)])]}\n')
    db.chat_messages.insert_many(chat_messages(3))

    with pytest.raises(RuntimeError, match="refusing to start .*REQUIRE_MIGRATIONS.*user_id_1"), TestClient(app):
        pass

    assert cli("run_migrations.py", "--all", "--migrations-dir", str(tmp_path)).code == 0
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
    assert [index["name"] for index in db.chat_messages.list_indexes()] == ["_id_", "user_id_1"]

"""app/main.py: GET /health and the start-up check of the migrations, against the real server."""

import socket
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from app.main import app
from conftest import REPO
from sample_messages import chat_messages

MIGRATION = "add_metadata_to_chat_messages"


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
                               "pending_migrations": [MIGRATION]}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(MIGRATION in w and "run_migrations.py --all" in w for w in warnings), warnings


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

    with pytest.raises(RuntimeError, match=f"refusing to start .*REQUIRE_MIGRATIONS.*{MIGRATION}"):
        with TestClient(app):
            pass

    assert cli("run_migrations.py", "--all").code == 0
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200


def test_require_migrations_refuses_an_unreachable_database(settings):
    settings.setenv("MONGODB_URL", f"mongodb://127.0.0.1:{closed_port()}/")
    settings.setenv("MONGODB_TIMEOUT_MS", "300")
    settings.setenv("REQUIRE_MIGRATIONS", "true")

    with pytest.raises(RuntimeError, match="refusing to start .*cannot reach database"):
        with TestClient(app):
            pass


def test_uvicorn_exits_with_the_reason_when_migrations_are_required(env, db):
    """The image's command, for real: uvicorn app.main:app, in the project folder."""
    completed = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", "0"],
        env={**env, "REQUIRE_MIGRATIONS": "1"}, cwd=REPO, capture_output=True, text=True, timeout=60)

    assert completed.returncode == 3, completed.stderr  # uvicorn's exit code for a failed start-up
    assert f"refusing to start (REQUIRE_MIGRATIONS is set): 1 migration(s) pending" in completed.stderr
    assert "Application startup failed" in completed.stderr

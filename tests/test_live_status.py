"""Live progress: `--status`, `--status --json` and /health show a migration that is running now, on which runner,
since when, and (batched) how far, from the changelog, the lock and the checkpoint. Against the real server."""

import re
import signal
import socket

from fastapi.testclient import TestClient

from app.main import app
from conftest import RUNNER, finish, start, status_json, wait_for, write_migration
from sample_messages import chat_messages

NAME = "add_metadata_to_chat_messages"
COUNT = 100  # at --max-rate 40: 2.5 s to read the ids (stream path), 2.5 s of batches of 10


def scanned(db) -> int:
    return (db.migrations_checkpoints.find_one({"migration": NAME}) or {}).get("scanned", 0)


def test_status_and_health_show_a_runner_paused_mid_run_as_running_with_its_progress(db, db_name, cli, env, server_url,
                                                                                      is_ferretdb, monkeypatch):
    db.chat_messages.insert_many(chat_messages(COUNT, with_metadata_every=0))
    # A lease far longer than the pause: the stopped runner still holds the lock while --status looks.
    runner = start(env, "--all", "--batch-size", "10", "--max-rate", "40", "--lease", "300", script=RUNNER)
    try:
        # two checkpoints of this run: the rate is measured between them
        wait_for(lambda: scanned(db) >= 20, "two batches done", runner)
        runner.send_signal(signal.SIGSTOP)
        done = scanned(db)  # it cannot change while the runner is stopped

        row = status_json(cli)[NAME]
        text = cli(RUNNER, "--status")
        gate = cli(RUNNER, "--check")
        monkeypatch.setenv("MONGODB_URL", server_url)
        monkeypatch.setenv("MONGODB_DATABASE_NAME", db_name)
        for name in ("ENV_FILE", "REQUIRE_MIGRATIONS", "MIGRATIONS_DIR"):
            monkeypatch.delenv(name, raising=False)
        with TestClient(app) as client:
            health = client.get("/health")
        runner.send_signal(signal.SIGCONT)

        host = socket.gethostname()
        assert (row["state"], row["host"], row["pid"], row["runner"]) == ("running", host, runner.pid,
                                                                          f"{host}:{runner.pid}")
        # the range path (MongoDB) counts the collection from its metadata, the stream path (FerretDB) its ids
        assert (row["step"], row["done"], row["total"], row["total_estimated"]) == (1, done, COUNT, not is_ferretdb)
        assert 0 < row["percent"] < 100 and row["percent"] == int(1000 * done / COUNT) / 10
        assert row["rate_per_s"] > 0 and row["eta_s"] > 0
        assert row["since"] == row["at"] and row["since"] is not None
        assert "resumable" not in ", ".join(row["flags"])

        assert text.code == 0, text
        runner_line = rf"{NAME}: running on {re.escape(host)}:{runner.pid} since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC: "
        share = f"{row['percent']:.1f}%"
        assert re.search(rf"^{runner_line}{done} of ~?{COUNT} documents \({re.escape(share)}\), [\d,]+ documents/s, "
                         r"(under a second|about [\d.]+ (s|min|h)) left$", text.stdout, re.MULTILINE), text
        assert "0 applied, 1 pending (1 running now)" in text.stdout, text
        assert gate.code == 6 and re.search(rf"^{runner_line}{done} of ~?{COUNT} documents", gate.stdout, re.MULTILINE)
        assert "interrupted" not in gate.stdout, gate

        assert health.status_code == 503  # pending until it is applied, as before
        body = health.json()
        assert (body["status"], body["pending_migrations"]) == ("migrations pending", [NAME])
        [running] = body["running_migrations"]
        assert {key: running[key] for key in ("name", "host", "pid", "done", "total", "percent")} == \
            {"name": NAME, "host": host, "pid": runner.pid, "done": done, "total": COUNT, "percent": row["percent"]}
        assert running["since"] == row["since"] and running["rate_per_s"] > 0

        finished = finish(runner)
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGCONT)
            runner.kill()
            runner.wait(timeout=30)

    assert finished.code == 0, finished
    after = cli(RUNNER, "--status")
    assert re.search(rf"^{NAME} .* applied .* {COUNT}$", after.stdout, re.MULTILINE), after
    assert "running" not in after.stdout and "1 applied, 0 pending" in after.stdout, after


def test_a_running_migration_without_batches_shows_its_runner_and_since_but_no_percentage(db, cli, env, tmp_path):
    write_migration(tmp_path, "waits", body='''
        import asyncio

        async def up(db):
            await db.chat_messages.update_many({}, {"$set": {"waits": 1}})
            for _ in range(600):  # until the test says go (bounded: 60 s)
                if await db.go.count_documents({}):
                    return
                await asyncio.sleep(0.1)

        async def verify(db):
            return await db.chat_messages.count_documents({"waits": {"$exists": False}}) == 0
        ''')
    folder = ("--migrations-dir", str(tmp_path))
    db.chat_messages.insert_many(chat_messages(3))
    runner = start(env, "--all", *folder, "--lease", "60", script=RUNNER)
    try:
        wait_for(lambda: db.chat_messages.count_documents({"waits": 1}) == 3, "the migration to start", runner)

        row = status_json(cli, *folder)["waits"]
        text = cli(RUNNER, "--status", *folder)
        db.go.insert_one({})
        finished = finish(runner)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(timeout=30)

    host = socket.gethostname()
    assert (row["state"], row["host"], row["pid"], row["since"]) == ("running", host, runner.pid, row["at"])
    assert [row[key] for key in ("done", "total", "percent", "rate_per_s", "eta_s")] == [None] * 5
    assert re.search(rf"^waits: running on {re.escape(host)}:{runner.pid} since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC$",
                     text.stdout, re.MULTILINE), text
    assert finished.code == 0, finished
    assert status_json(cli, *folder)["waits"]["state"] == "applied"

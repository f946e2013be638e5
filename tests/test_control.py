"""--pause, --resume and --cancel from another process, through migrations_control: the runner honours them at its
next batch boundary, holding its lock. Against the real server, with the runner in a process of its own."""

import re
import socket
import time

from fastapi.testclient import TestClient

from app.main import app
from conftest import RUNNER, finish, start, status_json, wait_for, write_migration
from migrator.provenance import user
from sample_messages import chat_messages

NAME = "add_metadata_to_chat_messages"
COUNT = 300  # at --max-rate 100, batches of 10: 3 s of batches (and on FerretDB 3 s of reading the ids first)
BY = f"{user()}@{socket.gethostname()}"
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def scanned(db) -> int:
    return (db.migrations_checkpoints.find_one({"migration": NAME}) or {}).get("scanned", 0)


def migrated(db) -> int:
    return db.chat_messages.count_documents({"metadata": {"$exists": True}})


def renewed_at(db):
    return db.migrations_lock.find_one({"_id": "lock"})["renewed_at"]


def slow_run(env):
    """A batched run of COUNT messages, a lease of 4 s (renewed every second) so that its renewals show."""
    return start(env, "--all", "--batch-size", "10", "--max-rate", "100", "--lease", "4", script=RUNNER)


def stopped(runner) -> None:
    if runner.poll() is None:
        runner.kill()
        runner.wait(timeout=30)


def health(monkeypatch, server_url, db_name) -> dict:
    monkeypatch.setenv("MONGODB_URL", server_url)
    monkeypatch.setenv("MONGODB_DATABASE_NAME", db_name)
    for name in ("ENV_FILE", "REQUIRE_MIGRATIONS", "MIGRATIONS_DIR"):
        monkeypatch.delenv(name, raising=False)
    with TestClient(app) as client:
        return client.get("/health").json()


def test_a_pause_from_another_process_stops_every_write_and_keeps_the_lock_until_resume(db, db_name, cli, env,
                                                                                       server_url, monkeypatch):
    db.chat_messages.insert_many(chat_messages(COUNT, with_metadata_every=0))
    runner = slow_run(env)
    try:
        wait_for(lambda: scanned(db) >= 20, "two batches done", runner)
        paused = cli(RUNNER, "--pause")
        assert paused.code == 0, paused
        assert re.search(rf"{NAME}: paused by {re.escape(BY)}: its runner {re.escape(socket.gethostname())}:"
                         rf"{runner.pid} waits at its next batch boundary", paused.stdout + paused.stderr), paused
        time.sleep(1.0)  # the batch under way ends: at --max-rate 100 a batch of 10 takes 0.1 s
        done, changed, renewed = scanned(db), migrated(db), renewed_at(db)
        time.sleep(3.0)
        assert runner.poll() is None, finish(runner)
        assert (scanned(db), migrated(db)) == (done, changed) and done < COUNT  # nothing written
        assert renewed_at(db) > renewed  # the lock held: its heartbeat renews it

        row = status_json(cli)[NAME]
        text = cli(RUNNER, "--status")
        body = health(monkeypatch, server_url, db_name)
        assert (row["state"], row["paused_by"], row["done"]) == ("running", BY, done) and row["paused_since"]
        assert re.search(rf"^{NAME}: running on \S+:{runner.pid} since {WHEN}, paused by {re.escape(BY)} since {WHEN} "
                         rf"\(--resume goes on\): {done} of ~?{COUNT} documents", text.stdout, re.MULTILINE), text
        [running] = body["running_migrations"]
        assert (running["name"], running["paused_by"], running["done"]) == (NAME, BY, done)

        resumed = cli(RUNNER, "--resume")
        assert resumed.code == 0 and f"{NAME}: resumed (paused by {BY} since " in resumed.output, resumed
        finished = finish(runner)
    finally:
        stopped(runner)

    assert finished.code == 0, finished
    assert re.search(rf"{NAME}: paused by {re.escape(BY)} since {WHEN} \(--pause\): holding the lock, writing "
                     "nothing, until --resume", finished.output), finished
    assert re.search(rf"{NAME}: resumed after [\d.]+ s paused", finished.output), finished
    assert migrated(db) == COUNT and db.migrations_control.count_documents({}) == 0
    [applied] = db.migrations_changelog.find({"name": NAME, "state": "applied"})
    assert applied["modified"] == COUNT  # every message migrated once


def test_a_cancel_stops_the_run_resumably_and_the_next_run_goes_on_from_the_checkpoint(db, cli, env):
    db.chat_messages.insert_many(chat_messages(COUNT, with_metadata_every=0))
    runner = slow_run(env)
    try:
        wait_for(lambda: scanned(db) >= 20, "two batches done", runner)
        cancelled = cli(RUNNER, "--cancel", NAME)
        finished = finish(runner)
    finally:
        stopped(runner)

    assert cancelled.code == 0 and f"{NAME}: cancel requested by {BY}: its runner stops at its next batch boundary" \
        in cancelled.output, cancelled
    assert finished.code == 7, finished
    done = scanned(db)
    assert 20 <= done < COUNT and migrated(db) == done
    assert f"{NAME}: stopped by --cancel of {BY} after {done} documents; checkpoint saved" in finished.output, finished
    assert db.migrations_control.count_documents({}) == 0  # the cancel is cleared: the next run is not cancelled
    assert "resumable: " in ", ".join(status_json(cli)[NAME]["flags"])

    # a cancel of a run that ended before its next batch boundary: cleared by the next run, not honoured
    db.migrations_control.insert_one({"_id": NAME, "state": "cancelled", "by": "ops@elsewhere",
                                      "at": db.command("hello")["localTime"], "runner": "elsewhere:1"})
    again = cli(RUNNER, "--all")
    assert again.code == 0, again
    assert db.migrations_control.count_documents({}) == 0
    assert f"{NAME}: resuming from the checkpoint: {done} documents" in again.output, again
    assert migrated(db) == COUNT
    assert db.migrations_changelog.count_documents({"name": NAME, "state": "applied"}) == 1


def test_a_pause_set_before_the_run_makes_it_start_paused_and_resume_with_nothing_paused_does_nothing(db, cli, env):
    nothing = cli(RUNNER, "--resume")
    assert (nothing.code, nothing.output.strip().splitlines()[-1].endswith("nothing is paused")) == (0, True), nothing
    no_run = cli(RUNNER, "--cancel")
    assert no_run.code == 0 and "nothing is running: nothing to cancel" in no_run.output, no_run
    assert db.migrations_control.count_documents({}) == 0

    db.chat_messages.insert_many(chat_messages(COUNT, with_metadata_every=0))
    paused = cli(RUNNER, "--pause", NAME)
    assert paused.code == 0 and f"{NAME}: paused by {BY}: not running now" in paused.output, paused
    assert f"paused by {BY}: starts paused" in status_json(cli)[NAME]["flags"]

    runner = start(env, "--all", "--lease", "4", script=RUNNER)  # unpaced: it would be done in a second
    try:
        wait_for(lambda: status_json(cli)[NAME]["state"] == "running", "the run started", runner)
        time.sleep(2.5)
        assert runner.poll() is None and migrated(db) == 0, finish(runner)
        resumed = cli(RUNNER, "--resume", NAME)
        finished = finish(runner)
    finally:
        stopped(runner)

    assert resumed.code == 0, resumed
    assert finished.code == 0 and migrated(db) == COUNT, finished
    assert f"{NAME}: paused by {BY} since " in finished.output, finished


def test_a_migration_without_batches_cannot_be_paused_or_cancelled_while_it_runs_and_says_so(db, cli, env, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    write_migration(folder, "sleepy", body='''
    import asyncio

    async def up(db):
        await asyncio.sleep(4)

    async def verify(db):
        return True
    ''')
    on = ("--migrations-dir", str(folder))
    runner = start(env, "--all", *on, script=RUNNER)
    try:
        wait_for(lambda: status_json(cli, *on)["sleepy"]["state"] == "running", "the run started", runner)
        cancel, pause = cli(RUNNER, "--cancel", *on), cli(RUNNER, "--pause", *on)
        cleared = cli(RUNNER, "--resume", *on)
        finished = finish(runner)
    finally:
        stopped(runner)
    for said in (cancel, pause):
        assert said.code == 0 and "sleepy: its up takes no batches: pause and cancel act only at batch boundaries, " \
            "so this run cannot be paused or cancelled" in said.output, said
    assert "sleepy: resumed" in cleared.output, cleared  # the pause was recorded: it would hold a batched re-run
    assert finished.code == 0, finished

"""Rollbacks in batches (issue 15: 8): stopped by a signal, resumed, every message given back; progress lines;
a message the app changes while the rollback runs is left alone; a rollback's checkpoints kept apart from the
`up`'s. Each test forces the path with --batch-path where it matters, so both run on any server."""

import asyncio
import re
import signal
import time

import pytest
from pymongo import AsyncMongoClient

from conftest import MIGRATIONS, RUNNER, finish, start, status_json
from migrator.batches import RANGE, STREAM, Batches, BatchSettings
from migrator.checkpoints import APPLY, ROLLBACK, Checkpoints
from migrator.migration import load_migration
from sample_messages import chat_messages

SCRIPT = "add_metadata_to_chat_messages.py"
NAME = "add_metadata_to_chat_messages"
ADDED_BY_US = {"metadata": {"$type": "null"}}
UNSET = {"$unset": {"metadata": ""}}
APP_METADATA = [{"event": "usedTools", "data": ["written while the rollback ran"]}]
PROGRESS_LINE = re.compile(rf"INFO    {NAME}: [\d,]+( of ~?[\d,]+)? documents( \(\d+%\))?, [\d,]+ docs/s"
                           r"(, [\d.]+ (s|min|h) left)?; [\d,]+ modified$", re.MULTILINE)


def by_id(db) -> dict:
    return {doc["_id"]: doc for doc in db.chat_messages.find()}


def applied(db, cli, count: int, every: int) -> dict:
    """`count` messages, the migration applied to them; the messages as they were before."""
    db.chat_messages.insert_many(chat_messages(count, with_metadata_every=every))
    before = by_id(db)
    result = cli(SCRIPT)
    assert result.code == 0, result
    return before


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill -9"])
def test_rollback_last_stopped_half_way_is_seen_and_the_same_command_goes_on_with_it(db, cli, env, tmp_path, stop):
    before = applied(db, cli, 300, every=5)  # 240 to give back: 12 batches of 20, 0.2 s each at --max-rate 100
    rollback = ("--rollback-last", "--yes", "--batch-size", "20", "--backup-dir", str(tmp_path), "--lock-timeout", "30")
    process = start(env, *rollback, "--max-rate", "100", "--lease", "2", script=RUNNER)
    wait_for(lambda: (db.migrations_checkpoints.find_one({"_id": f"{NAME}/rollback/1", "batches": {"$gte": 2}})
                      or process.poll() is not None), "two batches of the rollback")
    process.send_signal(stop)
    stopped = finish(process)
    assert stopped.code == (143 if stop == signal.SIGTERM else -9), stopped
    half = sum("metadata" not in doc for doc in db.chat_messages.find())
    assert 0 < half < sum("metadata" not in doc for doc in before.values())

    # not "applied": part of its documents are undone (a killed runner's lock runs out first: 2 s)
    wait_for(lambda: status_json(cli)[NAME]["state"] != "running", "the dead runner's lease to end", timeout=30)
    row = status_json(cli)[NAME]
    state = "failed" if stop == signal.SIGTERM else "interrupted"
    assert (row["state"], row["action"]) == (state, "rollback"), row
    assert any(flag.startswith("rollback resumable: ") for flag in row["flags"]), row
    gate = cli(RUNNER, "--check")
    said = "failed" if state == "failed" else "rollback interrupted"
    assert gate.code == 6 and f"{NAME}: {said}" in gate.stdout, gate

    again = cli(RUNNER, *rollback)  # the same command: the same migration's rollback, resumed

    assert again.code == 0, again
    assert "resuming from the checkpoint" in again.output and "rolled back" in again.output, again
    assert by_id(db) == before
    assert status_json(cli)[NAME]["state"] == "rolled_back"


@pytest.mark.slow
@pytest.mark.parametrize("path", [RANGE, STREAM])
def test_a_rollback_stopped_by_sigterm_resumes_and_gives_every_message_back(db, cli, env, tmp_path, path):
    before = applied(db, cli, 300, every=5)
    added = sum("metadata" not in message for message in before.values())  # 240: 12 batches of 20
    rollback = ("--rollback", "--yes", "--batch-path", path, "--batch-size", "20", "--backup-dir", str(tmp_path))
    process = start(env, *rollback, "--max-rate", "100")  # 0.2 s a batch
    key = f"{NAME}/rollback/1"
    wait_for(lambda: (db.migrations_checkpoints.find_one({"_id": key, "batches": {"$gte": 2}})
                      or process.poll() is not None), "two batches of the rollback")
    process.send_signal(signal.SIGTERM)
    stopped = finish(process)

    assert stopped.code == 143, stopped
    assert "stopped by SIGTERM after" in stopped.output and "run the same command again to resume" in stopped.output
    assert "Traceback" not in stopped.output
    checkpoint = db.migrations_checkpoints.find_one()
    assert checkpoint["_id"] == key and checkpoint["action"] == ROLLBACK and checkpoint["done"] is False, checkpoint
    assert db.migrations_checkpoints.count_documents({}) == 1  # the up's was cleared when it completed
    rolled_back = [doc for doc in db.chat_messages.find() if "metadata" not in doc]
    assert 0 < len(rolled_back) == checkpoint["modified"] < added  # stopped at a batch boundary: nothing half-done
    assert all(doc["_id"] <= checkpoint["last_id"] for doc in rolled_back)
    assert all(doc == before[doc["_id"]] for doc in rolled_back)
    status = cli("run_migrations.py", "--status")
    assert re.search(rf"{NAME} .* failed .*rollback resumable: {checkpoint['scanned']:,} documents done",
                     status.output), status

    resumed = cli(SCRIPT, *rollback, "--progress-interval", "0.001")

    assert resumed.code == 0, resumed
    assert (f"resuming from the checkpoint: {checkpoint['scanned']:,} documents of chat_messages were done"
            in resumed.output), resumed
    assert len(PROGRESS_LINE.findall(resumed.output)) >= 3, resumed
    assert f"rolled back: {added:,} documents changed" in resumed.output, resumed
    assert "rollback verified (left_to_undo=0)" in resumed.output, resumed
    assert by_id(db) == before
    assert db.migrations_checkpoints.count_documents({}) == 0
    # in time order, as the changelog reads itself: two processes' ObjectIds of the same second are not
    rollbacks = list(db.migrations_changelog.find({"name": NAME, "action": "rollback"}).sort([("at", 1), ("_id", 1)]))
    assert [entry["state"] for entry in rollbacks] == ["running", "failed", "running", "rolled_back"], rollbacks
    assert "stopped by SIGTERM" in rollbacks[1]["error"]
    assert rollbacks[3]["modified"] == added
    assert "resumable" not in cli("run_migrations.py", "--status").output


def rolled_back_in_process(server_url: str, db_name: str, path: str, how: str, server_profile) -> tuple:
    """Roll back, in batches of 10, while the app writes metadata on the 26th message after its id was read
    (between the first and the second batch); (its _id, the rollback's outcome)."""
    async def scenario():
        client = AsyncMongoClient(server_url, tz_aware=True)
        database = client[db_name]
        ids = [doc["_id"] async for doc in database.chat_messages.find({}, {"_id": 1}).sort("_id", 1)]
        changed = ids[25]
        calls = 0

        async def app_writes_between_batches(room_s: float) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:  # before the second batch: every id has been read (stream) or none (range)
                await database.chat_messages.update_one({"_id": changed}, {"$set": {"metadata": APP_METADATA}})

        batches = Batches(database, NAME, "sum", BatchSettings(size=10, path=path), server_profile,
                          app_writes_between_batches, action=ROLLBACK)
        try:
            if how == "the migration's rollback":
                outcome = await load_migration(MIGRATIONS / SCRIPT).rollback(database, batches)
            else:
                outcome = await batches.update_many("chat_messages", ADDED_BY_US, UNSET,
                                                    **({"recheck_filter": False} if how == "no recheck" else {}))
            return changed, outcome
        finally:
            await client.close()
    return asyncio.run(scenario())


@pytest.mark.parametrize("how", ["the migration's rollback", "a rollback's default", "no recheck"])
@pytest.mark.parametrize("path", [RANGE, STREAM])
def test_a_message_that_stops_matching_after_its_id_was_read_is_left_alone(db, server_url, is_ferretdb,
                                                                           server_profile, path, how):
    db.chat_messages.insert_many(chat_messages(60, with_metadata_every=0))
    db.chat_messages.update_many({}, {"$set": {"metadata": None}})  # as the migration leaves them

    changed, outcome = rolled_back_in_process(server_url, db.name, path, how, server_profile)

    # Without the recheck only FerretDB's stream path writes by `_id` alone: there the app's metadata is lost.
    lost = how == "no recheck" and path == STREAM and is_ferretdb
    assert db.chat_messages.find_one({"_id": changed}).get("metadata", "gone") == ("gone" if lost else APP_METADATA)
    assert db.chat_messages.count_documents({"metadata": {"$exists": True}}) == (0 if lost else 1)
    assert outcome.modified == (60 if lost else 59)


@pytest.mark.parametrize("action, other", [(APPLY, ROLLBACK), (ROLLBACK, APPLY)])
def test_each_action_discards_the_others_checkpoints_when_it_starts(db, server_url, server_profile, action, other):
    """An `up` stopped part-way, then a rollback stopped part-way: the `up`'s checkpoint says documents are done
    that the rollback undid, so a resumed `up` would skip them (and the other way round). The action that starts
    discards the other's checkpoints of this migration, no more."""
    db.items.insert_many([{"n": n} for n in range(5)])
    tag = {} if other == APPLY else {"action": other}  # an up's checkpoint has no action
    others = [{"_id": Checkpoints.key(NAME, 1, other), "migration": NAME, "step": 1, **tag},
              {"_id": Checkpoints.key("another", 1, other), "migration": "another", "step": 1, **tag}]
    db.migrations_checkpoints.insert_many(others)

    async def walk():
        client = AsyncMongoClient(server_url, tz_aware=True)
        try:
            batches = Batches(client[db.name], NAME, "sum", BatchSettings(size=2), server_profile, action=action)
            return await batches.update_many("items", {"a": {"$exists": False}}, {"$set": {"a": 1}})
        finally:
            await client.close()
    outcome = asyncio.run(walk())

    assert outcome.modified == 5
    kept = {doc["_id"]: doc.get("action", APPLY) for doc in db.migrations_checkpoints.find()}
    assert kept == {Checkpoints.key("another", 1, other): other, Checkpoints.key(NAME, 1, action): action}


FAILS_VERIFY_ROLLBACK = '''"""Sets a; its rollback unsets it, and its verify_rollback fails while FAIL_VERIFY is set.

Date: 2025-01-01
"""
import os


async def up(db, batches):
    return await batches.update_many("items", {"a": {"$exists": False}}, {"$set": {"a": 1}})


async def verify(db):
    return await db.items.count_documents({"a": {"$exists": False}}) == 0


async def rollback(db, batches):
    return await batches.update_many("items", {"a": 1}, {"$unset": {"a": ""}})


async def verify_rollback(db):
    return not os.environ.get("FAIL_VERIFY") and await db.items.count_documents({"a": 1}) == 0
'''


def test_a_rollback_whose_verification_fails_leaves_no_checkpoint_to_skip_work_with(db, cli, env, tmp_path):
    (tmp_path / "sets_a.py").write_text(FAILS_VERIFY_ROLLBACK)
    db.items.insert_many([{"n": i} for i in range(30)])
    runner = ("run_migrations.py", "--migrations-dir", str(tmp_path), "--batch-size", "10")
    assert cli(*runner, "--all").code == 0

    failed = cli(*runner, "--rollback", "sets_a", "--yes", "--no-backup", env={**env, "FAIL_VERIFY": "1"})
    assert failed.code == 1 and "sets_a: rollback verification failed" in failed.output, failed
    assert db.migrations_checkpoints.count_documents({}) == 0  # the next rollback starts over, not "done"

    db.items.update_many({}, {"$set": {"a": 1}})  # as if the work had been undone meanwhile
    again = cli(*runner, "--rollback", "sets_a", "--yes", "--no-backup")
    assert again.code == 0, again
    assert db.items.count_documents({"a": {"$exists": True}}) == 0

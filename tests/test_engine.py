"""The engine: changelog, status, order, changed files, lock, rollback, adoption, scaffolding, API."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from conftest import MIGRATIONS, applies, finish_draft, plant_lock, status_json, write_migration
from migrator.engine import Engine
from migrator.lock import MigrationLock
from sample_messages import chat_messages

RUNNER = "run_migrations.py"


def test_status_on_a_fresh_and_on_a_migrated_database(db, cli):
    db.chat_messages.insert_many(chat_messages(20))
    fresh = cli(RUNNER, "--status")
    assert fresh.code == 0, fresh
    assert fresh.stdout.splitlines()[0].split() == ["MIGRATION", "DATE", "STATE", "SINCE", "(UTC)", "TOOK",
                                                    "DOCS", "FLAGS"]
    assert "add_metadata_to_chat_messages  2025-07-15  pending" in fresh.stdout
    assert "0 applied, 1 pending" in fresh.stdout

    assert cli(RUNNER, "--all").code == 0
    row = status_json(cli)["add_metadata_to_chat_messages"]
    assert row["state"] == "applied" and row["modified"] == 18 and row["flags"] == []
    assert datetime.fromisoformat(row["at"]) > datetime.now(UTC) - timedelta(minutes=5)
    entry = db.migrations_changelog.find_one({"name": "add_metadata_to_chat_messages", "state": "applied"})
    assert entry["checksum"] and entry["host"] and entry["pid"] and entry["toolkit_version"]
    assert entry["matched"] == entry["modified"] == 18 and entry["duration_s"] >= 0


def test_second_all_is_a_no_op(db, cli):
    db.chat_messages.insert_many(chat_messages(5))
    assert cli(RUNNER, "--all").code == 0
    again = cli(RUNNER, "--all")
    assert again.code == 0, again
    assert "nothing to do: the one migration is applied" in again.output
    assert applies(db, "add_metadata_to_chat_messages") == 1


def test_an_edited_migration_is_flagged_and_all_refuses_to_go_on(db, cli, tmp_path):
    write_migration(tmp_path, "first", date="2025-01-01")
    db.chat_messages.insert_many(chat_messages(3))
    assert cli(RUNNER, "--all", "--migrations-dir", str(tmp_path)).code == 0
    path = tmp_path / "first.py"

    path.write_text("# a comment\n\n" + path.read_text().replace("):\n", "):  # reformatted\n\n"))
    assert status_json(cli, "--migrations-dir", str(tmp_path))["first"]["flags"] == []  # reformatting is no change

    path.write_text(path.read_text().replace('"$set"', '"$setOnInsert"'))
    write_migration(tmp_path, "second", date="2025-02-01")
    assert status_json(cli, "--migrations-dir", str(tmp_path))["first"]["flags"] == ["changed"]
    refused = cli(RUNNER, "--all", "--migrations-dir", str(tmp_path))
    assert refused.code == 1, refused
    assert "applied migration file changed since it ran: first.py" in refused.output
    assert db.chat_messages.count_documents({"second": 1}) == 0

    allowed = cli(RUNNER, "--all", "--allow-changed", "--migrations-dir", str(tmp_path))
    assert allowed.code == 0, allowed
    assert db.chat_messages.count_documents({"second": 1}) == 3


@pytest.mark.parametrize("legacy", [False, True], ids=["lock", "previous version's epoch"])
def test_a_live_lock_makes_a_runner_exit_3_naming_the_holder(db, cli, legacy):
    db.chat_messages.insert_many(chat_messages(3))
    plant_lock(db, expires_in_s=300, legacy=legacy)
    result = cli(RUNNER, "--all", "--lock-timeout", "1")
    assert result.code == 3, result
    assert "the migration lock is held by deploy-7:4242:abcd since" in result.output
    waiting = [line for line in result.output.splitlines() if "waiting up to 1 s (--lock-timeout)" in line]
    assert len(waiting) == 1 and "held by deploy-7:4242:abcd since" in waiting[0], result.output  # said once, first
    assert db.chat_messages.count_documents({"metadata": {"$exists": True}}) == 1


@pytest.mark.parametrize("legacy", [False, True], ids=["lock", "previous version's epoch"])
def test_an_expired_lock_is_taken_over(db, cli, legacy):
    db.chat_messages.insert_many(chat_messages(3))
    plant_lock(db, expires_in_s=-1, legacy=legacy)
    result = cli(RUNNER, "--all", "--lock-timeout", "1")
    assert result.code == 0, result
    [lock] = db.migrations_lock.find()  # the previous version's epoch is pruned
    assert lock["_id"] == "lock" and lock["epoch"] == (1 if legacy else 2)
    assert lock["took_over"] == "deploy-7:4242:abcd" and lock["released_at"] is not None


def test_force_unlock_asks_then_frees_the_lock(db, cli):
    plant_lock(db, expires_in_s=300)
    refused = cli(RUNNER, "--force-unlock")
    assert refused.code == 2 and "refusing to remove the migration lock held by deploy-7" in refused.output
    result = cli(RUNNER, "--force-unlock", "--yes")
    assert result.code == 0, result
    assert "lock removed (was held by deploy-7:4242:abcd" in result.output
    assert cli(RUNNER, "--all", "--lock-timeout", "1").code == 0
    assert "nothing to unlock" in cli(RUNNER, "--force-unlock", "--yes").output


def test_a_holder_that_loses_its_lock_stops(server_url, db):
    async def scenario():
        client = AsyncMongoClient(server_url, tz_aware=True)
        try:
            holder = MigrationLock(client[db.name], lease_s=30)
            await holder.acquire(timeout_s=1)
            holder.check()  # fine while held
            await MigrationLock(client[db.name]).force_unlock()
            await holder.renew()
            try:
                holder.check()
            except Exception as exc:
                return str(exc)
        finally:
            await client.close()

    assert "lost the migration lock: it was removed by --force-unlock" in asyncio.run(scenario())


def test_rollback_to_goes_newest_first_and_is_recorded(db, cli, tmp_path):
    rollback = '''
    async def up(db):
        await db.chat_messages.update_many({{}}, {{"$set": {{"{name}": 1}}}})

    async def verify(db):
        return await db.chat_messages.count_documents({{"{name}": {{"$exists": False}}}}) == 0

    async def rollback(db):
        return await db.chat_messages.update_many({{}}, {{"$unset": {{"{name}": ""}}}})

    async def verify_rollback(db):
        return await db.chat_messages.count_documents({{"{name}": {{"$exists": True}}}}) == 0
    '''
    for name, day in (("m1", "01"), ("m2", "02"), ("m3", "03")):
        write_migration(tmp_path, name, date=f"2025-01-{day}", body=rollback.format(name=name))
    db.chat_messages.insert_many(chat_messages(4))
    folder = ("--migrations-dir", str(tmp_path))
    assert cli(RUNNER, "--all", *folder).code == 0

    result = cli(RUNNER, "--rollback-to", "m1", "--yes", *folder)

    assert result.code == 0, result
    rolled = [line.split(": rolled back")[0].split()[-1]
              for line in result.output.splitlines() if ": rolled back" in line]
    assert rolled == ["m3", "m2"]
    assert "m3: rollback verified" in result.output
    assert db.chat_messages.count_documents({"m1": 1, "m2": {"$exists": False}, "m3": {"$exists": False}}) == 4
    states = {name: row["state"] for name, row in status_json(cli, *folder).items()}
    assert states == {"m1": "applied", "m2": "rolled_back", "m3": "rolled_back"}
    assert db.migrations_changelog.count_documents({"action": "rollback", "state": "rolled_back"}) == 2

    last = cli(RUNNER, "--rollback-last", "--yes", *folder)
    assert last.code == 0 and "m1: rolled back" in last.output
    assert cli(RUNNER, "--all", *folder).code == 0  # rolled back migrations are pending again
    assert db.chat_messages.count_documents({"m1": 1, "m2": 1, "m3": 1}) == 4


def test_rollback_refusals(db, cli, tmp_path):
    write_migration(tmp_path, "no_undo")
    folder = ("--migrations-dir", str(tmp_path))
    not_applied = cli(RUNNER, "--rollback", "no_undo", "--yes", *folder)
    assert not_applied.code == 2 and "no_undo is not applied: nothing to roll back" in not_applied.output
    assert cli(RUNNER, "--all", *folder).code == 0
    no_rollback = cli(RUNNER, "--rollback", "no_undo", "--yes", *folder)
    assert no_rollback.code == 2 and "no_undo has no rollback" in no_rollback.output


def test_dry_run_writes_nothing_not_even_changelog_or_lock(db, cli):
    db.chat_messages.insert_many(chat_messages(10, with_metadata_every=5))
    result = cli(RUNNER, "--all", "--dry-run")
    assert result.code == 0, result
    assert "would change 8 documents" in result.output
    assert db.list_collection_names() == ["chat_messages"]


def test_mark_applied_adopts_a_database_migrated_by_hand_and_refuses_one_that_is_not(db, cli):
    db.chat_messages.insert_many(chat_messages(6, with_metadata_every=2))
    refused = cli(RUNNER, "--mark-applied", "add_metadata_to_chat_messages")
    assert refused.code == 4, refused
    assert "is not in place (total=6, with_metadata=3, without_metadata=3): not recorded" in refused.output
    assert db.migrations_changelog.count_documents({}) == 0

    # the guide's old script
    db.chat_messages.update_many({"metadata": {"$exists": False}}, {"$set": {"metadata": None}})
    adopted = cli(RUNNER, "--mark-applied-all", "add_metadata_to_chat_messages")
    assert adopted.code == 0, adopted
    row = status_json(cli)["add_metadata_to_chat_messages"]
    assert row["state"] == "applied" and row["flags"] == ["marked"]
    after = cli(RUNNER, "--all").output  # runs no migration (then builds the indexes _schema.py declares)
    assert "applying" not in after and "the one migration is applied" in after, after


def test_mark_applied_force_records_anyway(db, cli):
    db.chat_messages.insert_many(chat_messages(2, with_metadata_every=0))
    result = cli(RUNNER, "--mark-applied", "add_metadata_to_chat_messages", "--force", "--yes")
    assert result.code == 0 and "NOT verified, --force" in result.output
    assert db.migrations_changelog.find_one({})["verified"] is False


def test_a_failed_migration_shows_as_failed_until_a_rerun_completes_it(db, cli, tmp_path):
    write_migration(tmp_path, "flaky", body='''
        async def up(db):
            if await db.flags.count_documents({}) == 0:
                raise RuntimeError("disk on fire")
            await db.chat_messages.update_many({}, {"$set": {"flaky": 1}})

        async def verify(db):
            return await db.chat_messages.count_documents({"flaky": {"$exists": False}}) == 0
        ''')
    db.chat_messages.insert_many(chat_messages(2))
    folder = ("--migrations-dir", str(tmp_path))
    assert cli(RUNNER, "--all", *folder).code == 1
    status = cli(RUNNER, "--status", *folder)
    assert "flaky" in status.stdout and "failed" in status.stdout and "disk on fire" in status.stdout
    db.flags.insert_one({"ok": True})
    assert cli(RUNNER, "--all", *folder).code == 0
    assert status_json(cli, *folder)["flaky"]["state"] == "applied"


def test_new_scaffolds_a_migration_that_runs_forward_verify_rollback(db, cli, env, tmp_path):
    # Outside migrations/ the file's own path line cannot find the toolkit: PYTHONPATH does.
    env["PYTHONPATH"] = str(MIGRATIONS.parent)
    folder = ("--migrations-dir", str(tmp_path))
    created = cli(RUNNER, "--new", "add_language_to_chat_messages", *folder)
    assert created.code == 0, created
    path = tmp_path / "add_language_to_chat_messages.py"
    assert "Date: " + datetime.now(UTC).date().isoformat() in path.read_text()
    finish_draft(path)  # a fresh template is a draft: tests/test_authoring.py
    db.chat_messages.insert_many(chat_messages(3))

    assert cli(str(path), "--dry-run").output.count("would change 3 documents") == 1
    assert cli(str(path), "--verify").code == 4
    assert cli(str(path)).code == 0
    assert cli(str(path), "--verify").code == 0
    assert cli(str(path), "--rollback", "--yes").code == 0
    assert db.chat_messages.count_documents({"language": {"$exists": True}}) == 0

    assert cli(RUNNER, "--new", "add_language_to_chat_messages", *folder).code == 2
    assert "not a valid migration name" in cli(RUNNER, "--new", "Bad-Name", *folder).output


def test_a_migration_with_depends_on_waits_for_it(db, cli, tmp_path):
    write_migration(tmp_path, "base", date="2025-03-01")
    write_migration(tmp_path, "child", date="2025-01-01", depends_on=["base"])
    db.chat_messages.insert_many(chat_messages(2))
    alone = cli(RUNNER, "--migration", "child", "--migrations-dir", str(tmp_path))
    assert alone.code == 2 and "child depends on base, not applied yet" in alone.output
    listed = cli(RUNNER, "--list", "--migrations-dir", str(tmp_path)).stdout.splitlines()
    assert [line.split()[1] for line in listed] == ["base", "child"]


def test_pending_is_callable_from_python(server_url, db, cli):
    db.chat_messages.insert_many(chat_messages(2))

    async def pending_names():
        client = AsyncMongoClient(server_url, tz_aware=True)
        try:
            return [m.name for m in await Engine(client[db.name]).pending()]
        finally:
            await client.close()

    assert asyncio.run(pending_names()) == ["add_metadata_to_chat_messages"]
    cli(RUNNER, "--all")
    assert asyncio.run(pending_names()) == []

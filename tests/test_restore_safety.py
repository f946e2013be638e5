"""Restores that are safe at scale and against later migrations; backups that say what they hold.

- a restore of thousands of chat messages finishes in seconds, every message back exactly (it used to
  deadlock FerretDB: bulks of 1,000 replaces, 1,000 find_one at once);
- SIGTERM and Ctrl-C stop a restore between batches, recorded in the changelog, the lock released;
- a backup older than migrations applied since to its collection is refused without --force; after a
  restore every applied migration is verified again and those no longer in place are recorded as failed;
- the manifest is covered by a checksum (format 2); a file of format 1 still restores, with a warning;
- nothing to save writes no file; `touches()` returning {} works with --backup;
- a backup folder under a file and a manifest missing keys are one ERROR line and exit 2.
"""

import asyncio
import gzip
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

import bson
import pytest
from bson import Int64, ObjectId
from pymongo import AsyncMongoClient

from conftest import MIGRATIONS, Result, proxy_to
from migrator import backup
from migrator.migration import Migration
from migrator.profile import ferretdb, mongodb
from sample_messages import chat_messages

MIGRATION = "add_metadata_to_chat_messages"
FIELD_B = '''"""Give every chat message b=1.

Date: 2025-08-01
Description: set b=1 on chat messages
"""


def touches(action, purge=False):
    return {"chat_messages": {"b": {"$exists": False}} if action == "apply" else {"b": 1}}


async def up(db):
    return await db.chat_messages.update_many({"b": {"$exists": False}}, {"$set": {"b": 1}})


async def verify(db):
    return await db.chat_messages.count_documents({"b": {"$exists": False}}) == 0


async def rollback(db):
    return await db.chat_messages.update_many({"b": 1}, {"$unset": {"b": ""}})
'''
NO_TOUCHES = '''"""A settings document, with no touches().

Date: 2025-09-01
Description: insert the settings document
"""


async def up(db):
    await db.settings.update_one({"_id": "main"}, {"$set": {"theme": "dark"}}, upsert=True)


async def verify(db):
    return await db.settings.count_documents({"_id": "main"}) == 1
'''
OTHER_COLLECTION = '''"""Touches another collection only.

Date: 2025-10-01
Description: tag the flows
"""


def touches(action, purge=False):
    return {"chatflows": {}}


async def up(db):
    await db.chatflows.update_many({}, {"$set": {"tagged": True}})


async def verify(db):
    return True
'''
TOUCHES_NOTHING = '''"""Changes no document: an index only.

Date: 2025-11-01
Description: index chat messages by session
"""


def touches(action, purge=False):
    return {}


async def up(db):
    await db.chat_messages.create_index("session_id")


async def verify(db):
    return True
'''


# ----- helpers -----

def migrations_folder(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    shutil.copy(MIGRATIONS / f"{MIGRATION}.py", folder)
    for name, text in files.items():
        (folder / f"{name}.py").write_text(text)
    return folder


def runner(cli, folder: Path):
    return lambda *args, **kw: cli("run_migrations.py", "--migrations-dir", str(folder), *args, **kw)


def by_id(db) -> dict:
    return {str(doc["_id"]): doc for doc in db.chat_messages.find()}


def digest(db) -> dict[str, str]:
    """{collection: "count sha256"} over every document, in _id order: "nothing changed" is equality."""
    found = {}
    for name in sorted(db.list_collection_names()):
        documents = list(db[name].find().sort("_id", 1))
        found[name] = f"{len(documents)} " + hashlib.sha256(b"".join(bson.encode(d) for d in documents)).hexdigest()
    return found


def errors_of(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if " ERROR " in f" {line} "]


def warnings_of(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if " WARNING " in f" {line} "]


def one_error(result: Result, code: int, says: str) -> None:
    assert result.code == code, result
    assert len(errors_of(result)) == 1 and says in errors_of(result)[0], result
    assert "Traceback" not in result.output, result


def backup_of(folder: Path, migration: str = MIGRATION, action: str = "apply") -> Path:
    [path] = folder.glob(f"*-{migration}-{action}-*.bson.gz")
    return path


def rewrite(path: Path, target: Path, change) -> Path:
    """A copy of a backup file whose manifest `change(manifest)` returns."""
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    manifest = change(json.loads(lines[0]))
    target.write_bytes(gzip.compress(json.dumps(manifest).encode() + b"\n" + b"".join(lines[1:])))
    return target


# ----- a restore of thousands of messages -----

@pytest.mark.slow
def test_a_restore_of_1200_messages_finishes_in_seconds_and_gives_every_one_back(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    db.chat_messages.insert_many(chat_messages(1200, with_metadata_every=10))
    before = by_id(db)
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    saved = backup_of(tmp_path / "backups")
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0

    started = time.monotonic()
    restored = cli("run_migrations.py", "--restore", str(saved), "--yes", env=env, timeout=60)
    seconds = time.monotonic() - started

    assert restored.code == 0, restored
    assert seconds < 45, f"{seconds:.1f} s\n{restored}"
    assert "restored 1,080 documents of chat_messages and read them back" in restored.output, restored
    assert by_id(db) == before  # 1,080 lack metadata again, the 120 that had it keep it, nothing else moved
    [entry] = db.migrations_changelog.find({"action": "restore", "state": {"$ne": "running"}})
    assert (entry["state"], entry["modified"], entry["verified"]) == ("rolled_back", 1080, True)
    assert db.migrations_lock.find_one({"_id": "lock"})["released_at"] is not None


def stop_mid_restore(env: dict, saved: Path, signal_number: int) -> Result:
    """Start a restore, wait for its first progress line (one batch written and read back), then signal it."""
    process = subprocess.Popen([sys.executable, str(MIGRATIONS / "run_migrations.py"), "--restore", str(saved),
                                "--yes", "--progress-interval", "0.001"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, deadline = b"", time.monotonic() + 60
    try:
        while b"restore of chat_messages: " not in seen and process.poll() is None and time.monotonic() < deadline:
            if select.select([process.stdout], [], [], 0.2)[0]:
                seen += os.read(process.stdout.fileno(), 65536)
        assert b"restore of chat_messages: " in seen, seen.decode()
        process.send_signal(signal_number)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return Result(subprocess.CompletedProcess(process.args, process.returncode, (seen + rest).decode(), ""))


@pytest.mark.slow
def test_sigterm_and_ctrl_c_stop_a_restore_between_batches_recorded_and_the_next_restore_finishes(db, cli, env,
                                                                                                  tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    db.chat_messages.insert_many(chat_messages(800, with_metadata_every=10))  # 720 to restore: 15 batches on FerretDB
    before = by_id(db)
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    saved = backup_of(tmp_path / "backups")

    most = 0  # each restore starts again from the file's first document
    for signal_number, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        name = signal.Signals(signal_number).name
        stopped = stop_mid_restore(env, saved, signal_number)

        assert stopped.code == code, stopped
        assert f"{name}: stopping after the current batch" in stopped.output, stopped
        [error] = errors_of(stopped)
        done = int(re.search(rf"stopped by {name} after ([\d,]+) of 720 documents", error)[1].replace(",", ""))
        assert 0 < done < 720 and "run the same restore again to finish" in error, stopped
        assert "Traceback" not in stopped.output
        entry = db.migrations_changelog.find_one({"action": "restore", "state": {"$ne": "running"}}, sort=[("seq", -1)])
        assert (entry["state"], entry["restored"], entry["left"]) == ("failed", done, 720 - done)
        assert f"stopped by {name}" in entry["error"]
        assert db.migrations_lock.find_one({"_id": "lock"})["released_at"] is not None
        # whole batches: the first `done` documents of the file are as in the backup, every other as it was
        most = max(most, done)
        assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == most
        status = cli("run_migrations.py", "--status", env=env)
        assert f"{MIGRATION} failed: restore of" in status.output and f"stopped by {name}" in status.output, status

    finished = cli("run_migrations.py", "--restore", str(saved), "--yes", env=env, timeout=60)
    assert finished.code == 0, finished
    assert by_id(db) == before


@pytest.mark.parametrize("server_profile", [ferretdb(), mongodb()], ids=["FerretDB's path", "MongoDB's path"])
def test_both_read_back_paths_find_documents_of_every_id_type(db, server_url, tmp_path, monkeypatch, server_profile):
    """Each server's path on whichever server runs the tests (small batches: FerretDB takes bulks of 50 at most)."""
    monkeypatch.setattr(backup.current, "BATCH", 20)
    documents = [{"_id": "string-id", "role": "user"}, {"_id": 7, "role": "user"}, {"_id": Int64(2**40), "n": 1.5},
                 {"_id": {"chat": "flow-1", "n": 2}, "role": "assistant"},
                 *({"_id": ObjectId(), **message} for message in chat_messages(116, with_metadata_every=4))]
    db.chat_messages.insert_many(documents)
    original = {str(doc["_id"]): doc for doc in db.chat_messages.find()}

    async def save_change_restore():
        client = AsyncMongoClient(server_url, tz_aware=True)
        try:
            database = client[db.name]
            migration = Migration(name="m", date="2025-01-01", description="m", up=None, verify=None,
                                  touches=lambda action: {"chat_messages": {}})
            [saved] = await backup.save(database, migration, "apply", tmp_path)
            await database.chat_messages.update_many({}, {"$set": {"role": "changed"}})
            await database.chat_messages.delete_many({"_id": {"$in": ["string-id", 7]}})
            file = backup.read(saved.path)
            return file, await backup.restore(database, file, server_profile, backup.Restored())
        finally:
            await client.close()

    file, done = asyncio.run(save_change_restore())

    assert (done.written, done.found, done.differing, done.problem(file)) == (120, 120, [], "")
    assert {str(doc["_id"]): doc for doc in db.chat_messages.find()} == original


# ----- an older backup and the migrations applied since -----

def test_restoring_a_backup_older_than_later_migrations_is_refused_without_force(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    folder = migrations_folder(tmp_path, field_b=FIELD_B)
    run = runner(cli, folder)
    db.chat_messages.insert_many(chat_messages(30, with_metadata_every=3))
    assert run("--all", "--backup", env=env).code == 0  # the metadata migration, then b
    migrations_folder(tmp_path, settings_doc=NO_TOUCHES, tag_flows=OTHER_COLLECTION)
    db.chatflows.insert_one({"name": "flow"})
    assert run("--all", env=env).code == 0
    before = digest(db)

    refused = run("--restore", str(backup_of(tmp_path / "backups")), "--yes", env=env)

    one_error(refused, 2, "refusing to restore")
    error = errors_of(refused)[0]
    assert "field_b, settings_doc (declares no touches(): may touch it) were applied to chat_messages since:" in error
    assert "tag_flows" not in error and "nothing was changed" in error and "--force" in error
    assert digest(db) == before


def test_a_forced_restore_records_the_migrations_it_undid_and_all_applies_them_again(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    run = runner(cli, migrations_folder(tmp_path, field_b=FIELD_B))
    db.chat_messages.insert_many(chat_messages(30, with_metadata_every=3))
    assert run("--all", "--backup", env=env).code == 0

    forced = run("--restore", str(backup_of(tmp_path / "backups")), "--yes", "--force", env=env)

    assert forced.code == 0, forced
    warnings = warnings_of(forced)
    assert any("--force: restoring" in line and "although field_b was applied to chat_messages" in line
               for line in warnings), forced
    assert any("field_b: no longer in place after the restore" in line and "--all applies it again" in line
               for line in warnings), forced
    assert db.chat_messages.count_documents({"b": {"$exists": False}}) == 20  # those the backup holds lack b again
    entry = db.migrations_changelog.find_one({"name": "field_b"}, sort=[("at", -1), ("_id", -1)])
    assert (entry["action"], entry["state"]) == ("restore", "failed")
    assert "no longer in place after the restore of" in entry["error"] and "`--all` applies it again" in entry["error"]
    status = run("--status", env=env)
    assert re.search(r"field_b +2025-08-01 +failed", status.output), status
    assert "field_b failed: no longer in place after the restore of" in status.output, status

    again = run("--all", env=env)
    assert again.code == 0, again
    assert db.chat_messages.count_documents({"b": {"$exists": False}}) == 0
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0
    assert run("--verify", env=env).code == 0


# ----- the manifest and its checksum -----

def test_an_edited_manifest_is_refused_and_a_file_of_format_1_restores_with_a_warning(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    db.chat_messages.insert_many(chat_messages(12, with_metadata_every=3))
    original = by_id(db)
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    saved = backup_of(tmp_path / "backups")
    migrated = digest(db)

    edited = rewrite(saved, tmp_path / "edited.bson.gz", lambda m: {**m, "action": "rollback"})
    refused = cli("run_migrations.py", "--restore", str(edited), "--yes", env=env)
    one_error(refused, 2, "manifest checksum mismatch: its manifest was changed after the backup was written")
    assert digest(db) == migrated
    with gzip.open(saved) as stream:
        manifest = json.loads(stream.readline())
    assert manifest["format"] == backup.FORMAT and manifest["manifest_sha256"] == backup.manifest_digest(manifest)

    older = rewrite(saved, tmp_path / "older.jsonl.gz",
                    lambda m: backup.seal({**m, "format": "flowise-proxy-migrations backup 2"}))
    refused = cli("run_migrations.py", "--restore", str(older), "--yes", env=env)
    one_error(refused, 2, "it is a backup of another format (flowise-proxy-migrations backup 2): this version restores "
                          "only flowise-proxy-migrations backup 3; nothing was changed")
    assert digest(db) == migrated

    saved_one = next(doc["_id"] for doc in original.values() if "metadata" not in doc)
    db.chat_messages.update_one({"_id": saved_one}, {"$set": {"role": "changed by the app"}})  # put back all the same
    changed = by_id(db)
    bare = shutil.copy(saved, tmp_path / "bare.bson.gz")  # without its post-images
    restored = cli("run_migrations.py", "--restore", str(bare), "--yes", env=env)
    assert restored.code == 0, restored
    [warning] = warnings_of(restored)
    assert "it has no post-images" in warning and "cannot be told apart: every document is put back" in warning
    assert by_id(db) == {**changed, **{key: doc for key, doc in original.items() if "metadata" not in doc}}


def test_a_manifest_missing_keys_is_one_error_line_and_exit_2(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    db.chat_messages.insert_many(chat_messages(6, with_metadata_every=3))
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    lacking = rewrite(backup_of(tmp_path / "backups"), tmp_path / "lacking.bson.gz",
                      lambda m: backup.seal({k: v for k, v in m.items() if k not in ("collection", "created_at")}))
    before = digest(db)

    refused = cli("run_migrations.py", "--restore", str(lacking), "--yes", env=env)

    one_error(refused, 2, "its manifest lacks collection, created_at; nothing was changed")
    assert digest(db) == before


# ----- what --backup writes -----

def test_nothing_to_save_writes_no_file_and_touches_returning_nothing_works_with_backup(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    run = runner(cli, migrations_folder(tmp_path, session_index=TOUCHES_NOTHING))

    applied = run("--all", "--backup", env=env)  # no chat_messages at all

    assert applied.code == 0, applied
    assert f"{MIGRATION}: backup: no document of chat_messages to save: no file written" in applied.output
    assert "session_index: backup: its touches() declares no documents: nothing to save" in applied.output
    assert not list(tmp_path.glob("backups/*"))
    assert db.migrations_changelog.count_documents({"state": "applied"}) == 2


def test_backup_refused_for_a_migration_without_touches_says_how_to_declare_nothing(db, cli, env, tmp_path):
    run = runner(cli, migrations_folder(tmp_path, settings_doc=NO_TOUCHES))
    db.chat_messages.insert_many(chat_messages(3))
    before = digest(db)

    refused = run("--all", "--backup", env=env)

    one_error(refused, 2, "--backup: settings_doc does not declare touches(action, purge)")
    assert "`return {}` if it changes no documents" in errors_of(refused)[0]
    assert digest(db) == before


@pytest.mark.parametrize("command", [["--all", "--backup"], ["--all", "--backup-full"], ["--rollback-last", "--yes"]])
def test_a_backup_folder_under_a_file_is_one_error_line_and_exit_2(db, cli, env, tmp_path, command):
    db.chat_messages.insert_many(chat_messages(6, with_metadata_every=3))
    if command[0] == "--rollback-last":
        assert cli("run_migrations.py", "--all", env=env).code == 0
    (tmp_path / "a-file").write_text("not a folder")
    env["PATH"] = f"{tmp_path}:{env['PATH']}"  # a mongodump that is never run: the folder is refused first
    (tmp_path / "mongodump").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "mongodump").chmod(0o755)
    before = digest(db)

    refused = cli("run_migrations.py", *command, "--backup-dir", str(tmp_path / "a-file" / "backups"), env=env)

    one_error(refused, 2, f"{tmp_path / 'a-file'} is a file, not a folder; nothing was changed")
    assert digest(db) == before


# ----- the pure parts, without a server -----

def test_applied_since_names_what_a_restore_would_undo_and_nothing_else():
    from datetime import datetime, timedelta

    taken = datetime(2026, 1, 1, tzinfo=UTC)

    def migration(name, touches):
        async def nothing(db):
            return True
        return Migration(name=name, date="2025-01-01", description=name, up=nothing, verify=nothing, touches=touches)

    def failing(action):
        raise RuntimeError("no")

    migrations = [migration("own", lambda action: {"messages": {}}),
                  migration("before", lambda action: {"messages": {}}),
                  migration("later", lambda action: {"messages": {}}),
                  migration("elsewhere", lambda action: {"flows": {}}),
                  migration("silent", None),
                  migration("broken", failing),
                  migration("undone", lambda action: {"messages": {}})]
    at = lambda minutes: taken + timedelta(minutes=minutes)  # noqa: E731
    entries = [{"name": "before", "state": "applied", "at": at(-1)},
               {"name": "own", "state": "applied", "at": at(1)},
               {"name": "later", "state": "applied", "at": at(2)},
               {"name": "elsewhere", "state": "applied", "at": at(3)},
               {"name": "silent", "state": "applied", "at": at(4)},
               {"name": "broken", "state": "applied", "at": at(5)},
               {"name": "gone", "state": "applied", "at": at(6)},
               {"name": "undone", "state": "applied", "at": at(7)},
               {"name": "undone", "state": "rolled_back", "at": at(8)}]
    file = backup.BackupFile(Path("x.bson.gz"), {"format": backup.FORMAT, "migration": "own", "action": "apply",
                                                  "collection": "messages", "created_at": taken.isoformat()})

    assert backup.applied_since(file, migrations, entries) == [
        "later", "silent (declares no touches(): may touch it)", "broken (its touches() fails: may touch it)",
        "gone (its file is gone or broken: may touch it)"]


def test_the_manifest_checksum_covers_every_field_and_survives_extended_json():
    sealed = backup.seal({"format": backup.FORMAT, "action": "apply", "filter": {"_id": {"$gt": ObjectId()}}})
    assert backup.manifest_problem(sealed) == "its manifest lacks migration, database, collection, count, sha256, " \
                                              "created_at"
    assert sealed["manifest_sha256"] == backup.manifest_digest(json.loads(json.dumps(sealed)))
    for key, value in (("action", "rollback"), ("filter", {}), ("extra", 1)):
        assert backup.manifest_problem({**sealed, key: value}).startswith("manifest checksum mismatch")


@pytest.mark.slow
def test_a_restore_killed_half_way_stays_visible_and_fails_the_gates_until_it_is_done_again(db, cli, env, tmp_path,
                                                                                           server_url):
    from wire_proxy import Fault

    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    db.chat_messages.insert_many(chat_messages(1200, with_metadata_every=10))
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    saved = backup_of(tmp_path / "backups")
    with proxy_to(server_url) as proxy:  # each restore write held: the kill lands inside
        held = proxy.add(Fault("update", "chat_messages", times=10**6, action="delay", seconds=0.3))
        process = subprocess.Popen([sys.executable, str(MIGRATIONS / "run_migrations.py"), "--restore", str(saved),
                                    "--yes", "--lease", "4"], env={**env, "MONGODB_URL": proxy.url},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while not held.fired and time.monotonic() < deadline:
            time.sleep(0.05)
        process.kill()
        process.communicate(timeout=30)
    assert held.fired

    status = cli("run_migrations.py", "--status", "--json", env=env)
    [row] = [r for r in json.loads(status.stdout) if r["name"] == MIGRATION]
    assert row["state"] in ("running", "interrupted"), row
    check = cli("run_migrations.py", "--check", env=env)
    assert check.code == 6 and MIGRATION in check.stdout, check
    history = cli("run_migrations.py", "--history", "--json", env=env)
    assert any(entry["action"] == "restore" for entry in json.loads(history.stdout)), history.stdout

    again = cli("run_migrations.py", "--restore", str(saved), "--yes", env=env)  # once the dead runner's lease ends
    assert again.code == 0, again
    assert cli("run_migrations.py", "--check", env=env).code == 6  # pending again: the apply was undone
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 1080

"""--backup saves what a migration will change; --restore puts it back exactly, types and absent fields included.

(No Decimal128 here: FerretDB v1.24.2 drops the connection on it.)
"""

import datetime
import gzip
import json

import bson
from bson import Binary, Int64, ObjectId

from conftest import the_error

MIGRATION = "add_metadata_to_chat_messages"


def odd_messages() -> list[dict]:
    when = datetime.datetime(2025, 6, 1, 12, 30, 15, 123000, tzinfo=datetime.UTC)
    return [
        {"_id": ObjectId(), "role": "user", "content": "plain", "created_at": when},
        {"_id": ObjectId(), "role": "assistant", "tokens": Int64(2**40), "cost": 0.0012, "blob": Binary(b"\x00\x01", 0),
         "nested": {"a": {"b": [1, 2.5, "x"]}}, "created_at": when},
        {"_id": "string-id", "role": "user", "content": "é ü 😀"},
        {"_id": ObjectId(), "role": "assistant", "metadata": [{"event": "usedTools", "data": {"tool": "search"}}]},
    ]


def everything(db) -> list[dict]:
    return sorted(db.chat_messages.find({}), key=lambda d: str(d["_id"]))


def test_backup_then_restore_gives_back_exactly_the_documents(cli, db, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    db.chat_messages.insert_many(odd_messages())
    before = everything(db)

    applied = cli("run_migrations.py", "--all", "--backup", env=env)
    assert applied.code == 0, applied
    [backup] = tmp_path.glob(f"*-{MIGRATION}-apply-*.bson.gz")
    assert "backup: 3 documents of chat_messages saved to" in applied.output
    with gzip.open(backup, "rb") as stream:
        manifest = json.loads(stream.readline())
        saved = list(bson.decode_file_iter(stream))
    assert (manifest["migration"], manifest["action"], manifest["database"], manifest["collection"],
            manifest["count"]) == (MIGRATION, "apply", db.name, "chat_messages", 3)
    assert len(saved) == 3 and "password" not in json.dumps(manifest)
    assert db.chat_messages.count_documents({"metadata": None}) == 3

    restored = cli("run_migrations.py", "--restore", str(backup), "--yes", env=env)
    assert restored.code == 0, restored
    assert everything(db) == before  # the three lack metadata again; the one that had it keeps it
    done = {"name": MIGRATION, "action": "restore", "state": {"$ne": "running"}}
    assert db.migrations_changelog.count_documents(done) == 1


def test_rollback_backs_up_by_default_and_no_backup_skips(cli, db, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    db.chat_messages.insert_many(odd_messages())
    assert cli("run_migrations.py", "--all", env=env).code == 0
    applied = everything(db)

    assert cli("run_migrations.py", "--rollback-last", "--yes", env=env).code == 0
    [backup] = tmp_path.glob(f"*-{MIGRATION}-rollback-*.bson.gz")
    assert db.chat_messages.count_documents({"metadata": {"$exists": True}}) == 1

    assert cli("run_migrations.py", "--restore", str(backup), "--yes", env=env).code == 0
    assert everything(db) == applied

    assert cli("run_migrations.py", "--migration", MIGRATION, env=env).code == 0
    skipped = cli("run_migrations.py", "--rollback-last", "--yes", "--no-backup", env=env)
    assert skipped.code == 0, skipped
    assert len(list(tmp_path.glob("*.bson.gz"))) == 1


def test_restore_without_confirmation_on_a_non_terminal_changes_nothing(cli, db, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    db.chat_messages.insert_many(odd_messages())
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    [backup] = tmp_path.glob("*.bson.gz")
    migrated = everything(db)
    refused = cli("run_migrations.py", "--restore", str(backup), env=env)
    assert refused.code == 2, refused
    assert everything(db) == migrated


def test_a_write_the_server_refuses_during_a_restore_is_named_without_the_documents_bytes(cli, db, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    messages = [{"_id": ObjectId(), "role": "user", "content": f"message {n}", "ref": n} for n in range(5)]
    db.chat_messages.insert_many(messages)
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    [backup] = tmp_path.glob(f"*-{MIGRATION}-apply-*.bson.gz")
    db.chat_messages.delete_one({"_id": messages[2]["_id"]})  # the restore inserts it again...
    db.chat_messages.create_index("ref", unique=True)
    db.chat_messages.insert_one({"_id": "newer", "ref": 2})  # ...where the server refuses it: a duplicate ref

    result = cli("run_migrations.py", "--restore", str(backup), "--yes", "--force", env=env)

    assert result.code == 1, result
    line = the_error(result)
    assert "code 11000" in line and str(messages[2]["_id"]) in line, line
    assert "RawBSONDocument" not in result.output and "\\x00" not in result.output, result

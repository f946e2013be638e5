"""Backups and restores of real data: byte for byte for every BSON type, whatever the URL's options; a
restore that leaves alone what the app changed or deleted since the migration (--force puts it back), and
that sends no upsert (a sharded collection refuses one without its shard key).

"Exactly" is the documents' raw BSON, read with codec options that decode nothing, compared byte for byte.
FerretDB v1.24.2 drops the connection on Decimal128 (and MinKey, MaxKey, Code, DBRef): there the test is
that a backup holding one is refused before any write (exit 2, nothing changed); on MongoDB, the round trip.
"""

import gzip
import hashlib
import json
import shutil
import struct
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import bson
import pytest
from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId
from bson.binary import UuidRepresentation
from bson.code import Code
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.dbref import DBRef
from bson.raw_bson import RawBSONDocument

import wire_proxy
from conftest import Result, proxy_to
from migrator import backup
from sample_messages import chat_messages
from wire_proxy import Fault

MIGRATION = "add_metadata_to_chat_messages"
# How the app writes with uuidRepresentation=standard: a uuid.UUID becomes a BSON binary of subtype 4.
APP_OPTIONS = CodecOptions(uuid_representation=UuidRepresentation.STANDARD, tz_aware=True,
                           datetime_conversion=DatetimeConversion.DATETIME_AUTO)
# How the tests read documents: their bytes as the server has them, nothing decoded.
RAW = CodecOptions(document_class=RawBSONDocument, uuid_representation=UuidRepresentation.UNSPECIFIED,
                   datetime_conversion=DatetimeConversion.DATETIME_AUTO)
YEAR_1 = DatetimeMS(-62_135_596_800_000)  # 0001-01-01T00:00:00Z, the first instant Python's datetime holds
BEFORE_YEAR_1 = DatetimeMS(-62_135_596_800_001)
AFTER_9999 = DatetimeMS(253_402_300_800_000 + 400 * 86_400_000)  # in year 10001
FIFTEEN_MB = 15 * 1024 * 1024
SHARD_KEY_NOT_FOUND = 61  # a sharded collection's answer to an upsert whose filter lacks the shard key


# ----- helpers -----

def messages(db):
    """chat_messages as the app writes it (native UUIDs as subtype 4)."""
    return db.get_collection("chat_messages", codec_options=APP_OPTIONS)


def raw_documents(db) -> dict[bytes, bytes]:
    """{the _id's BSON: the document's BSON}, as the server has them."""
    collection = db.get_collection("chat_messages", codec_options=RAW)
    return {bson.encode({"_id": document["_id"]}, codec_options=RAW): document.raw
            for document in collection.find()}


def digest(db) -> dict[str, str]:
    """{collection: "count sha256"} of every collection's raw documents: "nothing changed" is equality."""
    found = {}
    for name in sorted(db.list_collection_names()):
        documents = sorted(d.raw for d in db.get_collection(name, codec_options=RAW).find())
        found[name] = f"{len(documents)} " + hashlib.sha256(b"".join(documents)).hexdigest()
    return found


def with_url_option(env: dict, option: str) -> dict:
    url = env["MONGODB_URL"]
    parts = urlsplit(url)
    return {**env, "MONGODB_URL": url + ("&" if parts.query else "?" if parts.path else "/?") + option}


def backup_of(folder: Path, action: str = "apply", migration: str = MIGRATION) -> Path:
    [path] = folder.glob(f"*-{migration}-{action}-*.bson.gz")
    return path


def lines_of(result: Result, level: str) -> list[str]:
    return [line for line in result.output.splitlines() if f" {level} " in f" {line} "]


def odd_documents() -> list[dict]:
    """Every BSON type FerretDB takes, the ones that broke backups among them, each document lacking metadata."""
    session = uuid.uuid4()
    return [
        {"_id": uuid.uuid4(), "role": "user", "session": session},  # a UUID _id, subtype 4
        {"_id": Binary.from_uuid(uuid.uuid4(), UuidRepresentation.PYTHON_LEGACY), "role": "user"},  # subtype 3
        {"_id": ObjectId(), "role": "assistant", "session": session,
         "legacy": Binary.from_uuid(uuid.uuid4(), UuidRepresentation.JAVA_LEGACY),
         "created_at": YEAR_1, "born": BEFORE_YEAR_1, "expires_at": AFTER_9999, "tokens": Int64(2**62),
         "small": Int64(7), "count": 7, "cost": 0.25, "blob": Binary(b"\x00\xff", 0),
         "nested": {"at": [AFTER_9999, {"u": uuid.uuid4()}], "e": {}}, "empty": [], "none": None},
        {"_id": Int64(2**53 + 1), "role": "user", "content": "é ü 😀"},
        {"_id": ObjectId(), "role": "user", "metadata": [{"event": "usedTools"}], "at": AFTER_9999},  # not saved
    ]


def forged(path: Path, target: Path, extra: list[dict]) -> Path:
    """A copy of a backup with `extra` documents appended, its checksums made right again."""
    with gzip.open(path, "rb") as stream:
        manifest = json.loads(stream.readline())
        body = stream.read() + b"".join(bson.encode(document) for document in extra)
    manifest = backup.seal({**manifest, "count": manifest["count"] + len(extra),
                            "sha256": hashlib.sha256(body).hexdigest()})
    target.write_bytes(gzip.compress(json.dumps(manifest).encode() + b"\n") + gzip.compress(body))
    return target


# ----- byte for byte -----

@pytest.mark.parametrize("url_option", ["", "uuidRepresentation=standard"], ids=["URL as is", "uuidRepresentation"])
def test_uuids_of_both_subtypes_dates_outside_1_to_9999_and_int64_come_back_byte_for_byte(db, cli, env, tmp_path,
                                                                                       url_option):
    env = with_url_option(env, url_option) if url_option else env
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    messages(db).insert_many(odd_documents())
    before = raw_documents(db)

    applied = cli("run_migrations.py", "--all", "--backup", env=env)

    assert applied.code == 0, applied
    assert "backup: 4 documents of chat_messages saved to" in applied.output, applied
    assert "backup: the 4 documents as the migration left them recorded in" in applied.output, applied
    assert db.chat_messages.count_documents({"metadata": None}) == 4
    with gzip.open(backup_of(tmp_path), "rb") as stream:
        manifest = json.loads(stream.readline())
        saved = [document.raw for document in bson.decode_file_iter(stream, RAW)]
    assert manifest["format"] == backup.FORMAT and sorted(saved) == sorted(v for v in before.values()
                                                                           if b"metadata" not in v)

    restored = cli("run_migrations.py", "--restore", str(backup_of(tmp_path)), "--yes", env=env)

    assert restored.code == 0, restored
    assert "restored 4 documents of chat_messages and read them back: count and checksum match" in restored.output
    assert raw_documents(db) == before
    assert not lines_of(restored, "WARNING"), restored


@pytest.mark.slow
def test_a_15_mb_document_comes_back_byte_for_byte(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    messages(db).insert_many([{"_id": "big", "role": "assistant", "content": "x" * FIFTEEN_MB, "tokens": Int64(2**40),
                               "expires_at": AFTER_9999}, *chat_messages(3)])
    before = raw_documents(db)
    assert max(len(raw) for raw in before.values()) > FIFTEEN_MB

    assert cli("run_migrations.py", "--all", "--backup", env=env, timeout=300).code == 0
    restored = cli("run_migrations.py", "--restore", str(backup_of(tmp_path)), "--yes", env=env, timeout=300)

    assert restored.code == 0, restored
    assert raw_documents(db) == before


def test_decimal128_and_the_other_types_ferretdb_refuses_round_trip_on_mongodb_and_are_refused_cleanly_on_ferretdb(
        db, cli, env, tmp_path, is_ferretdb):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    refused = {"_id": ObjectId(), "role": "user", "price": Decimal128("12.3400"), "low": MinKey(), "high": MaxKey(),
               "code": Code("return 1"), "ref": DBRef("flows", ObjectId())}
    messages(db).insert_many(chat_messages(3) if is_ferretdb else [*chat_messages(3), refused])
    before = raw_documents(db)
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    saved = backup_of(tmp_path)

    if is_ferretdb:  # a backup holding one, written on MongoDB, say: refused before any write
        file = forged(saved, tmp_path / "from-mongodb.bson.gz", [refused])
        migrated = digest(db)
        result = cli("run_migrations.py", "--restore", str(file), "--yes", env=env)
        assert result.code == 2, result
        [error] = lines_of(result, "ERROR")
        assert "the server would refuse document" in error and "(a Decimal128 at price)" in error, result
        assert "nothing was changed" in error and "Traceback" not in result.output
        assert digest(db) == migrated
        return
    result = cli("run_migrations.py", "--restore", str(saved), "--yes", env=env)
    assert result.code == 0, result
    assert raw_documents(db) == before


# ----- what the app changed or deleted since -----

def test_a_restore_leaves_alone_what_the_app_changed_or_deleted_since_and_force_puts_it_back(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    messages(db).insert_many(chat_messages(30, with_metadata_every=3))
    before = raw_documents(db)
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    saved = backup_of(tmp_path)
    assert saved.with_name(saved.name.replace(".bson.gz", ".after.gz")).is_file()
    edited, gone, *_ = [doc["_id"] for doc in db.chat_messages.find({"metadata": None}).sort("_id", 1)]
    db.chat_messages.update_one({"_id": edited}, {"$set": {"content": "edited by the app"}})
    db.chat_messages.delete_one({"_id": gone})
    app_state = raw_documents(db)
    key = lambda _id: bson.encode({"_id": _id}, codec_options=RAW)  # noqa: E731

    kept = cli("run_migrations.py", "--restore", str(saved), "--yes", env=env)

    assert kept.code == 0, kept
    warnings = lines_of(kept, "WARNING")
    assert len(warnings) == 2, kept
    assert f'1 document of chat_messages was changed by the app since the migration: left as they are (_id ' \
           f'{{"$oid": "{edited}"}}); --force overwrites them' in warnings[0]
    assert f'1 document of chat_messages was deleted by the app since the migration: not put back (_id ' \
           f'{{"$oid": "{gone}"}}); --force inserts them again' in warnings[1]
    assert "restored 18 of 20 documents of chat_messages and read them back: each as in the backup; 2 left" in \
           kept.output
    now = raw_documents(db)
    assert now[key(edited)] == app_state[key(edited)] and key(gone) not in now
    assert {k: v for k, v in now.items() if k != key(edited)} == {k: v for k, v in before.items() if k != key(gone)
                                                                 and k != key(edited)}
    entry = db.migrations_changelog.find_one({"action": "restore", "state": {"$ne": "running"}})
    assert (entry["state"], entry["restored"], entry["left"], entry["post_images"], entry["force"]) == \
           ("rolled_back", 18, 0, True, False)
    assert entry["skipped"] == {"changed": {"count": 1, "first": [f'{{"$oid": "{edited}"}}']},
                                "deleted": {"count": 1, "first": [f'{{"$oid": "{gone}"}}']}}

    forced = cli("run_migrations.py", "--restore", str(saved), "--yes", "--force", env=env)

    assert forced.code == 0, forced
    assert "restored 20 documents of chat_messages and read them back: count and checksum match" in forced.output
    assert raw_documents(db) == before
    entry = db.migrations_changelog.find_one({"action": "restore", "force": True, "state": {"$ne": "running"}})
    assert (entry["modified"], entry["restored"], entry["skipped"]["changed"]["count"]) == (2, 20, 0)


def test_a_rollback_backup_spares_what_the_app_changed_since_the_rollback(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    messages(db).insert_many(chat_messages(12, with_metadata_every=3))
    assert cli("run_migrations.py", "--all", env=env).code == 0
    applied = raw_documents(db)
    rolled_back = cli("run_migrations.py", "--rollback-last", "--yes", env=env)
    assert rolled_back.code == 0, rolled_back
    assert "backup: the 8 documents as the migration left them recorded in" in rolled_back.output, rolled_back
    answered = db.chat_messages.find_one({"metadata": {"$exists": False}})["_id"]
    db.chat_messages.update_one({"_id": answered}, {"$set": {"metadata": [{"event": "sourceDocuments"}]}})
    key = bson.encode({"_id": answered}, codec_options=RAW)
    app_state = raw_documents(db)[key]

    restored = cli("run_migrations.py", "--restore", str(backup_of(tmp_path, "rollback")), "--yes", env=env)

    assert restored.code == 0, restored
    assert "1 document of chat_messages was changed by the app since the migration" in restored.output, restored
    now = raw_documents(db)
    assert now[key] == app_state and {k: v for k, v in now.items() if k != key} == \
           {k: v for k, v in applied.items() if k != key}


FAILS_HALF_WAY = '''"""Deletes the system messages, then fails.

Date: 2025-08-01
Description: drop system messages
"""


def touches(action, purge=False):
    return {"chat_messages": {"role": "system"}}


async def up(db):
    await db.chat_messages.delete_many({"role": "system"})
    raise RuntimeError("half-way")


async def verify(db):
    return await db.chat_messages.count_documents({"role": "system"}) == 0
'''


def test_a_migration_that_failed_half_way_leaves_no_post_images_and_its_backup_restores_with_one_warning(
        db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "drop_system.py").write_text(FAILS_HALF_WAY)
    messages(db).insert_many([*chat_messages(6), *({"_id": n, "role": "system", "at": AFTER_9999} for n in range(3))])
    before = raw_documents(db)
    failed = cli("run_migrations.py", "--migrations-dir", str(folder), "--all", "--backup", env=env)
    assert failed.code == 1, failed
    saved = backup_of(tmp_path / "backups", migration="drop_system")
    assert not list((tmp_path / "backups").glob("*.after.gz"))
    db.chat_messages.insert_one({"_id": 0, "role": "system", "content": "written by the app since"})

    restored = cli("run_migrations.py", "--migrations-dir", str(folder), "--restore", str(saved), "--yes", env=env)

    assert restored.code == 0, restored
    [warning] = lines_of(restored, "WARNING")
    assert "it has no post-images" in warning and "changes the app made since cannot be told apart" in warning
    assert raw_documents(db) == before  # the one the app wrote over is put back too: nothing tells it apart


# ----- on the wire: no upsert; a lost reply -----

def update_statements(payload: bytes) -> list[dict]:
    """The statements of an OP_MSG `update`: in its body, or in a document sequence (kind 1 section)."""
    length = struct.unpack_from("<i", payload, 5)[0]
    statements, at = list(bson.decode(payload[5:5 + length]).get("updates", [])), 5 + length
    while at < len(payload) and payload[at] == 1:
        size = struct.unpack_from("<i", payload, at + 1)[0]
        section = payload[at + 5:at + 1 + size]
        documents = section[section.index(b"\x00") + 1:]
        statements += bson.decode_all(documents)
        at += 1 + size
    return statements


@pytest.fixture
def sharded_proxy(server_url, monkeypatch):
    """The test server behind a proxy that answers an upsert as a collection sharded on another key does."""
    plain = wire_proxy._command_of

    def command_of(op_code: int, payload: bytes):
        name, collection = plain(op_code, payload)
        if name == "update" and any(s.get("upsert") for s in update_statements(payload)):
            return "update with upsert", collection
        return name, collection

    monkeypatch.setattr(wire_proxy, "_command_of", command_of)
    with proxy_to(server_url) as proxy:
        proxy.add(Fault("update with upsert", "chat_messages", times=10**6, code=SHARD_KEY_NOT_FOUND))
        yield proxy


SHRINK = '''"""Shorten the assistant's messages, drop the system ones.

Date: 2025-08-01
Description: shorten and drop
"""


def touches(action, purge=False):
    return {"chat_messages": {"role": {"$in": ["assistant", "system"]}}}


async def up(db):
    await db.chat_messages.update_many({"role": "assistant"}, {"$set": {"content": "short"}})
    await db.chat_messages.delete_many({"role": "system"})


async def verify(db):
    return await db.chat_messages.count_documents({"role": "system"}) == 0
'''


def test_a_restore_replaces_without_upsert_and_inserts_what_is_missing_so_a_sharded_collection_takes_it(
        db, cli, env, tmp_path, sharded_proxy):
    env = {**env, "MIGRATIONS_BACKUP_DIR": str(tmp_path / "backups")}
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "shrink.py").write_text(SHRINK)
    messages(db).insert_many([*chat_messages(8), *({"_id": f"system-{n}", "role": "system"} for n in range(3))])
    before = raw_documents(db)
    assert cli("run_migrations.py", "--migrations-dir", str(folder), "--all", "--backup", env=env).code == 0
    assert db.chat_messages.count_documents({"role": "system"}) == 0

    restored = cli("run_migrations.py", "--migrations-dir", str(folder), "--restore",
                   str(backup_of(tmp_path / "backups", migration="shrink")), "--yes",
                   env={**env, "MONGODB_URL": sharded_proxy.url})

    assert restored.code == 0, restored
    assert raw_documents(db) == before
    assert sharded_proxy.count("update with upsert") == 0
    assert sharded_proxy.count("update", "chat_messages") >= 1 and sharded_proxy.count("insert", "chat_messages") >= 1


def test_replies_lost_mid_restore_are_retried_and_nothing_is_written_twice(db, cli, env, tmp_path, server_url,
                                                                           is_ferretdb):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    messages(db).insert_many(chat_messages(150, with_metadata_every=5))
    before = raw_documents(db)
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    deleted = [document["_id"] for document in db.chat_messages.find({"metadata": None}).limit(10)]
    db.chat_messages.delete_many({"_id": {"$in": deleted}})  # inserted again by the restore
    with proxy_to(server_url) as proxy:  # the server applies the write, the reply is lost
        lost = [proxy.add(Fault(command, "chat_messages", action="lose_reply")) for command in ("update", "insert")]
        restored = cli("run_migrations.py", "--restore", str(backup_of(tmp_path)), "--yes", "--force",
                       env={**env, "MONGODB_URL": proxy.url})

    assert restored.code == 0, restored
    assert [fault.fired for fault in lost] == [1, 1]
    retries = [line for line in lines_of(restored, "WARNING") if "retrying in" in line]
    # a replica set's driver may retry a lost reply itself (retryable writes); a standalone's never does
    assert len(retries) == 2 if is_ferretdb else len(retries) <= 2, restored
    assert raw_documents(db) == before
    entry = db.migrations_changelog.find_one({"action": "restore", "state": {"$ne": "running"}})
    assert (entry["restored"], entry["left"], entry["verified"]) == (120, 0, True)


def test_restore_is_not_fooled_by_a_copy_without_its_post_images(db, cli, env, tmp_path):
    """A backup copied elsewhere without its .after.gz restores as one without post-images: one warning."""
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    messages(db).insert_many(chat_messages(6))
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    copy = tmp_path / "elsewhere.bson.gz"
    shutil.copy(backup_of(tmp_path / "backups"), copy)

    restored = cli("run_migrations.py", "--restore", str(copy), "--yes", env=env)

    assert restored.code == 0, restored
    [warning] = lines_of(restored, "WARNING")
    assert "it has no post-images" in warning, restored


def test_post_images_of_another_backup_or_edited_are_refused_before_any_write(db, cli, env, tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    messages(db).insert_many(chat_messages(6))
    assert cli("run_migrations.py", "--all", "--backup", env=env).code == 0
    saved = backup_of(tmp_path / "backups")
    post_images = saved.with_name(saved.name.replace(".bson.gz", ".after.gz"))
    lines = gzip.decompress(post_images.read_bytes()).splitlines(keepends=True)
    post_images.write_bytes(gzip.compress(b"".join([lines[0], b"absent\n", *lines[2:]])))
    migrated = digest(db)

    refused = cli("run_migrations.py", "--restore", str(saved), "--yes", env=env)

    assert refused.code == 2, refused
    [error] = lines_of(refused, "ERROR")
    assert f"its post-images {post_images}" in error and "was changed after it was written" in error
    assert "move that file away" in error and "Traceback" not in refused.output
    assert digest(db) == migrated

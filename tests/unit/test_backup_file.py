"""Reading a backup file and its post-images (migrator.backup `read`, `read_post_images`): every document
checked before anything is written; no server.

The files are written here as `backup.save` writes them: a gzip member with the sealed manifest line, then one
with the documents' raw BSON (format 3; formats 1 and 2: canonical Extended JSON lines)."""

import gzip
import hashlib
import json
from datetime import UTC, datetime

import bson
import pytest
from bson import Binary, Decimal128, Int64, ObjectId

from migrator import backup
from migrator.errors import MigrationError
from migrator.profile import ferretdb

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DOCUMENTS = [{"_id": ObjectId("650000000000000000000001"), "n": Int64(2**40), "at": datetime(2025, 5, 6, 7, 8, 9),
              "legacy_uuid": Binary(bytes(range(16)), 3), "tags": ["a"]},
             {"_id": "text id", "nested": {"x": None}},
             {"_id": 3, "metadata": {"usedTools": []}}]
NAME = "app-chat_messages-add_metadata-apply-20260102T030405000000Z"


def manifest_for(counted: list[bytes], form: str = backup.FORMAT, **changes) -> dict:
    manifest = {"format": form, "migration": "add_metadata", "migration_checksum": "abc", "action": "apply",
                "purge": False, "database": "app", "collection": "chat_messages", "filter": {"metadata": None},
                "count": len(counted), "sha256": hashlib.sha256(b"".join(counted)).hexdigest(),
                "created_at": CREATED.isoformat(), "toolkit_version": "test", **changes}
    return backup.seal(manifest)


def write(path, manifest: dict, body: list[bytes]):
    path.write_bytes(gzip.compress(json.dumps(manifest).encode() + b"\n") + gzip.compress(b"".join(body)))
    return path


def good_file(tmp_path, documents=DOCUMENTS):
    raws = [bson.encode(document) for document in documents]
    return write(tmp_path / f"{NAME}{backup.SUFFIX}", manifest_for(raws), raws)


def refusal(path, **options) -> str:
    with pytest.raises(MigrationError) as caught:
        backup.read(path, **options)
    assert caught.value.exit_code == 2
    message, prefix = str(caught.value), f"refusing to restore {backup.shown(path)}: "
    assert message.startswith(prefix) and message.endswith("; nothing was changed")
    return message.removeprefix(prefix).removesuffix("; nothing was changed")


def test_a_good_file_is_read_whole_and_gives_back_each_documents_bytes(tmp_path):
    file = backup.read(good_file(tmp_path))
    assert (file.database, file.collection, file.migration, file.action, file.count) == \
        ("app", "chat_messages", "add_metadata", "apply", 3)
    assert file.created_at == CREATED and file.manifest["format"] == backup.FORMAT
    batches = list(file.batches(2))
    assert [len(batch) for batch in batches] == [2, 1]
    entries = [entry for batch in batches for entry in batch]
    assert [entry.raw for entry in entries] == [bson.encode(document) for document in DOCUMENTS]  # byte for byte
    assert [entry.id for entry in entries] == [document["_id"] for document in DOCUMENTS]


def test_a_truncated_file_is_refused(tmp_path):
    path = good_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-20])
    assert refusal(path).startswith("not a readable gzip file, truncated or corrupt (")


def test_a_file_that_is_not_gzip_is_refused(tmp_path):
    path = tmp_path / f"plain{backup.SUFFIX}"
    path.write_text('{"format": "flowise-proxy-migrations backup 3"}\n')
    assert refusal(path).startswith("not a readable gzip file, truncated or corrupt (")


def test_a_changed_document_fails_the_checksum(tmp_path):
    raws = [bson.encode(document) for document in DOCUMENTS]
    manifest = manifest_for(raws)
    raws[1] = bson.encode({**DOCUMENTS[1], "nested": {"x": 1}})
    path = write(tmp_path / f"edited{backup.SUFFIX}", manifest, raws)
    assert refusal(path) == "checksum mismatch: the documents were changed after the backup was written"


@pytest.mark.parametrize("key, value", [("database", "other"), ("action", "rollback"), ("count", 2),
                                        ("created_at", "2030-01-01T00:00:00+00:00"), ("filter", {})])
def test_an_edited_manifest_is_refused(tmp_path, key, value):
    raws = [bson.encode(document) for document in DOCUMENTS]
    path = write(tmp_path / f"edited{backup.SUFFIX}", {**manifest_for(raws), key: value}, raws)
    assert refusal(path) == "manifest checksum mismatch: its manifest was changed after the backup was written"


def test_a_missing_document_is_counted(tmp_path):
    raws = [bson.encode(document) for document in DOCUMENTS]
    path = write(tmp_path / f"short{backup.SUFFIX}", manifest_for(raws), raws[:2])
    assert refusal(path) == "it holds 2 documents, its manifest says 3"


@pytest.mark.parametrize("bad, why", [
    (bson.encode({"no_id": 1}), "document 2 has no _id"),
    (b"\x02\x00\x00\x00", "document 2 is not valid (BadBackup: it does not hold a BSON document's length)"),
    (bson.encode({"_id": 2, "x": "y"})[:-3], "document 2 is not valid (BadBackup: it is cut short or is not BSON)"),
], ids=["no _id", "no length", "cut short"])
def test_a_document_that_is_not_one_is_named(tmp_path, bad, why):
    raws = [bson.encode(DOCUMENTS[0]), bad]
    path = write(tmp_path / f"bad{backup.SUFFIX}", manifest_for(raws), raws)
    assert refusal(path) == why


@pytest.mark.parametrize("manifest, why", [
    ({"format": "something else"}, "its first line is not the manifest of a backup of this toolkit"),
    (backup.seal({"format": backup.FORMAT, "migration": "m"}), "its manifest lacks action, database, collection, "
                                                                "count, sha256, created_at"),
    (backup.seal({"format": backup.FORMAT, "migration": "m", "action": "apply", "database": "d", "collection": "c",
                  "count": True, "sha256": "", "created_at": "x"}), "its manifest's count is not of the right type"),
    (backup.seal({"format": backup.FORMAT, "migration": "m", "action": "drop", "database": "d", "collection": "c",
                  "count": 0, "sha256": "", "created_at": "x"}),
     "its manifest's action is 'drop', not one of apply, rollback"),
    (backup.seal({"format": backup.FORMAT, "migration": "m", "action": "apply", "database": "d", "collection": "c",
                  "count": 0, "sha256": "", "created_at": "yesterday"}),
     "its manifest's created_at 'yesterday' is not an ISO time"),
])
def test_a_manifest_that_is_not_one_is_refused(tmp_path, manifest, why):
    assert refusal(write(tmp_path / f"m{backup.SUFFIX}", manifest, [])) == why


@pytest.mark.parametrize("older", ["flowise-proxy-migrations backup 1", "flowise-proxy-migrations backup 2"])
def test_a_file_of_another_format_is_refused_in_one_line(tmp_path, older):
    lines = [b'{"_id": 1}\n']
    path = write(tmp_path / "old.jsonl.gz", manifest_for(lines, older), lines)
    assert refusal(path) == (f"it is a backup of another format ({older}): this version restores only "
                             "flowise-proxy-migrations backup 3")


def test_no_such_file(tmp_path):
    assert refusal(tmp_path / f"nothing{backup.SUFFIX}") == "no such file"


def test_a_document_the_server_would_refuse_is_named_before_anything_is_written(tmp_path):
    path = good_file(tmp_path, [{"_id": 1, "ok": 1}, {"_id": 2, "price": Decimal128("1.5")}])
    assert refusal(path, refuses=ferretdb().refuses) == \
        "the server would refuse document 2 (a Decimal128 at price)"
    assert backup.read(path).count == 2  # MongoDB takes it


# ----- post-images: the saved documents as the migration left them -----

def write_post_images(file: backup.BackupFile, lines: list[bytes], **changes):
    manifest = backup.seal({"format": backup.POST_IMAGES_FORMAT, "backup": file.path.name,
                            "backup_sha256": file.manifest["sha256"],
                            "backup_manifest_sha256": file.manifest["manifest_sha256"], "count": len(lines),
                            "sha256": hashlib.sha256(b"".join(lines)).hexdigest(), "created_at": CREATED.isoformat(),
                            **changes})
    return write(backup.post_images_path(file.path), manifest, lines)


def post_images_refusal(file) -> str:
    with pytest.raises(MigrationError) as caught:
        backup.read_post_images(file)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_post_images_sit_next_to_their_backup_and_give_each_documents_digest(tmp_path):
    file = backup.read(good_file(tmp_path))
    assert backup.post_images_path(file.path) == tmp_path / f"{NAME}.after.gz"
    assert backup.read_post_images(file) is None  # none written: a migration that failed half-way
    after = [hashlib.sha256(b"after 1").hexdigest(), None, hashlib.sha256(b"after 3").hexdigest()]
    write_post_images(file, [f"{digest or backup.ABSENT}\n".encode() for digest in after])
    assert list(backup.read_post_images(file).digests()) == after


def test_post_images_of_another_backup_are_refused(tmp_path):
    file = backup.read(good_file(tmp_path))
    write_post_images(file, [b"absent\n"] * 3, backup_sha256="0" * 64)
    assert "its post-images " in post_images_refusal(file)
    assert "belongs to another backup; nothing was changed (move that file away" in post_images_refusal(file)


@pytest.mark.parametrize("lines, why", [
    ([b"absent\n"] * 2, "holds 2 lines for 3 documents, or was changed after it was written"),
    ([b"absent\n", b"absent\n", b"not a digest\n"], "has an invalid line 4"),
])
def test_post_images_that_do_not_match_the_backup_are_refused(tmp_path, lines, why):
    file = backup.read(good_file(tmp_path))
    write_post_images(file, lines)
    assert why in post_images_refusal(file)


def test_edited_post_images_are_refused(tmp_path):
    file = backup.read(good_file(tmp_path))
    path = write_post_images(file, [b"absent\n"] * 3)
    manifest = json.loads(gzip.decompress(path.read_bytes()).split(b"\n")[0])
    write(path, {**manifest, "count": 2}, [b"absent\n"] * 2)
    assert "has a manifest that was changed after it was written" in post_images_refusal(file)


def test_a_part_file_and_a_directory_are_refused_saying_what_they_are(tmp_path):
    from migrator.backup.file import read
    from migrator.errors import MigrationError
    part = tmp_path / "db-chat_messages-m-apply-20261204T1000.bson.gz.part"
    part.write_bytes(b"\x1f\x8b truncated")
    (tmp_path / "db-chat_messages-m-apply-20261204T0900.bson.gz").write_bytes(b"")
    with pytest.raises(MigrationError, match="incomplete backup: it was being written when its run stopped"):
        read(part)
    with pytest.raises(MigrationError, match="it is a directory: name one backup file in it, e.g. .newest first. "
                                             "db-chat_messages-m-apply-20261204T0900.bson.gz"):
        read(tmp_path)

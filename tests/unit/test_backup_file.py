"""Reading a backup file (migrator/backup.py `read`): every line checked before anything is written; no server.

The files are written here as `backup.save` writes them: a gzip member with the sealed manifest line, then one
with the documents in canonical Extended JSON."""

import gzip
import hashlib
import json
from datetime import datetime, timezone

import pytest
from bson import Decimal128, Int64, ObjectId

from migrator import backup
from migrator.errors import MigrationError

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
DOCUMENTS = [{"_id": ObjectId("650000000000000000000001"), "n": Int64(2**40), "at": datetime(2025, 5, 6, 7, 8, 9),
              "tags": ["a"]},
             {"_id": "text id", "nested": {"x": None}},
             {"_id": 3, "metadata": {"usedTools": []}}]


def manifest_for(lines: list[bytes], **changes) -> dict:
    manifest = {"format": backup.FORMAT, "migration": "add_metadata", "migration_checksum": "abc", "action": "apply",
                "purge": False, "database": "app", "collection": "chat_messages", "filter": {"metadata": None},
                "count": len(lines), "sha256": hashlib.sha256(b"".join(lines)).hexdigest(),
                "created_at": CREATED.isoformat(), "toolkit_version": "test", **changes}
    return backup.seal(manifest)


def write(path, manifest: dict, lines: list[bytes]):
    path.write_bytes(gzip.compress(json.dumps(manifest).encode() + b"\n") + gzip.compress(b"".join(lines)))
    return path


def good_file(tmp_path, documents=DOCUMENTS, **changes):
    lines = [backup.line_of(document) for document in documents]
    return write(tmp_path / "app-chat_messages-add_metadata-apply-x.jsonl.gz", manifest_for(lines, **changes), lines)


def refusal(path, **options) -> str:
    with pytest.raises(MigrationError) as caught:
        backup.read(path, **options)
    assert caught.value.exit_code == 2
    message, prefix = str(caught.value), f"refusing to restore {backup.shown(path)}: "
    assert message.startswith(prefix) and message.endswith("; nothing was changed")
    return message.removeprefix(prefix).removesuffix("; nothing was changed")


def test_a_good_file_is_read_whole_with_its_types(tmp_path):
    file = backup.read(good_file(tmp_path))
    assert (file.database, file.collection, file.migration, file.action, file.count) == \
        ("app", "chat_messages", "add_metadata", "apply", 3)
    assert file.created_at == CREATED and file.manifest_covered
    batches = list(file.batches(2))
    assert [len(batch) for batch in batches] == [2, 1]
    documents = [document for batch in batches for _, document in batch]
    assert documents == DOCUMENTS
    assert isinstance(documents[0]["n"], Int64) and isinstance(documents[0]["_id"], ObjectId)
    assert [line for batch in batches for line, _ in batch] == [backup.line_of(d) for d in DOCUMENTS]


def test_a_truncated_file_is_refused(tmp_path):
    path = good_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-20])
    assert refusal(path).startswith("not a readable gzip file, truncated or corrupt (")


def test_a_file_that_is_not_gzip_is_refused(tmp_path):
    path = tmp_path / "plain.jsonl.gz"
    path.write_text('{"format": "flowise-proxy-migrations backup 2"}\n')
    assert refusal(path).startswith("not a readable gzip file, truncated or corrupt (")


def test_a_changed_document_fails_the_checksum(tmp_path):
    lines = [backup.line_of(document) for document in DOCUMENTS]
    manifest = manifest_for(lines)
    lines[1] = backup.line_of({**DOCUMENTS[1], "nested": {"x": 1}})
    path = write(tmp_path / "edited.jsonl.gz", manifest, lines)
    assert refusal(path) == "checksum mismatch: the documents were changed after the backup was written"


@pytest.mark.parametrize("key, value", [("database", "other"), ("action", "rollback"), ("count", 2),
                                        ("created_at", "2030-01-01T00:00:00+00:00"), ("filter", {})])
def test_an_edited_manifest_is_refused(tmp_path, key, value):
    lines = [backup.line_of(document) for document in DOCUMENTS]
    path = write(tmp_path / "edited.jsonl.gz", {**manifest_for(lines), key: value}, lines)
    assert refusal(path) == "manifest checksum mismatch: its manifest was changed after the backup was written"


def test_a_missing_or_extra_document_is_counted(tmp_path):
    lines = [backup.line_of(document) for document in DOCUMENTS]
    path = write(tmp_path / "short.jsonl.gz", manifest_for(lines), lines[:2])
    assert refusal(path) == "it holds 2 documents, its manifest says 3"


@pytest.mark.parametrize("line, why", [(b'{"no_id": 1}\n', "line 3 is not a document with an _id"),
                                       (b"[1, 2]\n", "line 3 is not a document with an _id"),
                                       (b'{"_id": 1\n', "line 3 is not valid (Extended) JSON (JSONDecodeError)"),
                                       (b'{"_id": {"$oid": "nothex"}}\n', "line 3 is not valid (Extended) JSON")])
def test_a_line_that_is_not_a_document_is_named(tmp_path, line, why):
    lines = [backup.line_of(DOCUMENTS[0]), line]
    path = write(tmp_path / "bad-line.jsonl.gz", manifest_for(lines), lines)
    assert refusal(path).startswith(why)


@pytest.mark.parametrize("manifest, why", [
    ({"format": "something else"}, "its first line is not the manifest of a backup of this toolkit"),
    ({"format": backup.FORMAT_1, "migration": "m"}, "its manifest lacks action, database, collection, count, "
                                                     "sha256, created_at"),
    ({"format": backup.FORMAT_1, "migration": "m", "action": "apply", "database": "d", "collection": "c",
      "count": True, "sha256": "", "created_at": "x"}, "its manifest's count is not of the right type"),
    ({"format": backup.FORMAT_1, "migration": "m", "action": "drop", "database": "d", "collection": "c",
      "count": 0, "sha256": "", "created_at": "x"}, "its manifest's action is 'drop', not one of apply, rollback"),
    ({"format": backup.FORMAT_1, "migration": "m", "action": "apply", "database": "d", "collection": "c",
      "count": 0, "sha256": "", "created_at": "yesterday"}, "its manifest's created_at 'yesterday' is not an ISO time"),
])
def test_a_manifest_that_is_not_one_is_refused(tmp_path, manifest, why):
    assert refusal(write(tmp_path / "m.jsonl.gz", manifest, [])) == why


def test_a_file_of_format_1_is_read_but_says_its_manifest_is_not_covered(tmp_path):
    lines = [backup.line_of(document) for document in DOCUMENTS]
    manifest = {k: v for k, v in manifest_for(lines, format=backup.FORMAT_1).items() if k != "manifest_sha256"}
    file = backup.read(write(tmp_path / "old.jsonl.gz", manifest, lines))
    assert file.count == 3 and not file.manifest_covered


def test_no_such_file(tmp_path):
    assert refusal(tmp_path / "nothing.jsonl.gz") == "no such file"


def test_a_document_the_server_would_refuse_is_named_before_anything_is_written(tmp_path):
    path = good_file(tmp_path, [{"_id": 1, "ok": 1}, {"_id": 2, "price": Decimal128("1.5")}])
    assert refusal(path, refuses=backup.ferretdb_refuses) == \
        "the server would refuse document 2 (a Decimal128 at price)"
    assert backup.read(path).count == 2  # MongoDB takes it

"""The proof of migrations/add_metadata_to_chat_messages.py: --selftest --chaos on a small fixture, against the test
server: its checks, then faults on the wire (a connection cut, a reply lost, the process killed) during its runs.

Written from the template `run_migrations.py --new` uses for a new migration's test. FIXTURE: messages as the
proxy saves them, one in five already holding metadata the app wrote (which the migration must leave alone).
"""

from pathlib import Path

import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from migrator.migration import load_migration
from sample_messages import chat_messages

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "add_metadata_to_chat_messages.py"
FIXTURE = {"chat_messages": chat_messages(40, with_metadata_every=5)}  # {collection: [documents]}


def contents(db) -> dict:
    """Every document of every collection, as its exact bytes."""
    raw = CodecOptions(document_class=RawBSONDocument)
    return {name: [document.raw for document in db.get_collection(name, codec_options=raw).find().sort("_id", 1)]
            for name in sorted(db.list_collection_names())}


def test_add_metadata_to_chat_messages_passes_its_selftest(db, cli):
    migration = load_migration(MIGRATION)
    if migration.draft:
        pytest.skip(f"{MIGRATION.name} is a draft: {'; '.join(migration.draft_reasons)}")
    for collection, documents in FIXTURE.items():
        db[collection].insert_many(documents)
    before = contents(db)

    result = cli("run_migrations.py", "--selftest", "add_metadata_to_chat_messages", "--chaos", "--faults", "12",
                 "--migrations-dir", str(MIGRATION.parent))

    assert result.code == 0, result
    assert "self-test and chaos check passed" in result.output, result
    assert contents(db) == before  # the real collections were only read

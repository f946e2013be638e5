"""The schema plan and its drift against the real server: Engine.schema_plan, --plan, --check, --status, /health.

The indexes a schema run would build are made by hand here, as `--all` makes them (migrator/schema/build.py)."""

import asyncio
import json
import shutil
import textwrap
from datetime import UTC, datetime

import pytest
from pymongo import AsyncMongoClient

from conftest import MIGRATIONS, RUNNER, status_json
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


def test_no_spec_module_no_plan(db, server_url, tmp_path):
    shutil.copy(MIGRATIONS / "add_metadata_to_chat_messages.py", tmp_path)
    assert schema_plan(server_url, db, tmp_path) is None


MISSING = ["schema: missing index chat_messages.session_id_1_created_at_1 {session_id: 1, created_at: 1}",
           "schema: missing index chat_messages.user_id_1 {user_id: 1}"]


def test_on_a_fresh_database_check_names_the_missing_indexes_and_plan_lists_them(db, cli):
    db.chat_messages.insert_one({"session_id": "s", "user_id": "u", "metadata": None})
    db.chat_messages.create_index("content", name="by_hand")

    check = cli(RUNNER, "--check")
    assert check.code == 6, check
    lines = check.stdout.splitlines()
    assert lines[0].startswith("add_metadata_to_chat_messages: pending")
    assert lines[1:] == [*MISSING, "unknown index (not declared, kept): chat_messages.by_hand {content: 1}"]

    plan = cli(RUNNER, "--plan")
    assert plan.code == 0, plan
    assert plan.stdout.splitlines() == [
        "1 pending migration:",
        "  add_metadata_to_chat_messages  set metadata=null on chat_messages documents that lack the field",
        "schema: 2 steps to run:",
        "  create chat_messages.session_id_1_created_at_1 {session_id: 1, created_at: 1}",
        "  create chat_messages.user_id_1 {user_id: 1}",
        "unknown index (not declared, kept): chat_messages.by_hand {content: 1}"]
    planned = json.loads(cli(RUNNER, "--plan", "--json").stdout)
    assert planned["pending_migrations"] == ["add_metadata_to_chat_messages"]
    assert [(step["kind"], step["index"]["name"], step["index"]["keys"]) for step in planned["schema"]["steps"]] == [
        ("create", "session_id_1_created_at_1", [{"field": "session_id", "direction": 1},
                                                 {"field": "created_at", "direction": 1}]),
        ("create", "user_id_1", [{"field": "user_id", "direction": 1}])]
    assert [index["name"] for index in planned["schema"]["unknown"]] == ["by_hand"]
    assert [index["name"] for index in db.chat_messages.list_indexes()] == ["_id_", "by_hand"]  # nothing built


def test_check_is_0_once_the_indexes_are_as_declared_and_6_naming_one_dropped_by_hand(db, cli):
    db.chat_messages.insert_one({"session_id": "s", "user_id": "u"})
    assert cli(RUNNER, "--all").code == 0
    build_declared(db)
    db.chat_messages.create_index("content", name="by_hand")

    check = cli(RUNNER, "--check")
    assert check.code == 0, check
    assert check.stdout.splitlines() == ["unknown index (not declared, kept): chat_messages.by_hand {content: 1}",
                                         "up to date: the one migration is applied; schema as declared"]
    status = cli(RUNNER, "--status")
    assert "schema: as declared (2 declared indexes in place)" in status.stdout.splitlines()
    schema_row = status_json(cli)["schema"]
    assert (schema_row["state"], schema_row["drift"]) == ("current", [])

    db.chat_messages.drop_index("user_id_1")
    check = cli(RUNNER, "--check")
    assert check.code == 6, check
    assert MISSING[1] in check.stdout.splitlines() and MISSING[0] not in check.stdout
    assert "by_hand" in check.stdout  # unknown, still kept
    assert MISSING[1] in cli(RUNNER, "--status").stdout.splitlines()
    schema_row = status_json(cli)["schema"]
    assert schema_row["state"] == "drift"
    assert schema_row["drift"] == [{"name": "chat_messages.user_id_1", "kind": "missing_index",
                                    "text": MISSING[1].removeprefix("schema: ")}]
    assert sorted(index["name"] for index in db.chat_messages.list_indexes()) == [
        "_id_", "by_hand", "session_id_1_created_at_1"]  # --check changes nothing


def test_what_ferretdb_cannot_build_is_skipped_with_its_reason_and_is_no_drift(db, cli, tmp_path, is_ferretdb,
                                                                            server_profile):
    if not is_ferretdb:
        pytest.skip("MongoDB builds TTL indexes and has validators")
    (tmp_path / "_schema.py").write_text(textwrap.dedent("""
        from beanie import Document
        from pymongo import IndexModel

        class Audit(Document):
            at: str

            class Settings:
                name = "audit"
                indexes = [IndexModel([("at", 1)], expireAfterSeconds=60)]
                validation = True

        MODELS = [Audit]
    """))
    plan = cli(RUNNER, "--plan", "--migrations-dir", str(tmp_path))
    assert plan.code == 0, plan
    label = server_profile.label
    assert plan.stdout.splitlines() == [
        "0 pending migrations", "schema: 0 steps to run:",
        f"  skip audit.at_1 {{at: 1}}, expireAfterSeconds: 60: {label} cannot build a TTL index (expireAfterSeconds)",
        f"  skip validator of audit: {label} has no validators"]
    check = cli(RUNNER, "--check", "--migrations-dir", str(tmp_path))
    assert check.code == 0, check


def test_a_broken_spec_module_is_exit_2_for_plan_and_a_reason_of_check(db, cli, tmp_path):
    (tmp_path / "_schema.py").write_text("MODELS = [\n")
    plan = cli(RUNNER, "--plan", "--migrations-dir", str(tmp_path))
    assert plan.code == 2 and "_schema.py: syntax error at line 1" in plan.stderr, plan
    check = cli(RUNNER, "--check", "--migrations-dir", str(tmp_path))
    assert check.code == 6, check
    assert check.stdout.splitlines() == [
        "schema: the schema's spec module is broken: _schema.py: syntax error at line 1: '[' was never closed"]
    assert status_json(cli, "--migrations-dir", str(tmp_path))["schema"]["state"] == "broken"

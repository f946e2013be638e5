"""The engine as a deploy script calls it, in-process against the real server: docs/python-api.md's
example, and the safe workflows' refusals, lock and changelog without the command line."""

import asyncio
import re
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from conftest import write_migration
from migrator import Engine, MigrationError, Options, events
from migrator.commands import select_last
from migrator.discovery import discover
from sample_messages import chat_messages

PYTHON_API = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
PROJECT_MIGRATION = "add_metadata_to_chat_messages"


def readme_example() -> str:
    [code] = re.findall(r"```python\n(.*?)```", PYTHON_API.read_text(encoding="utf-8"), flags=re.DOTALL)
    return code


def lock_epochs(db) -> list[dict]:
    return list(db.migrations_lock.find())


def test_the_readme_example_applies_the_pending_migrations_in_process(db, server_url, monkeypatch, capsys):
    monkeypatch.delenv("ENV_FILE", raising=False)
    monkeypatch.setenv("MONGODB_URL", server_url)
    monkeypatch.setenv("MONGODB_DATABASE_NAME", db.name)
    db.chat_messages.insert_many(chat_messages(20))
    example: dict = {"__name__": "deploy"}  # not "__main__": the test calls main() itself
    exec(compile(readme_example(), "README.md", "exec"), example)

    assert example["main"]() == 0
    assert capsys.readouterr().out.splitlines()[-1] == "migrations: 1 of 1 pending applied and verified"
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0
    entries = list(db.migrations_changelog.find({"name": PROJECT_MIGRATION}, sort=[("_id", 1)]))
    assert [(e["action"], e["state"]) for e in entries] == [("apply", "running"), ("apply", "applied")]
    assert entries[1]["modified"] == 18 and entries[0]["run_id"] == entries[1]["run_id"]
    [epoch] = lock_epochs(db)
    assert epoch["released_at"] is not None  # held for the run, released at its end

    recorded = db.migrations_changelog.count_documents({})  # the migration's, then the schema's (_schema.py)
    assert example["main"]() == 0  # again: nothing pending, nothing recorded
    assert capsys.readouterr().out.splitlines()[-1] == "migrations: 0 of 0 pending applied and verified"
    assert db.migrations_changelog.count_documents({}) == recorded == 4


class Heard:
    """A reporter (migrator.events): what it heard of the workflows' applying, applied, allowed_changed and
    rolled_back events."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        if isinstance(event, events.Applying):
            self.events.append(("applying", event.migration))
        elif isinstance(event, events.MigrationApplied):
            self.events.append(("applied", event.result.migration.name, event.result.outcome.modified))
        elif isinstance(event, events.AllowedChanged):
            self.events.append(("allowed_changed", event.migration))
        elif isinstance(event, events.MigrationRolledBack):
            self.events.append(("rolled_back", event.result.migration.name, event.result.outcome.modified))


def on_engine(server_url, db, folder, work, report=events.silent):
    async def run():
        client = AsyncMongoClient(server_url, tz_aware=True)
        try:
            return await work(Engine(client[db.name], discover(folder), report=report))
        finally:
            await client.close()
    return asyncio.run(run())


def test_a_changed_migration_is_refused_in_process_without_allow_changed(db, server_url, tmp_path):
    db.chat_messages.insert_many(chat_messages(6))
    write_migration(tmp_path, "tag")
    heard = Heard()
    report = on_engine(server_url, db, tmp_path, lambda engine: engine.apply_pending(), heard)
    assert [r.migration.name for r in report.applied] == ["tag"] and report.pending == 1
    assert heard.events == [("applying", "tag"), ("applied", "tag", 6)]

    write_migration(tmp_path, "tag", body='''
        async def up(db):
            return await db.chat_messages.update_many({}, {"$set": {"tag": 2}})

        async def verify(db):
            return await db.chat_messages.count_documents({"tag": {"$ne": 2}}) == 0
        ''')
    before = (list(db.chat_messages.find()), list(db.migrations_changelog.find()), lock_epochs(db))
    with pytest.raises(MigrationError) as refused:
        on_engine(server_url, db, tmp_path, lambda engine: engine.apply_one(discover(tmp_path).migrations[0]))
    assert str(refused.value) == ("applied migration file changed since it ran: tag.py; restore it, or write a new "
                                  "migration for the new change (--allow-changed runs anyway)")
    assert refused.value.exit_code == 1
    assert (list(db.chat_messages.find()), list(db.migrations_changelog.find()), lock_epochs(db)) == before

    heard = Heard()
    allowed = on_engine(server_url, db, tmp_path, lambda engine: engine.apply_pending(Options(allow_changed=True)),
                        heard)
    assert (allowed.pending, allowed.applied, heard.events) == (0, [], [("allowed_changed", "tag")])


def test_a_broken_file_is_shown_by_the_engine_and_every_workflow_that_runs_refuses_it(db, server_url, tmp_path):
    db.chat_messages.insert_many(chat_messages(6))
    write_migration(tmp_path, "tag")
    (tmp_path / "broken.py").write_text('"""Date: 2025-09-01"""\nasync def up(db)\n    pass\n')

    async def work(engine):
        rows = await engine.status()
        refusals = []
        for workflow in (engine.apply_pending(), engine.apply_one(engine.migrations[0]),
                         engine.plan_rollback(lambda migrations, latest: migrations),
                         engine.mark_applied(engine.migrations), engine.selftest(engine.migrations[0])):
            with pytest.raises(MigrationError) as refused:
                await workflow
            refusals.append((str(refused.value), refused.value.exit_code))
        return rows, refusals

    rows, refusals = on_engine(server_url, db, tmp_path, work)
    assert [(row.name, row.state, row.broken) for row in rows] == [
        ("tag", "pending", ""), ("broken", "pending", "broken.py: syntax error at line 2: expected ':'")]
    assert set(refusals) == {("a migration file is broken: broken.py: syntax error at line 2: expected ':': fix it or "
                              "move it out of the migrations folder; nothing runs until then, and nothing was changed",
                              2)}
    assert db.chat_messages.count_documents({"tag": {"$exists": True}}) == 0 and lock_epochs(db) == []


def test_a_rollback_from_python_is_planned_then_done_under_the_lock(db, server_url, tmp_path):
    db.chat_messages.insert_many(chat_messages(4))
    write_migration(tmp_path, "tag", body='''
        async def up(db):
            return await db.chat_messages.update_many({"tag": {"$exists": False}}, {"$set": {"tag": 1}})

        async def verify(db):
            return await db.chat_messages.count_documents({"tag": {"$exists": False}}) == 0

        async def rollback(db):
            return await db.chat_messages.update_many({"tag": {"$exists": True}}, {"$unset": {"tag": ""}})
        ''')
    heard = Heard()

    async def apply_then_roll_back(engine):
        await engine.apply_pending()
        targets = await engine.plan_rollback(select_last, Options(backup=False))
        heard.events.clear()  # what the rollback tells
        return [m.name for m in targets], await engine.rollback(targets, Options(backup=False))

    planned, done = on_engine(server_url, db, tmp_path, apply_then_roll_back, heard)
    assert planned == ["tag"] and [r.migration.name for r in done] == ["tag"]
    assert heard.events == [("rolled_back", "tag", 4)]
    assert db.chat_messages.count_documents({"tag": {"$exists": True}}) == 0
    latest = db.migrations_changelog.find_one({"name": "tag"}, sort=[("_id", -1)])
    assert (latest["action"], latest["state"]) == ("rollback", "rolled_back")
    assert lock_epochs(db) and all(epoch["released_at"] is not None for epoch in lock_epochs(db))

"""The first migration, run as its own script and through the runner, against the real server."""

import re

from conftest import without_timestamps
from sample_messages import chat_messages

SCRIPT = "add_metadata_to_chat_messages.py"
RATE = re.compile(r", [\d,.]+ \w+/s.*")  # "20 ids, 1,234 ids/s" and "..., 2,150 docs/s, 28 s left"


def by_id(collection):
    return {doc["_id"]: doc for doc in collection.find()}


def test_forward_adds_null_metadata_only_where_missing_and_keeps_everything_else(db, cli):
    db.chat_messages.insert_many(chat_messages(50, with_metadata_every=5))
    before = by_id(db.chat_messages)

    result = cli(SCRIPT)

    assert result.code == 0, result
    after = by_id(db.chat_messages)
    assert after.keys() == before.keys()
    for _id, old in before.items():
        new = after[_id]
        if "metadata" in old:
            assert new == old  # app-written metadata kept as it was
        else:
            assert new == {**old, "metadata": None}
    assert "documents (100%)" in result.output and "; 40 modified" in result.output
    assert "modified 40 documents" in result.output
    assert "after: total=50, with_metadata=50, without_metadata=0: verified" in result.output


def test_second_run_modifies_nothing_and_says_so(db, cli):
    db.chat_messages.insert_many(chat_messages(10))
    assert cli(SCRIPT).code == 0
    snapshot = by_id(db.chat_messages)

    again = cli(SCRIPT)

    assert again.code == 0, again
    assert "modified 0 documents: nothing to change" in again.output
    assert by_id(db.chat_messages) == snapshot


def test_verify_fails_before_and_passes_after(db, cli):
    db.chat_messages.insert_many(chat_messages(12, with_metadata_every=4))

    before = cli(SCRIPT, "--verify")
    assert before.code == 4, before
    assert "NOT in place (total=12, with_metadata=3, without_metadata=9)" in before.output

    cli(SCRIPT)
    after = cli(SCRIPT, "--verify")
    assert after.code == 0, after
    assert "ok (total=12, with_metadata=12, without_metadata=0)" in after.output


def test_dry_run_counts_and_writes_nothing(db, cli):
    db.chat_messages.insert_many(chat_messages(30, with_metadata_every=3))
    snapshot = by_id(db.chat_messages)

    result = cli(SCRIPT, "--dry-run")

    assert result.code == 0, result
    assert "would change 20 documents; nothing written" in result.output
    assert by_id(db.chat_messages) == snapshot
    assert set(db.list_collection_names()) == {"chat_messages"}


def test_rollback_removes_only_what_it_added_and_keeps_app_metadata(db, cli):
    db.chat_messages.insert_many(chat_messages(20, with_metadata_every=4))
    original = by_id(db.chat_messages)
    cli(SCRIPT)
    # The app writes metadata on one migrated message after the migration.
    late = db.chat_messages.find_one({"metadata": None})
    db.chat_messages.update_one({"_id": late["_id"]}, {"$set": {"metadata": [{"event": "usedTools", "data": []}]}})

    result = cli(SCRIPT, "--rollback", "--yes")

    assert result.code == 0, result
    assert "rolled back: 14 documents changed" in result.output
    assert "app_metadata_kept=6" in result.output
    assert "rollback verified (left_to_undo=0)" in result.output
    after = by_id(db.chat_messages)
    for _id, old in original.items():
        if _id == late["_id"]:
            assert after[_id]["metadata"] == [{"event": "usedTools", "data": []}]
        else:
            assert after[_id] == old


def test_rollback_purge_removes_app_metadata_too_with_a_warning(db, cli):
    db.chat_messages.insert_many(chat_messages(8, with_metadata_every=2))
    cli(SCRIPT)

    result = cli(SCRIPT, "--rollback", "--purge", "--yes")

    assert result.code == 0, result
    assert "WARNING" in result.output and "--purge also removes data the app wrote" in result.output
    assert db.chat_messages.count_documents({"metadata": {"$exists": True}}) == 0
    assert db.chat_messages.count_documents({}) == 8


def test_rollback_without_yes_on_a_non_terminal_refuses_and_changes_nothing(db, cli):
    db.chat_messages.insert_many(chat_messages(6))
    cli(SCRIPT)
    snapshot = by_id(db.chat_messages)

    result = cli(SCRIPT, "--rollback", input="yes\n")  # piped stdin is not a terminal: no answer counts

    assert result.code == 2, result
    assert "refusing to roll back add_metadata_to_chat_messages" in result.output
    assert "Traceback" not in result.output
    assert by_id(db.chat_messages) == snapshot


def test_empty_collection_says_so(db, cli):
    db.create_collection("chat_messages")
    result = cli(SCRIPT)
    assert result.code == 0, result
    assert "collection is empty: nothing to migrate" in result.output


def test_missing_collection_says_so_and_creates_nothing(db, cli):
    db.other.insert_one({"x": 1})
    result = cli(SCRIPT)
    assert result.code == 0, result
    assert "collection chat_messages not found: nothing to migrate" in result.output
    assert "chat_messages" not in db.list_collection_names()


def test_standalone_script_and_runner_agree(mongo, db, cli, env):
    db.chat_messages.insert_many(chat_messages(25, with_metadata_every=5))
    twin = mongo[db.name.replace("_test", "b_test")]
    twin.chat_messages.insert_many(chat_messages(25, with_metadata_every=5))
    try:
        alone = cli(SCRIPT)
        runner = cli("run_migrations.py", "--migration", "add_metadata_to_chat_messages",
                     env={**env, "MONGODB_DATABASE_NAME": twin.name})

        assert alone.code == runner.code == 0
        lines = lambda r: [RATE.sub("", line).split(" in ")[0]  # noqa: E731 (the rates and times differ)
                           for line in without_timestamps(r.output).splitlines() if "add_metadata" in line]
        assert lines(alone) == lines(runner)
        strip_ids = lambda c: sorted(str(sorted(d.items())) for d in c.find({}, {"_id": 0}))  # noqa: E731
        assert strip_ids(db.chat_messages) == strip_ids(twin.chat_messages)
    finally:
        mongo.drop_database(twin.name)

"""--all builds the declared schema (a _schema.py of a migrations folder of the test's own), recorded as "schema";
a unique index over duplicates is refused before anything changes; --rollback schema undoes a run. Real server."""

import textwrap

import pytest

from conftest import RUNNER, indexes, plant_lock, schema_runs, the_error, without_timestamps

SCHEMA = '''
    from pymongo import IndexModel

    INDEXES = {"chat_messages": [IndexModel([("session_id", 1), ("created_at", 1)]),
                                 IndexModel([("user_id", 1)]){more}]}
    '''
UNIQUE_SEQ = ', IndexModel([("session_id", 1), ("seq", 1)], unique=True, name="session_seq")'
BOTH = {"_id_": {"_id": 1}, "session_id_1_created_at_1": {"session_id": 1, "created_at": 1},
        "user_id_1": {"user_id": 1}}


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "migrations"
    path.mkdir()
    declare(path)
    return path


def declare(folder, more: str = "", schema: str = SCHEMA) -> None:
    (folder / "_schema.py").write_text(textwrap.dedent(schema.replace("{more}", more)))


def messages(count: int, duplicates: int = 0) -> list[dict]:
    """Ten sessions of `count` messages, (session_id, seq) unique but for `duplicates` more of (s3, 4)."""
    found = [{"session_id": f"s{n % 10}", "seq": n // 10, "user_id": f"u{n % 7}", "created_at": n}
             for n in range(count)]
    return found + [{"session_id": "s3", "seq": 4, "user_id": "u0", "created_at": -n} for n in range(duplicates)]


def test_all_builds_the_declared_indexes_records_them_and_then_has_nothing_to_do(cli, db, folder):
    db.chat_messages.insert_many(messages(300))
    first = cli(RUNNER, "--all", "--migrations-dir", str(folder))
    assert first.code == 0, first
    assert indexes(db) == BOTH
    lines = without_timestamps(first.stderr)
    assert "INFO    chat_messages: building index session_id_1_created_at_1 (300 documents) ..." in lines
    assert "INFO    chat_messages: index user_id_1 built in " in lines
    assert "schema applied: 2 indexes created in " in lines
    assert schema_runs(db) == [("apply", "running", [], []),
                               ("apply", "applied", ["session_id_1_created_at_1", "user_id_1"], [])]
    history = cli(RUNNER, "--history", "schema", "--migrations-dir", str(folder))
    assert [line.split()[3:5] for line in history.stdout.splitlines() if " schema " in line] == [
        ["apply", "running"], ["apply", "applied"]]
    status = cli(RUNNER, "--status", "--migrations-dir", str(folder))
    assert "schema: last run applied at " in status.stdout and ": created 2, dropped 0, adopted 0" in status.stdout

    again = cli(RUNNER, "--all", "--migrations-dir", str(folder))
    assert again.code == 0 and "building" not in again.output, again
    assert len(schema_runs(db)) == 2


def test_an_index_dropped_by_hand_is_built_again_and_one_added_by_hand_is_kept(cli, db, folder):
    db.chat_messages.insert_many(messages(100))
    assert cli(RUNNER, "--all", "--migrations-dir", str(folder)).code == 0
    db.chat_messages.drop_index("user_id_1")
    db.chat_messages.create_index([("role", 1)], name="by_hand")

    repaired = cli(RUNNER, "--all", "--migrations-dir", str(folder))
    assert repaired.code == 0, repaired
    assert indexes(db) == {**BOTH, "by_hand": {"role": 1}}
    assert schema_runs(db)[-1] == ("apply", "applied", ["user_id_1"], [])


def test_a_unique_index_over_duplicates_is_refused_before_anything_is_built(cli, db, folder):
    db.chat_messages.insert_many(messages(200, duplicates=2))
    declare(folder, UNIQUE_SEQ)
    documents = list(db.chat_messages.find(sort=[("_id", 1)]))

    refused = cli(RUNNER, "--all", "--migrations-dir", str(folder))
    assert refused.code == 1, refused
    assert "cannot build the unique index chat_messages.session_seq {session_id: 1, seq: 1}, unique: 3 documents " \
           "have session_id='s3', seq=4" in the_error(refused)
    assert "nothing changed" in the_error(refused) and "building" not in refused.output
    assert indexes(db) == {"_id_": {"_id": 1}}
    assert list(db.chat_messages.find(sort=[("_id", 1)])) == documents
    assert schema_runs(db) == []


def test_rollback_schema_drops_what_the_run_created_and_builds_again_what_it_dropped(cli, db, folder):
    db.chat_messages.insert_many(messages(100))
    assert cli(RUNNER, "--all", "--migrations-dir", str(folder)).code == 0
    # user_id_1 no longer declared (the toolkit built it: it goes), a unique one instead
    declare(folder, schema=SCHEMA.replace('IndexModel([("user_id", 1)])', UNIQUE_SEQ.lstrip(", ")))
    db.chat_messages.create_index([("role", 1)], name="by_hand")
    assert cli(RUNNER, "--all", "--migrations-dir", str(folder)).code == 0
    assert set(indexes(db)) == {"_id_", "session_id_1_created_at_1", "session_seq", "by_hand"}
    assert schema_runs(db)[-1] == ("apply", "applied", ["session_seq"], ["user_id_1"])

    undone = cli(RUNNER, "--rollback", "schema", "--yes", "--migrations-dir", str(folder))
    assert undone.code == 0, undone
    assert "schema rollback: will drop chat_messages.session_seq {session_id: 1, seq: 1}, unique" in undone.stderr
    assert indexes(db) == {**BOTH, "by_hand": {"role": 1}}
    assert schema_runs(db)[-1] == ("rollback", "rolled_back", ["user_id_1"], ["session_seq"])

    first = cli(RUNNER, "--rollback", "schema", "--yes", "--migrations-dir", str(folder))
    assert first.code == 0 and indexes(db) == {"_id_": {"_id": 1}, "by_hand": {"role": 1}}, first
    nothing = cli(RUNNER, "--rollback", "schema", "--yes", "--migrations-dir", str(folder))
    assert nothing.code == 0 and "nothing to roll back" in nothing.stderr, nothing


def test_all_dry_run_lists_the_schema_steps_and_refuses_duplicates_as_the_run_would(cli, db, folder):
    db.chat_messages.insert_many(messages(50))
    listed = cli(RUNNER, "--all", "--dry-run", "--migrations-dir", str(folder))
    assert listed.code == 0, listed
    lines = without_timestamps(listed.stderr)
    assert "INFO    schema: dry run: would create chat_messages.user_id_1 {user_id: 1}" in lines
    assert "INFO    schema: dry run: would create chat_messages.session_id_1_created_at_1 " in lines

    db.chat_messages.insert_many(messages(0, duplicates=2))
    declare(folder, UNIQUE_SEQ)
    refused = cli(RUNNER, "--all", "--dry-run", "--migrations-dir", str(folder))
    assert refused.code == 1 and "3 documents have session_id='s3', seq=4" in the_error(refused), refused
    assert indexes(db) == {"_id_": {"_id": 1}} and db.migrations_changelog.count_documents({}) == 0


def test_a_failed_run_records_what_it_built_and_its_rollback_drops_it(cli, db, folder):
    db.chat_messages.insert_many(messages(30))
    db.chat_messages.create_index([("role", 1)], name="user_id_1")  # by hand: the name the second build needs
    failed = cli(RUNNER, "--all", "--migrations-dir", str(folder))
    assert failed.code == 1, failed
    assert "ERROR   chat_messages: building index user_id_1: An existing index has the same name" in the_error(failed)
    assert schema_runs(db)[-1] == ("apply", "failed", ["session_id_1_created_at_1"], [])
    assert "schema: last run failed at " in cli(RUNNER, "--status", "--migrations-dir", str(folder)).stdout

    undone = cli(RUNNER, "--rollback", "schema", "--yes", "--migrations-dir", str(folder))
    assert undone.code == 0, undone
    assert indexes(db) == {"_id_": {"_id": 1}, "user_id_1": {"role": 1}}


def test_the_schema_is_built_under_the_migration_lock(cli, db, folder):
    db.chat_messages.insert_many(messages(20))
    plant_lock(db, expires_in_s=300)  # another runner's, live
    waited = cli(RUNNER, "--all", "--lock-timeout", "0.5", "--migrations-dir", str(folder))
    assert waited.code == 3, waited
    assert indexes(db) == {"_id_": {"_id": 1}} and schema_runs(db) == []

    db.migrations_lock.delete_many({})
    assert cli(RUNNER, "--all", "--migrations-dir", str(folder)).code == 0
    db.migrations_lock.delete_many({})  # the released lock, left by that run
    plant_lock(db, expires_in_s=300)
    undo = cli(RUNNER, "--rollback", "schema", "--yes", "--lock-timeout", "0.5", "--migrations-dir", str(folder))
    assert undo.code == 3, undo
    assert indexes(db) == BOTH and [run[:2] for run in schema_runs(db)] == [("apply", "running"), ("apply", "applied")]

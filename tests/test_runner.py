"""migrations/run_migrations.py: discovery, order, selection, errors; against the real server."""

from conftest import the_error, write_migration
from sample_messages import chat_messages


def test_list_shows_the_migrations_in_order_and_not_the_tools(cli):
    result = cli("run_migrations.py", "--list")
    assert result.code == 0, result
    assert result.stdout.splitlines() == [
        "2025-07-15  add_metadata_to_chat_messages  set metadata=null on chat_messages documents that lack the field"
    ]


def test_all_runs_every_migration_in_date_order_with_dependencies(db, cli, tmp_path):
    write_migration(tmp_path, "b_second", date="2025-02-01")
    write_migration(tmp_path, "a_third", date="2025-01-01", depends_on=["b_second"])
    write_migration(tmp_path, "c_first", date="2025-01-15")
    (tmp_path / "_helpers.py").write_text("raise RuntimeError('never imported')\n")
    (tmp_path / "a_tool.py").write_text("print('not a migration')\n")
    db.chat_messages.insert_many(chat_messages(5))

    result = cli("run_migrations.py", "--all", "--migrations-dir", str(tmp_path))

    assert result.code == 0, result
    applied = [line.split(": applying")[0].split()[-1] for line in result.output.splitlines() if ": applying" in line]
    assert applied == ["c_first", "b_second", "a_third"]
    assert db.chat_messages.count_documents({"c_first": 1, "b_second": 1, "a_third": 1}) == 5
    assert "not a migration" not in result.output


def test_migration_runs_only_the_named_one(db, cli, tmp_path):
    write_migration(tmp_path, "one")
    write_migration(tmp_path, "two")
    db.chat_messages.insert_many(chat_messages(3))

    result = cli("run_migrations.py", "--migration", "two", "--allow-out-of-order", "--migrations-dir", str(tmp_path))

    assert result.code == 0, result
    assert db.chat_messages.count_documents({"two": 1}) == 3
    assert db.chat_messages.count_documents({"one": {"$exists": True}}) == 0


def test_unknown_migration_is_a_usage_error_without_traceback(db, cli):
    db.chat_messages.insert_many(chat_messages(3))
    result = cli("run_migrations.py", "--migration", "no_such_thing")
    assert result.code == 2, result
    assert "unknown migration 'no_such_thing' (known: add_metadata_to_chat_messages)" in result.output
    assert "Traceback" not in result.output
    assert db.chat_messages.count_documents({"metadata": {"$exists": True}}) == 1


def test_a_failed_verification_fails_the_run_naming_the_migration(db, cli, tmp_path):
    write_migration(tmp_path, "liar", body='''
        async def up(db):
            pass

        async def verify(db):
            return False
        ''')
    result = cli("run_migrations.py", "--all", "--migrations-dir", str(tmp_path))
    assert result.code == 1, result
    assert "liar: verification failed after it ran" in result.output


def test_a_migration_that_raises_is_named_and_stops_the_run(db, cli, tmp_path):
    write_migration(tmp_path, "a_boom", date="2025-01-01", body='''
        async def up(db):
            raise ValueError("half-way")

        async def verify(db):
            return True
        ''')
    write_migration(tmp_path, "b_after", date="2025-02-01")
    db.chat_messages.insert_many(chat_messages(2))

    result = cli("run_migrations.py", "--all", "--migrations-dir", str(tmp_path))

    assert result.code == 1, result
    assert "a_boom: up failed: ValueError: half-way" in result.output
    assert "Traceback" not in result.output
    assert db.chat_messages.count_documents({"b_after": {"$exists": True}}) == 0


def test_a_broken_migration_file_is_named_and_nothing_runs(db, cli, tmp_path):
    write_migration(tmp_path, "good")
    (tmp_path / "broken.py").write_text('"""Date: 2025-01-01"""\nasync def up(db)\n    pass\n')
    db.chat_messages.insert_many(chat_messages(2))

    result = cli("run_migrations.py", "--all", "--migrations-dir", str(tmp_path))

    assert result.code == 2, result
    assert "a migration file is broken: broken.py: syntax error at line 2" in result.output
    assert db.chat_messages.count_documents({"good": {"$exists": True}}) == 0


def test_a_migration_without_verify_is_named(cli, tmp_path):
    (tmp_path / "half.py").write_text('"""half\n\nDate: 2025-01-01\n"""\nasync def up(db):\n    pass\n')
    result = cli("run_migrations.py", "--list", "--migrations-dir", str(tmp_path))
    assert result.code == 2, result
    assert "half  (broken: half.py: missing `async def verify(db)`)" in result.stdout  # listed, then refused
    assert "half.py: missing `async def verify(db)`" in the_error(result)


def test_a_dependency_cycle_is_refused_before_anything_runs(cli, tmp_path):
    write_migration(tmp_path, "x", depends_on=["y"])
    write_migration(tmp_path, "y", depends_on=["x"])
    result = cli("run_migrations.py", "--all", "--migrations-dir", str(tmp_path))
    assert result.code == 2, result
    assert "cycle: x, y" in result.output


def test_verify_on_the_runner_rechecks_applied_migrations_and_exits_4_when_one_no_longer_holds(db, cli):
    db.chat_messages.insert_many(chat_messages(4, with_metadata_every=0))
    assert "no applied migrations to verify" in cli("run_migrations.py", "--verify").output
    assert cli("run_migrations.py", "--all").code == 0
    assert cli("run_migrations.py", "--verify").code == 0

    db.chat_messages.insert_one({"session_id": "old-app-version", "content": "no metadata"})
    result = cli("run_migrations.py", "--verify")

    assert result.code == 4, result
    assert "verification failed: add_metadata_to_chat_messages" in result.output


def test_dry_run_on_the_runner_writes_nothing(db, cli):
    db.chat_messages.insert_many(chat_messages(10, with_metadata_every=2))
    result = cli("run_migrations.py", "--all", "--dry-run")
    assert result.code == 0, result
    assert "would change 5 documents" in result.output
    assert db.chat_messages.count_documents({"metadata": {"$exists": True}}) == 5
    assert db.list_collection_names() == ["chat_messages"]

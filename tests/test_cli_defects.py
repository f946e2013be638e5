"""Defects found by trying the runner as a new user would (issue 12): flags, results, rollbacks, status, messages.

Each test fails on the code before its fix; all run against the real server.
"""


import pytest

from conftest import RUNNER, UNDOABLE, plant_lock, status_json, write_migration
from sample_messages import chat_messages


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if "error" in line.lower()]


# ----- 1: an empty value is an error naming the flag, never a fallback to another command -----

@pytest.mark.parametrize("flag", ["--migration", "--rollback", "--rollback-to", "--mark-applied",
                                  "--mark-applied-all", "--new", "--restore", "--env-file", "--migrations-dir",
                                  "--backup-dir"])
def test_an_empty_flag_value_is_exit_2_naming_the_flag_and_leaves_the_lock(db, cli, flag):
    plant_lock(db, expires_in_s=300)
    args = [flag, ""] if flag not in ("--env-file", "--migrations-dir", "--backup-dir") else ["--all", flag, ""]
    result = cli(RUNNER, *args, "--yes")
    assert result.code == 2, result
    [line] = error_lines(result)
    assert flag in line and "empty" in line
    assert "usage:" not in result.output  # one line, not the usage block
    assert "lock removed" not in result.output
    assert db.migrations_lock.find_one({"_id": "lock"})["released_at"] is None
    assert db.migrations_lock.count_documents({}) == 1


# ----- 9: numbers that cannot be a timeout: refused at parsing (tests/unit/test_cli_arguments.py) -----

def test_a_zero_lock_timeout_still_means_do_not_wait(db, cli):
    plant_lock(db, expires_in_s=300)
    result = cli(RUNNER, "--all", "--lock-timeout", "0")
    assert result.code == 3, result


# ----- 5: what up() may return -----

@pytest.mark.parametrize("body, counted", [
    ("return await db.chat_messages.delete_many({'role': 'user'})", "deleted=2"),
    ("return await db.notes.insert_many([{'n': 1}, {'n': 2}, {'n': 3}])", "inserted=3"),
    ("return await db.notes.bulk_write([InsertOne({'n': 1}), InsertOne({'n': 2})])", "inserted=2"),
    ("return await db.chat_messages.create_index('role')", "index role_1 in place"),
])
def test_up_may_return_any_write_result_or_an_index_name_and_is_recorded(db, cli, tmp_path, body, counted):
    write_migration(tmp_path, "returns_things", body=f'''
        from pymongo import InsertOne

        async def up(db):
            {body}

        async def verify(db):
            return True
        ''')
    db.chat_messages.insert_many(chat_messages(4))  # 2 of them are users
    result = cli(RUNNER, "--all", "--migrations-dir", str(tmp_path))
    assert result.code == 0, result
    assert counted in result.output
    assert "TypeError" not in result.output
    assert status_json(cli, "--migrations-dir", str(tmp_path))["returns_things"]["state"] == "applied"


def test_up_returning_something_unreadable_is_a_recorded_failure_naming_the_migration(db, cli, tmp_path):
    write_migration(tmp_path, "returns_a_list", body='''
        async def up(db):
            await db.notes.insert_one({"n": 1})
            return [1, 2]

        async def verify(db):
            return True
        ''')
    result = cli(RUNNER, "--all", "--migrations-dir", str(tmp_path))
    assert result.code == 1, result
    [line] = error_lines(result)
    assert "returns_a_list: up made its change but returned something the toolkit cannot read" in line
    assert "unexpected error" not in result.output
    assert status_json(cli, "--migrations-dir", str(tmp_path))["returns_a_list"]["state"] == "failed"


# ----- 6: every rollback target checked before the prompt; a stop part-way lists what was done -----

def test_rollback_to_checks_every_target_before_changing_anything(db, cli, tmp_path):
    write_migration(tmp_path, "m1", date="2025-01-01", body=UNDOABLE.format(name="m1"))
    write_migration(tmp_path, "m2", date="2025-01-02")  # no rollback
    write_migration(tmp_path, "m3", date="2025-01-03", body=UNDOABLE.format(name="m3"))
    db.chat_messages.insert_many(chat_messages(3))
    folder = ("--migrations-dir", str(tmp_path))
    assert cli(RUNNER, "--all", *folder).code == 0

    result = cli(RUNNER, "--rollback-to", "m1", "--yes", *folder)

    assert result.code == 2, result
    assert "m2 has no rollback" in result.output
    assert db.chat_messages.count_documents({"m3": 1}) == 3  # m3 was not rolled back first
    assert db.migrations_changelog.count_documents({"action": "rollback"}) == 0


def test_rollback_of_a_migration_without_rollback_is_refused_before_the_prompt(db, cli, tmp_path):
    write_migration(tmp_path, "no_undo")
    folder = ("--migrations-dir", str(tmp_path))
    assert cli(RUNNER, "--all", *folder).code == 0
    result = cli(RUNNER, "--rollback", "no_undo", *folder)  # no --yes, no terminal: a prompt would refuse
    assert result.code == 2 and "no_undo has no rollback" in result.output
    assert "without confirmation" not in result.output


def test_a_rollback_that_fails_part_way_is_exit_1_listing_what_was_and_was_not_rolled_back(db, cli, tmp_path):
    write_migration(tmp_path, "m1", date="2025-01-01", body=UNDOABLE.format(name="m1"))
    write_migration(tmp_path, "m2", date="2025-01-02", body=UNDOABLE.format(name="m2").replace(
        'return await db.chat_messages.update_many({}, {"$unset": {"m2": ""}})', 'raise RuntimeError("undo broke")'))
    write_migration(tmp_path, "m3", date="2025-01-03", body=UNDOABLE.format(name="m3"))
    db.chat_messages.insert_many(chat_messages(3))
    folder = ("--migrations-dir", str(tmp_path))
    assert cli(RUNNER, "--all", *folder).code == 0

    result = cli(RUNNER, "--rollback-to", "m1", "--yes", *folder)

    assert result.code == 1, result
    [line] = [line for line in result.output.splitlines() if "ERROR" in line]
    assert "undo broke" in line and "rolled back: m3; not rolled back: m2" in line
    states = {name: row["state"] for name, row in status_json(cli, *folder).items()}
    assert states == {"m1": "applied", "m2": "failed", "m3": "rolled_back"}


# ----- 7: "last" is by the migrations' order, not by when the changelog saw them -----

def test_rollback_last_after_a_rerun_of_an_early_migration_targets_the_last_in_order(db, cli, tmp_path):
    for name, day in (("m1", "01"), ("m2", "02")):
        write_migration(tmp_path, name, date=f"2025-01-{day}", body=UNDOABLE.format(name=name))
    db.chat_messages.insert_many(chat_messages(3))
    folder = ("--migrations-dir", str(tmp_path))
    assert cli(RUNNER, "--all", *folder).code == 0
    assert cli(RUNNER, "--migration", "m1", *folder).code == 0  # an idempotent re-run: now the newest entry

    result = cli(RUNNER, "--rollback-last", "--yes", *folder)

    assert result.code == 0, result
    assert "m2: rolled back" in result.output and "m1: rolled back" not in result.output
    assert db.chat_messages.count_documents({"m1": 1, "m2": {"$exists": False}}) == 3


# ----- 11: a failed, half-applied migration can be rolled back by name -----

def test_a_failed_half_applied_migration_can_be_rolled_back(db, cli, tmp_path):
    write_migration(tmp_path, "half", body='''
        async def up(db):
            await db.chat_messages.update_one({}, {"$set": {"half": 1}})
            raise RuntimeError("crashed after the first write")

        async def verify(db):
            return await db.chat_messages.count_documents({"half": {"$exists": False}}) == 0

        async def rollback(db):
            return await db.chat_messages.update_many({}, {"$unset": {"half": ""}})
        ''')
    db.chat_messages.insert_many(chat_messages(3))
    folder = ("--migrations-dir", str(tmp_path))
    assert cli(RUNNER, "--all", *folder).code == 1
    assert db.chat_messages.count_documents({"half": 1}) == 1

    result = cli(RUNNER, "--rollback", "half", "--yes", *folder)

    assert result.code == 0, result
    assert "half: rolled back: 1 documents changed" in result.output
    assert db.chat_messages.count_documents({"half": {"$exists": True}}) == 0
    assert status_json(cli, *folder)["half"]["state"] == "rolled_back"


# ----- 17: --mark-applied --force asks before recording what is not in place -----

def test_mark_applied_force_asks_first_when_the_change_is_not_in_place(db, cli):
    db.chat_messages.insert_many(chat_messages(2, with_metadata_every=0))
    refused = cli(RUNNER, "--mark-applied", "add_metadata_to_chat_messages", "--force")
    assert refused.code == 2, refused
    assert "refusing to record add_metadata_to_chat_messages as applied" in refused.output
    assert db.migrations_changelog.count_documents({}) == 0

    confirmed = cli(RUNNER, "--mark-applied", "add_metadata_to_chat_messages", "--force", "--yes")
    assert confirmed.code == 0 and "NOT verified, --force" in confirmed.output
    assert db.migrations_changelog.find_one({})["verified"] is False


# ----- 18: messages -----

def test_a_bare_bool_verification_reads_well(db, cli, tmp_path):
    write_migration(tmp_path, "boolean")
    db.chat_messages.insert_many(chat_messages(2))
    folder = ("--migrations-dir", str(tmp_path))
    applied = cli(RUNNER, "--all", *folder)
    assert applied.code == 0, applied
    assert "boolean: after: verified" in applied.output and ": :" not in applied.output
    verified = cli(RUNNER, "--verify", *folder)
    assert verified.code == 0 and "boolean: ok" in verified.output and "()" not in verified.output
    again = cli(RUNNER, "--all", *folder)
    assert "nothing to do: the one migration is applied" in again.output


def test_a_failed_bool_verification_has_no_empty_parentheses(db, cli, tmp_path):
    write_migration(tmp_path, "never", body='''
        async def up(db):
            return None

        async def verify(db):
            return False
        ''')
    result = cli(RUNNER, "--all", "--migrations-dir", str(tmp_path))
    assert result.code == 1 and "never: verification failed after it ran" in result.output
    assert "()" not in result.output


def test_counts_carry_thousands_separators(db, cli):
    db.chat_messages.insert_many(chat_messages(1200, with_metadata_every=0))
    result = cli(RUNNER, "--all")
    assert result.code == 0, result
    assert "modified 1,200 documents (1,200 matched)" in result.output
    assert "total=1,200" in result.output


# ----- 19: status columns say what they hold; a re-run keeps the first count -----

def test_status_shows_applied_columns_only_for_applied_migrations(db, cli, tmp_path):
    write_migration(tmp_path, "m1", body=UNDOABLE.format(name="m1"))
    db.chat_messages.insert_many(chat_messages(5))
    folder = ("--migrations-dir", str(tmp_path))
    assert cli(RUNNER, "--all", *folder).code == 0
    applied = status_json(cli, *folder)["m1"]
    assert applied["modified"] == 5
    assert cli(RUNNER, "--migration", "m1", *folder).code == 0  # the re-run sets the same values again
    rerun = status_json(cli, *folder)["m1"]
    assert rerun["modified"] == 5 and rerun["at"] == applied["at"] and rerun["duration_s"] == applied["duration_s"]

    assert cli(RUNNER, "--rollback", "m1", "--yes", *folder).code == 0
    rolled = status_json(cli, *folder)["m1"]
    assert rolled["state"] == "rolled_back" and rolled["modified"] is None and rolled["duration_s"] is None
    assert rolled["at"] > applied["at"]
    table = cli(RUNNER, "--status", *folder).stdout
    assert "SINCE (UTC)" in table and "APPLIED AT" not in table
    row = next(line for line in table.splitlines() if line.startswith("m1 "))
    assert "rolled back" in row and " s " not in row

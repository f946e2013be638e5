"""What a deploy pipeline leans on: edited migrations refused by every entry point, out-of-order migrations
flagged and refused, and --check's exit 6."""

import os
import time

from conftest import REPO, RUNNER, STUCK, UNDOABLE, Result, run_here, start, status_json, wait_for, write_migration
from sample_messages import chat_messages


def standalone(path, *args, env) -> Result:
    """`python <path> args...`: a migration run on its own (in this process: see conftest.run_here)."""
    environment = {**env, "PYTHONPATH": str(REPO)}  # outside migrations/ the file cannot find the toolkit itself
    return run_here(str(path), *args, env=environment)


def edit(path) -> None:
    path.write_text(path.read_text().replace('{"$set": {"m1": 1}}', '{"$set": {"m1": 2}}'))


def error_line(result) -> str:
    [line] = [line for line in result.output.splitlines() if "ERROR" in line]
    return line


def test_an_edited_migration_is_refused_by_every_entry_point_unless_allowed(db, cli, env, tmp_path):
    write_migration(tmp_path, "m1", body=UNDOABLE.format(name="m1"))
    folder = ("--migrations-dir", str(tmp_path))
    db.chat_messages.insert_many(chat_messages(3))
    assert cli(RUNNER, "--all", *folder).code == 0
    edit(tmp_path / "m1.py")

    for result in (cli(RUNNER, "--migration", "m1", *folder), standalone(tmp_path / "m1.py", env=env),
                   cli(RUNNER, "--rollback", "m1", "--yes", *folder), cli(RUNNER, "--rollback-last", "--yes", *folder),
                   standalone(tmp_path / "m1.py", "--rollback", "--yes", env=env)):
        assert result.code == 1, result
        assert "applied migration file changed since it ran: m1.py" in error_line(result)
    assert db.chat_messages.count_documents({"m1": 1}) == 3  # nothing ran
    assert status_json(cli, *folder)["m1"]["flags"] == ["changed"]  # the flag did not disappear

    verified = cli(RUNNER, "--verify", *folder)
    assert verified.code == 0 and "m1: its file changed since it was applied" in verified.output

    forced = cli(RUNNER, "--migration", "m1", "--allow-changed", *folder)
    assert forced.code == 0, forced
    assert db.chat_messages.count_documents({"m1": 2}) == 3


def test_verify_names_an_applied_migration_whose_file_is_gone(db, cli, tmp_path):
    write_migration(tmp_path, "m1", body=UNDOABLE.format(name="m1"))
    folder = ("--migrations-dir", str(tmp_path))
    assert cli(RUNNER, "--all", *folder).code == 0
    os.remove(tmp_path / "m1.py")
    result = cli(RUNNER, "--verify", *folder)
    assert result.code == 4, result
    assert "m1: applied, but its file is gone" in result.output and "cannot verify m1" in error_line(result)


def test_an_out_of_order_migration_is_flagged_refused_then_applied_with_the_flag(db, cli, tmp_path):
    write_migration(tmp_path, "later", date="2025-02-01")
    folder = ("--migrations-dir", str(tmp_path))
    db.chat_messages.insert_many(chat_messages(3))
    assert cli(RUNNER, "--all", *folder).code == 0
    write_migration(tmp_path, "earlier", date="2025-01-01")

    assert status_json(cli, *folder)["earlier"]["flags"] == ["out-of-order: before the applied later"]
    for args in (("--all",), ("--migration", "earlier")):
        refused = cli(RUNNER, *args, *folder)
        assert refused.code == 1, refused
        line = error_line(refused)
        assert "earlier comes before later in the order" in line and "--allow-out-of-order" in line
    assert db.chat_messages.count_documents({"earlier": 1}) == 0

    allowed = cli(RUNNER, "--all", "--allow-out-of-order", *folder)
    assert allowed.code == 0, allowed
    assert db.chat_messages.count_documents({"earlier": 1}) == 3
    assert status_json(cli, *folder)["earlier"]["flags"] == []


def test_check_exits_6_on_pending_changed_failed_and_out_of_order_and_0_when_clean(db, cli, tmp_path):
    folder = ("--migrations-dir", str(tmp_path))
    write_migration(tmp_path, "m1", date="2025-01-02", body=UNDOABLE.format(name="m1"))
    db.chat_messages.insert_many(chat_messages(3))

    pending = cli(RUNNER, "--check", *folder)
    assert pending.code == 6 and pending.stdout.splitlines() == ["m1: pending"]

    assert cli(RUNNER, "--all", *folder).code == 0
    clean = cli(RUNNER, "--check", *folder)
    assert clean.code == 0 and "up to date" in clean.stdout

    edit(tmp_path / "m1.py")
    changed = cli(RUNNER, "--check", *folder)
    assert changed.code == 6 and changed.stdout.splitlines() == ["m1: its file changed since it was applied"]
    write_migration(tmp_path, "m1", date="2025-01-02", body=UNDOABLE.format(name="m1"))  # restored

    write_migration(tmp_path, "m0", date="2025-01-01")
    early = cli(RUNNER, "--check", *folder)
    assert early.code == 6 and early.stdout.splitlines() == ["m0: pending", "m0: out of order: it comes before the "
                                                                             "applied m1"]
    (tmp_path / "m0.py").unlink()

    write_migration(tmp_path, "broken", date="2025-03-01", body='''
        async def up(db):
            raise RuntimeError("disk on fire")

        async def verify(db):
            return False
        ''')
    assert cli(RUNNER, "--all", *folder).code == 1
    failed = cli(RUNNER, "--check", *folder)
    assert failed.code == 6 and failed.stdout.splitlines() == ["broken: failed: up failed: RuntimeError: "
                                                               "disk on fire"]


def test_a_runner_killed_in_a_non_batched_up_leaves_it_interrupted_and_the_next_all_runs_it_again(db, cli, env,
                                                                                                   tmp_path):
    write_migration(tmp_path, "slow", body=STUCK)
    folder = ("--migrations-dir", str(tmp_path))
    db.chat_messages.insert_many(chat_messages(3))
    runner = start(env, "--all", *folder, "--lease", "3", script=RUNNER)
    wait_for(lambda: db.chat_messages.count_documents({"slow": 1}) == 3, "the migration to start", runner)

    running = status_json(cli, *folder)["slow"]
    assert running["state"] == "running" and running["runner"].endswith(f":{runner.pid}")
    runner.kill()
    runner.wait()
    time.sleep(3.5)  # its lease runs out

    row = status_json(cli, *folder)["slow"]
    assert row["state"] == "interrupted" and row["runner"].endswith(f":{runner.pid}")
    checked = cli(RUNNER, "--check", *folder)
    assert checked.code == 6 and checked.stdout.splitlines() == [f"slow: interrupted: its runner {row['runner']} died"]

    db.flags.insert_one({"fast": True})
    again = cli(RUNNER, "--all", *folder)
    assert again.code == 0, again
    warnings = [line for line in again.output.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and f"slow: interrupted: its runner {row['runner']} died" in warnings[0]
    assert status_json(cli, *folder)["slow"]["state"] == "applied"


def test_an_edit_whose_earlier_version_is_declared_valid_is_not_changed_and_others_still_are(db, cli, tmp_path):
    folder = ("--migrations-dir", str(tmp_path))
    write_migration(tmp_path, "m1", date="2025-01-02", body=UNDOABLE.format(name="m1"))
    db.chat_messages.insert_many(chat_messages(300))
    assert cli(RUNNER, "--all", *folder).code == 0
    applied = db.migrations_changelog.find_one({"name": "m1", "state": "applied"})["checksum"]

    edit(tmp_path / "m1.py")
    assert cli(RUNNER, "--check", *folder).code == 6  # an edit alone is a change
    path = tmp_path / "m1.py"
    path.write_text(path.read_text() + f"\nvalid_checksums = [{applied!r}]\n")
    accepted = cli(RUNNER, "--check", *folder)
    assert accepted.code == 0 and "up to date" in accepted.stdout, accepted
    assert cli(RUNNER, "--all", *folder).code == 0  # runs, refusing nothing
    row = status_json(cli, *folder)["m1"]
    assert row["state"] == "applied" and not row.get("changed"), row

    path.write_text(path.read_text().replace(applied, "0" * 64))  # another version's checksum: changed again
    assert cli(RUNNER, "--check", *folder).code == 6
    path.write_text(path.read_text().replace("0" * 64, "not a checksum"))
    bad = cli(RUNNER, "--check", *folder)
    assert bad.code == 6 and "m1: its file is broken: m1.py: valid_checksums must be a list of checksums" in \
        bad.stdout, bad


def test_a_migration_run_as_a_script_is_refused_what_the_runner_refuses(db, cli, env, tmp_path):
    folder = ("--migrations-dir", str(tmp_path))
    write_migration(tmp_path, "m1", date="2025-01-02", body=UNDOABLE.format(name="m1"))
    write_migration(tmp_path, "m2", date="2025-01-03", body=UNDOABLE.format(name="m2"), depends_on=["m1"])
    db.chat_messages.insert_many(chat_messages(200))
    assert cli(RUNNER, "--all", *folder).code == 0

    dependent = standalone(tmp_path / "m1.py", "--rollback", "--yes", env=env)
    assert dependent.code == 2 and "m2 depends on m1" in dependent.output, dependent
    assert db.chat_messages.count_documents({"m1": 1}) == 200  # nothing rolled back

    write_migration(tmp_path, "m0", date="2025-01-01", body=UNDOABLE.format(name="m0"))
    early = standalone(tmp_path / "m0.py", env=env)
    assert early.code == 1 and "m0 comes before m2" in early.output, early
    assert db.chat_messages.count_documents({"m0": 1}) == 0  # not applied
    assert standalone(tmp_path / "m0.py", "--allow-out-of-order", env=env).code == 0
    assert db.chat_messages.count_documents({"m0": 1}) == 200


def test_an_applied_migration_whose_file_is_gone_fails_check_and_is_a_problem_in_status(db, cli, tmp_path):
    """Older code deployed onto a newer database: --check must not say "up to date"."""
    folder = ("--migrations-dir", str(tmp_path))
    for name, date in (("m1", "2025-01-01"), ("m2", "2025-01-02")):
        write_migration(tmp_path, name, date=date, body=UNDOABLE.format(name=name))
    db.chat_messages.insert_many(chat_messages(3))
    assert cli(RUNNER, "--all", *folder).code == 0
    (tmp_path / "m2.py").unlink()

    check = cli(RUNNER, "--check", *folder)
    assert check.code == 6, check
    assert check.stdout.splitlines() == ["m2: applied, but its file is gone (older code on a newer database?)"]
    summary = cli(RUNNER, "--status", *folder).stdout.splitlines()
    assert "2 applied, 0 pending, 1 with problems" in summary, summary


def test_status_counts_a_failed_migration_once_not_as_pending_too(db, cli, tmp_path):
    folder = ("--migrations-dir", str(tmp_path))
    write_migration(tmp_path, "m1", date="2025-01-01", body=UNDOABLE.format(name="m1"))
    write_migration(tmp_path, "boom", date="2025-01-02", body='''
        async def up(db):
            raise RuntimeError("disk on fire")

        async def verify(db):
            return False
        ''')
    write_migration(tmp_path, "m3", date="2025-01-03", body=UNDOABLE.format(name="m3"))
    db.chat_messages.insert_many(chat_messages(3))
    assert cli(RUNNER, "--all", *folder).code != 0

    status = cli(RUNNER, "--status", *folder)
    summary = status.stdout.splitlines()
    assert "1 applied, 1 pending, 1 failed" in summary, status  # the failed one is not a "problem" besides


def test_migration_ahead_of_earlier_pending_ones_is_refused_by_name_unless_allowed(db, cli, tmp_path, env):
    """Else --all would then refuse the earlier ones as out of order."""
    folder = ("--migrations-dir", str(tmp_path))
    for name, date in (("m1", "2025-01-01"), ("m2", "2025-01-02"), ("m3", "2025-01-03")):
        write_migration(tmp_path, name, date=date, body=UNDOABLE.format(name=name))
    db.chat_messages.insert_many(chat_messages(50))

    ahead = cli(RUNNER, "--migration", "m3", *folder)
    assert ahead.code == 1 and "m3 comes after m1, m2, not applied yet: run --all" in error_line(ahead), ahead
    script = standalone(tmp_path / "m3.py", env=env)
    assert script.code == 1 and "m3 comes after m1, m2" in script.output, script
    assert db.chat_messages.count_documents({"m3": 1}) == 0  # not applied

    assert cli(RUNNER, "--migration", "m1", *folder).code == 0  # the first pending one: nothing skipped
    assert cli(RUNNER, "--migration", "m3", "--allow-out-of-order", *folder).code == 0
    assert db.chat_messages.count_documents({"m3": 1}) == 50


def test_dry_run_refuses_what_the_real_run_refuses_with_the_same_exit_code(db, cli, tmp_path):
    folder = ("--migrations-dir", str(tmp_path))
    write_migration(tmp_path, "m1", date="2025-01-02", body=UNDOABLE.format(name="m1"))
    db.chat_messages.insert_many(chat_messages(20))
    assert cli(RUNNER, "--all", *folder).code == 0

    write_migration(tmp_path, "m0", date="2025-01-01", body=UNDOABLE.format(name="m0"))  # out of order
    for args in (("--all",), ("--migration", "m0")):
        real, dry = cli(RUNNER, *args, *folder), cli(RUNNER, *args, "--dry-run", *folder)
        assert dry.code == real.code == 1 and "m0 comes before m1" in error_line(dry), dry
    (tmp_path / "m0.py").unlink()

    edit(tmp_path / "m1.py")  # an applied file edited
    real, dry = cli(RUNNER, "--all", *folder), cli(RUNNER, "--all", "--dry-run", *folder)
    assert dry.code == real.code != 0 and error_line(dry).split("ERROR")[1] == error_line(real).split("ERROR")[1]
    assert db.chat_messages.count_documents({"m0": 1}) == 0

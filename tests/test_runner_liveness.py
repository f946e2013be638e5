"""Whether a runner is alive, where it can be known (this host, its pid): --force-unlock spares a live one, and
--status, --check and a later run say "died" only of one whose process is gone, at once, and what else stopped one
(the lock lost). Against the real server, with runners in processes of their own."""

import re

from conftest import RUNNER, STUCK, plant_lock, run, start, status_json, wait_for, write_migration
from sample_messages import chat_messages


def test_force_unlock_refuses_a_live_runner_of_this_host_and_one_killed_is_shown_dead_at_once(db, cli, env, tmp_path):
    write_migration(tmp_path, "slow", body=STUCK)
    folder = ("--migrations-dir", str(tmp_path))
    db.chat_messages.insert_many(chat_messages(3))
    runner = start(env, "--all", *folder, "--lease", "300", script=RUNNER)
    try:
        wait_for(lambda: db.chat_messages.count_documents({"slow": 1}) == 3, "the migration to start", runner)
        refused = cli(RUNNER, "--force-unlock", "--yes", *folder)
        assert refused.code == 3, refused
        assert f"a runner still alive on this host (pid {runner.pid}): not removed" in refused.output, refused
        assert f"`kill -TERM {runner.pid}`" in refused.output and "Ctrl-C" in refused.output, refused
        lock = db.migrations_lock.find_one({"_id": "lock"})
        assert lock["epoch"] == 1 and f":{runner.pid}:" in lock["owner"] and lock["released_at"] is None
        row = status_json(cli, *folder)["slow"]
        assert (row["state"], row["runner_state"]) == ("running", "alive")
    finally:
        runner.kill()
        runner.wait()  # reaped: its pid names no process any more

    # its lease has 5 minutes left, and yet it is known dead: interrupted at once, and said so
    row = status_json(cli, *folder)["slow"]
    assert (row["state"], row["runner_state"], row["action"]) == ("interrupted", "dead", "apply")
    checked = cli(RUNNER, "--check", *folder)
    assert checked.code == 6 and checked.stdout.splitlines() == [f"slow: interrupted: its runner {row['runner']} died"]
    unlocked = cli(RUNNER, "--force-unlock", "--yes", *folder)
    assert unlocked.code == 0, unlocked
    assert "its runner is no longer running on this host" in unlocked.output and "lock removed" in unlocked.output
    assert "WARNING" not in unlocked.output, unlocked


def test_force_unlock_of_a_runner_on_another_host_warns_when_it_last_renewed_its_lease(db, cli):
    plant_lock(db, expires_in_s=300)  # deploy-7, which took it 5 s ago
    result = cli(RUNNER, "--force-unlock", "--yes")
    assert result.code == 0, result
    [warning] = [line for line in result.output.splitlines() if "WARNING" in line]
    assert "its runner is not on this host" in warning and "whether it is alive cannot be known from here" in warning
    assert re.search(r"It last renewed its lease [4-6] s ago .* the lease ends by itself in 5 min$", warning), warning
    assert "lock removed (was held by deploy-7:4242:abcd" in result.output


def test_a_rollback_killed_half_way_is_shown_as_an_interrupted_rollback(db, cli, env, tmp_path):
    write_migration(tmp_path, "slow", body=STUCK)
    folder = ("--migrations-dir", str(tmp_path))
    db.chat_messages.insert_many(chat_messages(3))
    db.flags.insert_one({"rollback": "wait"})
    assert cli(RUNNER, "--all", *folder).code == 0
    runner = start(env, "--rollback", "slow", "--yes", *folder, "--lease", "300", script=RUNNER)
    try:
        wait_for(lambda: db.chat_messages.count_documents({"slow": 1}) == 0, "the rollback to start", runner)
    finally:
        runner.kill()
        runner.wait()

    row = status_json(cli, *folder)["slow"]
    assert (row["state"], row["action"], row["runner_state"]) == ("interrupted", "rollback", "dead")
    line = f"slow: rollback interrupted: its runner {row['runner']} died"
    checked = cli(RUNNER, "--check", *folder)
    assert checked.code == 6 and checked.stdout.splitlines() == [line], checked
    assert line in cli(RUNNER, "--status", *folder).stdout.splitlines()



def test_an_up_that_blocks_the_event_loop_past_the_lease_is_named_and_its_stop_shown_not_as_died(db, cli, env,
                                                                                                  tmp_path):
    write_migration(tmp_path, "blocking", body='''
        import time

        async def up(db):
            await db.chat_messages.update_many({}, {"$set": {"blocking": 1}})
            time.sleep(2.5)  # synchronous: the lock's heartbeat cannot run meanwhile

        async def verify(db):
            return await db.chat_messages.count_documents({"blocking": {"$exists": False}}) == 0
        ''')
    folder = ("--migrations-dir", str(tmp_path))
    db.chat_messages.insert_many(chat_messages(3))
    result = run(RUNNER, "--all", *folder, "--lease", "1.5", env=env)
    assert result.code == 3, result
    assert re.search(r"the event loop was blocked for [\d.]+ s.*await asyncio\.to_thread", result.output), result

    row = status_json(cli, *folder)["blocking"]
    assert row["state"] == "interrupted" and row["error"].startswith("lost the migration lock"), row
    [line] = cli(RUNNER, "--check", *folder).stdout.splitlines()
    assert line.startswith(f"blocking: interrupted: its runner {row['runner']} stopped: lost the migration lock"), line

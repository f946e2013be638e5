"""Nothing lost under faults, against the real server: kill -9 at every stage of a batched migration
of a collection, concurrent runners, a server restart, a migration that raises."""

import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import (
    HAS,
    MIGRATIONS,
    NAME,
    SCRIPT,
    SLOW,
    applies,
    assert_nothing_lost,
    finish,
    load,
    run_here,
    start,
    wait_for,
    write_migration,
)
from wire_proxy import Fault


def checkpoint(db) -> dict:
    return db.migrations_checkpoints.find_one() or {"scanned": 0, "modified": 0, "done": False}


def kill_9(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_kill_9_before_during_between_batches_and_during_verification_loses_nothing(db, env, proxy):
    before = load(db, 1_500)
    lacking = sum("metadata" not in doc for doc in before.values())  # 1,350
    # A dead runner's lock is free once its lease runs out: 5 s here (renewed every 1.25 s, in time on a loaded
    # machine), so the next run goes on soon.
    run = ("--batch-path", "stream", "--lease", "5", "--lock-timeout", "60", "--progress-interval", "600")
    # Where the kill must land inside a step that is quick on a small collection, the proxy holds the step's
    # replies back: the step has then surely begun and not ended when the kill lands.
    held = {**env, "MONGODB_URL": proxy.url}

    # 1. before the first batch: while the ids are read (at --max-rate: 9 s for all of them)
    first = start(env, *run, "--batch-size", "2000", "--max-rate", "150")
    wait_for(lambda: first.stdout.readline().find("applying") >= 0, "the run to start", first)
    kill_9(first)
    assert db.chat_messages.count_documents(HAS) == len(before) - lacking
    assert db.migrations_checkpoints.count_documents({}) == 0

    # 2. mid-batch: some messages of a batch written, its checkpoint not (each bulk's reply held 0.2 s: the
    # batch of 450, nine bulks of 50, takes 1.8 s at least)
    writes = proxy.add(Fault("update", "chat_messages", times=10**6, action="delay", seconds=0.2))
    second = start(held, *run, "--batch-size", "450")
    wait_for(lambda: db.chat_messages.count_documents(HAS) > len(before) - lacking, "the first writes", second)
    kill_9(second)
    proxy.clear()
    assert writes.fired >= 1
    done = db.chat_messages.count_documents(HAS) - (len(before) - lacking)
    assert checkpoint(db)["modified"] < done < lacking, "the kill was meant to land inside a batch"

    # 3. between batches: right after a checkpoint, while --max-rate holds the next batch back
    # (a batch of 450 takes under a second even on a loaded machine, well under the 3 s that --max-rate 150
    # gives it: the rest is the pause, in which the kill lands; the ids are read first, at --max-rate too: 9 s)
    lacking_ids = {_id for _id, doc in before.items() if "metadata" not in doc}
    migrated = lambda: {doc["_id"] for doc in db.chat_messages.find(HAS, {"_id": 1})} & lacking_ids  # noqa: E731
    before_third = migrated()
    assert len(lacking_ids - before_third) > 450  # more than one batch left: the kill lands before the last one
    third = start(env, *run, "--batch-size", "450", "--max-rate", "150")
    resumed_at = checkpoint(db)["scanned"]
    wait_for(lambda: checkpoint(db)["scanned"] >= resumed_at + 450, "the next checkpoint", third, timeout=180)
    kill_9(third)
    at_kill = checkpoint(db)
    assert not at_kill["done"]
    # written: what the second run left, and every batch up to the checkpoint; nothing of the next batch
    assert migrated() == before_third | {_id for _id in lacking_ids if _id <= at_kill["last_id"]}

    # 4. during verification: every batch done, the run not recorded yet (the verification's reads held 3 s)
    reads = proxy.add(Fault("aggregate", "chat_messages", times=10**6, action="delay", seconds=3))
    fourth = start(held, *run, "--batch-size", "1500")
    wait_for(lambda: checkpoint(db)["done"] and reads.matches >= 1, "the last batch, then the verification", fourth)
    kill_9(fourth)
    proxy.clear()
    assert db.chat_messages.count_documents(HAS) == len(before)
    assert db.migrations_changelog.count_documents({"state": "applied"}) == 0

    # a normal run completes it; nothing lost, nothing migrated twice
    final = run_here(SCRIPT, "--lock-timeout", "60", env=env)
    assert final.code == 0, final
    assert "resuming from the checkpoint" in final.output
    assert_nothing_lost(db, before)


def test_four_runners_started_at_once_apply_each_migration_exactly_once(db, env, tmp_path):
    """Four deploys start the runner at the same moment, w=0 in their URL (the runner never uses it, and says so
    once): one of them applies every migration, a batched one included; the others wait for the lock, then find
    nothing to do (or give up waiting: exit 3). Each migration is applied once, each message changed once."""
    for name, day in (("one", "01"), ("two", "02")):
        write_migration(tmp_path, name, date=f"2025-01-{day}", body=SLOW.replace("{name}", name))
    shutil.copy(MIGRATIONS / SCRIPT, tmp_path)  # batched, and last: 2025-07-15
    before = load(db, 300)  # 270 to change: 6 batches of 50
    url = env["MONGODB_URL"]
    unacknowledged = {**env, "MONGODB_URL": url + ("&" if "?" in url else "?" if url.endswith("/") else "/?") + "w=0"}
    runners = [start(unacknowledged, "--all", "--migrations-dir", str(tmp_path), "--batch-size", "50",
                     "--lock-timeout", "90", script="run_migrations.py") for _ in range(4)]
    results = [finish(runner) for runner in runners]

    assert all(result.code in (0, 3) for result in results), results
    assert sum("done: 3 migration(s) applied" in result.output for result in results) == 1, results
    assert applies(db, "one") == applies(db, "two") == applies(db, NAME) == 1
    assert db.chat_messages.count_documents({"one": 1, "two": 1}) == len(before)  # $inc ran once per message
    assert all(sum("w=0" in line and "WARNING" in line for line in result.output.splitlines()) == 1
               for result in results), results
    db.chat_messages.update_many({}, {"$unset": {"one": "", "two": ""}})  # what the two slow ones added
    assert_nothing_lost(db, before)


@pytest.mark.slow
def test_a_server_restart_between_batches_is_survived_or_resumed(db, env, local_server):
    if local_server is None:
        pytest.skip("MONGODB_URL names a server these tests do not control")
    before = load(db, 3000)
    runner = start(env, "--batch-size", "300", "--max-rate", "1000", "--server-timeout", "10")
    wait_for(lambda: checkpoint(db)["scanned"] >= 300, "the first checkpoint", runner)
    local_server.stop()
    time.sleep(1.5)
    local_server.start()
    result = finish(runner)

    if result.code != 0:  # it may give up while the server is away: then with a checkpoint to resume from
        assert result.code == 1 and "Traceback" not in result.output, result
        assert checkpoint(db)["scanned"] >= 300
        result = run_here(SCRIPT, "--lock-timeout", "90", env=env)
        assert result.code == 0, result
    assert_nothing_lost(db, before)


TWO_STEPS = '''"""Two steps over one collection; fails between them while FAIL_HALFWAY is set.

Date: 2025-01-01
"""
import os


async def up(db, batches):
    await batches.update_many("items", {"a": {"$exists": False}}, {"$set": {"a": 1}})
    if os.environ.get("FAIL_HALFWAY"):
        raise RuntimeError("disk full (simulated)")
    await batches.update_many("items", {"b": {"$exists": False}}, {"$set": {"b": 2}})


async def verify(db):
    return await db.items.count_documents({"$or": [{"a": {"$exists": False}}, {"b": {"$exists": False}}]}) == 0
'''


def test_a_migration_that_raises_half_way_keeps_its_checkpoint_and_shows_as_failed(db, env, tmp_path):
    (tmp_path / "two_steps.py").write_text(TWO_STEPS)
    db.items.insert_many([{"n": i} for i in range(250)])
    runner = ("run_migrations.py", "--all", "--migrations-dir", str(tmp_path), "--batch-size", "100")

    failed = run_here(*runner, env={**env, "FAIL_HALFWAY": "1"})

    assert failed.code == 1, failed
    assert "two_steps: up failed: RuntimeError: disk full (simulated)" in failed.output
    assert "Traceback" not in failed.output
    assert db.migrations_checkpoints.find_one({"step": 1})["done"] is True
    assert db.items.count_documents({"a": 1}) == 250 and db.items.count_documents({"b": 2}) == 0
    assert db.migrations_lock.find_one({"_id": "lock"})["released_at"] is not None
    status = run_here("run_migrations.py", "--status", "--migrations-dir", str(tmp_path), env=env)
    assert re.search(r"two_steps .* failed .*resumable: 250 documents done", status.output), status

    rerun = run_here(*runner, env=env)

    assert rerun.code == 0, rerun
    assert db.items.count_documents({"a": 1, "b": 2}) == 250
    assert db.migrations_checkpoints.count_documents({}) == 0
    status = run_here("run_migrations.py", "--status", "--migrations-dir", str(tmp_path), env=env)
    assert re.search(r"two_steps .* applied ", status.output) and "resumable" not in status.output, status


SLOW_UP = '''"""Sets a on every item, then takes its time.

Date: 2025-01-01
"""
import asyncio
import os


async def up(db):
    result = await db.items.update_many({"a": {"$exists": False}}, {"$set": {"a": 1}})
    print("written", flush=True)
    await asyncio.sleep(float(os.environ.get("SLOW_UP_SECONDS", "60")))
    return result


async def verify(db):
    return await db.items.count_documents({"a": {"$exists": False}}) == 0
'''


def test_sigterm_outside_batches_releases_the_lock_and_exits_143(db, env, tmp_path):
    (tmp_path / "slow_up.py").write_text(SLOW_UP)
    db.items.insert_many([{"n": i} for i in range(5)])
    runner = ("--all", "--migrations-dir", str(tmp_path))
    process = start(env, *runner, script="run_migrations.py")
    wait_for(lambda: process.stdout.readline().startswith("written"), "the migration to write", process)

    process.send_signal(signal.SIGTERM)
    stopped = finish(process, timeout=30)

    assert stopped.code == 143, stopped
    assert "stopped by SIGTERM: run the same command again to finish" in stopped.output
    assert "Traceback" not in stopped.output
    assert db.migrations_lock.find_one({"_id": "lock"})["released_at"] is not None
    assert db.migrations_changelog.count_documents({"state": "applied"}) == 0
    # The lock was released, not left to its 60 s lease: a run that waits 1 s for it gets it.
    again = run_here("run_migrations.py", *runner, "--lock-timeout", "1", env={**env, "SLOW_UP_SECONDS": "0"})
    assert again.code == 0, again
    assert db.migrations_changelog.count_documents({"name": "slow_up", "state": "applied"}) == 1
    assert db.items.count_documents({"a": 1}) == 5

"""What a replica set does to a run, shown through the fault-injecting wire proxy (tests/wire_proxy.py):
step-downs, shutdowns, replies lost after the server applied the write, outages, a lock taken away."""

import time

import pytest

from conftest import (
    HAS,
    NAME,
    SCRIPT,
    assert_nothing_lost,
    finish,
    load,
    run_here,
    start,
    wait_for,
    without_timestamps,
    write_migration,
)
from sample_messages import chat_messages
from wire_proxy import Fault

NOT_WRITABLE_PRIMARY, SHUTDOWN_IN_PROGRESS = 10107, 91


def updates_per_batch(is_ferretdb: bool, batch: int) -> int:
    """`update` commands one batch sends: bulks of 50 on FerretDB's stream path, one update_many on the range path."""
    return batch // 50 if is_ferretdb else 1


@pytest.mark.slow
@pytest.mark.parametrize("path", ["stream", "range"])
def test_step_downs_shutdowns_and_a_lost_reply_mid_backfill_lose_nothing(db, proxy, proxied_env, is_ferretdb, path):
    # 9 batches of 200 on the stream path, 5 on the range path (it scans the whole table per batch on FerretDB):
    # the faults land in the 3rd, 4th and 5th
    before = load(db, 2_000 if path == "stream" else 1_000)
    per_batch = updates_per_batch(is_ferretdb and path == "stream", 200)
    faults = [proxy.add(Fault("update", "chat_messages", nth=2 * per_batch + 1, times=2, code=NOT_WRITABLE_PRIMARY)),
              proxy.add(Fault("update", "chat_messages", nth=3 * per_batch + 2, action="lose_reply")),
              proxy.add(Fault("update", "chat_messages", nth=4 * per_batch + 3, times=2, code=SHUTDOWN_IN_PROGRESS))]

    result = run_here(SCRIPT, "--batch-path", path, "--batch-size", "200", "--progress-interval", "600",
                      env=proxied_env)

    assert result.code == 0, result
    assert [fault.fired for fault in faults] == [2, 1, 2]
    retries = [line for line in result.output.splitlines() if "retrying in" in line]
    assert len(retries) == 5, result
    assert sum("NotWritablePrimary" in line or "10107" in line for line in retries) == 2
    assert_nothing_lost(db, before)


@pytest.mark.slow
def test_an_outage_longer_than_retry_for_fails_keeps_the_checkpoint_and_the_next_run_resumes(
        db, proxy, proxied_env, is_ferretdb):
    before = load(db, 1_200)
    per_batch = updates_per_batch(is_ferretdb, 200)
    proxy.add(Fault("update", "chat_messages", nth=3 * per_batch + 1, times=10**6, code=NOT_WRITABLE_PRIMARY))
    run = ("--batch-path", "stream" if is_ferretdb else "range", "--batch-size", "200", "--progress-interval", "600")

    started = time.monotonic()
    failed = run_here(SCRIPT, *run, "--retry-for", "3", env=proxied_env)

    assert failed.code == 1, failed
    assert time.monotonic() - started < 60
    errors = [line for line in failed.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "--retry-for" in errors[0] and "NotWritablePrimary" in errors[0]
    checkpoint = db.migrations_checkpoints.find_one()
    assert checkpoint["scanned"] == 600 and not checkpoint["done"]  # the three batches before the outage
    assert db.migrations_lock.find_one({"_id": "lock"})["released_at"] is not None

    proxy.clear()
    resumed = run_here(SCRIPT, *run, env=proxied_env)
    assert resumed.code == 0, resumed
    assert "resuming from the checkpoint: 600 documents" in resumed.output
    assert_nothing_lost(db, before)


def test_a_lost_reply_to_the_runners_own_lock_insert_does_not_make_it_wait(db, proxy, proxied_env):
    db.chat_messages.insert_many(chat_messages(20))
    lost = proxy.add(Fault("insert", "migrations_lock", action="lose_reply"))

    started = time.monotonic()
    result = run_here(SCRIPT, "--lock-timeout", "20", env=proxied_env)

    assert result.code == 0, result
    assert lost.fired == 1
    assert time.monotonic() - started < 15  # not the 60 s lease of its own epoch
    assert db.migrations_lock.count_documents({}) == 1
    assert db.migrations_changelog.count_documents({"name": NAME, "state": "applied"}) == 1


@pytest.mark.slow
@pytest.mark.parametrize("how", ["epoch deleted", "newer epoch"])
def test_a_holder_whose_lock_is_taken_away_stops_before_its_next_write(db, env, how):
    load(db, 3_000)
    had_metadata = 300  # one message in ten had metadata already
    # A slow run: --max-rate makes each batch of 500 take 1 s; the lease is renewed every 1.25 s. On the stream
    # path the 2,700 ids are read first, at --max-rate too (5.4 s); after the two batches waited for, 1,700
    # documents are left: 3.4 s of batches in which the lock is taken away.
    runner = start(env, "--batch-size", "500", "--max-rate", "500", "--lease", "5", "--progress-interval", "600")
    wait_for(lambda: (db.migrations_checkpoints.find_one() or {}).get("scanned", 0) >= 1000, "two batches", runner)
    holder = db.migrations_lock.find_one({"_id": "lock"})
    if how == "epoch deleted":
        db.migrations_lock.delete_many({})
    else:
        db.migrations_lock.update_one({"_id": "lock"}, {"$set": {"epoch": holder["epoch"] + 1,
                                                                 "owner": "intruder:1:beef"}})
    taken_at = time.monotonic()

    result = finish(runner)

    assert result.code == 3, result
    assert time.monotonic() - taken_at < 10
    assert "lost the migration lock" in result.output
    scanned = db.migrations_checkpoints.find_one()["scanned"]
    migrated = db.chat_messages.count_documents(HAS) - had_metadata
    assert migrated <= scanned + 500  # at most the batch under way when it noticed
    time.sleep(2)  # nothing more arrives from it
    assert db.migrations_checkpoints.find_one()["scanned"] == scanned
    assert db.chat_messages.count_documents(HAS) - had_metadata == migrated
    assert db.migrations_changelog.count_documents({"state": "applied"}) == 0
    if how == "newer epoch":
        lock = db.migrations_lock.find_one({"_id": "lock"})
        assert lock["owner"] == "intruder:1:beef" and lock["released_at"] is None  # not its to release
        assert "intruder:1:beef" in result.output


@pytest.mark.slow
def test_an_up_that_blocks_past_its_lease_is_applied_once_and_the_first_runner_fails(db, cli, env, tmp_path):
    write_migration(tmp_path, "blocking", body='''
        import time

        async def up(db):
            time.sleep(6)  # blocks the event loop: no lease renewal can run
            return await db.counter.update_one({"_id": 1}, {"$inc": {"n": 1}}, upsert=True)

        async def verify(db):
            return await db.counter.count_documents({"n": {"$gte": 1}}) == 1
        ''')
    run = ("--migrations-dir", str(tmp_path), "--lock-timeout", "30")
    first = start(env, "--all", *run, "--lease", "2", script="run_migrations.py")
    wait_for(lambda: db.migrations_lock.count_documents({}) == 1, "the first runner to take the lock", first)
    # The second one's lease outlasts its own blocked `up`; it takes the lock once the first one's has run out.
    second = start(env, "--all", *run, "--lease", "15", script="run_migrations.py")

    first_result, second_result = finish(first), finish(second)

    assert first_result.code == 3, first_result
    assert "lost the migration lock" in first_result.output
    assert second_result.code == 0, second_result
    assert db.migrations_changelog.count_documents({"name": "blocking", "state": "applied"}) == 1
    lost = db.migrations_changelog.find_one({"name": "blocking", "state": "failed"})
    assert lost["lock_lost"] is True
    status = without_timestamps(run_here("run_migrations.py", "--status", *run[:2], env=env).output)
    assert "blocking" in status and "applied" in status and "failed" not in status

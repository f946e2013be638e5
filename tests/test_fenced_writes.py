"""Fenced writes on a server without transactions (FerretDB; migrator.fencing.TimeFence): a runner paused or cut off
past its lease sends no data write after another runner took over, and no write waits past the lease. Through the
wire proxy (tests/wire_proxy.py), with the runner's --lease 4. Fencing here is by time alone: a write already on the
network when the lease ends can still land (the held-write test shows it landing, and harmless)."""

import os
import signal
import time

import pytest

from conftest import HAS, NAME, RUNNER, SCRIPT, assert_nothing_lost, finish, load, run, run_here, start, wait_for
from wire_proxy import Fault

BULKS = 4  # `update` commands a batch of 200 sends on FerretDB's stream path (bulks of 50)


def a_batch_update(nth: int, **fault) -> Fault:
    return Fault("update", "chat_messages", nth=nth, **fault)


@pytest.mark.slow
def test_a_runner_paused_mid_batch_past_its_lease_sends_nothing_after_another_runner_took_over(
        db, proxy, proxied_env, env):
    before = load(db, 2_000)  # 1,800 to migrate: 9 batches of 200, each 0.5 s at --max-rate 400
    # The 3rd batch's 2nd bulk: its reply held back 1 s, while the runner is paused (SIGSTOP) in the middle of it.
    held = proxy.add(a_batch_update(2 * BULKS + 2, action="delay", seconds=1.0))
    first = start(proxied_env, "--batch-size", "200", "--max-rate", "400", "--lease", "4", "--progress-interval", "600")
    wait_for(lambda: held.fired, "the 3rd batch", first)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        # The second runner waits for the first one's lease to run out, takes the lock, finishes and records.
        second = run_here(SCRIPT, "--lock-timeout", "30", "--progress-interval", "600", env=env)
        assert second.code == 0, second
        sent_before = proxy.count("update", "chat_messages")
    finally:
        os.kill(first.pid, signal.SIGCONT)

    result = finish(first, timeout=60)

    assert result.code == 3, result
    assert "lost the migration lock" in result.output
    assert proxy.count("update", "chat_messages") == sent_before  # not one more bulk of the batch under way
    assert db.migrations_changelog.count_documents({"name": NAME, "state": "applied"}) == 1
    assert_nothing_lost(db, before)


def test_a_batch_held_on_the_network_past_the_lease_ends_the_run_and_lands_late(db, proxy, proxied_env, env):
    before = load(db, 1_000)
    hold = proxy.add(a_batch_update(BULKS + 1, action="hold", seconds=8))  # the 2nd batch's first bulk

    started = time.monotonic()
    result = run_here(SCRIPT, "--batch-size", "200", "--lease", "4", "--progress-interval", "600", env=proxied_env)
    took = time.monotonic() - started

    assert result.code in (1, 3), result
    assert took < 6, took  # bounded by the time left on the lease (0.8 x 4 s at most), not the 8 s hold
    assert "no reply from the server within" in result.output or "lost the migration lock" in result.output
    assert hold.fired == 1
    migrated = db.chat_messages.count_documents(HAS)
    # The lock is free at once: the next run needs no wait.
    second = run_here(SCRIPT, "--lock-timeout", "0", "--progress-interval", "600", env=env)
    assert second.code == 0, second
    # What no time fence prevents: the held write reaches the server after the runner gave up on it (here
    # harmless: `$max` of null). Only a transaction (a replica set) makes it fail.
    wait_for_count = time.monotonic() + 15
    while proxy.count("update", "chat_messages") < BULKS + 1 and time.monotonic() < wait_for_count:
        time.sleep(0.1)
    time.sleep(0.5)
    assert migrated <= db.chat_messages.count_documents(HAS)
    assert_nothing_lost(db, before)


def test_a_batch_that_never_gets_a_reply_ends_the_run_within_about_the_lease_lock_released(db, proxy, proxied_env,
                                                                                             env):
    before = load(db, 1_000)
    silence = proxy.add(a_batch_update(BULKS + 1, action="silence", times=10**6))

    started = time.monotonic()
    result = run(SCRIPT, "--batch-size", "200", "--lease", "4", "--progress-interval", "600", env=proxied_env,
                 timeout=60)
    took = time.monotonic() - started

    assert result.code == 1, result
    assert took < 8, took
    assert silence.fired == 1  # not sent again: a write that got no reply within the lease stops the run
    errors = [line for line in result.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "no reply from the server within" in errors[0], result.output
    assert "time left on the migration lock's lease" in errors[0]
    second = run_here(SCRIPT, "--lock-timeout", "0", "--progress-interval", "600", env=env)
    assert second.code == 0, second  # the lock was released: taken at once
    assert_nothing_lost(db, before)


@pytest.mark.slow
def test_sigterm_during_a_batch_with_no_reply_cancels_it_after_the_grace_period(db, proxy, proxied_env, env):
    from migrator.stop import GRACE_S

    before = load(db, 1_000)
    silence = proxy.add(a_batch_update(BULKS + 1, action="silence", times=10**6))
    runner = start(proxied_env, "--batch-size", "200", "--progress-interval", "600")  # a 60 s lease
    wait_for(lambda: silence.fired, "the silenced batch", runner)
    time.sleep(0.5)
    runner.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    result = finish(runner, timeout=60)

    assert result.code == 143, result
    assert GRACE_S - 1 < time.monotonic() - signalled < GRACE_S + 5
    assert "was cancelled" in result.output and f"{GRACE_S:g} s" in result.output
    second = run_here(SCRIPT, "--lock-timeout", "0", "--progress-interval", "600", env=env)
    assert second.code == 0, second
    assert_nothing_lost(db, before)


def test_a_batch_sent_again_after_a_lost_reply_records_modified_as_a_lower_bound(db, proxy, proxied_env):
    before = load(db, 1_000)  # 900 to migrate
    lost = proxy.add(a_batch_update(BULKS + 1, action="lose_reply"))  # applied, its reply lost: sent again

    result = run_here(SCRIPT, "--batch-size", "200", "--progress-interval", "600", env=proxied_env)

    assert result.code == 0, result
    assert lost.fired == 1
    applied = db.migrations_changelog.find_one({"name": NAME, "state": "applied"})
    assert applied["modified"] <= 900 and applied["modified_at_least"] is True
    assert f"modified at least {applied['modified']:,} documents" in result.output
    assert_nothing_lost(db, before)


def test_a_restore_write_that_never_gets_a_reply_ends_the_restore_within_about_the_lease(db, proxy, proxied_env, env,
                                                                                         tmp_path):
    env["MIGRATIONS_BACKUP_DIR"] = proxied_env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path)
    load(db, 600)
    assert run_here(SCRIPT, "--backup", "--progress-interval", "600", env=env).code == 0
    [saved] = tmp_path.glob("*-apply-*.bson.gz")
    silence = proxy.add(Fault("update", "chat_messages", action="silence", times=10**6))

    started = time.monotonic()
    result = run_here(RUNNER, "--restore", str(saved), "--yes", "--lease", "4", env=proxied_env)

    assert result.code == 1, result
    assert time.monotonic() - started < 10
    assert silence.fired == 1 and "no reply from the server within" in result.output, result.output
    assert db.migrations_changelog.find_one({"action": "restore", "state": "failed"}) is not None
    second = run_here(RUNNER, "--restore", str(saved), "--yes", "--lock-timeout", "0", env=env)
    assert second.code == 0, second  # the lock was released, and the restore done whole now
    assert db.chat_messages.count_documents(HAS) == 60  # as before the apply: only the app's metadata

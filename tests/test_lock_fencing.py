"""The lock decides who may record (issue 21, cases 2-4): a runner that lost the lock records no success and exits
3 naming the new holder; a renewal and a takeover never both succeed; the changelog's order survives a server
clock that jumps 30 s either way (it is the lock's sequence, not a time)."""

import asyncio
import contextlib
import json
import signal
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from pymongo import AsyncMongoClient

from conftest import HAS, NAME, SCRIPT, finish, load, plant_lock, run_here, start
from migrator.clock import as_utc
from migrator.errors import MigrationError
from migrator.lock import LockLost, MigrationLock
from wire_proxy import Fault, WireProxy

HOST_UNREACHABLE = 6


@pytest.fixture
def proxies(server_url):
    host, port = urlsplit(server_url).hostname, urlsplit(server_url).port or 27017
    with WireProxy(host, port) as first, WireProxy(host, port) as second:
        yield first, second


def status_of(env, name=NAME) -> str:
    result = run_here("run_migrations.py", "--status", "--json", env=env)
    assert result.code == 0, result
    return {row["name"]: row for row in json.loads(result.stdout)}[name]["state"]


# ----- case 2: a runner whose final record cannot land while another takes the lock over -----

def test_a_runner_that_lost_the_lock_while_recording_exits_3_naming_the_new_holder(db, env, proxies):
    proxy = proxies[0]
    had_metadata = load(db, 300)
    had_metadata = sum(1 for doc in had_metadata.values() if "metadata" in doc)
    # The first insert is its `running` entry; the next four (its `applied` entry) fail as if the host were gone.
    failing = proxy.add(Fault("insert", "migrations_changelog", nth=2, times=4, action="error",
                              code=HOST_UNREACHABLE))
    first = start({**env, "MONGODB_URL": proxy.url}, "--lease", "2", "--retry-for", "60")
    deadline = time.monotonic() + 60
    while failing.fired < 2:  # it is retrying its final record
        assert first.poll() is None and time.monotonic() < deadline, finish(first)
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # a pause (a VM migration, a stop-the-world collection): its lease runs out
    try:
        second = run_here(SCRIPT, "--rollback", "--yes", "--no-backup", "--lease", "2", "--lock-timeout", "20", env=env)
    finally:
        first.send_signal(signal.SIGCONT)
    first_result = finish(first, timeout=60)

    assert second.code == 0, second
    assert first_result.code == 3, first_result
    holder = db.migrations_lock.find_one({"_id": "lock"})["owner"]
    assert "lost the migration lock" in first_result.output and holder in first_result.output, first_result
    assert "applied and verified" not in first_result.output
    assert db.migrations_changelog.count_documents({"state": "applied", "lock_lost": {"$ne": True}}) == 0
    assert db.chat_messages.count_documents(HAS) == had_metadata  # the rollback's result stands
    assert status_of(env) == "rolled_back"
    assert run_here("run_migrations.py", "--check", env=env).code == 6  # not applied: as the data says


def test_a_lost_reply_to_a_takeover_is_recognised_by_reading_the_lock_back(db, env, proxies):
    proxy = proxies[0]
    load(db, 20)
    plant_lock(db, expires_in_s=-5, owner="dead:1:beef")
    lost = proxy.add(Fault("update", "migrations_lock", action="lose_reply"))

    started = time.monotonic()
    result = run_here(SCRIPT, "--lock-timeout", "20", env={**env, "MONGODB_URL": proxy.url})

    assert result.code == 0, result
    assert lost.fired == 1
    assert time.monotonic() - started < 15  # it did not wait for its own lease
    [lock] = db.migrations_lock.find()
    assert lock["epoch"] == 2 and lock["took_over"] == "dead:1:beef" and lock["released_at"] is not None


# ----- case 3: A's renewal and B's takeover interleaved on the wire -----

@pytest.mark.parametrize("renewal_read", ["just before expiry", "early, landing after the takeover"])
def test_a_renewal_and_a_takeover_never_both_succeed(db, server_url, proxies, renewal_read):
    first_proxy, second_proxy = proxies
    lease = 2.0
    early = renewal_read.startswith("early")
    # A's renewal update is held on the wire; so is B's takeover write (an update, or the old insert of epoch 2),
    # so that A's renewal lands between B's read of the lock and B's write.
    first_proxy.add(Fault("update", "migrations_lock", action="hold", seconds=2.0 if early else 0.6))
    for command in ("update", "insert"):
        second_proxy.add(Fault(command, "migrations_lock", action="hold", seconds=0.6))

    async def scenario() -> tuple[bool, bool, str]:
        clients = [AsyncMongoClient(proxy.url, tz_aware=True) for proxy in proxies]
        try:
            first = MigrationLock(clients[0][db.name], lease_s=lease, owner="first:1:aaaa")
            second = MigrationLock(clients[1][db.name], lease_s=lease, owner="second:2:bbbb")
            await first.acquire(timeout_s=1)
            expires_at = db.migrations_lock.find_one(sort=[("_id", -1)])["expires_at"]
            left_s = (as_utc(expires_at) - as_utc(db.command("hello")["localTime"])).total_seconds()
            await asyncio.sleep(max(0.0, left_s - (1.0 if early else 0.17)))  # A reads the clock, then sends
            renewal = asyncio.create_task(first.renew())
            await asyncio.sleep(1.05 if early else 0.22)  # just after expiry: B reads the lock, then writes
            await second.acquire(timeout_s=10)
            with contextlib.suppress(MigrationError):  # no answer in time: not renewed
                await renewal
            first_holds = not first.lost_reason and first.remaining_s() > 0
            try:
                first.check()
                message = ""
            except LockLost as exc:
                message = str(exc)
            return first_holds, second.epoch is not None, message
        finally:
            for client in clients:
                await client.close()

    first_holds, second_holds, message = asyncio.run(scenario())

    assert second_holds
    assert not first_holds, "two holders"
    assert message.startswith("lost the migration lock")  # A.check() fails at once
    lock = db.migrations_lock.find_one({"_id": "lock"})
    assert lock["owner"] == "second:2:bbbb" and lock["epoch"] == 2


def test_a_stamp_after_a_takeover_fails_naming_the_new_holder(db, server_url):
    async def scenario() -> str:
        client = AsyncMongoClient(server_url, tz_aware=True)
        try:
            first = MigrationLock(client[db.name], lease_s=1.0, owner="first:1:aaaa")
            await first.acquire(timeout_s=1)
            assert await first.stamp() == {"epoch": 1, "seq": 1}
            second = MigrationLock(client[db.name], lease_s=30, owner="second:2:bbbb")
            await second.acquire(timeout_s=5)  # once the first one's lease ran out
            assert await second.stamp() == {"epoch": 2, "seq": 2}
            first._renewed_at = time.monotonic()  # as if its clock said it still had time: the server decides
            with pytest.raises(LockLost) as lost:
                await first.stamp()
            return str(lost.value)
        finally:
            await client.close()

    message = asyncio.run(scenario())
    assert "another runner took it over: second:2:bbbb since" in message
    assert LockLost(message).exit_code == 3


# ----- case 4: the server's clock, as `hello` says it, jumps between an apply and its rollback -----

@pytest.mark.parametrize("shifted", ["apply +30 s", "rollback -30 s"])
def test_the_changelog_order_survives_a_clock_that_jumps(db, env, proxies, shifted):
    proxy = proxies[0]
    had_metadata = sum(1 for doc in load(db, 50).values() if "metadata" in doc)
    seconds = 30 if shifted.startswith("apply") else -30

    def shift(body: dict) -> dict:
        if "localTime" in body:
            body["localTime"] = body["localTime"] + timedelta(seconds=seconds)
        return body
    proxy.add(Fault("hello", action="patch", patch=shift, times=10**6))
    apply_env = {**env, "MONGODB_URL": proxy.url} if seconds > 0 else env
    rollback_env = {**env, "MONGODB_URL": proxy.url} if seconds < 0 else env

    assert run_here(SCRIPT, env=apply_env).code == 0
    assert run_here(SCRIPT, "--rollback", "--yes", "--no-backup", env=rollback_env).code == 0

    entries = list(db.migrations_changelog.find({"state": {"$in": ["applied", "rolled_back"]}}))
    [applied] = [e for e in entries if e["state"] == "applied"]
    [rolled_back] = [e for e in entries if e["state"] == "rolled_back"]
    assert rolled_back["at"] < applied["at"]  # the clocks say the rollback came first
    assert db.chat_messages.count_documents(HAS) == had_metadata
    assert status_of(env) == "rolled_back"
    assert run_here("run_migrations.py", "--check", env=env).code == 6
    assert rolled_back["seq"] > applied["seq"]  # the lock's sequence says what happened


# ----- the heartbeat: renewals that fail, or never get an answer, stop a run within about the lease -----

SLEEPY_UP = '''"""Sets a on every item, then awaits a long time (no batches: nothing of its own checks the lock).

Date: 2025-01-01
"""
import asyncio


async def up(db):
    result = await db.items.update_many({"a": {"$exists": False}}, {"$set": {"a": 1}})
    await asyncio.sleep(60)
    return result


async def verify(db):
    return await db.items.count_documents({"a": {"$exists": False}}) == 0
'''


@pytest.mark.parametrize("renewals", ["error", "silence"])
def test_a_run_whose_renewals_fail_stops_within_the_lease_with_exit_3(db, env, proxies, tmp_path, renewals):
    (tmp_path / "sleepy_up.py").write_text(SLEEPY_UP)
    db.items.insert_many([{"n": i} for i in range(5)])
    proxy = proxies[0]
    proxy.add(Fault("update", "migrations_lock", times=10**6, action=renewals, code=HOST_UNREACHABLE))

    started = time.monotonic()
    result = run_here("run_migrations.py", "--all", "--migrations-dir", str(tmp_path), "--lease", "2",
                      env={**env, "MONGODB_URL": proxy.url})

    assert result.code == 3, result
    assert time.monotonic() - started < 10  # not the 60 s of its `up`
    assert "lost the migration lock: its lease ran out" in result.output, result
    assert "Traceback" not in result.output
    assert db.migrations_changelog.count_documents({"name": "sleepy_up", "state": "applied"}) == 0


def test_a_cancellation_that_is_not_the_locks_goes_through_held_and_the_lock_is_released(db, server_url):
    """Ctrl-C (asyncio.run cancels the main task) must stay a cancellation, not become a lost lock."""
    async def scenario() -> None:
        client = AsyncMongoClient(server_url, tz_aware=True)
        lock = MigrationLock(client[db.name], lease_s=2)
        try:
            async def work() -> None:
                async with lock.held(timeout_s=1):
                    await asyncio.sleep(30)
            task = asyncio.create_task(work())
            await asyncio.sleep(0.8)  # past one renewal
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await client.close()

    asyncio.run(scenario())
    lock = db.migrations_lock.find_one({"_id": "lock"})
    assert lock["released_at"] is not None

"""Fenced writes (migrator/fencing.py), the grace period of a stop request (migrator/stop.py) and a walk's counts
of one batch (migrator/batches.py): their rules, on fakes; no server."""

import asyncio
import signal

import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout, WriteConcernError

from migrator.batches import RANGE
from migrator.checkpoints import Walk
from migrator.errors import MigrationError
from migrator.fencing import NoFence, TimeFence, TransactionFence, fence_for
from migrator.lock import LockLost
from migrator.profile import ferretdb, mongodb
from migrator.retry import Retry, describe
from migrator.stop import StopRequest


class FakeLock:
    def __init__(self, epoch=1, remaining_s=3.0):
        self.epoch, self.remaining, self.checks, self.lost = epoch, remaining_s, 0, False

    def check(self, room_s: float = 0.0) -> None:
        self.checks += 1
        if self.lost:
            raise LockLost("lost the migration lock: taken over")

    def remaining_s(self) -> float:
        return self.remaining


def timed_out() -> NetworkTimeout:
    return NetworkTimeout("timed out")  # what pymongo.timeout's deadline raises on a reply that never comes


def test_the_fence_is_chosen_by_the_lock_and_the_server():
    retry, database = Retry(), type("Database", (), {"client": None})()
    assert isinstance(fence_for(None, mongodb(), database, retry), NoFence)
    assert type(fence_for(FakeLock(epoch=None), mongodb(), database, retry)) is NoFence  # not held: the Python API
    assert type(fence_for(FakeLock(), ferretdb(), database, retry)) is TimeFence
    with_transactions = mongodb().__class__(**{**vars(mongodb()), "transactions": True})
    assert type(fence_for(FakeLock(), with_transactions, database, retry)) is TransactionFence


def test_the_time_fence_checks_the_lock_before_every_try_and_sends_nothing_once_it_is_lost():
    lock, sent = FakeLock(), []

    async def write(session):
        sent.append(session)
        lock.lost = True  # taken over while this try failed
        raise AutoReconnect("connection reset")

    with pytest.raises(LockLost):
        asyncio.run(TimeFence(lock, Retry(retry_for_s=5)).run("batch 1", write))
    assert sent == [None]  # one try, no retry once the lock is another's


def test_a_write_with_no_reply_before_the_lease_ends_stops_the_run_and_is_not_sent_again():
    lock, sent = FakeLock(remaining_s=2.5), []

    async def write(session):
        sent.append(session)
        raise timed_out()

    with pytest.raises(MigrationError) as caught:
        asyncio.run(TimeFence(lock, Retry(retry_for_s=5)).run("m: batch 2", write))
    assert not isinstance(caught.value, LockLost) and caught.value.exit_code == 1
    assert str(caught.value).startswith("m: batch 2: no reply from the server within 2.5 s, the time left on the "
                                        "migration lock's lease (NetworkTimeout: timed out)")
    assert sent == [None]


def test_a_unit_sent_again_is_counted_its_counts_are_then_a_lower_bound():
    fence, tries = NoFence(Retry(retry_for_s=5)), []

    async def write(session):
        tries.append(1)
        if len(tries) == 1:
            raise AutoReconnect("reply lost")
        return "done"

    assert asyncio.run(fence.run("batch 1", write)) == "done"
    assert fence.resent == 1
    assert asyncio.run(fence.run("batch 2", write)) == "done"
    assert fence.resent == 1


def test_a_stop_request_waits_the_grace_period_for_the_batch_then_cancels_it():
    async def scenario(batch_s: float) -> tuple[str, float]:
        stop = StopRequest()
        cancelled = []

        async def batch():
            try:
                await asyncio.sleep(batch_s)
                return "done"
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
        asyncio.get_running_loop().call_later(0.05, stop._received, signal.SIGTERM)
        started = asyncio.get_running_loop().time()
        try:
            result = await stop.within_grace(batch(), "m: batch 3", grace_s=0.2)
        except MigrationError as error:
            assert error.exit_code == 143 and cancelled == [True]
            result = str(error)
        return result, asyncio.get_running_loop().time() - started

    assert asyncio.run(scenario(0.1))[0] == "done"  # done within the grace period: its result stands
    said, took = asyncio.run(scenario(60))
    assert said.startswith("m: batch 3 stopped by SIGTERM: the batch under way was not done 0.2 s after it and was "
                           "cancelled")
    assert 0.2 <= took < 1


def test_a_batch_counted_on_a_copy_leaves_the_walk_as_it_was_until_it_is_sure():
    walk = Walk("chat_messages", "sum", "work", RANGE, last_id=5, documents_done=10, matched=9, modified=8, batches=1)
    after = Walk(**vars(walk)).add(20, 25, 19, 18)
    assert (walk.last_id, walk.documents_done, walk.batches) == (5, 10, 1)
    assert (after.last_id, after.documents_done, after.matched, after.modified, after.batches) == (25, 30, 28, 26, 2)


def test_a_write_concern_error_names_its_code_in_the_retry_warning():
    error = WriteConcernError("waiting for replication timed out", 64,
                              {"code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication"})
    assert describe(error) == "WriteConcernError: waiting for replication timed out (code 64 WriteConcernFailed)"

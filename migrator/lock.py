"""One runner at a time: a leased lock that needs nothing but an atomic insert.

The lock is a series of epochs, documents `{_id: n, owner, acquired_at, expires_at, released_at}`.
The latest epoch holds the lock unless it is released or its lease has expired by the server's
clock. To take the lock a runner inserts epoch n+1: the unique `_id` lets exactly one runner win,
even on servers whose conditional updates are not atomic. What makes it hold on a
replica set:
- every write is majority-acknowledged and retried on a failover (migrator.retry); an insert whose
  reply was lost is recognised by reading the epoch back: its owner is this runner's random id;
- an epoch inserted from a stale read (its number pruned, a newer one present) does not count;
- a renewal is one conditional update (this epoch, this owner, not released, not expired by the
  server's clock); one that matches nothing, or any newer epoch, means the lock is lost;
- the lease is counted from before a renewal is sent, and a holder stops before a write (`check`)
  unless the lease has room for it; after a migration's `up`, `confirm` renews once more before
  the changelog says applied.
"""

import asyncio
import contextlib
import os
import secrets
import socket
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pymongo
from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from migrator.clock import bookkeeping, server_now
from migrator.errors import ExitCode, MigrationError
from migrator.retry import Retry

COLLECTION = "migrations_lock"
KEEP_EPOCHS = 20
SAFETY = 0.8  # of the lease: a holder writes only while less than this has passed since its last renewal
LEASE_S = 60.0  # a holder renews its epoch well within this; a dead holder's lock is free once it runs out
WAIT_S = 60.0  # how long a runner waits for another runner's lock before giving up (exit 3)


class LockLost(MigrationError):
    """This runner no longer holds the lock: it must not write, nor record, anything more (exit 3)."""

    def __init__(self, message: str):
        super().__init__(message, ExitCode.LOCKED)


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def describe(epoch: dict) -> str:
    return f"{epoch['owner']} since {epoch['acquired_at']:%Y-%m-%d %H:%M:%S} UTC"


class MigrationLock:
    def __init__(self, database: AsyncDatabase, lease_s: float = LEASE_S, owner: str | None = None,
                 retry: Retry | None = None):
        self.database = database
        self.collection = bookkeeping(database, COLLECTION)
        self.lease_s = lease_s
        self.owner = owner or new_owner()
        self.retry = retry or Retry()
        self.epoch: int | None = None
        self.lost_reason = ""
        self._renewed_at = 0.0  # monotonic time at which the last successful renewal was SENT

    async def latest(self) -> dict | None:
        return await self.retry("reading the lock", lambda: self.collection.find_one({}, sort=[("_id", DESCENDING)]))

    async def holder(self) -> dict | None:
        """The epoch that holds the lock now, None when it is free."""
        latest = await self.latest()
        if latest is None or self.is_free(latest, await server_now(self.database)):
            return None
        return latest

    @staticmethod
    def is_free(epoch: dict | None, now: datetime) -> bool:
        return epoch is None or epoch.get("released_at") is not None or epoch["expires_at"] <= now

    async def try_acquire(self) -> dict | None:
        """Take the lock if it is free; return the epoch that holds it otherwise."""
        sent_at = time.monotonic()
        latest = await self.latest()
        now = await self.retry("reading the server's clock", lambda: server_now(self.database))
        if not self.is_free(latest, now):
            return latest
        number = (latest["_id"] + 1) if latest else 1
        epoch = {"_id": number, "owner": self.owner, "acquired_at": now,
                 "expires_at": now + timedelta(seconds=self.lease_s), "released_at": None,
                 "took_over": latest["owner"] if latest and latest.get("released_at") is None else None}
        if not await self.retry("taking the lock", lambda: self._insert_epoch(epoch)):
            return await self.latest() or {"owner": "another runner", "acquired_at": now}
        newer = await self.retry("checking the lock", lambda: self.collection.find_one({"_id": {"$gt": number}}))
        if newer is not None:  # our number was read before newer epochs were taken (and ours pruned)
            await self.retry("giving up a stale lock epoch", lambda: self._release_epoch(number, now))
            return newer
        self.epoch, self._renewed_at, self.lost_reason = number, sent_at, ""
        await self.retry("pruning old lock epochs",
                         lambda: self.collection.delete_many({"_id": {"$lte": number - KEEP_EPOCHS}}))
        return None

    async def _insert_epoch(self, epoch: dict) -> bool:
        """Insert it; True if it is ours, also when a retry finds the first try applied (its reply lost)."""
        try:
            await self.collection.insert_one(epoch)
            return True
        except DuplicateKeyError:
            there = await self.collection.find_one({"_id": epoch["_id"]})
            return there is not None and there.get("owner") == self.owner

    async def _release_epoch(self, number: int, now: datetime) -> None:
        await self.collection.update_one({"_id": number, "owner": self.owner}, {"$set": {"released_at": now}})

    async def acquire(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            holder = await self.try_acquire()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise MigrationError(
                    f"the migration lock is held by {describe(holder)}; waited {timeout_s:g} s "
                    "(if that runner is dead, its lease expires by itself, or use --force-unlock)", ExitCode.LOCKED)
            await asyncio.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    async def renew(self) -> None:
        """Extend the lease, if this runner still holds it; otherwise note why it lost it."""
        sent_at = time.monotonic()

        async def renew() -> tuple[int, dict | None]:
            now = await server_now(self.database)
            result = await self.collection.update_one(
                {"_id": self.epoch, "owner": self.owner, "released_at": None, "expires_at": {"$gt": now}},
                {"$set": {"expires_at": now + timedelta(seconds=self.lease_s)}})
            newer = await self.collection.find_one({"_id": {"$gt": self.epoch}})
            return result.matched_count, newer

        matched, newer = await self.retry("renewing the lock", renew)
        if newer is not None:
            self.lost_reason = (f"another runner took the lock over ({newer['owner']}; the lease had expired, "
                                "or --force-unlock)")
        elif not matched:
            self.lost_reason = "its lease had expired or its lock record was removed"
        else:
            self._renewed_at = sent_at

    def remaining_s(self) -> float:
        """How long this runner may still write: until SAFETY x lease after the last renewal was sent (0: stop).
        Every write of a holder is bounded by this (pymongo.timeout), so none is still waiting when the lease ends."""
        if self.epoch is None:
            return float("inf")
        return max(0.0, self.lease_s * SAFETY - (time.monotonic() - self._renewed_at))

    async def touch(self, session) -> None:
        """Inside a transaction (migrator.fencing): write to the lock document, filtered by this runner's epoch, so
        that the transaction conflicts with any takeover and aborts once the lock is another's. LockLost when the
        document is no longer this runner's epoch."""
        # STAND-IN on branch fence for its wire tests (the "lock" helper's one-document lock replaces it)
        self.check()
        with pymongo.timeout(max(0.05, self.remaining_s())):
            after = await self.collection.find_one_and_update(
                {"_id": self.epoch, "owner": self.owner, "released_at": None}, {"$inc": {"touches": 1}},
                session=session)
        if after is None:
            self.lost_reason = "its lock epoch no longer matched in a fenced write (taken over, or removed)"
            self.check()

    async def stamp(self, session=None) -> dict:
        """For a changelog entry: {"epoch": n, "seq": k}, k the next number of the database's sequence, taken by a
        conditional update of the lock document by this runner's epoch (so taken under the lock, in order).
        LockLost when the lock is no longer this runner's. {} when this runner holds no lock (the Python API's
        steps run without one)."""
        raise NotImplementedError  # CONTRACT: the one-document lock implements it

    def check(self, room_s: float = 0.0) -> None:
        """Call before a write: stop if the lock is lost, or if its lease may not last `room_s` more."""
        if not self.lost_reason and time.monotonic() - self._renewed_at + room_s > self.lease_s * SAFETY:
            self.lost_reason = f"the lease could not be renewed in time ({self.lease_s:g} s lease)"
        if self.lost_reason:
            raise LockLost(f"lost the migration lock: {self.lost_reason}; stopped before writing more")

    async def ensure_room(self, room_s: float) -> None:
        """Before a batch that takes about `room_s`: renew now if the lease may not outlast it, then check."""
        self.check()
        if time.monotonic() - self._renewed_at + room_s > self.lease_s * SAFETY:
            await self.renew()
            if room_s > self.lease_s * SAFETY:
                raise LockLost(f"a batch takes {room_s:.1f} s, too long for the {self.lease_s:g} s lease of the "
                               "migration lock: lower --batch-size (or raise --lease)")
        self.check(room_s)

    async def confirm(self) -> None:
        """Renew now and make sure the lock is still ours: before recording that a migration is applied."""
        if self.epoch is None:
            return
        if not self.lost_reason:
            await self.renew()
        self.check()

    async def release(self) -> None:
        if self.epoch is not None:
            number, self.epoch = self.epoch, None
            await self.retry("releasing the lock", lambda: self._release_epoch_now(number))

    async def _release_epoch_now(self, number: int) -> None:
        await self._release_epoch(number, await server_now(self.database))

    async def _heartbeat(self) -> None:
        while not self.lost_reason:
            await asyncio.sleep(self.lease_s / 4)
            with contextlib.suppress(PyMongoError, MigrationError):  # check() stops the work once the lease may end
                await self.renew()

    @asynccontextmanager
    async def held(self, timeout_s: float):
        await self.acquire(timeout_s)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            yield self
        finally:
            heartbeat.cancel()
            with contextlib.suppress(PyMongoError, MigrationError):  # the lease expires by itself
                await self.release()

    async def force_unlock(self) -> dict | None:
        """Free the lock whoever holds it: a released epoch on top tells a live holder it lost it."""
        latest = await self.latest()
        now = await server_now(self.database)
        if latest is None or self.is_free(latest, now):
            return None
        await self.collection.insert_one({"_id": latest["_id"] + 1, "owner": f"force-unlock by {self.owner}",
                                          "acquired_at": now, "expires_at": now, "released_at": now})
        return latest

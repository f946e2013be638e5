"""One runner at a time: a leased lock that needs nothing but an atomic insert.

The lock is a series of epochs, documents `{_id: n, owner, acquired_at, expires_at, released_at}`.
The latest epoch holds the lock unless it is released or its lease has expired by the server's
clock. To take the lock a runner inserts epoch n+1: the unique `_id` lets exactly one runner win,
even on servers whose conditional updates are not atomic (FerretDB). A holder renews its lease
with a heartbeat; when it sees a newer epoch (taken over, or --force-unlock), it has lost the lock.
"""

import asyncio
import os
import secrets
import socket
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from migrator.clock import server_now
from migrator.errors import ExitCode, MigrationError

COLLECTION = "migrations_lock"
KEEP_EPOCHS = 20


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def describe(epoch: dict) -> str:
    return f"{epoch['owner']} since {epoch['acquired_at']:%Y-%m-%d %H:%M:%S} UTC"


class MigrationLock:
    def __init__(self, database: AsyncDatabase, lease_s: float = 60.0, owner: str | None = None):
        self.database = database
        self.collection = database[COLLECTION]
        self.lease_s = lease_s
        self.owner = owner or new_owner()
        self.epoch: int | None = None
        self.lost_reason = ""
        self._renewed_at = 0.0  # monotonic time of the last renewal that reached the server

    async def latest(self) -> dict | None:
        return await self.collection.find_one({}, sort=[("_id", DESCENDING)])

    @staticmethod
    def is_free(epoch: dict | None, now: datetime) -> bool:
        return epoch is None or epoch.get("released_at") is not None or epoch["expires_at"] <= now

    async def try_acquire(self) -> dict | None:
        """Take the lock if it is free; return the epoch that holds it otherwise."""
        latest = await self.latest()
        now = await server_now(self.database)
        if not self.is_free(latest, now):
            return latest
        number = (latest["_id"] + 1) if latest else 1
        try:
            await self.collection.insert_one({
                "_id": number, "owner": self.owner, "acquired_at": now,
                "expires_at": now + timedelta(seconds=self.lease_s), "released_at": None,
                "took_over": latest["owner"] if latest and latest.get("released_at") is None else None,
            })
        except DuplicateKeyError:  # another runner took this epoch first
            return await self.latest() or {"owner": "another runner", "acquired_at": now}
        self.epoch, self._renewed_at = number, time.monotonic()
        await self.collection.delete_many({"_id": {"$lte": number - KEEP_EPOCHS}})
        return None

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
        """Extend the lease; notice a newer epoch, i.e. a lost lock."""
        if await self.collection.find_one({"_id": self.epoch + 1}) is not None:
            self.lost_reason = "another runner took the lock over (its lease had expired, or --force-unlock)"
            return
        now = await server_now(self.database)
        await self.collection.update_one({"_id": self.epoch}, {"$set": {"expires_at": now + timedelta(seconds=self.lease_s)}})
        self._renewed_at = time.monotonic()

    def check(self) -> None:
        """Call between batches: stop before writing more if the lease may be gone."""
        if not self.lost_reason and time.monotonic() - self._renewed_at > self.lease_s * 0.8:
            self.lost_reason = f"the lease could not be renewed for {self.lease_s * 0.8:.0f} s"
        if self.lost_reason:
            raise MigrationError(f"lost the migration lock: {self.lost_reason}; stopped between batches")

    async def release(self) -> None:
        if self.epoch is not None:
            await self.collection.update_one({"_id": self.epoch, "owner": self.owner},
                                             {"$set": {"released_at": await server_now(self.database)}})
            self.epoch = None

    async def _heartbeat(self) -> None:
        while not self.lost_reason:
            await asyncio.sleep(self.lease_s / 4)
            try:
                await self.renew()
            except PyMongoError:
                pass  # check() stops the work once the lease may have run out

    @asynccontextmanager
    async def held(self, timeout_s: float):
        await self.acquire(timeout_s)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            yield self
        finally:
            heartbeat.cancel()
            try:
                await self.release()
            except PyMongoError:
                pass  # the lease expires by itself

    async def force_unlock(self) -> dict | None:
        """Free the lock whoever holds it: a released epoch on top tells a live holder it lost it."""
        latest = await self.latest()
        if self.is_free(latest, await server_now(self.database)):
            return None
        now = await server_now(self.database)
        await self.collection.insert_one({"_id": latest["_id"] + 1, "owner": f"force-unlock by {self.owner}",
                                          "acquired_at": now, "expires_at": now, "released_at": now})
        return latest

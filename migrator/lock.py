"""One runner at a time: a leased lock, one document per database, that only conditional updates change.

`migrations_lock` holds `{_id: "lock", epoch, owner, acquired_at, renewed_at, expires_at, released_at, seq, touches,
took_over, pid_space}` (owner: host:pid:random; pid_space: where that pid is known, see migrator.liveness).
Acquiring inserts it (epoch 1) when absent: a duplicate key means another runner was first. Taking over,
renewing, stamping (the changelog's sequence), touching (fenced transactions), releasing and force-unlocking
are conditional updates of it by its epoch (migrator.lock_commands): at most one of a renewal and a takeover
succeeds, and a renewal, stamp or touch after a takeover or a force-unlock matches nothing. A write whose reply
was lost is recognised by reading the document back (this runner's random owner id, the epoch it wrote).
This runner's own operations on it go one at a time (a renewal and a stamp at once would lose one update on a
server whose updates are not atomic).

Expiry is decided on the server's clock where it can (`profile.server_clock`: `$$NOW` in `$expr` filters and
pipeline updates, atomic). Where it cannot (FerretDB: neither, and an update reads then writes), filters compare
with the time `hello` says (one node, one clock); a renewal needs more than a margin left on the lease and a
takeover waits a margin past its end, so clock reads up to a margin apart (a round trip) cannot both match, and
each change is read back (the last writer wins). Beyond that margin, fencing is by time alone: a holder stops
writing once SAFETY x lease passed without a renewal, and every operation on the lock is bounded in time.
The heartbeat renews every quarter lease; after SAFETY x lease without a successful renewal (its own failures
included), or once the document is another's, the lock is lost: the task inside `held()` is cancelled and
leaves it with LockLost (exit 3). A live document of the previous version (integer `_id`s, one per epoch: a
runner of that version in a rolling upgrade) holds the lock; the others are pruned.
"""

import asyncio
import contextlib
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import pymongo
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from migrator import liveness
from migrator import lock_commands as commands
from migrator.clock import as_utc, bookkeeping, server_now
from migrator.errors import ExitCode, MigrationError
from migrator.events import Reporter, WaitingForLock, silent
from migrator.lock_commands import describe, is_free, last_renewed, new_owner
from migrator.profile import ServerProfile, detect
from migrator.retry import Retry

COLLECTION = "migrations_lock"
SAFETY = 0.8  # of the lease: a holder writes only while less than this has passed since its last renewal
LEASE_S = 60.0  # a holder renews its epoch well within this; a dead holder's lock is free once it runs out
WAIT_S = 60.0  # how long a runner waits for another runner's lock before giving up (exit 3)
MAX_MARGIN_S = 2.0  # the renewal and takeover margin on a server without its own clock: lease / 8, at most this
MAX_OPERATION_S = 10.0  # a lock operation (retries included) without an answer gives up after this


class LockLost(MigrationError):
    """This runner no longer holds the lock: it must not write, nor record, anything more (exit 3)."""

    def __init__(self, message: str):
        super().__init__(message, ExitCode.LOCKED)


@dataclass(frozen=True)
class Holder:
    """Who holds the lock: its document, whether that runner is alive (migrator.liveness: ALIVE, DEAD or UNKNOWN),
    how long ago it last renewed its lease and how long that lease still runs (by the server's clock)."""
    lock: dict
    runner: str
    renewed_s_ago: float
    expires_in_s: float


def refusal_to_unlock(lock: dict) -> MigrationError:
    """--force-unlock of a runner alive on this host: refused, saying how to stop it instead."""
    pid = str(lock["owner"]).rsplit(":", 2)[1]
    return MigrationError(
        f"the migration lock is held by {describe(lock)}, a runner still alive on this host (pid {pid}): not removed "
        f"(it would go on writing beside the next runner). Stop it instead: Ctrl-C in its terminal, or "
        f"`kill -TERM {pid}`; it stops at its next batch or write and releases the lock", ExitCode.LOCKED)


class MigrationLock:
    def __init__(self, database: AsyncDatabase, lease_s: float = LEASE_S, owner: str | None = None,
                 retry: Retry | None = None, profile: ServerProfile | None = None, report: Reporter = silent):
        self.database = database
        self.report = report
        self.collection = bookkeeping(database, COLLECTION)
        self.lease_s = lease_s
        self.margin_s = min(MAX_MARGIN_S, lease_s / 8)
        self.owner = owner or new_owner()
        self.retry = retry or Retry()
        self.profile = profile  # None: detected when first needed
        self.epoch: int | None = None
        self.lost_reason = ""
        self._renewed_at = 0.0  # monotonic time at which the last successful renewal was SENT
        self._serial = asyncio.Lock()  # this runner's operations on the lock document, one at a time
        self._body: asyncio.Task | None = None  # the task inside held(), cancelled when the lock is lost
        self._cancelled = self._noticed = False  # this lock cancelled the task inside held(); it saw the loss
        self._heartbeat_due = float("inf")  # monotonic time the heartbeat is due to wake: later means a blocked loop

    async def _server_clock(self) -> bool:
        self.profile = self.profile or await detect(self.database)
        return self.profile.server_clock

    async def _now(self) -> datetime | None:
        """None where the server decides expiry itself ($$NOW); else its time, read by `hello`."""
        return None if await self._server_clock() else await server_now(self.database)

    async def _bounded(self, what: str, operation, seconds: float = MAX_OPERATION_S):
        """Run it with retries, all of it within `seconds` (a request that never gets an answer too)."""
        seconds = max(0.05, seconds)
        try:
            async with asyncio.timeout(seconds):
                with pymongo.timeout(seconds):
                    return await self.retry(what, operation)
        except TimeoutError as exc:
            raise MigrationError(f"{what}: no answer from the server within {seconds:.1f} s") from exc

    async def _documents(self) -> tuple[dict | None, dict | None]:
        """(the lock document, the newest document of the previous version)."""
        found = await self._bounded("reading the lock", lambda: self.collection.find({}).to_list(None))
        lock = next((doc for doc in found if doc["_id"] == commands.LOCK_ID), None)
        legacy = [doc for doc in found if isinstance(doc["_id"], int)]
        return lock, max(legacy, key=lambda doc: doc["_id"], default=None)

    async def _read(self, seconds: float = MAX_OPERATION_S) -> dict | None:
        return await self._bounded("reading the lock", lambda: self.collection.find_one(commands.THE_LOCK), seconds)

    async def holder(self) -> dict | None:
        """The document that holds the lock now, None when it is free."""
        return (await self._holding())[0]

    async def _holding(self) -> tuple[dict | None, datetime]:
        lock, legacy = await self._documents()
        now = await self._bounded("reading the server's clock", lambda: server_now(self.database))
        return next((doc for doc in (legacy, lock) if not is_free(doc, now)), None), now

    async def holder_state(self) -> Holder | None:
        """Who holds the lock now, whether that runner is alive, when it last renewed it; None when it is free."""
        lock, now = await self._holding()
        if lock is None:
            return None
        return Holder(lock, liveness.state_of_runner(str(lock["owner"]), lock.get("pid_space")),
                      (as_utc(now) - last_renewed(lock)).total_seconds(),
                      (as_utc(lock["expires_at"]) - as_utc(now)).total_seconds())

    # ----- taking and keeping it -----

    async def try_acquire(self) -> dict | None:
        """Take the lock if it is free; return the document that holds it otherwise."""
        sent_at = time.monotonic()
        lock, legacy = await self._documents()
        now = await self._bounded("reading the server's clock", lambda: server_now(self.database))
        if not is_free(legacy, now):  # a runner of the previous version holds it
            return legacy
        if lock is None:
            took = legacy["owner"] if legacy and legacy.get("released_at") is None else None
            document = commands.new_lock(self.owner, self.lease_s, now, took)
            if not await self._bounded("taking the lock", lambda: self._insert(document)):
                return await self._read() or {"owner": "another runner", "acquired_at": now}
            epoch = 1
            _, newer = await self._documents()  # a runner of the previous version may have taken it meanwhile
            if newer is not None and newer != legacy and not is_free(newer, now):
                self.epoch = epoch
                await self.release()
                return newer
        else:
            server_clock = await self._bounded("asking the server what it is", self._server_clock)
            if not is_free(lock, now, 0.0 if server_clock else self.margin_s):
                return lock
            epoch = lock["epoch"] + 1
            taken = await self._bounded("taking the lock over",
                                        lambda: self._take_over(lock, None if server_clock else now))
            if taken is not None:
                return taken
        async with self._serial:
            self.epoch, self._renewed_at, self.lost_reason = epoch, sent_at, ""
            self._cancelled = self._noticed = False
        if legacy is not None:  # the previous version's epochs, none of them live
            await self._bounded("pruning old lock epochs", lambda: self.collection.delete_many(
                {"_id": {"$ne": commands.LOCK_ID}, "$or": [{"released_at": {"$ne": None}},
                                                            {"expires_at": {"$lte": now}}]}))
        return None

    async def _insert(self, document: dict) -> bool:
        """Insert it; True if it is ours, also when a retry finds the first try applied (its reply lost)."""
        try:
            await self.collection.insert_one(document)
            return True
        except DuplicateKeyError:
            return self._is_ours(await self.collection.find_one(commands.THE_LOCK), document["epoch"])

    async def _take_over(self, read: dict, now: datetime | None) -> dict | None:
        """None when the lock is now ours; else the document as it is."""
        query, update = commands.takeover(read, self.owner, self.lease_s, now, self.margin_s)
        if (await self.collection.update_one(query, update)).matched_count and now is None:
            return None  # atomic on a server with its own clock
        there = await self.collection.find_one(commands.THE_LOCK)  # matched nothing: its reply lost?
        return None if self._is_ours(there, read["epoch"] + 1) else (there or read)

    def _is_ours(self, document: dict | None, epoch: int | None = None) -> bool:
        return (document is not None and document.get("owner") == self.owner
                and document.get("epoch") == (epoch or self.epoch))

    async def acquire(self, timeout_s: float) -> None:
        deadline, said = time.monotonic() + timeout_s, False
        while True:
            holder = await self.try_acquire()
            if holder is None:
                return
            if not said and timeout_s > 0:
                self.report(WaitingForLock(describe(holder), timeout_s))
                said = True
            if time.monotonic() >= deadline:
                raise MigrationError(
                    f"the migration lock is held by {describe(holder)}; waited {timeout_s:g} s "
                    "(if that runner is dead, its lease expires by itself, or use --force-unlock)", ExitCode.LOCKED)
            await asyncio.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    async def renew(self) -> None:
        """Extend the lease if this runner still holds it (bounded by the time left), else note why it lost it."""
        if self.epoch is None or self.lost_reason:
            return
        sent_at = time.monotonic()
        bound = min(MAX_OPERATION_S, max(0.2, self.lease_s * SAFETY - (sent_at - self._renewed_at)))
        async with self._serial:
            matched, there = await self._bounded("renewing the lock", self._renew, bound)
        if matched and self._is_ours(there) and there.get("released_at") is None:
            self._renewed_at = max(self._renewed_at, sent_at)
        else:
            self._lose(there)

    async def _renew(self) -> tuple[int, dict | None]:
        query, update = commands.renewal(self.epoch or 0, self.owner, self.lease_s, await self._now(), self.margin_s)
        result = await self.collection.update_one(query, update)
        # read back: on a server whose updates are not atomic, the last writer wins
        return result.matched_count, await self.collection.find_one(commands.THE_LOCK)

    def _lose(self, there: dict | None) -> None:
        """The lock document is not this holder's any more (or its renewal matched nothing): say why."""
        if self.lost_reason:
            return
        if there is None:
            self.lost_reason = "its lock document was removed"
        elif str(there.get("owner", "")).startswith("force-unlock"):
            self.lost_reason = f"it was removed by --force-unlock ({there['owner']})"
        elif there.get("epoch") != self.epoch:
            self.lost_reason = f"another runner took it over: {describe(there)}"
        else:
            self.lost_reason = "its lease ran out before it could be renewed"
        self.lost_reason += self._blocked_note()

    def _blocked_note(self) -> str:
        """The heartbeat woke (or is) far later than due: the event loop was blocked, so no renewal could run."""
        late_s = time.monotonic() - self._heartbeat_due
        if late_s < self.lease_s / 8:
            return ""
        return (f" (the event loop was blocked for {late_s:.1f} s, longer than the heartbeat allows: synchronous "
                "calls or CPU work in a migration; run them with `await asyncio.to_thread(...)`)")

    def remaining_s(self) -> float:
        """How long this runner may still write: until SAFETY x lease after the last renewal was sent (0: stop).
        Every write of a holder is bounded by this (pymongo.timeout), so none is still waiting when the lease ends."""
        if self.epoch is None or self.lost_reason:
            return float("inf") if self.epoch is None else 0.0
        return max(0.0, self._lease_left())

    def _lease_left(self) -> float:
        """Seconds until SAFETY x lease has passed since the last successful renewal was sent (negative: past)."""
        return self.lease_s * SAFETY - (time.monotonic() - self._renewed_at)

    @asynccontextmanager
    async def exclusive(self):
        """For a transaction that writes the lock document (migrator.fencing): no renewal of this runner's starts
        meanwhile (the server would hold it behind the transaction's own write until the transaction ends)."""
        async with self._serial:
            yield

    async def _conditional(self, what: str, build, session=None) -> dict:
        """find_one_and_update of the lock document by this holder's epoch (after); LockLost if it matches nothing."""
        self.check()

        async def operation() -> dict | None:
            query, update = build(self.epoch, self.owner, await self._now())
            return await self.collection.find_one_and_update(query, update, return_document=ReturnDocument.AFTER,
                                                             session=session)
        if session is not None:  # inside a transaction (held exclusively: see `exclusive`); the fence retries it whole
            with pymongo.timeout(max(0.05, self.remaining_s())):
                after = await operation()
        else:
            async with self._serial:
                after = await self._bounded(what, operation, min(MAX_OPERATION_S, max(0.05, self.remaining_s())))
        if after is None:
            self._lose(await self._read())
            self.check()
        return after or {}

    async def touch(self, session) -> None:
        """Inside a transaction (migrator.fencing): write to the lock document by this runner's epoch, so that the
        transaction conflicts with any takeover. LockLost when it is no longer this runner's."""
        await self._conditional("checking the lock", commands.touch, session)

    async def stamp(self, session=None) -> dict:
        """For a changelog entry: {"epoch": n, "seq": k}, k the database's next number, taken by a conditional update
        by this runner's epoch (under the lock, in order). LockLost when the lock is no longer this runner's; {} when
        it holds none (the Python API's steps run without one)."""
        if self.epoch is None and not self.lost_reason:
            return {}
        numbering = partial(commands.stamp, margin_s=self.margin_s)
        after = await self._conditional("numbering the changelog entry", numbering, session)
        return {"epoch": after["epoch"], "seq": after["seq"]}

    def check(self, room_s: float = 0.0) -> None:
        """Call before a write: stop if the lock is lost, or if its lease may not last `room_s` more."""
        if self.epoch is None and not self.lost_reason:
            return
        if not self.lost_reason and self._lease_left() < room_s:
            self.lost_reason = f"its lease could not be renewed in time ({self.lease_s:g} s lease)"
        if self.lost_reason:
            self._noticed = True  # the work stops by itself: the heartbeat need not cancel it
            raise LockLost(f"lost the migration lock: {self.lost_reason}; stopped before writing more")

    async def ensure_room(self, room_s: float) -> None:
        """Before a batch that takes about `room_s`: renew now if the lease may not outlast it, then check."""
        self.check()
        if self._lease_left() < room_s:
            if room_s > self.lease_s * SAFETY:
                raise MigrationError(f"a batch takes {room_s:.1f} s, too long for the {self.lease_s:g} s lease of "
                                     "the migration lock: lower --batch-size (or raise --lease)")
            await self.renew()
        self.check(room_s)

    async def confirm(self) -> None:
        """Renew now and make sure the lock is still ours: before recording that a migration is applied."""
        if self.epoch is None:
            return
        await self.renew()
        self.check()

    # ----- letting it go -----

    async def release(self) -> None:
        if self.epoch is None:
            return
        epoch, self.epoch = self.epoch, None

        async def release() -> None:
            query, update = commands.release(epoch, self.owner, await self._now())
            await self.collection.update_one(query, update)
        async with self._serial:
            await self._bounded("releasing the lock", release, min(MAX_OPERATION_S, max(1.0, self.lease_s / 2)))

    async def _heartbeat(self) -> None:
        while not self.lost_reason:  # lost in the block (check, stamp): it stops by itself
            pause_s = self.lease_s / 4 if time.monotonic() - self._renewed_at < self.lease_s / 2 else self.lease_s / 16
            self._heartbeat_due = time.monotonic() + pause_s  # a renewal failed: try again sooner (lease / 16)
            await asyncio.sleep(pause_s)
            with contextlib.suppress(PyMongoError, MigrationError):  # counted below: no renewal, no lease
                await self.renew()
            if not self.lost_reason and self._lease_left() < 0:
                self.lost_reason = (f"its lease ran out: no renewal succeeded for {self.lease_s * SAFETY:.1f} s "
                                    f"({self.lease_s:g} s lease)")
            if self.lost_reason and self._body is not None and not self._noticed:
                self._cancelled = True
                self._body.cancel()

    @asynccontextmanager
    async def held(self, timeout_s: float):
        """Hold the lock for the block; LockLost out of it (the block cancelled) once the lock is lost."""
        await self.acquire(timeout_s)
        self._body = asyncio.current_task()
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            yield self
        except BaseException as exc:
            body, self._body = self._body, None  # before any await: the heartbeat cancels it no more
            if self._cancelled and body is not None:
                others = body.uncancel()  # ours, not a Ctrl-C's or SIGTERM's (migrator.stop): theirs go on
                if isinstance(exc, asyncio.CancelledError) and others or getattr(exc, "stopped_by_signal", False):
                    raise
                exc = LockLost(f"lost the migration lock: {self.lost_reason}; stopped before writing more")
            elif not isinstance(exc, LockLost):
                raise
            raise LockLost(f"{exc}{await self._taken_by()}") from exc
        finally:
            self._body = None
            heartbeat.cancel()
            with contextlib.suppress(PyMongoError, MigrationError):  # the lease expires by itself
                await self.release()

    async def _taken_by(self) -> str:
        """For the message of a lost lock: who holds it now, when not said yet."""
        with contextlib.suppress(PyMongoError, MigrationError):
            there = await self._read(2.0)
            if there and there.get("epoch") != self.epoch and there["owner"] not in self.lost_reason:
                return f" (another runner took it over: {describe(there)})"
        return ""

    async def force_unlock(self, spare_live: bool = False) -> dict | None:
        """Free the lock whoever holds it: the epoch moves on, so a live holder's renewals fail. `spare_live`:
        refuse (MigrationError, exit 3) when its runner is alive on this host (migrator.liveness)."""
        lock, legacy = await self._documents()
        now = await self._bounded("reading the server's clock", lambda: server_now(self.database))
        holding = next((doc for doc in (legacy, lock) if not is_free(doc, now)), None)
        if spare_live and holding is not None and liveness.state_of_runner(
                str(holding["owner"]), holding.get("pid_space")) == liveness.ALIVE:
            raise refusal_to_unlock(holding)
        if legacy is not None and not is_free(legacy, now):
            await self._bounded("removing the lock", lambda: self.collection.update_one(
                {"_id": legacy["_id"]}, {"$set": {"released_at": now, "expires_at": now}}))
            return legacy
        if lock is None or is_free(lock, now):
            return None

        async def unlock() -> None:
            query, update = commands.force_unlock(lock["epoch"], self.owner, await self._now())
            await self.collection.update_one(query, update)
        await self._bounded("removing the lock", unlock)
        return lock

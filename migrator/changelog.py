"""The changelog: one document per thing done to a migration, kept as history.

Each entry says what was done (`action`: apply, mark_applied, rollback, restore) and the state the
migration is in after it (`state`: applied, failed, rolled_back). A migration's state is that of
its latest entry; a migration without entries is pending. Entries are only ever inserted; each says
who made it (host, pid, user, the git commit of the migrations, the CI run).

Order is the lock's, never a clock's: each entry is stamped under the lock with its epoch and the next
number of the database's sequence (`seq`: MigrationLock.stamp), and entries are ordered by it (those of the
previous version, without one, first, by their time `at`, which is only shown). The stamp and the insert are
one write (`fence`: a transaction on servers with them), retried with a lock check before each retry: a
runner that lost the lock cannot get a stamp, so it never records `applied` or `rolled_back` (LockLost). Its
failures are kept as history only (`lock_lost`), and decide no state.
"""

import contextlib
import os
from collections.abc import Awaitable, Callable

import pymongo
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from migrator.clock import as_utc, bookkeeping, server_now
from migrator.liveness import HOST, PID_SPACE
from migrator.lock import LockLost
from migrator.redact import redact
from migrator.retry import Retry
from migrator.version import __version__

COLLECTION = "migrations_changelog"
# What only a holder of the lock may record: a state that says the change is (or is no longer) in place.
DECIDING = frozenset({"applied", "rolled_back", "running"})

Stamp = Callable[..., Awaitable[dict]]  # (session) -> {"epoch": n, "seq": k}, {} without a lock
Write = Callable[..., Awaitable[None]]  # (session) -> None
FencedRun = Callable[[str, Write], Awaitable[None]]  # (what, write): runs write(session): migrator.fencing's Fence.run
HISTORY_ONLY_S = 10.0  # a lost lock's failure is recorded within this, or not at all: the run is ending


async def _no_stamp(session=None) -> dict:
    return {}


class Changelog:
    """`stamp`: the lock's (MigrationLock.stamp); `fence(what, write)`: how a record is written (the engine's is
    migrator.fencing's Fence.run; without one, retried)."""

    def __init__(self, database: AsyncDatabase, retry: Retry | None = None, provenance: dict | None = None,
                 stamp: Stamp = _no_stamp, fence: FencedRun | None = None):
        self.database = database
        self.collection = bookkeeping(database, COLLECTION)
        self.retry = retry or Retry()
        self.provenance = provenance or {}  # user, commit, ci: see migrator.provenance
        self.stamp = stamp
        self.fence: FencedRun = fence or (lambda what, write: self.retry(what, lambda: write(None)))

    async def record(self, name: str, action: str, state: str, **details) -> dict:
        if details.get("error"):  # a message, which can quote a URL; the other fields stay exact (checksums)
            details["error"] = redact(details["error"])
        entry = {
            "_id": ObjectId(),  # ours, so that a retry after a lost reply cannot record it twice
            "name": name,
            "action": action,
            "state": state,
            **details,
            "host": HOST,
            "pid": os.getpid(),
            "pid_space": PID_SPACE,  # where the pid names this process (migrator.liveness)
            **self.provenance,
            "toolkit_version": __version__,
        }

        what = f"{name}: recording {action} in the changelog"
        if entry.get("lock_lost"):  # history only: no stamp to take, the lock is another's
            await self._history_only(what, entry)
            return entry

        async def write(session=None) -> None:
            entry.update(await self.stamp(session))
            await self._insert(entry, session)
        try:
            await self.fence(what, write)
        except LockLost:
            if state in DECIDING:
                raise
            entry["lock_lost"] = True  # a failure seen by a runner that lost the lock: kept, decides nothing
            await self._history_only(what, entry)
        return entry

    async def _history_only(self, what: str, entry: dict) -> None:
        """A failure seen by a runner that lost the lock: kept if the server answers soon, never waited for long."""
        with pymongo.timeout(HISTORY_ONLY_S):
            await self.retry(what, lambda: self._insert(entry, None))

    async def _insert(self, entry: dict, session) -> None:
        entry["at"] = await server_now(self.database)
        with contextlib.suppress(DuplicateKeyError):  # the first try was applied; its reply was lost
            await self.collection.insert_one(entry, session=session)

    async def entries(self) -> list[dict]:
        """Every entry, in the changelog's order (see order_key)."""
        found = await self.retry("reading the changelog", lambda: self.collection.find({}).to_list(None))
        return sorted(found, key=order_key)

    async def history(self) -> dict[str, list[dict]]:
        """Every entry of each migration that has one, oldest first."""
        by_name: dict[str, list[dict]] = {}
        for entry in await self.entries():
            by_name.setdefault(entry["name"], []).append(entry)
        return by_name

    async def latest(self) -> dict[str, dict]:
        """The latest entry of each migration that has one, of those that set its state."""
        return {entry["name"]: entry for entry in await self.entries() if sets_state(entry)}


def order_key(entry: dict) -> tuple:
    """Entries of the previous version (no `seq`) first, by their time; then by the lock's sequence (the epoch
    breaks a tie a server whose updates are not atomic could leave)."""
    if entry.get("seq") is None:
        return (0, as_utc(entry["at"]).timestamp(), 0, str(entry["_id"]))
    return (1, entry["seq"], entry.get("epoch", 0), str(entry["_id"]))


def sets_state(entry: dict) -> bool:
    """A runner that had lost the lock records its failure as history only: the new holder owns the state."""
    return not entry.get("lock_lost")

"""Fenced writes: a runner that lost the lock never writes again, as far as its server lets it be sure.

Every write a lock holder makes to the data, its checkpoints and the changelog's final record goes through
`await fence.run(what, write)`, `write(session)` doing one unit of work (a batch: its update and its checkpoint;
session: None outside a transaction). The unit is retried on transient errors (migrator.retry) and the lock is
checked before every try. Which fence, by server (`fence_for`):

- TransactionFence (servers with transactions: replica set members, mongos): one transaction per unit whose first
  statement touches the lock document by this runner's epoch (MigrationLock.touch), then `write`, committed with
  a majority write concern. A takeover writes the same document, so the two conflict: once another runner holds
  the lock the touch matches nothing (LockLost: the transaction is aborted, nothing of the unit lands) or the
  commit fails. PyMongo's `with_transaction` handles the errors as MongoDB's drivers document: the whole
  transaction again on a TransientTransactionError, the commit again on an UnknownTransactionCommitResult. It
  runs under `pymongo.timeout(lock.remaining_s())`, so neither the unit nor those retries outlive the lease.
- TimeFence (standalone servers, FerretDB: no transactions): `lock.check()`, then `write(None)` under
  `pymongo.timeout(lock.remaining_s())`: no command is sent, nor still waited for, once the lease may have run
  out. Under that deadline PyMongo drops a write concern's wtimeout (pymongo._csot.apply_write_concern) and
  sends the time left as maxTimeMS; whatever the server does with them, the client stops waiting at the
  deadline: it is the one bound. FENCING HERE IS BY TIME ALONE: a command already on the network when the lease
  ends (a runner paused right after sending, a packet held by the network) can still land after another runner
  took the lock over.
  Only a server with transactions closes that window.
- NoFence: no lock held (Batches from the Python API): `write(None)` with the retries alone.

A unit that gets no reply before its deadline is not sent again: the run stops (MigrationError, exit 1, the lock
released by the engine), within about the lease, instead of waiting for ever on a server that cannot answer
(a majority down, a partition). A deadline met while looking for a primary (an election) is retried like any
failover, the lock checked first: the heartbeat cannot renew without a primary either; so is a write-concern
timeout the server answers (code 64: its own wtimeout, a cluster-wide default's; the batches then get smaller:
migrator.sizing). `resent` counts the
units sent again after an error that may have followed their success (their counts are then a lower bound:
see migrator.batches).
"""

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import pymongo
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError, ServerSelectionTimeoutError
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from migrator.errors import MigrationError
from migrator.lock import MigrationLock
from migrator.profile import ServerProfile
from migrator.retry import WRITE_CONCERN_TIMEOUT, Retry, describe

T = TypeVar("T")
Write = Callable[[AsyncClientSession | None], Awaitable[T]]


class Fence(Protocol):
    resent: int

    async def run(self, what: str, write: Write) -> T: ...

    def check(self) -> None:
        """Before each command of a unit that sends several (the stream path's bulks): stop if the lock is lost."""


def fence_for(lock: MigrationLock | None, profile: ServerProfile, database: AsyncDatabase, retry: Retry,
              by_time_only: bool = False) -> Fence:
    """`by_time_only`: for work that is not one transaction's (a restore's batch, checked by reading it back)."""
    if lock is None or lock.epoch is None:
        return NoFence(retry)
    if profile.transactions and not by_time_only:
        return TransactionFence(lock, database, retry)
    return TimeFence(lock, retry)


def replication_timed_out(error: PyMongoError) -> bool:
    """The server answered that the write concern timed out (code 64, its wtimeout), not the lease's deadline
    (maxTimeMS: code 50)."""
    if isinstance(error, BulkWriteError):
        concerns = (error.details or {}).get("writeConcernErrors") or [{}]
        return concerns[-1].get("code") == WRITE_CONCERN_TIMEOUT
    return getattr(error, "code", None) == WRITE_CONCERN_TIMEOUT


def no_reply(what: str, seconds: float, error: PyMongoError) -> MigrationError:
    return MigrationError(f"{what}: no reply from the server within {seconds:.1f} s, the time left on the migration "
                          f"lock's lease ({describe(error)}): stopped; is a majority of the replica set up? "
                          "Run the same command again to resume")


class NoFence:
    def __init__(self, retry: Retry):
        self.retry, self.resent = retry, 0

    async def run(self, what: str, write: Write) -> T:
        tries = 0

        async def once() -> T:
            nonlocal tries
            tries += 1
            return await write(None)
        try:
            return await self.retry(what, once)
        finally:
            self.resent += tries > 1

    def check(self) -> None:
        pass


class TimeFence(NoFence):
    def __init__(self, lock: MigrationLock, retry: Retry):
        super().__init__(retry.checking(lock.check))
        self.lock = lock

    async def run(self, what: str, write: Write) -> T:
        async def bounded(session: AsyncClientSession | None) -> T:
            self.lock.check()
            seconds = self.lock.remaining_s()
            try:
                with pymongo.timeout(seconds):
                    return await write(session)
            except PyMongoError as error:
                retried = isinstance(error, ServerSelectionTimeoutError) or replication_timed_out(error)
                if error.timeout and not retried:
                    self.lock.check()  # a lease run out says more than the timeout it caused
                    raise no_reply(what, seconds, error) from error
                raise
        return await super().run(what, bounded)

    def check(self) -> None:
        self.lock.check()


class TransactionFence(TimeFence):
    """One transaction per unit, the lock touched first; the retries of with_transaction, bounded by the lease."""

    def __init__(self, lock: MigrationLock, database: AsyncDatabase, retry: Retry):
        super().__init__(lock, retry)
        self.client = database.client

    async def run(self, what: str, write: Write) -> T:
        async def fenced(session: AsyncClientSession) -> T:
            await self.lock.touch(session)
            return await write(session)

        async def transaction(_: AsyncClientSession | None) -> T:
            async with self.lock.exclusive(), self.client.start_session(causal_consistency=False) as session:
                return await session.with_transaction(
                    fenced, read_concern=ReadConcern("majority"), write_concern=WriteConcern("majority"),
                    read_preference=ReadPreference.PRIMARY)
        return await super().run(what, transaction)  # the time bound and the checked retries of the time fence

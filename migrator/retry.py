"""Riding out what a replica set does to a run: elections, step-downs, connections lost on the way.

The driver retries a single-document write once, and never a multi-document one (update_many), so
the toolkit retries its own operations: `await retry("batch 4", operation)` runs `operation()` again
on a transient error, with backoff, for up to `retry_for_s` seconds from the first failure, reporting
each retry (migrator.events.RetryScheduled). Every operation handed to it must be safe to run twice (a
batch's update re-checks its filter; a changelog entry has its own `_id`; a checkpoint is replaced
whole), because the first try may have been applied although its reply was lost.

`retry_for_s` bounds the whole wait, not each try's: without a server the driver waits its server selection
timeout (30 s) in every try, so with `ping` (the runner's: the server's `ping`), the next try is sent only once the
server answers it within what is left of the budget. The operation itself is not bounded (a backup's read, a
verification of a large collection may take long), and the client's own server selection timeout is bounded by
`retry_for_s` too (migrator.connection.connect): a first try waits no longer than the budget either.
"""

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pymongo
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)

from migrator.errors import MigrationError
from migrator.events import Reporter, RetryScheduled, silent
from migrator.redact import redact

DEFAULT_RETRY_FOR_S = 120.0
WRITE_CONCERN_TIMEOUT = 64
# Codes MongoDB documents as transient: host and network errors, step-downs, shutdowns, elections.
TRANSIENT_CODES = frozenset({6, 7, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
                             WRITE_CONCERN_TIMEOUT})
FIRST_DELAY_S, MAX_DELAY_S = 0.2, 5.0
LAST_PING_S = 1.0  # the least a server gets to answer the last ping, should the backoff end at the deadline
# What the driver appends to an error's text: its time-outs, and a server selection's whole topology description
DRIVER_DETAILS = re.compile(r" \(configured timeouts: [^)]*\)|, Timeout: -?[\d.]+s, Topology Description: .*",
                            re.DOTALL)

T = TypeVar("T")


def _codes(error: PyMongoError) -> set[int]:
    if isinstance(error, BulkWriteError):
        details = error.details or {}
        return {e.get("code") for e in details.get("writeErrors", []) + details.get("writeConcernErrors", [])}
    code = getattr(error, "code", None)
    return {code} if code is not None else set()


def is_transient(error: BaseException) -> bool:
    """Would the same operation, sent again, likely succeed: a lost connection, an election, a timeout
    waiting for the write concern?"""
    if not isinstance(error, PyMongoError):
        return False
    if isinstance(error, ConnectionFailure) or error.has_error_label("RetryableWriteError"):
        return True  # AutoReconnect, NotPrimaryError, NetworkTimeout, ServerSelectionTimeoutError
    if isinstance(error, (OperationFailure, WriteConcernError)):
        codes = _codes(error)
        return bool(codes) and codes <= TRANSIENT_CODES
    return False


def without_driver_details(text: str) -> str:
    """An error's text without what the driver appends: the server's whole reply, its time-outs, a topology."""
    return DRIVER_DETAILS.sub("", text.split(", full error:")[0])


def describe(error: PyMongoError) -> str:
    """One line: the error's type and message; a write concern error's code too (its message names none). Without
    what the driver appends: its time-outs, a server selection's topology (the server's address and the reason
    stay: "ServerSelectionTimeoutError: 10.0.0.5:27017: [Errno 111] Connection refused")."""
    text = without_driver_details(redact(error))
    if not isinstance(error, (WriteConcernError, BulkWriteError)):
        return f"{type(error).__name__}: {text}"
    codes = sorted(code for code in _codes(error) if code is not None and str(code) not in text)
    names = _code_names(error)
    named = ", ".join(f"{code} {names[code]}" if code in names else str(code) for code in codes)
    return f"{type(error).__name__}: {text}" + (f" (code {named})" if named else "")


def _code_names(error: PyMongoError) -> dict[int, str]:
    details = getattr(error, "details", None) or {}
    found = [details, *details.get("writeErrors", []), *details.get("writeConcernErrors", [])]
    return {item["code"]: item["codeName"] for item in found
            if isinstance(item, dict) and item.get("code") is not None and item.get("codeName")}


class Outage:
    """Since when the server has been failing (monotonic time; None: it answers), shared by a Retry and the Retry
    objects it makes (`checking`): the budget is the outage's, not each operation's, so that the work done after the
    retries gave up (recording the failure, releasing the lock) does not wait for a server all over again."""

    def __init__(self) -> None:
        self.since: float | None = None

    def deadline(self, retry_for_s: float) -> float:
        self.since = self.since if self.since is not None else time.monotonic()
        return self.since + retry_for_s


class Retry:
    """Run idempotent operations again on transient errors, for up to `retry_for_s` from the first failure
    (0: never, the error is raised as it is: for callers that must answer at once, like a health check)."""

    def __init__(self, retry_for_s: float = DEFAULT_RETRY_FOR_S, report: Reporter = silent,
                 before_retry: Callable[[], None] | None = None, ping: Callable[[], Awaitable[object]] | None = None,
                 outage: Outage | None = None, first_delay_s: float = FIRST_DELAY_S):
        self.retry_for_s = retry_for_s
        self.first_delay_s = first_delay_s  # the backoff's first wait, doubled at each retry
        self.report = report
        self.before_retry = before_retry  # raises to stop retrying: a holder's lock check (MigrationLock.check)
        self.ping = ping  # answered before each new try, within the budget left; None: each try is sent at once
        self.outage = outage or Outage()

    def checking(self, before_retry: Callable[[], None]) -> "Retry":
        """The same retries, that call `before_retry` before each new try (the fenced writes: migrator.fencing)."""
        return Retry(self.retry_for_s, self.report, before_retry, self.ping, self.outage, self.first_delay_s)

    async def __call__(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        deadline, delays = None, _backoff(self.first_delay_s)
        if self.retry_for_s > 0 and self.outage.since is not None and self.ping is not None:
            # Still failing, maybe past the budget: no operation waits for a server that has not answered since.
            await self._until_answered(what, None, self.outage.deadline(self.retry_for_s), delays)
        while True:
            try:
                result = await operation()
            except PyMongoError as error:
                if not is_transient(error) or self.retry_for_s <= 0:
                    raise
                deadline = deadline or self.outage.deadline(self.retry_for_s)  # a server that answers `ping` but
                await self._until_answered(what, error, deadline, delays)   # keeps failing this: not for ever
            else:
                self.outage.since = None
                return result

    async def _until_answered(self, what: str, error: PyMongoError | None, deadline: float,
                              delays: Iterator[float]) -> None:
        """Back off, then (with `ping`) wait for the server to answer, all before `deadline`; past it, the error that
        ends the retries. `error`: the one the operation met; None: none sent yet, the server is only asked."""
        while True:
            now = time.monotonic()
            if error is not None and now >= deadline:
                raise MigrationError(f"{what}: the server still fails after {self.retry_for_s:g} s of retries "
                                     f"(--retry-for): {describe(error)}") from error
            if error is not None:
                wait = min(next(delays), deadline - now)
                self.report(RetryScheduled(what, describe(error), wait))
                await asyncio.sleep(wait)
                if self.before_retry is not None:
                    self.before_retry()  # a holder's lock check: a runner that lost its lock sends nothing more
            if self.ping is None:
                return
            try:
                with pymongo.timeout(max(deadline - time.monotonic(), LAST_PING_S)):
                    await self.ping()
            except PyMongoError as unanswered:
                if not (is_transient(unanswered) or unanswered.timeout):
                    raise
                error = unanswered
            else:
                self.outage.since = None
                return


def _backoff(first_delay_s: float) -> Iterator[float]:
    delay = first_delay_s
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * 2, MAX_DELAY_S)

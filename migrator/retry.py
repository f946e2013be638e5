"""Riding out what a replica set does to a run: elections, step-downs, connections lost on the way.

The driver retries a single-document write once, and never a multi-document one (update_many), so
the toolkit retries its own operations: `await retry("batch 4", operation)` runs `operation()` again
on a transient error, with backoff, for up to `retry_for_s` seconds from the first failure, reporting
each retry (migrator.events.RetryScheduled). Every operation handed to it must be safe to run twice (a
batch's update re-checks its filter; a changelog entry has its own `_id`; a checkpoint is replaced
whole), because the first try may have been applied although its reply was lost.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, PyMongoError, WriteConcernError

from migrator.errors import MigrationError
from migrator.events import Reporter, RetryScheduled, silent
from migrator.redact import redact

DEFAULT_RETRY_FOR_S = 120.0
WRITE_CONCERN_TIMEOUT = 64
# Codes MongoDB documents as transient: host and network errors, step-downs, shutdowns, elections.
TRANSIENT_CODES = frozenset({6, 7, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
                             WRITE_CONCERN_TIMEOUT})
FIRST_DELAY_S, MAX_DELAY_S = 0.2, 5.0

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


def describe(error: PyMongoError) -> str:
    """One line: the error's type and message; a write concern error's code too (its message names none)."""
    text = redact(error).split(", full error:")[0]
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


class Retry:
    """Run idempotent operations again on transient errors, for up to `retry_for_s` from the first failure
    (0: never, the error is raised as it is: for callers that must answer at once, like a health check)."""

    def __init__(self, retry_for_s: float = DEFAULT_RETRY_FOR_S, report: Reporter = silent,
                 before_retry: Callable[[], None] | None = None):
        self.retry_for_s = retry_for_s
        self.report = report
        self.before_retry = before_retry  # raises to stop retrying: a holder's lock check (MigrationLock.check)

    def checking(self, before_retry: Callable[[], None]) -> "Retry":
        """The same retries, that call `before_retry` before each new try (the fenced writes: migrator.fencing)."""
        return Retry(self.retry_for_s, self.report, before_retry)

    async def __call__(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        deadline, delay = None, FIRST_DELAY_S
        while True:
            try:
                return await operation()
            except PyMongoError as error:
                if not is_transient(error) or self.retry_for_s <= 0:
                    raise
                now = time.monotonic()
                deadline = deadline or now + self.retry_for_s
                if now >= deadline:
                    raise MigrationError(f"{what}: the server still fails after {self.retry_for_s:g} s of retries "
                                         f"(--retry-for): {describe(error)}") from error
                wait = min(delay * random.uniform(0.8, 1.2), deadline - now)
                self.report(RetryScheduled(what, describe(error), wait))
                await asyncio.sleep(wait)
                if self.before_retry is not None:
                    self.before_retry()  # a holder's lock check: a runner that lost its lock sends nothing more
                delay = min(delay * 2, MAX_DELAY_S)


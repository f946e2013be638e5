"""Pause, resume and cancel a batched run from anywhere (another terminal, machine or pod), through the database.

`migrations_control` holds one document per request: `{_id: migration, state: "paused" | "cancelled", by:
"user@host", at, runner}` (`at`: the server's clock; `runner`: a cancel's, the host:pid of the run it stops), or
`_id: "*"` for a pause of every migration (`--pause` while none runs). A request is a plain upsert or delete: it
needs no lock, the runner holding it only reads them.

The runner reads its migration's requests at each batch boundary (migrator.batches), one small read a batch:
- paused: it reports Paused once, then reads again every POLL_S while its lock's heartbeat keeps the lease alive;
  it writes nothing. Ctrl-C or SIGTERM still stop it. The pause is in the database, so a runner started later
  (a restart, the next deploy) starts paused too, until `--resume`;
- cancelled: the request is deleted (the next run goes on from the checkpoint) and the walk stops as after SIGTERM,
  with its own exit code (ExitCode.CANCELLED). A cancel replaces a pause of the same migration. A cancel of
  another runner (one that ended before its next batch boundary) is cleared, not honoured: it was for that run.
A migration whose `up` takes no `batches` has no boundary: it cannot be paused or cancelled while it runs.
"""

import os
import time
from dataclasses import dataclass
from datetime import datetime

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from migrator.clock import as_utc, bookkeeping
from migrator.events import CancelRequested, Paused, Reporter, Resumed, silent
from migrator.liveness import HOST
from migrator.provenance import user
from migrator.retry import Retry
from migrator.stop import StopRequest

COLLECTION = "migrations_control"
ALL = "*"  # a pause of every migration
PAUSED, CANCELLED = "paused", "cancelled"
POLL_S = 1.0  # a paused runner reads its requests again this often


@dataclass(frozen=True)
class Request:
    migration: str  # a migration's name, or ALL
    state: str  # PAUSED or CANCELLED
    by: str  # user@host
    at: datetime  # since when (the server's clock)
    runner: str = ""  # a cancel: the host:pid of the run it stops


def requester() -> str:
    return f"{user()}@{HOST}"


def this_runner() -> str:
    """This process, as the changelog names a run's runner (host:pid)."""
    return f"{HOST}:{os.getpid()}"


class Controls:
    """The requests in `migrations_control`: set, read, cleared."""

    def __init__(self, database: AsyncDatabase, retry: Retry | None = None):
        self.collection = bookkeeping(database, COLLECTION)
        self.retry = retry or Retry()

    async def set(self, migration: str, state: str, runner: str = "") -> Request:
        """Pause or cancel `migration` (ALL: pause every one; `runner`: the host:pid of the run a cancel stops); a new
        request of the same migration replaces its own."""
        async def upsert():
            return await self.collection.find_one_and_update(
                {"_id": migration}, {"$set": {"state": state, "by": requester(), "runner": runner},
                                     "$currentDate": {"at": True}},
                upsert=True, return_document=ReturnDocument.AFTER)
        return _request(await self.retry(f"{migration}: recording the {state} request", upsert))

    async def clear(self, migration: str | None = None, state: str | None = None) -> list[Request]:
        """Delete the requests of `migration` (None: of all) and of ALL (of `state` only, if given); those deleted."""
        which: dict = {} if migration is None else {"_id": {"$in": [migration, ALL]}}
        if state:
            which["state"] = state

        async def delete():
            found = await self.collection.find(which).to_list(None)
            for document in found:  # as read: a request made meanwhile stays
                await self.collection.delete_one({key: document[key] for key in ("_id", "state", "at")})
            return found
        return [_request(document) for document in await self.retry("clearing the requests", delete)]

    async def all(self) -> dict[str, Request]:
        found = await self.retry("reading the requests", lambda: self.collection.find({}).to_list(None))
        return {document["_id"]: _request(document) for document in found}

    async def of(self, migration: str) -> Request | None:
        """What applies to `migration` now: its own request (a cancel before a pause), else a pause of all."""
        found = await self.retry(f"{migration}: reading the requests",
                                 lambda: self.collection.find({"_id": {"$in": [migration, ALL]}}).to_list(None))
        return min((_request(document) for document in found), key=lambda r: r.migration == ALL, default=None)


def applies_to(requests: dict[str, Request], migration: str) -> Request | None:
    """The same rule as Controls.of, on requests already read."""
    return requests.get(migration) or requests.get(ALL)


def _request(document: dict) -> Request:
    return Request(document["_id"], document["state"], document.get("by", "?"), as_utc(document["at"]),
                   document.get("runner", ""))


class Honour:
    """At a batch boundary: wait while paused, hand back a cancel (cleared first). Without `controls` (a walk of
    the Python API or of a self-test's scratch copies): nothing to honour."""

    def __init__(self, migration: str, stop: StopRequest, controls: Controls | None = None,
                 report: Reporter = silent):
        self.migration, self.stop, self.controls, self.report = migration, stop, controls, report
        self._asked_at = float("-inf")

    async def __call__(self) -> Request | None:
        # At most one read a POLL_S: quick batches cost no extra round trip each (the first batch always asks).
        if self.controls is None or time.monotonic() - self._asked_at < POLL_S:
            return None
        self._asked_at = time.monotonic()
        request, paused, since = await self.controls.of(self.migration), None, time.monotonic()
        while request is not None and request.state == PAUSED and self.stop.signal is None:
            if paused != request:
                paused = request
                self.report(Paused(self.migration, request.by, request.at))
            await self.stop.sleep(POLL_S)
            request = await self.controls.of(self.migration)
        cancel = request if request is not None and request.state == CANCELLED else None
        if paused is not None and self.stop.signal is None and cancel is None:
            self.report(Resumed(self.migration, paused.by, round(time.monotonic() - since, 1)))
        if cancel is None:
            return None
        await self.controls.clear(self.migration, CANCELLED)
        if cancel.runner not in ("", this_runner()):
            return None  # another run's, which ended before honouring it
        self.report(CancelRequested(self.migration, cancel.by))
        return cancel

"""Walking a large collection in `_id` order, in batches: resumable, throttled, observable.

A migration whose `up` accepts `batches` is handed one by the engine:

    async def up(db, batches):
        return await batches.update_many("chat_messages", {"metadata": {"$exists": False}},
                                         {"$max": {"metadata": None}})

Each batch is one fenced unit (migrator.fencing): its update and its checkpoint (the last `_id` done and the
counts, migrator.checkpoints) are written together, in one transaction where the server has them, else bounded
by the time left on the lock's lease; a run that is killed or interrupted resumes there. Each batch is
idempotent, so one cut off half-way is done again. Memory stays flat. Ctrl-C or SIGTERM stops at the end of the
current batch (exit 130 or 143), or cancels it after migrator.stop.GRACE_S; --pause and --cancel from anywhere
act at the next batch boundary (migrator.control). A batch that meets a failover or a
lost connection is done again whole (migrator.retry), after checking the lock.

The counts are exact with transactions (a batch retried was aborted first, or its commit retried). Without
them, a batch sent again after an error that may have followed its success (a lost reply) counts only what the
second try changed: `modified` is then a lower bound, and the Outcome says so (`modified_at_least`).

The path is chosen per server:
- "range" (MongoDB): find the batch's last `_id` in the `_id` index (a covered read that skips `size - 1`
  keys and returns one), then one server-side update_many of the filter within that `_id` range, then
  the checkpoint: three round trips a batch, and no document nor list of ids leaves the server.
- "stream" (FerretDB): its SQLite backend pushes no filter but `{_id: value}` down to SQL, so an
  `_id` range would scan the whole collection once per batch. Read the ids of the matching documents
  once, in `_id` order, into a temporary file (with progress, at most --max-rate a second), then write
  bulks of UpdateOne({_id}). On FerretDB the
  filter is checked when the ids are read, not again when they are written (`{_id: value}` must stand
  alone to be looked up by index): write an update that is harmless on a document that stopped
  matching meanwhile ($max rather than $set, for example). MongoDB, when it takes this path (`_id`s of
  several types), checks the filter again at each write.

A rollback is handed batches too (`async def rollback(db, batches)`): its checkpoints are its own
(`<migration>/rollback/<step>`), never mixed with the `up`'s; each action discards the other's when it
starts (they describe documents as they no longer are). An update with no harmless form (`$unset` of
what `up` added) passes `recheck_filter=True` (a rollback's default): on FerretDB each batch is then
one update_many of the filter and the batch's ids (`$in`), so a document that stopped matching since its
id was read is left alone. That costs a scan of the collection a batch instead of an index lookup a
document (`{_id: value}` with any other key is a scan a document there): a bigger --batch-size, fewer scans.
"""

import hashlib
import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import islice
from typing import Any

import bson
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.write_concern import WriteConcern

from migrator.batch_paths import Compute, EachUpdate, SameUpdate, batch_bound, mixed_id_types
from migrator.checkpoints import APPLY, ROLLBACK, Checkpoints, Walk  # what a walk is for: kept apart
from migrator.connection import WRITE_TIMEOUT_MS
from migrator.control import Controls, Honour, Request
from migrator.errors import ExitCode, MigrationError
from migrator.events import (
    BatchDone,
    CheckpointOfAnotherVersion,
    MixedIdTypes,
    ReadingIds,
    Reporter,
    ResumedFromCheckpoint,
    silent,
)
from migrator.fencing import Fence, NoFence
from migrator.migration import Outcome
from migrator.pacing import Pace
from migrator.profile import ServerProfile
from migrator.progress import Progress
from migrator.retry import Retry
from migrator.scope import last_id_of, up_to
from migrator.sizing import DEFAULT_MIN_SIZE, DEFAULT_TARGET_MS, BatchSizer
from migrator.stop import StopRequest
from migrator.throttle import Throttle, ThrottleSettings

RANGE, STREAM = "range", "stream"
Change = SameUpdate | EachUpdate  # what a walk writes (migrator.batch_paths)
DEFAULT_SIZE = 1000


@dataclass
class BatchSettings:
    size: int | None = None  # documents per batch (and checkpoint), at most; None: DEFAULT_SIZE
    min_size: int | None = None  # documents per batch, at least, when batches adapt; None: sizing.DEFAULT_MIN_SIZE
    target_batch_ms: float | None = None  # how long a batch should take (migrator.sizing); 0: always `size`
    max_rate: float | None = None  # documents per second, at most
    write_concern: str | None = None  # "majority" or "1"; None: majority, the runner's client's
    path: str | None = None  # RANGE or STREAM; None: by server
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)  # waiting on the server's health


class Batches:
    def __init__(self, database: AsyncDatabase, migration: str, checksum: str, settings: BatchSettings,
                 profile: ServerProfile, check_lock=None, retry: Retry | None = None, action: str = APPLY,
                 report: Reporter = silent, fence: Fence | None = None, controls: Controls | None = None):
        self.database = database
        self.migration, self.checksum = migration, checksum
        self.action = action
        self.settings = settings
        self.profile = profile
        self.path = settings.path or default_path(profile)
        target_ms = DEFAULT_TARGET_MS if settings.target_batch_ms is None else settings.target_batch_ms
        self.sizer = BatchSizer(settings.size or DEFAULT_SIZE, settings.min_size or DEFAULT_MIN_SIZE, target_ms)
        self.check_lock = check_lock or _no_lock  # async (room_s): raise if the lease may not last a batch
        self._last_batch_s = 0.0  # how long the last batch took: the room the lease must have for the next
        self.retry = retry or Retry()
        self.checkpoints = Checkpoints(database, self.retry)
        self.fence = fence or NoFence(self.retry)  # every write of a batch goes through it
        self.report = report
        self.stop = StopRequest(report)
        self._steps = 0
        self.pace = Pace(settings.max_rate, self.stop)
        self.honour = Honour(migration, self.stop, controls, report)  # --pause, --cancel (None: not asked)
        self.throttle = Throttle(database, migration, profile, settings.throttle, self.stop, self.check_lock, report)
        self._batch_started = 0.0
        self.walked: dict[str, dict] = {}  # per collection, the `_id` filter its walk covered (migrator.scope)

    @property
    def size(self) -> int:
        """Documents in the next batch (migrator.sizing)."""
        return self.sizer.size

    async def update_many(self, collection: str | AsyncCollection, filter: dict, update: dict,
                          recheck_filter: bool | None = None) -> Outcome:
        """Apply `update` to the documents of `collection` (a name, or the collection: `db.chat_messages`) matching
        `filter`, batch by batch. `recheck_filter`: check the filter again at each write on FerretDB's stream path
        too (slower there; see the module's docstring); by default only a rollback's batches do."""
        return await self._walk(collection, filter, SameUpdate(update), recheck_filter)

    async def update_each(self, collection: str | AsyncCollection, filter: dict, compute: Compute,
                          projection: dict | None = None, recheck_filter: bool | None = None) -> Outcome:
        """A computed backfill: for each document of `collection` matching `filter`, the update `compute(document)`
        returns (None: leave it), batch by batch like update_many (checkpointed, resumable, fenced, with progress):
        each batch's documents are read (`projection`: only those fields), their updates computed in Python (a
        function or an `async def`), then written in one bulk_write of UpdateOne({_id, filter}, update)."""
        return await self._walk(collection, filter, EachUpdate(compute, projection), recheck_filter)

    async def _walk(self, collection: str | AsyncCollection, filter: dict, change: Change,
                    recheck_filter: bool | None) -> Outcome:
        collection = collection if isinstance(collection, str) else collection.name
        self._steps += 1
        step = self._steps
        if step == 1:
            other = ROLLBACK if self.action == APPLY else APPLY
            await self.fence.run(f"{self.migration}: clearing the checkpoint",
                                 partial(self.checkpoints.clear, self.migration, other))
        recheck = self.action == ROLLBACK if recheck_filter is None else recheck_filter
        target = self._collection(collection)
        work = _digest(collection, filter, change.key)
        checkpoint = await self._resume_point(step, work)
        state = Walk(collection, self.checksum, work, self.path)
        if checkpoint:
            state.resume(checkpoint)
            self.report(ResumedFromCheckpoint(self.migration, collection, state.documents_done, state.last_id))
        path = self.path
        reading = f"{self.migration}: reading the _id range"
        if path == RANGE and await self.retry(reading, partial(mixed_id_types, target)):
            self.report(MixedIdTypes(self.migration, collection))
            path = STREAM
        walk = self._range if path == RANGE else partial(self._stream, recheck=recheck)
        self.sizer.walk(scales=not (self.profile.id_lookup_only and (path == RANGE or recheck)))  # else a scan a batch
        progress = Progress(self.migration, self.report, done=state.documents_done, modified=state.modified)
        resent_before = self.fence.resent
        with self.stop.handled():
            try:
                await walk(target, filter, change, state, step, progress)
            finally:
                progress.end()
                self.throttle.walk_done(collection)
        state.finished, resent = True, self.fence.resent > resent_before
        self.walked[collection] = up_to(state.end_id) if state.bounded else {}
        await self.fence.run(f"{self.migration}: saving the checkpoint", partial(self._save, state, step))
        progress.finish()
        return Outcome(matched=state.matched, modified=state.modified,  # the progress line said the rest
                       modified_at_least=resent)

    # ----- the two paths -----

    async def _range(self, target: AsyncCollection, filter: dict, change: Change, state: Walk, step: int,
                     progress: Progress) -> None:
        """Three round trips a batch: its last `_id` (read from the index, nothing else leaves the server), the
        update_many of that `_id` range (update_each: a read of its documents, then a bulk_write), and the
        checkpoint, in one fenced unit."""
        counting = self.retry(f"{self.migration}: counting", target.estimated_document_count)
        state.total, state.total_estimated = await counting, True  # checkpointed
        progress.set_total(state.total, estimated=True)
        if not state.bounded:  # one index lookup: the walk ends at the collection's last `_id` now
            state.end_id = await self.retry(f"{self.migration}: the last _id", partial(last_id_of, target))
            state.bounded = True
        if state.end_id is None:
            return
        self.pace.start()
        while True:
            await self._between(state, step)
            after = {"_id": {"$lte": state.end_id, **({} if state.last_id is None else {"$gt": state.last_id})}}
            size = self.size  # this batch's, also when it is sent again

            async def batch(session, after=after, size=size):  # whole, again after a failover: the filter is checked
                bound = await batch_bound(target, after, size, session)
                if bound is None:
                    return None
                last_id, documents = bound
                within = {**after["_id"], "$lte": last_id}
                matched, modified = await change.range_batch(target, filter, within, self.fence.check, session)
                return documents, last_id, matched, modified
            documents = await self._batch(state, step, batch, progress)
            if documents is None or documents < size:  # none left, or the walk's last `_id` was the bound
                return

    async def _stream(self, target: AsyncCollection, filter: dict, change: Change, state: Walk, step: int,
                      progress: Progress, recheck: bool = False) -> None:
        # Past the checkpoint: `$nor` of `$lte` rather than `$gt`, so that `_id`s of another type than the
        # last one done (which no comparison with it matches) are done again, not skipped.
        past = None if state.last_id is None else {"$nor": [{"_id": {"$lte": state.last_id}}]}
        bound = up_to(state.end_id) if state.bounded else None  # a resumed walk keeps the bound it began with
        query = {"$and": [part for part in (filter, past, bound) if part]} if past or bound else filter
        self.report(ReadingIds(self.migration, target.name))
        with tempfile.TemporaryFile(prefix="migrator-ids-") as spool:
            count = await self._read_ids(target, query, spool, state, change)
            if not state.bounded:  # the last `_id` read; none read: the collection's last now
                state.end_id = state.last_read if count else await self.retry(
                    f"{self.migration}: the last _id", partial(last_id_of, target))
                state.bounded = True
            progress.restart(state.documents_done, state.modified)  # the rate and time left of the writes alone
            state.total, state.total_estimated = state.documents_done + count, False  # checkpointed
            progress.set_total(state.total)
            self.pace.start()
            spool.seek(0)
            documents = bson.decode_file_iter(spool, target.codec_options)
            while batch := list(islice(documents, self.size)):
                await self._between(state, step)

                async def write(session, batch=batch) -> tuple[int, object, int, int]:  # whole, again after a failover
                    matched, modified = await change.stream_batch(target, batch, filter, self.profile, recheck,
                                                                  self.fence.check, session)
                    return len(batch), batch[-1]["_id"], matched, modified
                await self._batch(state, step, write, progress)

    async def _read_ids(self, target: AsyncCollection, query: dict, spool, state: Walk, change: Change) -> int:
        """The `_id`s of the documents matching `query` (update_each: the documents, in its projection), in `_id`
        order, into `spool`; how many. All of them before the first write: FerretDB must not hold a cursor open.
        With progress lines, and at most --max-rate ids a second (on MongoDB each getMore reads on; FerretDB reads
        and sorts the whole result for the first reply)."""
        reading = Progress(f"{self.migration}, reading {change.reading}", self.report, unit="ids",
                           counts_modified=False)

        async def read() -> int:  # whole, again after a failover
            spool.seek(0)
            spool.truncate()
            reading.restart()
            self.pace.start()
            chunk, unreported = self.pace.ids_per_read, 0
            async for document in target.find(query, change.projection).sort("_id", ASCENDING).batch_size(chunk):
                spool.write(bson.encode(document, codec_options=target.codec_options))
                state.last_read = document["_id"]
                unreported += 1
                if unreported == chunk:  # a getMore's worth: count it, keep to --max-rate before the next
                    await self._ids_read(reading, unreported, state)
                    unreported = 0
            await self._ids_read(reading, unreported, state)
            return reading.done
        try:
            count = await self.retry(f"{self.migration}: reading the _ids", read)
        finally:
            reading.end()
        reading.finish()
        return count

    # ----- one batch -----

    async def _batch(self, state: Walk, step: int, send, progress: Progress) -> int | None:
        """One batch as one fenced unit: `send(session)`'s writes, then the checkpoint of the walk after them.
        `send` answers (documents, last `_id`, matched, modified), or None when nothing is left. The documents
        done, or None."""
        async def unit(session):
            sent = await send(session)
            if sent is not None:
                await self._save(replace(state).add(*sent), step, session)
            return sent
        what = f"{self.migration}: batch {state.batches + 1:,}"
        resent_before = self.fence.resent
        sent: tuple[int, Any, int, int] | None = await self.stop.within_grace(self.fence.run(what, unit), what)
        if sent is not None:
            self._batch_done(state, *sent, progress)
            self.sizer.after(self._last_batch_s, resent=self.fence.resent > resent_before)
        return None if sent is None else sent[0]

    def _batch_done(self, state: Walk, documents: int, last_id, matched: int, modified: int,
                    progress: Progress) -> None:
        state.add(documents, last_id, matched, modified)
        self._last_batch_s = time.monotonic() - self._batch_started
        self.pace.done += documents
        progress.advance(documents, modified)
        self.report(BatchDone(self.migration, state.collection, documents, self._last_batch_s, modified))

    async def _save(self, state: Walk, step: int, session=None) -> None:
        await self.checkpoints.save(self.migration, step, action=self.action, session=session, **state.checkpoint())

    # ----- between batches -----

    async def _ids_read(self, reading: Progress, ids: int, state: Walk) -> None:
        reading.advance(ids)
        await self.pace.keep(ids, burst=self.pace.ids_per_read)
        self._stop_if_asked(state)

    async def _between(self, state: Walk, step: int) -> None:
        """Before each batch: renew the lock if the lease may not last it, keep to --max-rate, wait while the server
        is unhealthy (migrator.throttle), wait while paused, stop if asked (a signal, --cancel)."""
        await self.check_lock(self._last_batch_s)
        await self.pace.keep(0, burst=self.size)
        await self.throttle.wait(self._last_batch_s)
        cancel = await self.honour()
        self._stop_if_asked(state, cancel)
        await self.check_lock(self._last_batch_s)  # again: the pause may have been long
        self._batch_started = time.monotonic()

    def _stop_if_asked(self, state: Walk, cancel: Request | None = None) -> None:
        if self.stop.signal is None and cancel is None:
            return
        by, code = ((self.stop.signal_name, self.stop.exit_code) if cancel is None
                    else (f"--cancel of {cancel.by}", ExitCode.CANCELLED))
        where = (f"checkpoint saved (up to _id {state.last_id})" if state.batches
                 else "nothing written yet")
        raise MigrationError(f"{self.migration}: stopped by {by} after "
                             f"{state.documents_done:,} documents; {where}: "
                             "run the same command again to resume", code)

    # ----- set-up -----

    def _collection(self, name: str) -> AsyncCollection:
        collection = self.database[name]
        if self.settings.write_concern:
            w = self.settings.write_concern
            concern = WriteConcern(w=int(w) if w.isdigit() else w, j=True, wtimeout=WRITE_TIMEOUT_MS)  # as the client's
            collection = collection.with_options(write_concern=concern)
        return collection

    async def _resume_point(self, step: int, work: str) -> dict | None:
        """The checkpoint of this step, if it was left by this very work: same code, collection, filter, update.
        A step whose checkpoint says done walks on from its last `_id` to the bound it began with, which costs
        little."""
        checkpoint = await self.checkpoints.load(self.migration, step, action=self.action)
        if checkpoint is None:
            return None
        if checkpoint.get("checksum") != self.checksum or checkpoint.get("work") != work:
            self.report(CheckpointOfAnotherVersion(self.migration))
            return None
        return checkpoint


async def _no_lock(room_s: float) -> None:
    """Batches run without the lock (from Python): nothing to check."""


def default_path(profile: ServerProfile) -> str:
    """Where an `_id` range is a scan, read the ids once instead."""
    return STREAM if profile.id_lookup_only else RANGE


def _digest(collection: str, filter: dict, update) -> str:
    return hashlib.sha256(bson.encode({"c": collection, "f": filter, "u": update})).hexdigest()[:16]

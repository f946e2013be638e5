"""Walking a large collection in `_id` order, in batches: resumable, throttled, observable.

A migration whose `up` accepts `batches` is handed one by the engine:

    async def up(db, batches):
        return await batches.update_many("chat_messages", {"metadata": {"$exists": False}},
                                         {"$max": {"metadata": None}})

After each batch the last `_id` done and the counts are saved (migrator.checkpoints); a run that is
killed or interrupted resumes there. Each batch is idempotent, so one cut off half-way is done again.
Memory stays flat. Ctrl-C or SIGTERM stops at the end of the current batch (exit 130 or 143). A batch
that meets a failover or a lost connection is done again whole (migrator.retry).

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
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any

import bson
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.write_concern import WriteConcern

from migrator.batch_paths import batch_bound, mixed_id_types, write_bulks
from migrator.checkpoints import APPLY, ROLLBACK, Checkpoints  # what a walk is for: kept apart
from migrator.connection import WRITE_TIMEOUT_MS
from migrator.errors import MigrationError
from migrator.events import (
    CheckpointOfAnotherVersion,
    MixedIdTypes,
    ReadingIds,
    Reporter,
    ResumedFromCheckpoint,
    silent,
)
from migrator.migration import Outcome
from migrator.profile import ServerProfile
from migrator.progress import Progress
from migrator.retry import Retry
from migrator.scope import last_id_of, up_to
from migrator.stop import StopRequest

RANGE, STREAM = "range", "stream"
DEFAULT_SIZE = 1000


@dataclass
class BatchSettings:
    size: int | None = None  # documents per batch (and checkpoint); None: DEFAULT_SIZE
    max_rate: float | None = None  # documents per second, at most
    write_concern: str | None = None  # "majority" or "1"; None: majority, the runner's client's
    path: str | None = None  # RANGE or STREAM; None: by server


@dataclass
class Walk:
    """Where the walk of one step is: saved as its checkpoint after each batch (migrator.checkpoints), under the
    names earlier versions wrote too (`scanned`: the documents done; `done`: the walk is over), so that a
    checkpoint of either resumes."""
    collection: str
    checksum: str
    work: str  # a digest of the collection, filter and update
    path: str
    last_id: Any = None  # of the last batch done
    documents_done: int = 0
    matched: int = 0
    modified: int = 0
    batches: int = 0
    finished: bool = False
    total: int | None = None  # documents to walk, counted when it starts
    total_estimated: bool = False  # from the collection's count
    bounded: bool = False  # the walk ends at end_id (migrator.scope): the last `_id` when it began, or the last read
    end_id: Any = None  # bounded and None: the collection was empty
    last_read: Any = None  # the stream path's last `_id` read

    def checkpoint(self) -> dict:
        """The fields of its checkpoint."""
        fields = {"collection": self.collection, "checksum": self.checksum, "work": self.work, "path": self.path,
                  "last_id": self.last_id, "scanned": self.documents_done, "matched": self.matched,
                  "modified": self.modified, "batches": self.batches, "done": self.finished,
                  "bounded": self.bounded, "end_id": self.end_id}
        if self.total is not None:
            fields.update(total=self.total, total_estimated=self.total_estimated)
        return fields

    def resume(self, checkpoint: dict) -> None:
        """Go on where `checkpoint` says this walk was."""
        self.last_id, self.documents_done = checkpoint["last_id"], checkpoint["scanned"]
        self.matched, self.modified, self.batches = checkpoint["matched"], checkpoint["modified"], checkpoint["batches"]
        self.bounded, self.end_id = checkpoint.get("bounded", False), checkpoint.get("end_id")


class Batches:
    def __init__(self, database: AsyncDatabase, migration: str, checksum: str, settings: BatchSettings,
                 profile: ServerProfile, check_lock=None, retry: Retry | None = None, action: str = APPLY,
                 report: Reporter = silent):
        self.database = database
        self.migration, self.checksum = migration, checksum
        self.action = action
        self.settings = settings
        self.profile = profile
        self.path = settings.path or default_path(profile)
        self.size = settings.size or DEFAULT_SIZE
        self.check_lock = check_lock or _no_lock  # async (room_s): raise if the lease may not last a batch
        self._last_batch_s = 0.0  # how long the last batch took: the room the lease must have for the next
        self.retry = retry or Retry()
        self.checkpoints = Checkpoints(database, self.retry)
        self.report = report
        self.stop = StopRequest(report)
        self._steps = 0
        self._pace_started = 0.0
        self._batch_started = 0.0
        self._paced = 0  # documents done since _pace_started
        self.walked: dict[str, dict] = {}  # per collection, the `_id` filter its walk covered (migrator.scope)

    async def update_many(self, collection: str, filter: dict, update: dict,
                          recheck_filter: bool | None = None) -> Outcome:
        """Apply `update` to the documents of `collection` matching `filter`, batch by batch.
        `recheck_filter`: check the filter again at each write on FerretDB's stream path too (slower there; see
        the module's docstring); by default only a rollback's batches do."""
        self._steps += 1
        step = self._steps
        if step == 1:
            await self.checkpoints.clear(self.migration, action=ROLLBACK if self.action == APPLY else APPLY)
        recheck = self.action == ROLLBACK if recheck_filter is None else recheck_filter
        target = self._collection(collection)
        work = _digest(collection, filter, update)
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
        progress = Progress(self.migration, self.report, done=state.documents_done, modified=state.modified)
        with self.stop.handled():
            try:
                await walk(target, filter, update, state, step, progress)
            finally:
                progress.end()
        state.finished = True
        self.walked[collection] = up_to(state.end_id) if state.bounded else {}
        await self.checkpoints.save(self.migration, step, action=self.action, **state.checkpoint())
        progress.finish()
        return Outcome(matched=state.matched, modified=state.modified)  # the progress line said the rest

    # ----- the two paths -----

    async def _range(self, target: AsyncCollection, filter: dict, update: dict, state: Walk, step: int,
                     progress: Progress) -> None:
        """Three round trips a batch: its last `_id` (read from the index, nothing else leaves the server), the
        update_many of that `_id` range, and the checkpoint (saved before the next batch)."""
        counting = self.retry(f"{self.migration}: counting", target.estimated_document_count)
        state.total, state.total_estimated = await counting, True  # checkpointed
        progress.set_total(state.total, estimated=True)
        if not state.bounded:  # one index lookup: the walk ends at the collection's last `_id` now
            state.end_id = await self.retry(f"{self.migration}: the last _id", partial(last_id_of, target))
            state.bounded = True
        if state.end_id is None:
            return
        self._start_pacing()
        while True:
            await self._between(state, step)
            after = {"_id": {"$lte": state.end_id, **({} if state.last_id is None else {"$gt": state.last_id})}}

            async def batch(after=after):  # whole, again after a failover: the filter is checked again at the write
                bound = await batch_bound(target, after, self.size)
                if bound is None:
                    return None
                last_id, documents = bound
                within = {**after["_id"], "$lte": last_id}
                return last_id, documents, await target.update_many({"$and": [filter, {"_id": within}]}, update)
            done = await self.retry(f"{self.migration}: batch {state.batches + 1:,}", batch)
            if done is None:
                return
            last_id, documents, result = done
            self._batch_done(state, documents, last_id, result.matched_count, result.modified_count, progress)
            if documents < self.size:  # the collection's last `_id` was this batch's bound
                return

    async def _stream(self, target: AsyncCollection, filter: dict, update: dict, state: Walk, step: int,
                      progress: Progress, recheck: bool = False) -> None:
        # Past the checkpoint: `$nor` of `$lte` rather than `$gt`, so that `_id`s of another type than the
        # last one done (which no comparison with it matches) are done again, not skipped.
        past = None if state.last_id is None else {"$nor": [{"_id": {"$lte": state.last_id}}]}
        bound = up_to(state.end_id) if state.bounded else None  # a resumed walk keeps the bound it began with
        query = {"$and": [part for part in (filter, past, bound) if part]} if past or bound else filter
        self.report(ReadingIds(self.migration, target.name))
        with tempfile.TemporaryFile(prefix="migrator-ids-") as spool:
            count = await self._read_ids(target, query, spool, state)
            if not state.bounded:  # the last `_id` read; none read: the collection's last now
                state.end_id = state.last_read if count else await self.retry(
                    f"{self.migration}: the last _id", partial(last_id_of, target))
                state.bounded = True
            progress.restart(state.documents_done, state.modified)  # the rate and time left of the writes alone
            state.total, state.total_estimated = state.documents_done + count, False  # checkpointed
            progress.set_total(state.total)
            self._start_pacing()
            spool.seek(0)
            ids = (document["_id"] for document in bson.decode_file_iter(spool, target.codec_options))
            while batch := list(islice(ids, self.size)):
                await self._between(state, step)

                async def write(batch=batch) -> tuple[int, int]:  # whole, again after a failover
                    matched = modified = 0
                    for bulk in write_bulks(batch, filter, update, self.profile, recheck):
                        result = await target.bulk_write(bulk, ordered=True)
                        matched, modified = matched + result.matched_count, modified + result.modified_count
                    return matched, modified
                matched, modified = await self.retry(f"{self.migration}: batch {state.batches + 1:,}", write)
                self._batch_done(state, len(batch), batch[-1], matched, modified, progress)

    async def _read_ids(self, target: AsyncCollection, query: dict, spool, state: Walk) -> int:
        """The `_id`s of the documents matching `query`, in `_id` order, into `spool`; how many. All of them before
        the first write: FerretDB must not hold a cursor open. With progress lines, and at most --max-rate ids a
        second (on MongoDB each getMore reads on; FerretDB reads and sorts the whole result for the first reply)."""
        reading = Progress(f"{self.migration}, reading the _ids", self.report, unit="ids", counts_modified=False)

        async def read() -> int:  # whole, again after a failover
            spool.seek(0)
            spool.truncate()
            reading.restart()
            self._start_pacing()
            chunk, unreported = self._ids_per_read, 0
            async for document in target.find(query, {"_id": 1}).sort("_id", ASCENDING).batch_size(chunk):
                spool.write(bson.encode({"_id": document["_id"]}, codec_options=target.codec_options))
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

    # ----- between batches -----

    def _batch_done(self, state: Walk, documents: int, last_id, matched: int, modified: int,
                    progress: Progress) -> None:
        state.last_id = last_id
        state.documents_done += documents
        state.matched += matched
        state.modified += modified
        state.batches += 1
        self._last_batch_s = time.monotonic() - self._batch_started
        self._paced += documents
        progress.advance(documents, modified)

    def _start_pacing(self) -> None:
        self._pace_started, self._paced = time.monotonic(), 0

    async def _keep_to_rate(self, burst: int) -> None:
        """Sleep until the documents done since _start_pacing fit in --max-rate."""
        if not self.settings.max_rate:
            return
        ahead = self._paced / self.settings.max_rate - (time.monotonic() - self._pace_started)
        if ahead > 0:
            await self.stop.sleep(ahead)
        elif ahead < -burst / self.settings.max_rate:  # slower than the rate: no credit for a burst
            self._start_pacing()

    @property
    def _ids_per_read(self) -> int:
        """Ids per getMore of the stream path's read: under --max-rate about a second's worth, so that the
        server reads at that pace too, not in bursts of 10,000."""
        if not self.settings.max_rate:
            return 10_000
        return max(10, min(10_000, int(self.settings.max_rate)))

    async def _ids_read(self, reading: Progress, ids: int, state: Walk) -> None:
        reading.advance(ids)
        self._paced += ids
        await self._keep_to_rate(burst=self._ids_per_read)
        self._stop_if_asked(state)

    async def _between(self, state: Walk, step: int) -> None:
        """Before each batch: save where the last one ended (if the lock is still ours), keep to --max-rate,
        stop if asked."""
        await self.check_lock(self._last_batch_s)
        if state.batches:
            await self.checkpoints.save(self.migration, step, action=self.action, **state.checkpoint())
        await self._keep_to_rate(burst=self.size)
        self._stop_if_asked(state)
        await self.check_lock(self._last_batch_s)  # again: the pause may have been long
        self._batch_started = time.monotonic()

    def _stop_if_asked(self, state: Walk) -> None:
        if self.stop.signal is None:
            return
        where = (f"checkpoint saved (up to _id {state.last_id})" if state.batches
                 else "nothing written yet")
        raise MigrationError(f"{self.migration}: stopped by {self.stop.signal_name} after "
                             f"{state.documents_done:,} documents; {where}: "
                             "run the same command again to resume", self.stop.exit_code)

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

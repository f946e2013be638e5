"""Where a batched migration stopped: one small document per step, so a re-run resumes there.

`{_id: "<migration>/<step>", migration, step, collection, checksum, work (a digest of collection,
filter and update), path, last_id, scanned, matched, modified, batches, done, total, total_estimated,
started_at, started_from, at}`, written after every batch, deleted when the migration completes. The
changelog stays insert-only history; this is the one place that is overwritten as work goes on.
`scanned` counts the documents done of `total` (counted when the walk starts; `total_estimated`: from
the collection's count); `done` says the walk is over (in Python: Walk's
`documents_done` and `finished`). A runner's first save also sets `started_at`
(the server's clock) and `started_from` (`scanned` then): what `--status` measures this run's rate from.
A rollback's checkpoints are `<migration>/rollback/<step>`, with `action: "rollback"`; an `up`'s have no action.

A save is one round trip, and a small one: `at` is the server's own clock ($currentDate, no `hello`
asked first), and once this runner has saved a checkpoint, the next save sets only the fields that
changed (the last `_id` and the counts), unless the document is gone meanwhile: then all of them.
A save inside a batch's transaction (`session`: migrator.fencing) sets all of them, once (an aborted
transaction may have left none of what this runner remembers saving), and is not retried alone: the fence
retries the whole transaction.
"""

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from migrator.clock import bookkeeping
from migrator.retry import Retry

COLLECTION = "migrations_checkpoints"
APPLY, ROLLBACK = "apply", "rollback"


class Checkpoints:
    def __init__(self, database: AsyncDatabase, retry: Retry | None = None):
        self.collection = bookkeeping(database, COLLECTION)
        self.database = database
        self.retry = retry or Retry()
        self._saved: dict[str, dict] = {}  # key -> the fields this runner last saved there

    @staticmethod
    def key(migration: str, step: int, action: str = APPLY) -> str:
        return f"{migration}/{step}" if action == APPLY else f"{migration}/{action}/{step}"

    async def load(self, migration: str, step: int, action: str = APPLY) -> dict | None:
        # A string `_id` alone: a filter every server answers from an index (even where profile.id_lookup_only).
        return await self.retry("reading the checkpoint",
                                lambda: self.collection.find_one({"_id": self.key(migration, step, action)}))

    async def save(self, migration: str, step: int, action: str = APPLY, session=None, **fields) -> None:
        key = self.key(migration, step, action)
        document = {"migration": migration, "step": step, **({} if action == APPLY else {"action": action}), **fields}
        last = self._saved.get(key)
        if session is not None:
            started = {} if last else {"started_from": fields.get("scanned", 0)}
            await self._set(migration, key, {**document, **started}, upsert=True, session=session,
                            dates=("at", "started_at") if started else ("at",))
        elif last is None or not await self._set(migration, key, _changed(last, document), upsert=False):
            # this runner's first save here (or the document was removed): the rate is measured from here
            await self._set(migration, key, {**document, "started_from": fields.get("scanned", 0)}, upsert=True,
                            dates=("at", "started_at"))
        self._saved[key] = document

    async def _set(self, migration: str, key: str, fields: dict, upsert: bool, dates=("at",), session=None) -> bool:
        """Set `fields`, and `dates` to the server's time; saving twice is the same as once. False: no such
        checkpoint (not upserted)."""
        now = {"$currentDate": {name: True for name in dates}}
        change: dict[str, Any] = {"$set": fields, **now} if fields else now
        if session is not None:  # in a transaction: the fence retries the whole of it
            result = await self.collection.update_one({"_id": key}, change, upsert=upsert, session=session)
        else:
            result = await self.retry(f"{migration}: saving the checkpoint",
                                      lambda: self.collection.update_one({"_id": key}, change, upsert=upsert))
        return result.matched_count > 0 or result.upserted_id is not None

    async def all(self) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        async for checkpoint in self.collection.find({}).sort("step", 1):
            found.setdefault(checkpoint["migration"], []).append(checkpoint)
        return found

    async def clear(self, migration: str, action: str | None = None, session=None) -> None:
        """Delete the checkpoints of `migration`: all of them, or those of one action (APPLY or ROLLBACK). With a
        `session` (a fenced unit: migrator.fencing), once: the fence retries it."""
        which: dict[str, Any] = {}
        if action == APPLY:
            which = {"action": {"$ne": ROLLBACK}}  # an up's has no action
        elif action is not None:
            which = {"action": action}
        if session is not None:
            await self.collection.delete_many({"migration": migration, **which}, session=session)
        else:
            await self.retry(f"{migration}: clearing the checkpoint",
                             lambda: self.collection.delete_many({"migration": migration, **which}))
        self._saved = {key: fields for key, fields in self._saved.items()
                       if fields["migration"] != migration or action not in (None, fields.get("action", APPLY))}


def _changed(before: dict, after: dict) -> dict:
    """The fields of `after` that differ from `before`, by type too (True == 1 in Python, not as an `_id`)."""
    return {name: value for name, value in after.items()
            if name not in before or type(before[name]) is not type(value) or before[name] != value}


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

    def add(self, documents: int, last_id, matched: int, modified: int) -> "Walk":
        """Count one more batch done (on a copy, `replace(walk).add(...)`, before it is sure); this walk."""
        self.last_id, self.documents_done, self.batches = last_id, self.documents_done + documents, self.batches + 1
        self.matched, self.modified = self.matched + matched, self.modified + modified
        return self

    def resume(self, checkpoint: dict) -> None:
        """Go on where `checkpoint` says this walk was."""
        self.last_id, self.documents_done = checkpoint["last_id"], checkpoint["scanned"]
        self.matched, self.modified, self.batches = checkpoint["matched"], checkpoint["modified"], checkpoint["batches"]
        self.bounded, self.end_id = checkpoint.get("bounded", False), checkpoint.get("end_id")

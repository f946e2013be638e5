"""What one batch reads and writes, per path (migrator.batches): the bound of a range batch, read from the
`_id` index alone, and the bulk writes of a stream batch, within the server's limits (migrator.profile).
What a batch writes is a Change: the same update for every document (`SameUpdate`: update_many's), or one
computed from each document in Python (`EachUpdate`: update_each's)."""

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import bson
from pymongo import ASCENDING, DESCENDING, UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, OperationFailure

from migrator.errors import MigrationError
from migrator.profile import ServerProfile
from migrator.retry import is_transient

Check = Callable[[], None]  # raises when the runner may no longer write (migrator.fencing: Fence.check)
Compute = Callable[[dict], dict | list | None | Awaitable[dict | list | None]]


class SameUpdate:
    """One update for every document matching the filter."""
    projection: dict | None = {"_id": 1}  # what the stream path reads and spools: the ids alone
    reading = "the _ids"

    def __init__(self, update):
        self.update = update

    @property
    def key(self):
        """What the checkpoint's digest tells this work apart by."""
        return self.update

    async def range_batch(self, target: AsyncCollection, filter: dict, within: dict, check: Check,
                          session=None) -> tuple[int, int]:
        """(matched, modified) of the documents matching `filter` within the `_id` range `within`."""
        try:
            result = await target.update_many({"$and": [filter, {"_id": within}]}, self.update, session=session)
        except OperationFailure as exc:
            if is_transient(exc):
                raise
            raise refused(target, exc) from exc  # the server's message names the document, where it can
        return result.matched_count, result.modified_count

    async def stream_batch(self, target: AsyncCollection, documents: list[dict], filter: dict,
                           profile: ServerProfile, recheck: bool, check: Check, session=None) -> tuple[int, int]:
        """(matched, modified) of the batch `documents` (as read: their ids), which matched `filter` when read."""
        ids = [document["_id"] for document in documents]
        return await send(target, write_bulks(ids, filter, self.update, profile, recheck), check, session)


class EachUpdate:
    """The update of each document, computed from it by `compute(document)` (a function or a coroutine function;
    None: leave the document as it is), written as one UpdateOne a document."""
    reading = "the documents"

    def __init__(self, compute: Compute, projection: Mapping | None = None):
        if not callable(compute):
            raise MigrationError("update_each: compute must be a function of the document, not "
                                 f"{type(compute).__name__}")
        self.compute = compute
        self.projection = None if projection is None else dict(projection)

    @property
    def key(self):
        name = f"{getattr(self.compute, '__module__', '')}.{getattr(self.compute, '__qualname__', '')}"
        return {"each": name, "projection": self.projection}

    async def updates(self, documents: list[dict]) -> list[tuple[Any, Any]]:
        """[(`_id`, its update)] of the documents `compute` gives one."""
        found = []
        for document in documents:
            update = self.compute(document)
            if inspect.isawaitable(update):
                update = await update
            if update is None:
                continue
            if not isinstance(update, (Mapping, list)):
                raise MigrationError(f"update_each: compute returned {type(update).__name__} for _id "
                                     f"{document['_id']!r}: an update document (or None to leave it) was expected")
            found.append((document["_id"], update))
        return found

    async def range_batch(self, target: AsyncCollection, filter: dict, within: dict, check: Check,
                          session=None) -> tuple[int, int]:
        documents = await target.find({"$and": [filter, {"_id": within}]}, self.projection,
                                      session=session).sort("_id", ASCENDING).to_list(None)
        updates = await self.updates(documents)
        return await send(target, [[UpdateOne({"$and": [{"_id": _id}, filter]}, update) for _id, update in updates]],
                          check, session)

    async def stream_batch(self, target: AsyncCollection, documents: list[dict], filter: dict,
                           profile: ServerProfile, recheck: bool, check: Check, session=None) -> tuple[int, int]:
        updates = await self.updates(documents)
        if not profile.id_lookup_only:  # the filter checked again at each write, by the `_id` index
            bulks = [[UpdateOne({"$and": [{"_id": _id}, filter]}, update) for _id, update in updates]]
            return await send(target, bulks, check, session)
        if recheck and updates:  # one read of the filter and the batch's ids (a scan there): those still matching
            updates = await _still_matching(target, filter, updates, profile, session)
        step = profile.max_bulk or len(updates) or 1
        bulks = [[UpdateOne({"_id": _id}, update) for _id, update in updates[start:start + step]]
                 for start in range(0, len(updates), step)]
        return await send(target, bulks, check, session)


async def _still_matching(target: AsyncCollection, filter: dict, updates: list[tuple[Any, Any]],
                          profile: ServerProfile, session=None) -> list[tuple[Any, Any]]:
    ids = [_id for _id, _ in updates]
    step = profile.max_in or len(ids)

    def key(_id) -> bytes:  # as BSON: 1, 1.0 and "1" are three ids
        return bson.encode({"_id": _id}, codec_options=target.codec_options)
    matching: set[bytes] = set()
    for start in range(0, len(ids), step):
        query = {"$and": [filter, {"_id": {"$in": ids[start:start + step]}}]}
        matching.update([key(document["_id"]) async for document in target.find(query, {"_id": 1}, session=session)])
    return [(_id, update) for _id, update in updates if key(_id) in matching]


async def send(target: AsyncCollection, bulks: list[list], check: Check, session=None) -> tuple[int, int]:
    """Write `bulks` in order, each an ordered bulk_write; (matched, modified). A statement the server refuses
    is raised as WriteFailed: its errmsg, code and the document's `_id`."""
    matched = modified = 0
    for bulk in bulks:
        if not bulk:
            continue
        check()  # a runner paused mid-batch past its lease sends nothing more
        try:
            result = await target.bulk_write(bulk, ordered=True, session=session)
        except BulkWriteError as exc:  # MongoDB: which statement failed, and why
            errors = (exc.details or {}).get("writeErrors") or []
            if not errors:
                raise
            error = errors[0]
            raise WriteFailed(target.name, _id_of(bulk[error.get("index", 0)]), error.get("errmsg", ""),
                              error.get("code")) from exc
        except (KeyError, OperationFailure) as exc:
            # FerretDB: a reply with a write error lacks nModified, which PyMongo's bulk_write reads (KeyError),
            # or the whole command fails (a unique index: InternalError) naming no statement. Each statement
            # alone names its error: sending the batch's statements again is what a retry of the batch does.
            if isinstance(exc, OperationFailure) and (is_transient(exc) or (session and session.in_transaction)):
                raise  # sent again whole: by the retry, or with its transaction (migrator.fencing)
            if isinstance(exc, OperationFailure) and len(bulk) == 1:
                raise refused(target, exc, _id_of(bulk[0])) from exc
            await _first_refused(target, bulk, session)
            raise
        matched, modified = matched + result.matched_count, modified + result.modified_count
    return matched, modified


class WriteFailed(OperationFailure):
    """The server refused a batch's write: one line with the collection, the document's `_id` (when one
    statement names one) and the server's errmsg and code."""

    def __init__(self, collection: str, _id: Any, errmsg: str, code: int | None):
        where = f"{collection} _id={_id!r}" if _id is not _NO_ID else collection
        said = _FRAMES.sub("", errmsg or "").strip() or "no message"
        super().__init__(f"write error on {where}: {said}{f' (code {code})' if code is not None else ''}", code)


_NO_ID: Any = object()
_FRAMES = re.compile(r"^(\[[^\]]*\] ?)+")  # FerretDB's source locations before its message: `[msg_update.go:133 ...] `


def _id_of(operation) -> Any:
    """The `_id` an UpdateOne of a batch names ({_id} or {$and: [{_id}, filter]}); _NO_ID for an UpdateMany."""
    filter = operation._filter  # PyMongo keeps an operation's filter there; nothing public reads it back
    if isinstance(operation, UpdateOne):
        found = filter.get("_id", _NO_ID)
        if found is _NO_ID and filter.get("$and"):
            found = filter["$and"][0].get("_id", _NO_ID)
        return found
    return _NO_ID


async def _first_refused(target: AsyncCollection, bulk: list, session=None) -> None:
    """Send `bulk`'s statements one at a time until one is refused: raise WriteFailed for it (else return)."""
    for operation in bulk:
        update = target.update_one if isinstance(operation, UpdateOne) else target.update_many
        try:
            await update(operation._filter, operation._doc, session=session)
        except OperationFailure as exc:
            if is_transient(exc):
                raise
            raise refused(target, exc, _id_of(operation)) from exc


def refused(target: AsyncCollection, exc: OperationFailure, _id: Any = None) -> "WriteFailed":
    """A write of one statement the server refused, as WriteFailed (`_id`: the document it names, if one)."""
    details = exc.details or {}
    return WriteFailed(target.name, _NO_ID if _id is None else _id, details.get("errmsg", str(exc)), exc.code)


def write_bulks(ids: list, filter: dict, update, profile: ServerProfile, recheck: bool) -> list[list]:
    """The bulk writes of one batch of the stream path, whose `ids` matched `filter` when they were read.
    Usually one UpdateOne a document, the filter checked again by the `_id` index. Where only `{_id: value}`
    alone is looked up by index (profile.id_lookup_only): UpdateOne({_id}) in bulks of profile.max_bulk, the
    filter not checked again; with `recheck`, one update_many of the filter and the ids instead (a scan)."""
    if not profile.id_lookup_only:
        return [[UpdateOne({"$and": [{"_id": _id}, filter]}, update) for _id in ids]]
    if recheck:
        step = profile.max_in or len(ids)
        return [[UpdateMany({"$and": [filter, {"_id": {"$in": ids[start:start + step]}}]}, update)]
                for start in range(0, len(ids), step)]
    step = profile.max_bulk or len(ids)
    return [[UpdateOne({"_id": _id}, update) for _id in ids[start:start + step]]
            for start in range(0, len(ids), step)]


_NUMBERS = (int, float, bson.Int64, bson.Decimal128)  # one BSON comparison class; bool is not in it


async def batch_bound(target: AsyncCollection, after: dict, size: int, session=None) -> tuple[object, int] | None:
    """(last `_id`, documents) of the next batch of `size` past `after`, read from the `_id` index alone.
    A full batch costs one round trip: the index read skips to its last `_id`. Fewer left (the last batch, once
    a walk): the bound is the collection's last `_id` and the count is of what is left up to it, two round trips
    more. (One aggregation with $group's $last could answer both, but not every server has $first and $last.)"""
    ids_only, ascending = {"_id": 1}, [("_id", ASCENDING)]
    full = await target.find_one(after, ids_only, sort=ascending, skip=size - 1, session=session)
    if full is not None:
        return full["_id"], size
    last = await target.find_one(after, ids_only, sort=[("_id", DESCENDING)], session=session)
    if last is None:
        return None
    return last["_id"], await target.count_documents({"_id": {**after.get("_id", {}), "$lte": last["_id"]}},
                                                     session=session)


async def mixed_id_types(target: AsyncCollection) -> bool:
    """Do the smallest and largest `_id` differ in BSON type? (Two index lookups on MongoDB.)"""
    ends = [await target.find_one({}, {"_id": 1}, sort=[("_id", order)]) for order in (1, -1)]
    ids = [end["_id"] for end in ends if end is not None]
    if len(ids) < 2:
        return False
    kinds = {"number" if isinstance(_id, _NUMBERS) and not isinstance(_id, bool) else type(_id).__name__
             for _id in ids}
    return len(kinds) > 1

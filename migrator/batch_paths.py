"""What one batch reads and writes, per path (migrator.batches): the bound of a range batch, read from the
`_id` index alone, and the bulk writes of a stream batch, within FerretDB's limits."""

import bson
from pymongo import ASCENDING, DESCENDING, UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

# FerretDB keeps every statement of one bulk command open until the command ends, on a pool of 100
# SQLite connections: a bulk near 100 updates waits for itself forever.
FERRETDB_MAX_BULK = 50
# Ids in one `$in` of a rechecked write on FerretDB: each statement scans the collection once, so as
# many as fit well inside a command (16 MiB).
FERRETDB_MAX_IN = 10_000


def write_bulks(ids: list, filter: dict, update, is_ferretdb: bool, recheck: bool) -> list[list]:
    """The bulk writes of one batch of the stream path, whose `ids` matched `filter` when they were read.
    MongoDB: one UpdateOne a document, the filter checked again by the `_id` index. FerretDB looks a document
    up by index only for `{_id: value}` alone: UpdateOne({_id}) in bulks of FERRETDB_MAX_BULK, the filter not
    checked again; with `recheck`, one update_many of the filter and the ids instead (a scan)."""
    if not is_ferretdb:
        return [[UpdateOne({"$and": [{"_id": _id}, filter]}, update) for _id in ids]]
    if recheck:
        return [[UpdateMany({"$and": [filter, {"_id": {"$in": ids[start:start + FERRETDB_MAX_IN]}}]}, update)]
                for start in range(0, len(ids), FERRETDB_MAX_IN)]
    return [[UpdateOne({"_id": _id}, update) for _id in ids[start:start + FERRETDB_MAX_BULK]]
            for start in range(0, len(ids), FERRETDB_MAX_BULK)]


_NUMBERS = (int, float, bson.Int64, bson.Decimal128)  # one BSON comparison class; bool is not in it


async def batch_bound(target: AsyncCollection, after: dict, size: int) -> tuple[object, int] | None:
    """(last `_id`, documents) of the next batch of `size` past `after`, read from the `_id` index alone.
    A full batch costs one round trip: the index read skips to its last `_id`. Fewer left (the last batch, once
    a walk): the bound is the collection's last `_id` and the count is of what is left up to it, two round trips
    more. (One aggregation with $group's $last could answer both, but FerretDB has neither $first nor $last.)"""
    ids_only, ascending = {"_id": 1}, [("_id", ASCENDING)]
    full = await target.find_one(after, ids_only, sort=ascending, skip=size - 1)
    if full is not None:
        return full["_id"], size
    last = await target.find_one(after, ids_only, sort=[("_id", DESCENDING)])
    if last is None:
        return None
    return last["_id"], await target.count_documents({"_id": {**after.get("_id", {}), "$lte": last["_id"]}})


async def mixed_id_types(target: AsyncCollection) -> bool:
    """Do the smallest and largest `_id` differ in BSON type? (Two index lookups on MongoDB.)"""
    ends = [await target.find_one({}, {"_id": 1}, sort=[("_id", order)]) for order in (1, -1)]
    if None in ends:
        return False
    kinds = {"number" if isinstance(end["_id"], _NUMBERS) and not isinstance(end["_id"], bool)
             else type(end["_id"]).__name__ for end in ends}
    return len(kinds) > 1

"""What one batch reads and writes, per path (migrator.batches): the bound of a range batch, read from the
`_id` index alone, and the bulk writes of a stream batch, within the server's limits (migrator.profile)."""

import bson
from pymongo import ASCENDING, DESCENDING, UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from migrator.profile import ServerProfile


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

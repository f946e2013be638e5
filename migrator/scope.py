"""What a run's walks covered: the documents that existed when each walk began.

While the app is deployed one pod at a time, pods of the old version keep writing documents of the old
shape. A walk (migrator.batches) is bounded to the `_id`s it found when it began, and the verification right
after `up` is bounded the same way: a migration whose `verify` accepts `scope` is handed one, and checks
only the documents the walk covered; documents written later are stragglers, not this run's, and a later
`--verify` (of the whole collections: no scope) finds them until a catch-up run (`--migration NAME` again,
once every pod runs the new version) migrates them.

    async def verify(db, scope=WHOLE):
        left = await db.chat_messages.count_documents(scope.within("chat_messages", {"metadata": {"$exists": False}}))
"""

from dataclasses import dataclass, field
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection


@dataclass(frozen=True)
class Scope:
    """Per collection walked, the `_id` filter of the documents the walk covered ({}: the whole collection)."""
    walked: dict[str, dict] = field(default_factory=dict)

    def of(self, collection: str) -> dict:
        """The filter of the documents of `collection` the walk covered; {} for all of them (not walked)."""
        return dict(self.walked.get(collection, {}))

    def within(self, collection: str, filter: dict) -> dict:
        """`filter`, limited to what the walk of `collection` covered."""
        bound = self.of(collection)
        if not bound or not filter:
            return bound or dict(filter)
        return {"$and": [filter, bound]}


WHOLE = Scope()  # no bound: every document (--verify, --check, --mark-applied, after a restore)
NOTHING: dict = {"_id": {"$in": []}}  # a walk of a collection that was empty when it began


def up_to(end_id: Any) -> dict:
    """The documents whose `_id` is not above `end_id` in BSON order (also those of other types, which no `$lte`
    of it matches: a walk in `_id` order past them would have covered them)."""
    return NOTHING if end_id is None else {"$nor": [{"_id": {"$gt": end_id}}]}


async def last_id_of(collection: AsyncCollection) -> Any:
    """The collection's last `_id` in BSON order (one index lookup on MongoDB), None when it is empty."""
    last = await collection.find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
    return None if last is None else last["_id"]

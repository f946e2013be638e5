"""The documents of a backup's batch as they are now on the server, read by `_id` within the server's limits:
what a restore compares with before writing and reads back after, and what post-images digest."""

import asyncio

from pymongo.asynchronous.collection import AsyncCollection

from migrator.backup.file import BATCH
from migrator.profile import ServerProfile
from migrator.rawbson import id_key


def batch_size(profile: ServerProfile) -> int:
    """Documents a batch: BATCH, or fewer where the server takes smaller bulks (profile.max_bulk)."""
    return profile.max_bulk or BATCH


async def current_documents(collection: AsyncCollection, ids: list, profile: ServerProfile) -> list[bytes | None]:
    """The raw BSON of the documents of `ids` as they are now, in that order (None: not found); `collection`
    read with migrator.rawbson.RAW."""
    if not ids:
        return []
    if profile.id_lookup_only:
        # `$in` would read the whole collection, and many statements at once can stall the server:
        # a few lookups by _id at a time.
        at_once = asyncio.Semaphore(profile.lookups_at_once or 1)

        async def one(_id) -> bytes | None:
            async with at_once:
                document = await collection.find_one({"_id": _id})
                return document.raw if document is not None else None
        return list(await asyncio.gather(*(one(_id) for _id in ids)))
    found = {id_key(document["_id"]): document.raw async for document in collection.find({"_id": {"$in": ids}})}
    return [found.get(id_key(_id)) for _id in ids]

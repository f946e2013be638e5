"""Where a batched migration stopped: one small document per step, so a re-run resumes there.

`{_id: "<migration>/<step>", migration, step, collection, checksum, work (a digest of collection,
filter and update), path, last_id, scanned, matched, modified, batches, done, at}`, written after every batch, deleted when the migration completes. The changelog stays
insert-only history; this is the one place that is overwritten as work goes on.
"""

from pymongo.asynchronous.database import AsyncDatabase

from migrator.clock import bookkeeping, server_now
from migrator.retry import Retry

COLLECTION = "migrations_checkpoints"


class Checkpoints:
    def __init__(self, database: AsyncDatabase, retry: Retry | None = None):
        self.collection = bookkeeping(database, COLLECTION)
        self.database = database
        self.retry = retry or Retry()

    @staticmethod
    def key(migration: str, step: int) -> str:
        return f"{migration}/{step}"

    async def load(self, migration: str, step: int) -> dict | None:
        # A string `_id` alone: the one filter FerretDB answers from an index.
        return await self.retry("reading the checkpoint",
                                lambda: self.collection.find_one({"_id": self.key(migration, step)}))

    async def save(self, migration: str, step: int, **fields) -> None:
        async def save() -> None:  # replaced whole: saving it twice is the same as once
            document = {"migration": migration, "step": step, **fields, "at": await server_now(self.database)}
            await self.collection.replace_one({"_id": self.key(migration, step)}, document, upsert=True)
        await self.retry(f"{migration}: saving the checkpoint", save)

    async def all(self) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        async for checkpoint in self.collection.find({}).sort("step", 1):
            found.setdefault(checkpoint["migration"], []).append(checkpoint)
        return found

    async def clear(self, migration: str) -> None:
        await self.retry(f"{migration}: clearing the checkpoint",
                         lambda: self.collection.delete_many({"migration": migration}))

"""The changelog: one document per thing done to a migration, kept as history.

Each entry says what was done (`action`: apply, mark_applied, rollback, restore) and the state the
migration is in after it (`state`: applied, failed, rolled_back). A migration's state is that of
its latest entry (but for entries of a runner that had lost the lock, `lock_lost`); a migration
without entries is pending. Entries are only ever inserted; each says who made it (host, pid, user,
the git commit of the migrations, the CI run).
"""

import contextlib
import os
import socket

from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from migrator.clock import bookkeeping, server_now
from migrator.redact import redact
from migrator.retry import Retry
from migrator.version import __version__

COLLECTION = "migrations_changelog"
HOST = socket.gethostname()


class Changelog:
    def __init__(self, database: AsyncDatabase, retry: Retry | None = None, provenance: dict | None = None):
        self.database = database
        self.collection = bookkeeping(database, COLLECTION)
        self.retry = retry or Retry()
        self.provenance = provenance or {}  # user, commit, ci: see migrator.provenance

    async def record(self, name: str, action: str, state: str, **details) -> dict:
        if details.get("error"):  # a message, which can quote a URL; the other fields stay exact (checksums)
            details["error"] = redact(details["error"])
        entry = {
            "_id": ObjectId(),  # ours, so that a retry after a lost reply cannot record it twice
            "name": name,
            "action": action,
            "state": state,
            **details,
            "host": HOST,
            "pid": os.getpid(),
            **self.provenance,
            "toolkit_version": __version__,
        }

        async def insert() -> None:
            entry["at"] = await server_now(self.database)
            with contextlib.suppress(DuplicateKeyError):  # the first try was applied; its reply was lost
                await self.collection.insert_one(entry)
        await self.retry(f"{name}: recording {action} in the changelog", insert)
        return entry

    async def entries(self) -> list[dict]:
        return await self.retry("reading the changelog",
                                lambda: self.collection.find({}).sort([("at", 1), ("_id", 1)]).to_list(None))

    async def history(self) -> dict[str, list[dict]]:
        """Every entry of each migration that has one, oldest first."""
        by_name: dict[str, list[dict]] = {}
        for entry in await self.entries():
            by_name.setdefault(entry["name"], []).append(entry)
        return by_name

    async def latest(self) -> dict[str, dict]:
        """The latest entry of each migration that has one, of those that set its state."""
        return {entry["name"]: entry for entry in await self.entries() if sets_state(entry)}


def sets_state(entry: dict) -> bool:
    """A runner that had lost the lock records its failure as history only: the new holder owns the state."""
    return not entry.get("lock_lost")

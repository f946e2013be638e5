"""The changelog: one document per thing done to a migration, kept as history.

Each entry says what was done (`action`: apply, mark_applied, rollback) and the state the
migration is in after it (`state`: applied, failed, rolled_back). A migration's state is that of
its latest entry; a migration without entries is pending. Entries are only ever inserted.
"""

import os
import socket

from pymongo.asynchronous.database import AsyncDatabase

from migrator import __version__
from migrator.clock import server_now
from migrator.redact import redact

COLLECTION = "migrations_changelog"
HOST = socket.gethostname()


class Changelog:
    def __init__(self, database: AsyncDatabase):
        self.database = database
        self.collection = database[COLLECTION]

    async def record(self, name: str, action: str, state: str, **details) -> dict:
        if details.get("error"):  # a message, which can quote a URL; the other fields stay exact (checksums)
            details["error"] = redact(details["error"])
        entry = {
            "name": name,
            "action": action,
            "state": state,
            "at": await server_now(self.database),
            **details,
            "host": HOST,
            "pid": os.getpid(),
            "toolkit_version": __version__,
        }
        await self.collection.insert_one(entry)
        return entry

    async def entries(self) -> list[dict]:
        return await self.collection.find({}).sort([("at", 1), ("_id", 1)]).to_list(None)

    async def history(self) -> dict[str, list[dict]]:
        """Every entry of each migration that has one, oldest first."""
        by_name: dict[str, list[dict]] = {}
        for entry in await self.entries():
            by_name.setdefault(entry["name"], []).append(entry)
        return by_name

    async def latest(self) -> dict[str, dict]:
        """The latest entry of each migration that has one."""
        return {entry["name"]: entry for entry in await self.entries()}

"""Scratch copies of collections, and the database a migration is handed to run on them.

`Scratch(database, profile)` keeps its copies in the app's own database (so a self-test needs only the
readWrite role there), named `_selftest_<run>_<name>`, and removes every one of them when its
`async with` block ends, however it ends: an error, Ctrl-C, SIGTERM.

`scratch.database` is what the migration's code is handed: every collection name leads to its
scratch copy, however it is reached: `db.x`, `db["x"]`, `db.get_collection("x")`,
`list_collection_names()`, `create_collection`, `drop_collection`, the collection a `command`
names, a collection's `rename`, its sub-collections and `with_options`, and the collections an
aggregation reads or writes ($out, $merge, $lookup, $graphLookup, $unionWith). A collection the
copy does not hold is simply empty there.
"""

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.command_cursor import AsyncCommandCursor
from pymongo.asynchronous.cursor import AsyncRawBatchCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator.errors import ExitCode, MigrationError
from migrator.profile import ServerProfile
from migrator.rawbson import RAW, id_key
from migrator.redact import redact

PREFIX = "_selftest_"
_TARGET = {"$out": "coll", "$merge": "into", "$unionWith": "coll", "$lookup": "from", "$graphLookup": "from"}


class ScratchDatabase:
    """The app's database as a migration sees it during a self-test: each name leads to its scratch copy."""

    def __init__(self, real: AsyncDatabase, prefix: str):
        self.real, self.prefix = real, prefix

    def scratch_name(self, name: str) -> str:
        return name if name.startswith(self.prefix) else self.prefix + name

    # ----- collections -----

    def get_collection(self, name: str, *args, **kwargs) -> "ScratchCollection":
        return ScratchCollection.of(self, self.real.get_collection(self.scratch_name(name), *args, **kwargs))

    def __getitem__(self, name: str) -> "ScratchCollection":
        return self.get_collection(name)

    def __getattr__(self, name: str) -> "ScratchCollection":
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get_collection(name)

    async def list_collection_names(self, session=None, filter: Mapping | None = None, **kwargs) -> list[str]:
        """The names of the scratch copies, as the app's names."""
        filter = dict(filter or {})
        if "name" in filter and not isinstance(filter["name"], str):
            raise MigrationError("in a self-test, list_collection_names filters on an exact name only "
                                 "(filter={\"name\": \"...\"})", ExitCode.USAGE)
        filter["name"] = self.scratch_name(filter["name"]) if "name" in filter else \
            {"$regex": f"^{re.escape(self.prefix)}"}
        names = await self.real.list_collection_names(session=session, filter=filter, **kwargs)
        return [name.removeprefix(self.prefix) for name in names if name.startswith(self.prefix)]

    async def list_collections(self, *args, **kwargs):
        raise MigrationError("list_collections() is not available in a self-test: use list_collection_names()",
                             ExitCode.USAGE)

    async def create_collection(self, name: str, *args, **kwargs) -> "ScratchCollection":
        return ScratchCollection.of(self, await self.real.create_collection(self.scratch_name(name), *args, **kwargs))

    async def drop_collection(self, name_or_collection, *args, **kwargs):
        name = name_or_collection if isinstance(name_or_collection, str) else name_or_collection.name
        return await self.real.drop_collection(self.scratch_name(name), *args, **kwargs)

    # ----- commands and aggregations -----

    async def command(self, command, value: Any = 1, *args, **kwargs):
        if isinstance(command, str):
            value = self.scratch_name(value) if isinstance(value, str) else value
        else:
            command = self._command(command)
        return await self.real.command(command, value, *args, **kwargs)

    async def aggregate(self, pipeline: list, *args, **kwargs):
        return await self.real.aggregate(self.pipeline(pipeline), *args, **kwargs)

    def _command(self, command: Mapping) -> dict:
        """{"collMod": "x", ...} names its collection in its first value; an explain holds a command."""
        mapped = dict(command)
        first = next(iter(mapped), None)
        if isinstance(mapped.get(first), str):
            mapped[first] = self.scratch_name(mapped[first])
        if isinstance(mapped.get("explain"), Mapping):
            mapped["explain"] = self._command(mapped["explain"])
        if isinstance(mapped.get("pipeline"), list):
            mapped["pipeline"] = self.pipeline(mapped["pipeline"])
        return mapped

    def pipeline(self, pipeline: Sequence) -> list:
        return [self._stage(stage) for stage in pipeline]

    def _stage(self, stage):
        if not isinstance(stage, Mapping) or len(stage) != 1:
            return stage
        (operator, spec), = stage.items()
        if operator == "$facet" and isinstance(spec, Mapping):
            return {operator: {name: self.pipeline(sub) for name, sub in spec.items()}}
        key = _TARGET.get(operator)
        if key is None:
            return stage
        if isinstance(spec, str):
            return {operator: self.scratch_name(spec)}
        spec = dict(spec)
        self._same_database(spec.get("db") if operator == "$out" else None)
        target = spec.get(key)
        if isinstance(target, str):
            spec[key] = self.scratch_name(target)
        elif isinstance(target, Mapping):  # {"db": ..., "coll": ...}
            self._same_database(target.get("db"))
            spec[key] = {**target, "coll": self.scratch_name(target["coll"])}
        if isinstance(spec.get("pipeline"), list):
            spec["pipeline"] = self.pipeline(spec["pipeline"])
        return {operator: spec}

    def _same_database(self, name: str | None) -> None:
        if name is not None and name != self.real.name:
            raise MigrationError(f"in a self-test the migration works on scratch copies in database {self.real.name}: "
                                 f"it may not write to database {name}", ExitCode.USAGE)

    # ----- what a database also is -----

    def with_options(self, *args, **kwargs) -> "ScratchDatabase":
        return ScratchDatabase(self.real.with_options(*args, **kwargs), self.prefix)

    @property
    def name(self) -> str:
        return self.real.name

    @property
    def client(self):
        return self.real.client

    @property
    def codec_options(self):
        return self.real.codec_options

    @property
    def read_preference(self):
        return self.real.read_preference

    @property
    def write_concern(self):
        return self.real.write_concern

    @property
    def read_concern(self):
        return self.real.read_concern

    def __repr__(self) -> str:
        return f"ScratchDatabase({self.real.name!r}, {self.prefix!r})"


class ScratchCollection(AsyncCollection):
    """A scratch copy: a collection of the real database whose way out by name leads back to scratch."""

    _scratch: ScratchDatabase

    @classmethod
    def of(cls, scratch: ScratchDatabase, collection: AsyncCollection) -> "ScratchCollection":
        copy = cls(scratch.real, collection.name, False, collection.codec_options, collection.read_preference,
                   collection.write_concern, collection.read_concern)
        copy._scratch = scratch
        return copy

    @property
    def database(self) -> ScratchDatabase:  # type: ignore[override]
        return self._scratch

    def __getitem__(self, name: str) -> "ScratchCollection":
        return self.of(self._scratch, super().__getitem__(name))

    def with_options(self, *args, **kwargs) -> "ScratchCollection":
        return self.of(self._scratch, super().with_options(*args, **kwargs))

    async def rename(self, new_name: str, *args, **kwargs):
        return await super().rename(self._scratch.scratch_name(new_name), *args, **kwargs)

    async def aggregate(self, pipeline: Sequence[Mapping[str, Any]], *args: Any, **kwargs: Any
                        ) -> AsyncCommandCursor:
        return await super().aggregate(self._scratch.pipeline(pipeline), *args, **kwargs)

    async def aggregate_raw_batches(self, pipeline: Sequence[Mapping[str, Any]], *args: Any, **kwargs: Any
                                    ) -> AsyncRawBatchCursor:
        return await super().aggregate_raw_batches(self._scratch.pipeline(pipeline), *args, **kwargs)


class Scratch:
    """One run's scratch collections: `async with Scratch(database, profile) as scratch:` removes them at the end."""

    def __init__(self, real: AsyncDatabase, profile: ServerProfile, run_id: str | None = None):
        self.real, self.profile = real, profile
        self.prefix = f"{PREFIX}{run_id or uuid.uuid4().hex[:8]}_"
        self.database = ScratchDatabase(real, self.prefix)

    async def __aenter__(self) -> "Scratch":
        return self

    async def __aexit__(self, *exc_info) -> None:
        try:
            await self.remove()
        except PyMongoError as exc:  # the server went away: say what is left, and where
            raise MigrationError(f"could not remove the scratch collections {self.prefix}* of database "
                                 f"{self.real.name}: {redact(exc)}; drop them once the server answers (they are "
                                 "copies)") from exc

    async def remove(self) -> None:
        """Drop every collection of this run: the copies, and whatever the migration created there."""
        for name in await self.real.list_collection_names(filter={"name": {"$regex": f"^{re.escape(self.prefix)}"}}):
            await self.real.drop_collection(name)

    async def copy(self, name: str, filter: Mapping, limit: int) -> list[bytes]:
        """Copy up to `limit` documents of `name` matching `filter`, byte for byte, with its indexes; their id keys.
        The documents are read whole before the first write: a server where a cursor held open while the same
        client writes can deadlock (profile.max_bulk says it: see migrator.profile) is never asked to."""
        if limit <= 0:
            return []
        source = self.real.get_collection(name, codec_options=RAW)
        documents = await source.find(filter).limit(limit).to_list(None)
        if not documents:
            return []
        target = self.real.get_collection(self.database.scratch_name(name), codec_options=RAW)
        await self._insert(target, documents, await _indexes_of(source))
        return [id_key(document["_id"]) for document in documents]

    async def snapshot(self, leave_out: tuple[str, ...] = ()) -> dict[tuple[str, bytes], bytes]:
        """Every document of every scratch collection as its bytes: {(collection, id key): BSON}."""
        found = {}
        for name in sorted(await self.database.list_collection_names()):
            if name in leave_out:
                continue
            collection = self.real.get_collection(self.database.scratch_name(name), codec_options=RAW)
            async for document in collection.find():
                found[(name, id_key(document["_id"]))] = document.raw
        return found

    async def indexes(self) -> dict[str, list[dict]]:
        """Every scratch collection's indexes (but _id's), as a State has them."""
        found = {}
        for name in sorted(await self.database.list_collection_names()):
            found[name] = await _indexes_of(self.real.get_collection(self.database.scratch_name(name)))
        return found

    async def put_back(self, state: "State") -> None:
        """The scratch collections exactly as `state` says (--chaos: before each run): the others of this run
        dropped."""
        await self.remove()
        for name, (indexes, documents) in state.items():
            target = await self.real.create_collection(self.database.scratch_name(name), codec_options=RAW)
            await self._insert(target, documents, indexes)

    async def _insert(self, target: AsyncCollection, documents: list, indexes: Sequence[Mapping]) -> None:
        for index in indexes:
            await target.create_index(list(index["key"].items()), **_index_options(index))
        bulk = self.profile.max_bulk or len(documents) or 1  # within the server's limits
        for start in range(0, len(documents), bulk):
            await target.insert_many(documents[start:start + bulk], ordered=True)


State = dict[str, tuple[list[dict], list]]  # collection: (its indexes but _id's, its documents as raw BSON)


async def _indexes_of(collection: AsyncCollection) -> list[dict]:
    """A collection's indexes but _id's, as a copy gets them: keys and the options it keeps."""
    listed = await (await collection.list_indexes()).to_list(None)
    return [{"key": dict(index["key"]), **_index_options(index)} for index in listed if index["name"] != "_id_"]


def _index_options(index: Mapping) -> dict:
    """What a copy's index keeps of the real one (a unique index changes what a migration may do); a TTL index comes
    without its expiry, so that nothing is deleted from the copy meanwhile."""
    return {key: index[key] for key in ("name", "unique", "sparse", "partialFilterExpression", "collation")
            if key in index}

"""Doing a schema plan: build, hide and drop indexes and set validators, one at a time, under the engine's lock.

Private to migrator.engine, which holds the lock around a run and records it (Engine.apply_schema). Before any step,
every unique index to build is checked for duplicates over the documents it will cover: any, and the run is refused
before anything changes (exit 1), naming the first duplicate keys and how many documents share them.

An index build is one command: it cannot be split into batches nor sent in a transaction, and may outlast a lease
(the heartbeat renews the lock meanwhile, and cancels the build once the lock is lost). So each command is fenced by a
check of the lock before it is sent, and sent again after a transient error: building an index that is there, or
dropping one that is gone, changes nothing. While it builds, the server is asked how far it is every progress interval
(currentOp's `progress` of the build, on MongoDB), reported as the progress of other long work.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import pymongo
from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from migrator import events
from migrator.errors import MigrationError
from migrator.events import Reporter
from migrator.profile import ServerProfile
from migrator.progress import DEFAULT_INTERVAL_S, Progress
from migrator.retry import Retry, is_transient
from migrator.schema.model import CREATE, DROP, REPLACE, SKIP, UNHIDE, VALIDATOR, Index, SchemaPlan, SchemaStep
from migrator.schema.record import SchemaRecord

T = TypeVar("T")

INDEX_NOT_FOUND, NAMESPACE_NOT_FOUND = 27, 26
# MongoDB 4.4+ on a replica set: the build commits once every data-bearing voting member has built it (the server's
# own default, said explicitly), so the index is there on a new primary after a failover.
COMMIT_QUORUM = "votingMembers"
VALIDATION_FIELDS = ("validator", "validationLevel", "validationAction")


def model_of(index: Index) -> IndexModel:
    definition = index.definition()
    return IndexModel(list(index.keys), **definition["options"], **({"name": index.name} if index.name else {}))


def unique(index: Index) -> bool:
    return bool(index.definition()["options"].get("unique"))


def collmod_options(validator: dict) -> dict:
    """A step's validator as collMod takes it: {validator, validationLevel, validationAction}, or the bare validator."""
    if "validator" in validator:
        return {name: validator[name] for name in VALIDATION_FIELDS if name in validator}
    return {"validator": validator}


class Builder:
    """`check_lock`: raises when this runner no longer holds the lock (MigrationLock.check)."""

    def __init__(self, database: AsyncDatabase, profile: ServerProfile, retry: Retry, check_lock: Callable[[], None],
                 report: Reporter, progress_interval_s: float = DEFAULT_INTERVAL_S):
        self.database, self.profile, self.retry, self.report = database, profile, retry, report
        self.check_lock = check_lock
        self.progress_interval_s = progress_interval_s

    # ----- before anything changes -----

    async def refuse_duplicates(self, steps: Iterable[SchemaStep]) -> None:
        """MigrationError (exit 1) naming the first duplicate keys of a unique index to build, if any."""
        for step in steps:
            if step.kind in (CREATE, REPLACE) and step.index is not None and unique(step.index):
                found = await self.first_duplicate(step.index)
                if found is not None:
                    keys, count, shared = found
                    shown = ", ".join(f"{name}={value!r}" for name, value in keys.items())
                    raise MigrationError(
                        f"cannot build the unique index {step.index.shown()}: {count:,} "
                        f"documents have {shown} ({shared:,} duplicated {'key' if shared == 1 else 'keys'} in all): "
                        "remove the duplicates (a data migration), or declare the index without unique; no index "
                        "was built, nothing changed")

    async def first_duplicate(self, index: Index) -> tuple[dict, int, int] | None:
        """({field: value}, how many documents have it, how many keys are duplicated) for the key shared by the most
        documents the index covers (its partial filter, its collation), or None."""
        options = index.definition()["options"]
        fields = [name for name, _ in index.keys]
        match = dict(options.get("partialFilterExpression") or {})
        if options.get("sparse"):
            match = {"$and": [match, {"$or": [{name: {"$exists": True}} for name in fields]}]}
        group = {f"k{position}": f"${name}" for position, name in enumerate(fields)}  # no dotted names in an _id
        shared: list[dict] = [{"$match": match}, {"$group": {"_id": group, "count": {"$sum": 1}}},
                              {"$match": {"count": {"$gt": 1}}}]
        extra = {"collation": options["collation"]} if options.get("collation") else {}
        collection = self.database[index.collection]
        what = f"{index.collection}: looking for duplicates of {index.server_name}"
        first = await self.retry(what, lambda: _aggregate(collection, [*shared, {"$sort": {"count": -1, "_id": 1}},
                                                                        {"$limit": 1}], extra))
        if not first:
            return None
        [counted] = await self.retry(what, lambda: _aggregate(collection, [*shared, {"$count": "keys"}], extra))
        keys = first[0]["_id"]
        return ({name: keys.get(f"k{position}") for position, name in enumerate(fields)}, int(first[0]["count"]),
                int(counted["keys"]))

    # ----- the steps -----

    async def run(self, plan: SchemaPlan, record: SchemaRecord) -> None:
        """Every step, in the plan's order; `record` says what is done as it goes (also when a step fails)."""
        for step in plan.steps:
            if step.kind == SKIP:  # told when planned (Engine._schema_behind)
                continue
            self.check_lock()
            if step.kind == CREATE and step.index is not None:
                await self.create(step.index, record)
            elif step.kind == DROP and step.index is not None:
                await self.drop(step.index, record)
            elif step.kind == REPLACE and step.index is not None and step.previous is not None:
                await self.replace(step.previous, step.index, record, step.build_first)
            elif step.kind == UNHIDE and step.index is not None:
                await self.unhide(step.index)
            elif step.kind == VALIDATOR:
                await self.set_validator(step.collection, step.validator or {}, record)
            else:
                raise MigrationError(f"{step.collection}: a schema step this version cannot run: {step}")

    async def create(self, index: Index, record: SchemaRecord) -> None:
        name = index.server_name
        collection = self.database[index.collection]
        documents = await self.retry(f"{index.collection}: counting its documents",
                                     collection.estimated_document_count)
        self.report(events.IndexBuilding(index.collection, name, documents))
        quorum: dict[str, Any] = {"commitQuorum": COMMIT_QUORUM} if self.profile.commit_quorum else {}
        started = time.monotonic()
        what = f"{index.collection}: building index {name}"
        await self._watched(what, index.collection, self._command(
            what, lambda: collection.create_indexes([model_of(index)], **quorum)))
        record.created.append(index)
        self.report(events.IndexBuilt(index.collection, name, round(time.monotonic() - started, 3)))

    async def drop(self, index: Index, record: SchemaRecord) -> None:
        """Hidden first where the server can hide an index (the queries stop using it while it is dropped). Gone when
        dropIndexes is sent again (the first one's reply lost): that first one dropped it, it counts as dropped; gone
        at the first: dropped by someone else, nothing to record."""
        name = index.server_name
        hide = self.profile.hidden_indexes
        sent = 0

        async def drop_it() -> Any:
            nonlocal sent
            sent += 1
            return await self.database[index.collection].drop_index(name)
        try:
            if hide:
                await self._command(f"{index.collection}: hiding index {name}", lambda: self.database.command(
                    "collMod", index.collection, index={"name": name, "hidden": True}))
                self.check_lock()
            await self._command(f"{index.collection}: dropping index {name}", drop_it)
        except MigrationError as exc:
            if not _is_gone(exc):
                raise
            if sent <= 1:
                self.report(events.IndexDropped(index.collection, name, hide, found=False))
                return
        record.dropped.append(index)
        self.report(events.IndexDropped(index.collection, name, hide))

    async def replace(self, previous: Index, index: Index, record: SchemaRecord, build_first: bool = False) -> None:
        """Same keys, other options. Where the server can hold both (`build_first`), the new one is built before the
        old one goes; else the old one goes first, and a build that fails puts it back."""
        if build_first:
            await self.create(index, record)
            await self.drop(previous, record)
            return
        await self.drop(previous, record)
        try:
            await self.create(index, record)
        except MigrationError:
            if previous in record.dropped:
                await self.create(previous, record)
            raise

    async def unhide(self, index: Index) -> None:
        """A declared index left hidden (a drop stopped half-way, or by hand) serves queries again."""
        name = index.server_name
        await self._command(f"{index.collection}: unhiding index {name}", lambda: self.database.command(
            "collMod", index.collection, index={"name": name, "hidden": False}))
        self.report(events.IndexUnhidden(index.collection, name))

    async def set_validator(self, collection: str, validator: dict, record: SchemaRecord) -> None:
        """collMod (create, for a collection not there yet); what it replaces is recorded for a rollback."""
        options = collmod_options(validator)
        before = await self.validation_of(collection)
        try:
            await self._command(f"{collection}: setting its validator",
                                lambda: self.database.command("collMod", collection, **options))
        except MigrationError as exc:
            if not isinstance(exc.__cause__, OperationFailure) or exc.__cause__.code != NAMESPACE_NOT_FOUND:
                raise
            await self._command(f"{collection}: creating it with its validator",
                                lambda: self.database.command("create", collection, **options))
        record.validators_before.setdefault(collection, before)
        record.validators[collection] = options
        self.report(events.ValidatorSet(collection, cleared=not options.get("validator")))

    async def validation_of(self, collection: str) -> dict:
        """{validator, validationLevel, validationAction} of the collection now ({} for none)."""
        found = await self.retry(f"{collection}: reading its options",
                                 lambda: _collections(self.database, collection))
        options = found[0].get("options", {}) if found else {}
        return {name: options[name] for name in VALIDATION_FIELDS if name in options}

    async def _watched(self, what: str, collection: str, building: Awaitable[T]) -> T:
        """The build, asked how far it is every progress interval until it ends (ProgressMade); a server that cannot
        say is asked no more (its start and end are reported anyway). Cancelled (the lock lost), the build is too."""
        task = asyncio.ensure_future(building)
        progress, asking = Progress(what, self.report, counts_modified=False), True
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.progress_interval_s)
                if done:
                    return task.result()
                asking = asking and await self._ask_progress(collection, progress)
        finally:
            if progress.total is not None:  # a bar or lines shown: they end
                progress.end()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})

    async def _ask_progress(self, collection: str, progress: Progress) -> bool:
        """currentOp's `progress: {done, total}` of an index build on the collection, reported if there is one; False
        when the server refuses to say (a user without the inprog privilege; FerretDB answers, with none), True after a
        transient error (a failover: asked again next time)."""
        try:
            with pymongo.timeout(max(self.progress_interval_s, 1.0)):
                answer = await self.database.client.admin.command(
                    {"currentOp": True, "ns": f"{self.database.name}.{collection}", "progress": {"$exists": True}})
        except PyMongoError as exc:
            return is_transient(exc)
        counts = next((op["progress"] for op in answer.get("inprog", []) if _counts_of(op.get("progress"))), None)
        if counts is not None:
            done, total = int(counts["done"]), int(counts["total"])
            if done < progress.done:  # the build's next phase (its keys, after the documents) counts from 0 again
                progress.restart(done)
            if total != progress.total:
                progress.set_total(total)
            progress.advance(done - progress.done)
        return True

    async def _command(self, what: str, command: Callable[[], Awaitable[Any]]) -> Any:
        """One command, the lock checked before it is sent and before each time it is sent again; a server's refusal
        becomes one line (MigrationError, exit 1)."""
        self.check_lock()
        try:
            return await self.retry.checking(self.check_lock)(what, command)
        except OperationFailure as exc:
            raise MigrationError(f"{what}: {exc.details.get('errmsg', exc) if exc.details else exc}") from exc


def _counts_of(progress: object) -> bool:
    """Is it a `progress: {done, total}` as currentOp gives an index build's (numbers, a total)?"""
    return (isinstance(progress, dict) and isinstance(progress.get("done"), (int, float))
            and isinstance(progress.get("total"), (int, float)) and progress["total"] > 0)


def _is_gone(error: MigrationError) -> bool:
    """A command's refusal because its index (or collection) is not there."""
    cause = error.__cause__
    return isinstance(cause, OperationFailure) and cause.code in (INDEX_NOT_FOUND, NAMESPACE_NOT_FOUND)


async def _aggregate(collection, pipeline: list[dict], extra: dict) -> list[dict]:
    return await (await collection.aggregate(pipeline, **extra)).to_list(None)


async def _collections(database: AsyncDatabase, name: str) -> list:
    return await (await database.list_collections(filter={"name": name})).to_list(None)


def skipped_what(step: SchemaStep) -> str:
    """What a skipped step is about: `index ttl_1 (expireAfterSeconds)`, `validator`."""
    if step.index is not None:
        return f"index {step.index.shown()}"
    return "validator" if step.validator is not None else step.kind


def rollback_plan(created: list[Index], dropped: list[Index], validators_before: dict[str, dict]) -> SchemaPlan:
    """What undoes a run: drop what it created (last first), then build again what it dropped (its recorded
    definition), then set back the validators it replaced (none: cleared)."""
    steps = [SchemaStep(DROP, index.collection, index) for index in reversed(created)]
    steps += [SchemaStep(CREATE, index.collection, index) for index in dropped]
    steps += [SchemaStep(VALIDATOR, collection, validator=before or {"validator": {}})
              for collection, before in validators_before.items()]
    return SchemaPlan(tuple(steps))

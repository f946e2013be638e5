"""The self-test's checks (migrator.selftest runs them): the migration's functions called on the scratch
copies, what each check concludes from the snapshots before and after, and one offending document shown."""

from dataclasses import dataclass, field, replace
from typing import Any, cast

import bson
from pymongo.asynchronous.database import AsyncDatabase

from migrator import checkpoints
from migrator.batches import Batches, BatchSettings
from migrator.docdiff import MISSING, Change, changes, raw_changes, same, shown, value_at
from migrator.errors import MigrationError
from migrator.events import Event, Reporter, silent
from migrator.hooks import Hooks
from migrator.migration import Migration, Outcome, Verification, in_parens
from migrator.profile import ServerProfile
from migrator.retry import Retry
from migrator.scratch import Scratch, ScratchDatabase

UP, IDEMPOTENT, UNTOUCHED, REVERSIBLE = "up, then verify", "idempotent", "leaves other documents alone", "reversible"
_FAILURES = {UP: "up, then verify failed", IDEMPOTENT: "not idempotent",
             UNTOUCHED: "changes documents outside its touches() declaration", REVERSIBLE: "not reversible"}

Key = tuple[str, bytes]  # (collection, the document's _id as BSON)
Snapshot = dict[Key, bytes]


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not checked (detail says why)
    detail: str = ""
    example: list[str] = field(default_factory=list)  # one offending document: its _id, then its changes, masked

    @property
    def failure(self) -> str:
        return _FAILURES[self.name]


@dataclass
class DocumentPreview:
    collection: str
    id: Any
    state: str  # "changed", "unchanged", "added" or "removed"
    changes: list[Change]


async def snapshot(scratch: Scratch) -> Snapshot:
    return await scratch.snapshot(leave_out=(checkpoints.COLLECTION,))


def keys_of(before: Snapshot, after: Snapshot) -> list[Key]:
    return [*before, *(key for key in after if key not in before)]


# ----- the migration's functions, on the copies -----

class OnScratch:
    """The migration's functions, called with the scratch database (and a batched `up` with scratch batches).
    `through`: the client's database to reach the copies by (--chaos: one through its fault proxy); `retry`: what
    the batches ride out (migrator.retry)."""

    def __init__(self, migration: Migration, scratch: Scratch, settings: BatchSettings, profile: ServerProfile,
                 report: Reporter = silent, through: AsyncDatabase | None = None, retry: Retry | None = None):
        self.migration, self.scratch, self.profile, self.retry = migration, scratch, profile, retry
        self.report = warnings_only(report)  # the progress of the copies would read like the real run's
        # the scratch database stands in for the real one: every collection name leads to its copy
        self.database = cast(AsyncDatabase, scratch.database if through is None
                             else ScratchDatabase(through, scratch.prefix))
        self.hooks = Hooks(self.database, " on the scratch copies", self.report)
        self.settings = replace(settings, max_rate=None)  # a sample is no load on the server

    async def up(self) -> Outcome:
        return await self._batched("up", checkpoints.APPLY)

    async def _batched(self, hook: str, action: str) -> Outcome:
        options = {}
        if self.migration.accepts(hook, "batches"):  # its checkpoints go to a scratch collection: names lead there
            options["batches"] = Batches(self.database, self.migration.name, self.migration.checksum,
                                         self.settings, self.profile, retry=self.retry, action=action,
                                         report=self.report)
        outcome = await self._stopped_said(self.hooks.outcome(self.migration, hook, **options))
        # as after a whole run: the next starts over
        await self.database.drop_collection(checkpoints.COLLECTION)
        return outcome

    async def verify(self, hook: str) -> Verification:
        return await self._stopped_said(self.hooks.verification(self.migration, hook))

    async def rollback(self) -> Outcome:
        return await self._batched("rollback", checkpoints.ROLLBACK)

    async def _stopped_said(self, call):
        """Batches stopped by Ctrl-C or SIGTERM on the copies: nothing here resumes, so say so."""
        try:
            return await call
        except MigrationError as exc:
            if exc.stopped_by_signal:
                raise MigrationError(f"{self.migration.name}: stopped on the scratch copies: they are removed, the "
                                     "real collections were not written", exc.exit_code) from exc
            raise


def warnings_only(report: Reporter) -> Reporter:
    """`report`, handed only the events of level warning or error."""
    def passing(event: Event) -> None:
        if event.level != "info":
            report(event)
    return passing


async def attempt(work) -> tuple[Any, str | None]:
    """(what `work` returned, None), or (None, why it failed); Ctrl-C and SIGTERM go on up."""
    try:
        return await work, None
    except MigrationError as exc:
        if exc.stopped_by_signal:
            raise
        return None, str(exc)


# ----- the checks -----

def up_check(outcome: Outcome | None, verification: Verification | None, error: str | None) -> Check:
    if error or outcome is None or verification is None:
        return Check(UP, False, error or "up or verify returned nothing")
    counts = in_parens(verification.counts)
    if not verification.ok:
        return Check(UP, False, f"verify says the change is not in place{counts}")
    modified = f"{outcome.modified:,} documents modified" if outcome.counted else "up returned no counts"
    return Check(UP, True, f"{modified}; verified{counts}")


def idempotent_check(again: Outcome | None, error: str | None, after_up: Snapshot, after_again: Snapshot) -> Check:
    if error or again is None:
        return Check(IDEMPOTENT, False, f"up again failed: {error}")
    differ = _differing(keys_of(after_up, after_again), after_up, after_again)
    example = _example(differ[0], after_up, after_again) if differ else []
    if again.modified:
        return Check(IDEMPOTENT, False, f"up again modified {again.modified:,} documents", example)
    if differ:
        return Check(IDEMPOTENT, False, f"{len(differ):,} of {len(after_up):,} documents differ after up again",
                     example)
    return Check(IDEMPOTENT, True, f"up again modified nothing; all {len(after_up):,} documents byte-identical")


def untouched_check(untouched: set[Key], original: Snapshot, after_up: Snapshot, after_again: Snapshot) -> Check:
    if not untouched:
        return Check(UNTOUCHED, None, "no document outside touches(\"apply\") in the sample: not checked")
    keys = [key for key in original if key in untouched]
    differ = [key for key in keys if after_up.get(key) != original[key] or after_again.get(key) != original[key]]
    if differ:
        after = after_up if after_up.get(differ[0]) != original[differ[0]] else after_again
        return Check(UNTOUCHED, False, f"{len(differ):,} of the {len(keys):,} documents outside touches(\"apply\") "
                     "changed", _example(differ[0], original, after))
    return Check(UNTOUCHED, True, f"the {len(keys):,} documents outside touches(\"apply\") unchanged")


async def reversible_check(on_scratch: OnScratch, scratch: Scratch, original: Snapshot, after_up: Snapshot
                           ) -> tuple[Check, Snapshot | None]:
    """The check, and the documents after the rollback (None: it failed, or there is none)."""
    migration = on_scratch.migration
    if migration.rollback is None:
        return Check(REVERSIBLE, None, "no rollback: not checked (undo it by hand or restore a backup)"), None
    _, error = await attempt(on_scratch.rollback())
    if error:
        return Check(REVERSIBLE, False, f"rollback failed: {error}"), None
    after = await snapshot(scratch)
    if migration.verify_rollback is not None:
        verification, error = await attempt(on_scratch.verify("verify_rollback"))
        if error or not verification.ok:
            why = error or f"verify_rollback says the change is not undone{in_parens(verification.counts)}"
            return Check(REVERSIBLE, False, why), None
    return _given_back_check(migration, original, after_up, after), after


def _given_back_check(migration: Migration, original: Snapshot, after_up: Snapshot, after: Snapshot) -> Check:
    kept, reordered, differ = [], [], []
    for key in keys_of(original, after):
        given_back, by_keeping = _given_back(key, original, after_up, after, migration.keeps_on_rollback,
                                             migration.field_order_matters)
        if not given_back:
            differ.append(key)
        elif by_keeping:
            kept.append(key)
        elif original.get(key) != after.get(key):
            reordered.append(key)
    checked = "rollback, then verify_rollback" if migration.verify_rollback else "rollback"
    if differ:
        return Check(REVERSIBLE, False, f"after {checked}, {len(differ):,} of {len(original):,} documents differ from "
                     "the originals", _example(differ[0], original, after))
    keeping = ""
    if kept:
        fields = ", ".join(f"{name}.{path}" for name in sorted({key[0] for key in kept})
                           for path in migration.keeps_on_rollback[name])
        keeping = f", but for {fields}, which it keeps by design, on {len(kept):,}"
    if reordered:
        keeping += f"; {len(reordered):,} with their fields in another order (field_order_matters = False)"
    return Check(REVERSIBLE, True, f"{checked}: all {len(original):,} documents byte-identical to the originals"
                 f"{keeping}")


def _given_back(key: Key, original: Snapshot, after_up: Snapshot, after: Snapshot,
                kept: dict[str, tuple[str, ...]], order_matters: bool = True) -> tuple[bool, bool]:
    """(as it was, as it was only by leaving out the fields the migration keeps). A kept field may hold
    its original value or the one `up` gave it; every other byte must be the original's, but for the order
    of the fields where the migration says that it does not matter."""
    before, now = original.get(key), after.get(key)
    if before == now:
        return True, False
    fields = kept.get(key[0], ())
    if (not fields and order_matters) or before is None or now is None:
        return False, False
    old, new = bson.decode(before), bson.decode(now)
    up = bson.decode(after_up[key]) if key in after_up else {}
    for path in fields:
        value = _pop(new, path)
        if not (same(value, _pop(old, path)) or same(value, value_at(up, path))):
            return False, False
    alike = bson.encode(old) == bson.encode(new) or (not order_matters and not changes(old, new))
    return alike, alike and bool(fields)


def _pop(document: dict, path: str) -> Any:
    *parents, last = path.split(".")
    inner: Any = document
    for part in parents:
        inner = inner.get(part) if isinstance(inner, dict) else None
    return inner.pop(last, MISSING) if isinstance(inner, dict) else MISSING


def _differing(keys: list[Key], before: Snapshot, after: Snapshot) -> list[Key]:
    return [key for key in keys if before.get(key) != after.get(key)]


# ----- showing documents -----

def document_preview(key: Key, before: bytes | None, after: bytes | None) -> DocumentPreview:
    collection, id_ = key[0], bson.decode(key[1])["_id"]
    if before is None or after is None:
        return DocumentPreview(collection, id_, "added" if before is None else "removed", [])
    found = raw_changes(before, after)
    return DocumentPreview(collection, id_, "changed" if found else "unchanged", found)


def _example(key: Key, before: Snapshot, after: Snapshot) -> list[str]:
    """One offending document, masked: its collection and _id, then only the fields that differ."""
    document = document_preview(key, before.get(key), after.get(key))
    head = f"{document.collection} _id={shown(document.id)}"
    if document.state in ("added", "removed"):
        return [f"{head}: document {document.state}"]
    return [head, *(change.line() for change in document.changes)]

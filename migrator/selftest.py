"""Proving a migration before it touches production: --selftest, --preview and the estimate of --dry-run.

A sample of the documents the migration declares it changes (`touches("apply")`), and some it must
leave alone (matching neither `touches("apply")` nor `touches("rollback")`), is copied into scratch
collections of the same database (migrator.scratch). The migration's own functions run there,
handed a database whose collection names lead to the copies: the real collections are only read,
and the copies are removed at the end, however the run ends. No lock, changelog entry or
checkpoint is written (a batched `up` keeps its checkpoints in a scratch collection too).

The self-test's checks, on the copies:
    up, then verify               `verify` passes after `up`
    idempotent                    `up` again modifies nothing and leaves every document byte-identical
    leaves other documents alone  the documents outside `touches("apply")` are unchanged
    reversible                    `rollback`, then `verify_rollback`, gives every document back
                                  byte-identical, but for the fields the migration declares it keeps
                                  (`keeps_on_rollback`), which may also keep the value `up` gave them,
                                  and in any field order where it says `field_order_matters = False`;
                                  a migration without rollback is not checked, and not failed
Nothing here prints: migrator.commands narrates the results.
"""

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator.backup import touched
from migrator.batches import BatchSettings
from migrator.chaos import ChaosReport, Drill, fixed_batches
from migrator.errors import ExitCode, MigrationError
from migrator.events import Reporter, silent
from migrator.migration import Migration, Outcome, Verification, refuse_if_draft
from migrator.profile import ServerProfile
from migrator.redact import redact
from migrator.scratch import PREFIX, Scratch
from migrator.selftest_checks import (
    IDEMPOTENT,
    REVERSIBLE,
    UNTOUCHED,
    UP,
    Check,
    DocumentPreview,
    Key,
    OnScratch,
    attempt,
    document_preview,
    idempotent_check,
    keys_of,
    reversible_check,
    snapshot,
    untouched_check,
    up_check,
)
from migrator.stop import stoppable

DEFAULT_SAMPLE = 500  # --selftest
PREVIEW_SAMPLE = 3  # --preview
ESTIMATE_SAMPLE = 200  # what --dry-run times
UNTOUCHED_SHARE = 5  # one document it must leave alone for every five it changes (at least one)
NOT_AVAILABLE = "not available on this server"
_INDEX_STAGES = {"IXSCAN", "EXPRESS_IXSCAN", "IDHACK", "EXPRESS_IDHACK", "COUNT_SCAN", "DISTINCT_SCAN",
                 "CLUSTERED_IXSCAN", "EXPRESS_CLUSTERED_IXSCAN"}


@dataclass
class Sample:
    collection: str
    changes: int = 0  # documents copied that the migration changes
    untouched: int = 0  # documents copied that it must leave alone
    note: str = ""  # why none was copied


@dataclass
class Proof:
    migration: Migration
    samples: list[Sample]
    checks: list[Check]
    seconds: float = 0.0  # how long the first `up` took
    modified: int = 0  # and how many documents it modified
    chaos: ChaosReport | None = None  # --chaos: its fault points, once the four checks pass

    @property
    def failed(self) -> Check | None:
        return next((check for check in self.checks if check.ok is False), None)


@dataclass
class Preview:
    migration: Migration
    samples: list[Sample]
    documents: list[DocumentPreview] = field(default_factory=list)
    verification: Verification | None = None
    modified: int = 0


@dataclass
class Estimate:
    documents: int | None  # to change
    sampled: int = 0  # documents copied and timed
    modified: int = 0
    seconds: float = 0.0
    note: str = ""  # why there is no rate
    indexes: dict[str, str] = field(default_factory=dict)  # collection: can its filter use an index
    max_rate: float | None = None  # --max-rate: the real run goes no faster

    @property
    def rate(self) -> float | None:
        """Documents per second that `up` changed on the scratch sample."""
        return self.modified / self.seconds if self.modified and self.seconds > 0 else None

    @property
    def expected_rate(self) -> float | None:
        """The rate the real run would go at: the sample's, kept to max_rate."""
        if self.rate is None or not self.max_rate:
            return self.rate
        return min(self.rate, self.max_rate)


# ----- the three runs -----

async def prove(database: AsyncDatabase, migration: Migration, sample_size: int, settings: BatchSettings,
                profile: ServerProfile, report: Reporter = silent, faults: int | None = None) -> Proof:
    """--selftest: the four checks, on scratch copies of a sample; with `faults` (--chaos), then up to that many
    fault points (migrator.chaos), its runs through the fault proxy being the runs without faults."""
    refuse_if_draft(migration)
    declared = declared_of(migration, "--selftest")
    async with Scratch(database, profile) as scratch:
        samples, changing, untouched = await copy_sample(scratch, migration, declared, sample_size,
                                                          max(1, sample_size // UNTOUCHED_SHARE))
        if not changing and declared:  # one that declares no collection (an index) is proven on empty copies
            raise MigrationError(nothing_to_run_on(migration, samples, "prove it"), ExitCode.USAGE)
        if not faults:
            return await _prove(OnScratch(migration, scratch, settings, profile, report), samples, untouched)
        async with Drill(database, migration, scratch, fixed_batches(settings, len(changing)), profile,
                         report) as drill:
            proof = await _prove(drill.on_scratch(), samples, untouched, drill)
            if proof.failed is None:
                proof.chaos = await stoppable(drill.check(faults), f"{migration.name}: --chaos", report)
            return proof


async def _prove(on_scratch: OnScratch, samples: list[Sample], untouched: set[Key], drill: Drill | None = None
                 ) -> Proof:
    migration, scratch = on_scratch.migration, on_scratch.scratch
    original = await snapshot(scratch)
    start = await drill.recording(original) if drill else None
    started = time.monotonic()
    outcome, error = await attempt(on_scratch.up())
    seconds = time.monotonic() - started
    verification = None
    if error is None:
        verification, error = await attempt(on_scratch.verify("verify"))
    first = up_check(outcome, verification, error)
    if not first.ok:
        return Proof(migration, samples, [first, *(Check(name, None, f"not run: {UP} failed")
                                                   for name in (IDEMPOTENT, UNTOUCHED, REVERSIBLE))])
    after_up = await snapshot(scratch)
    if drill and start is not None:
        await drill.recorded("up", start, original, after_up, seconds)
    again, error = await attempt(on_scratch.up())
    after_again = await snapshot(scratch)
    checks = [first, idempotent_check(again, error, after_up, after_again),
              untouched_check(untouched, original, after_up, after_again)]
    rollback_start = await drill.recording(after_again) if drill and migration.rollback else None
    started = time.monotonic()
    reversible, after_rollback = await reversible_check(on_scratch, scratch, original, after_up)
    if drill and rollback_start is not None and after_rollback is not None:
        await drill.recorded("rollback", rollback_start, after_again, after_rollback, time.monotonic() - started)
    return Proof(migration, samples, [*checks, reversible], seconds, outcome.modified)


async def preview(database: AsyncDatabase, migration: Migration, sample_size: int, settings: BatchSettings,
                  profile: ServerProfile, report: Reporter = silent) -> Preview:
    """--preview: each sampled document before and after `up`, on scratch copies."""
    refuse_if_draft(migration)
    declared = declared_of(migration, "--preview")
    async with Scratch(database, profile) as scratch:
        samples, changing, _ = await copy_sample(scratch, migration, declared, sample_size, 0)
        if not changing:
            return Preview(migration, samples)
        on_scratch = OnScratch(migration, scratch, settings, profile, report)
        original = await snapshot(scratch)
        outcome = await on_scratch.up()
        verification = await on_scratch.verify("verify")
        after = await snapshot(scratch)
    documents = [document_preview(key, original.get(key), after.get(key)) for key in keys_of(original, after)]
    return Preview(migration, samples, documents, verification, outcome.modified)


async def estimate(database: AsyncDatabase, migration: Migration, documents: int | None, settings: BatchSettings,
                   profile: ServerProfile, sample_size: int = ESTIMATE_SAMPLE, report: Reporter = silent) -> Estimate:
    """--dry-run: how long `up` would take, at the rate it runs on a scratch copy of a sample, and whether
    its filter can use an index. Never raises for what it cannot tell: `note` says why."""
    found = Estimate(documents, max_rate=settings.max_rate)
    try:
        declared = None if migration.draft else touched(migration, "apply")
    except MigrationError as exc:
        found.note = str(exc)
        return found
    if declared is None:
        found.note = "a draft: not timed" if migration.draft else "it declares no touches(): no sample to time it on"
        return found
    found.indexes = {name: await index_use(database, name, filter, profile) for name, filter in declared.items()}
    if found.documents is None:
        found.documents = await _count(database, declared)
    if not found.documents:
        return found
    try:
        async with Scratch(database, profile) as scratch:
            _, changing, _ = await copy_sample(scratch, migration, declared, sample_size, 0)
            started = time.monotonic()
            outcome = await OnScratch(migration, scratch, settings, profile, report).up() if changing else Outcome()
            found.sampled, found.modified, found.seconds = len(changing), outcome.modified, time.monotonic() - started
    except MigrationError as exc:
        if exc.stopped_by_signal:
            raise
        found.note = f"{exc} (run --selftest {migration.name})"
    except PyMongoError as exc:  # a user who may only read, for one
        found.note = f"could not time it on a scratch copy: {redact(exc)}"
    if not found.note and found.rate is None:
        found.note = f"up changed none of the {found.sampled:,} documents of a scratch copy: no rate to go by"
    return found


async def count_declared(database: AsyncDatabase, migration: Migration) -> int | None:
    """The documents `touches("apply")` names, counted (for --dry-run without count_pending); None when it names
    none (no touches(), a draft, one that fails)."""
    try:
        declared = None if migration.draft else touched(migration, "apply")
    except MigrationError:
        return None
    return None if declared is None else await _count(database, declared)


async def _count(database: AsyncDatabase, declared: dict[str, dict]) -> int:
    return sum([await database[name].count_documents(filter) for name, filter in declared.items()])


async def index_use(database: AsyncDatabase, collection: str, filter: Mapping, profile: ServerProfile) -> str:
    """Can `filter` use an index on `collection`, from the server's query plan (explain): "yes: index x_1",
    "no: a full collection scan", or NOT_AVAILABLE (where the plan names no index stages:
    not profile.explain_names_indexes)."""
    if not profile.explain_names_indexes:
        return NOT_AVAILABLE
    try:
        explained = await database.command({"explain": {"find": collection, "filter": filter},
                                            "verbosity": "queryPlanner"})
    except PyMongoError:
        return NOT_AVAILABLE
    return index_answer(explained)


def index_answer(explained: Mapping) -> str:
    """What a queryPlanner explain says of index use (see index_use)."""
    stages = list(_stages(explained.get("queryPlanner", {}).get("winningPlan")))
    indexes = sorted({stage.get("indexName", "_id_") for stage in stages if stage.get("stage") in _INDEX_STAGES})
    if indexes:
        return f"yes: index {', '.join(indexes)}"
    if any(stage.get("stage") == "COLLSCAN" for stage in stages):
        return "no: a full collection scan"
    if any(stage.get("stage") == "EOF" for stage in stages):
        return "no such collection"
    return NOT_AVAILABLE


def _stages(plan) -> Iterator[Mapping]:
    """Every stage of a query plan, however deep (inputStage, inputStages, queryPlan, ...)."""
    if isinstance(plan, Mapping):
        if "stage" in plan:
            yield plan
        for value in plan.values():
            yield from _stages(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _stages(item)


async def leftovers(database: AsyncDatabase) -> list[str]:
    """Scratch collections already there: of a self-test running now, or of one killed (kill -9; a second Ctrl-C
    during a batch exits at once)."""
    return await database.list_collection_names(filter={"name": {"$regex": f"^{PREFIX}"}})


# ----- the sample -----

def declared_of(migration: Migration, flag: str) -> dict[str, dict]:
    declared = touched(migration, "apply")
    if declared is None:
        raise MigrationError(f"{migration.name} declares no touches(): {flag} copies the documents "
                             "touches(\"apply\") names; add `def touches(action, purge=False): return {collection: "
                             "filter}` to it (see the template)", ExitCode.USAGE)
    return declared


async def copy_sample(scratch: Scratch, migration: Migration, declared: dict[str, dict], changing_size: int,
                       untouched_size: int) -> tuple[list[Sample], set[Key], set[Key]]:
    """Copy, of each declared collection, up to `changing_size` documents the migration changes and up to
    `untouched_size` that neither its `up` nor its `rollback` should touch."""
    rollback = (touched(migration, "rollback") or {}) if migration.rollback else {}
    existing = set(await scratch.real.list_collection_names())
    samples: list[Sample] = []
    changing: set[Key] = set()
    untouched: set[Key] = set()
    for name, filter in declared.items():
        sample = Sample(name)
        samples.append(sample)
        if name not in existing:
            sample.note = f"{name}: no such collection in database {scratch.real.name}"
            continue
        changes = await scratch.copy(name, filter, changing_size)
        leave_alone = {"$nor": [filter, *([rollback[name]] if name in rollback else [])]}
        others = await scratch.copy(name, leave_alone, untouched_size)
        sample.changes, sample.untouched = len(changes), len(others)
        changing.update((name, key) for key in changes)
        untouched.update((name, key) for key in others)
        if not changes:
            sample.note = f"{name} is empty" if await scratch.real[name].find_one({}, {"_id": 1}) is None else \
                f"none of the documents of {name} is one it changes (touches(\"apply\") matches none: applied already?)"
    return samples, changing, untouched


def why_none(samples: list[Sample]) -> str:
    """Why no document was copied."""
    return "; ".join(sample.note for sample in samples if sample.note) or \
        "touches(\"apply\") names no collection: it changes no document (an index, say)"


def nothing_to_run_on(migration: Migration, samples: list[Sample], what: str) -> str:
    return (f"{migration.name}: nothing to {what} on: {why_none(samples)}; run it where the collections hold "
            "documents it changes (a copy of production data, or a fixture)")

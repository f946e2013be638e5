"""What the engine tells while it works: events with data, handed to one injected reporter.

The engine and everything under it never log or print: they call `report(SomeEvent(...))`, where
`report` is the Reporter the caller passed in (the CLI renders events as log lines and a progress bar in
a terminal; from Python the default, `silent`, tells no one). Each event is a frozen dataclass
defined here, so that this module lists everything the engine can say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from migrator.backup import BackupFile, PostImages, Restored, Saved
    from migrator.migration import ApplyResult, RollbackResult, Verification


@dataclass(frozen=True)
class Event:
    """The base of every event. `level` ("info", "warning" or "error"): how much it matters, for a renderer
    or a filter (the self-test passes on only warnings of its scratch runs)."""

    level: ClassVar[str] = "info"


Reporter = Callable[[Event], None]


def silent(event: Event) -> None:
    """The default reporter: tells no one."""


# ----- under the engine: batches, progress, retries, stops (migrator.batches, progress, retry, stop, backup) -----

@dataclass(frozen=True)
class ProgressEvent(Event):
    """The counts of long work (a walk of batches, reading its ids, a restore): `done` of `total` (None: not
    known yet; `estimated`: from the collection's count) in `unit`, `modified` of them when it `counts_modified`,
    and the rate since the work (re)started, in units a second."""
    label: str
    done: int
    total: int | None = None
    estimated: bool = False
    modified: int = 0
    unit: str = "documents"
    counts_modified: bool = True
    rate: float = 0.0


@dataclass(frozen=True)
class ProgressMade(ProgressEvent):
    """The work went on (or got its total). `restarted`: counting starts again from `done`, the rate too."""
    restarted: bool = False


@dataclass(frozen=True)
class ProgressEnded(Event):
    """The work under `label` stopped reporting progress (done, failed or stopped): a bar goes away."""
    label: str


@dataclass(frozen=True)
class WalkDone(ProgressEvent):
    """The work under `label` is over: its final counts, once."""


@dataclass(frozen=True)
class BatchDone(Event):
    """One batch of a walk of `collection` is written and checkpointed: `size` documents in `duration_s` seconds
    (from the batch boundary to its checkpoint), `modified` of them changed."""
    migration: str
    collection: str
    size: int
    duration_s: float
    modified: int


@dataclass(frozen=True)
class ResumedFromCheckpoint(Event):
    """A walk of `collection` goes on where a checkpoint says `done` documents were done, up to `last_id`."""
    migration: str
    collection: str
    done: int
    last_id: Any


@dataclass(frozen=True)
class CheckpointOfAnotherVersion(Event):
    """The checkpoint found was left by other code (or another walk): the walk starts over."""
    level: ClassVar[str] = "warning"
    migration: str


@dataclass(frozen=True)
class MixedIdTypes(Event):
    """`collection` has `_id`s of several types, which one range cannot span: its ids are read instead."""
    migration: str
    collection: str


@dataclass(frozen=True)
class ReadingIds(Event):
    """The ids of the documents to change in `collection` are being read (the stream path)."""
    migration: str
    collection: str


@dataclass(frozen=True)
class RetryScheduled(Event):
    """`what` met a transient error (`error`: its type and text, masked); it is tried again in `wait_s`."""
    level: ClassVar[str] = "warning"
    what: str
    error: str
    wait_s: float


@dataclass(frozen=True)
class StopRequested(Event):
    """Ctrl-C or SIGTERM (`signal`: its name): the work stops after the unit under way (`after_unit`: a batch),
    or at once when none is (a migration's own code is cancelled)."""
    level: ClassVar[str] = "warning"
    signal: str
    after_unit: bool = True


@dataclass(frozen=True)
class StoppingAtOnce(Event):
    """The same signal again: the process exits right after this event."""
    level: ClassVar[str] = "error"
    signal: str


@dataclass(frozen=True)
class Paused(Event):
    """--pause (migrator.control): the walk of `migration` waits at a batch boundary, holding its lock and writing
    nothing, until --resume; `by` (user@host) asked for it at `since` (the server's clock)."""
    level: ClassVar[str] = "warning"
    migration: str
    by: str
    since: datetime


@dataclass(frozen=True)
class Resumed(Event):
    """--resume: the walk of `migration`, paused by `by` for `paused_s`, goes on."""
    migration: str
    by: str
    paused_s: float


@dataclass(frozen=True)
class CancelRequested(Event):
    """--cancel by `by` (user@host): the walk of `migration` stops at this batch boundary, resumable."""
    level: ClassVar[str] = "warning"
    migration: str
    by: str


@dataclass(frozen=True)
class Throttled(Event):
    """Between batches, the walk waits for the server (migrator.throttle): `reason` ("replication lag", "flow
    control" or "batch latency"), its `figure` (seconds of lag, flow control's target rate in tickets a second, or
    the last batch's seconds) against `limit` (--max-lag, 0, or the slow-batch bound), and the seconds this
    migration's batches were throttled before this wait (`waited_s`)."""
    level: ClassVar[str] = "warning"
    migration: str
    reason: str
    figure: float
    limit: float
    waited_s: float


@dataclass(frozen=True)
class ThrottleSignalOff(Event):
    """One signal of the server's health cannot be read (`why`: the command refused, e.g. Unauthorized): said
    once; the walk is throttled on the others."""
    level: ClassVar[str] = "warning"
    migration: str
    signal: str
    why: str


@dataclass(frozen=True)
class ThrottledTotal(Event):
    """The walk of `collection` is over: it waited `seconds` in `waits` waits for the server's health."""
    migration: str
    collection: str
    seconds: float
    waits: int


# ----- the workflows (migrator.engine): what they tell as they go -----
# Their data's types are imported for the annotations only: this module imports none of the engine's.

@dataclass(frozen=True)
class AllowedChanged(Event):
    """--allow-changed: an applied migration whose file changed since runs (or is rolled back) anyway."""
    level: ClassVar[str] = "warning"
    migration: str


@dataclass(frozen=True)
class AllowedOutOfOrder(Event):
    """--allow-out-of-order: `migration` runs after `after`, which comes later in the order."""
    level: ClassVar[str] = "warning"
    migration: str
    after: str


@dataclass(frozen=True)
class DatabaseDumping(Event):
    """--backup-full: mongodump starts, under the lock, before the first change."""
    database: str


@dataclass(frozen=True)
class DatabaseDumped(Event):
    database: str
    path: Path


@dataclass(frozen=True)
class WaitingForLock(Event):
    """Another runner holds the lock: this one waits for it (said once, before the wait)."""
    level: ClassVar[str] = "info"
    holder: str  # its owner and since when
    timeout_s: float


@dataclass(frozen=True)
class RunInterrupted(Event):
    """A start recorded and no end, found while holding the lock: its runner died; it runs again now."""
    level: ClassVar[str] = "warning"
    migration: str
    runner: str  # host:pid
    started_at: datetime


@dataclass(frozen=True)
class Applying(Event):
    migration: str
    description: str


@dataclass(frozen=True)
class NoTouchesDeclared(Event):
    """A rollback's default backup is skipped: the migration does not say which documents it changes."""
    level: ClassVar[str] = "warning"
    migration: str
    backup_full: bool


@dataclass(frozen=True)
class BackupSaved(Event):
    """The documents `up` or `rollback` will change, saved right before it runs (none: it declares none)."""
    migration: str
    saved: tuple[Saved, ...]


@dataclass(frozen=True)
class MigrationApplied(Event):
    """Applied, verified and recorded; `backups`: what was saved before (with their post-images)."""
    result: ApplyResult
    backups: tuple[Saved, ...] = ()


@dataclass(frozen=True)
class AlreadyRolledBack(Event):
    """Another runner rolled it back while this one waited for the lock: skipped."""
    migration: str


@dataclass(frozen=True)
class MigrationRolledBack(Event):
    result: RollbackResult
    backups: tuple[Saved, ...] = ()


@dataclass(frozen=True)
class AlreadyApplied(Event):
    """mark_applied: already applied, nothing recorded."""
    migration: str


@dataclass(frozen=True)
class MarkedApplied(Event):
    """Recorded as applied without running it; `verification.ok` False: recorded with force."""
    migration: str
    verification: Verification


@dataclass(frozen=True)
class BackupRead(Event):
    """plan_restore read all of a backup file and its checksum holds."""
    file: BackupFile
    post_images: PostImages | None
    force: bool


@dataclass(frozen=True)
class RestoringElsewhere(Event):
    """--force: a backup of database `backup_of` is restored into `database`."""
    level: ClassVar[str] = "warning"
    backup_of: str
    database: str


@dataclass(frozen=True)
class RestoreUndoesLater(Event):
    """--force: the restore undoes `later`, applied to the backup's collection since it was taken."""
    level: ClassVar[str] = "warning"
    file: BackupFile
    later: tuple[str, ...]


@dataclass(frozen=True)
class RestoreDone(Event):
    """Written and read back; what the app changed since was left alone; `restored.not_in_place`: the applied
    migrations the restore undid (recorded as failed); `restored.not_verified`: applied ones whose file is gone or
    broken, which could not be verified."""
    restored: Restored
    file: BackupFile


# ----- the schema (migrator.schema.build): one event each step, and the run's end -----

@dataclass(frozen=True)
class IndexBuilding(Event):
    """An index build starts (one at a time); `documents`: the collection's estimated count."""
    collection: str
    index: str
    documents: int


@dataclass(frozen=True)
class IndexBuilt(Event):
    collection: str
    index: str
    seconds: float


@dataclass(frozen=True)
class IndexDropped(Event):
    """`hidden_first`: hidden (the queries stopped using it) before it was dropped; `found`: False when it was gone
    already."""
    collection: str
    index: str
    hidden_first: bool = False
    found: bool = True


@dataclass(frozen=True)
class IndexUnhidden(Event):
    """A declared index that was hidden serves queries again."""
    collection: str
    index: str


@dataclass(frozen=True)
class ValidatorSet(Event):
    collection: str
    cleared: bool = False  # a rollback removed the collection's validator


@dataclass(frozen=True)
class SchemaStepSkipped(Event):
    """What this server cannot do (`reason`), left as it is."""
    level: ClassVar[str] = "warning"
    collection: str
    what: str
    reason: str


@dataclass(frozen=True)
class SchemaDone(Event):
    """A schema run ("apply" or "rollback") is recorded: how many indexes it created, dropped and adopted, the
    collections whose validator it set, and how long it took."""
    action: str
    created: int
    dropped: int
    adopted: int
    validators: int
    seconds: float

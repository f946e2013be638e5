"""What is applied, pending, failed or changed: pure functions of the migrations and the changelog."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from migrator.changelog import sets_state
from migrator.clock import as_utc
from migrator.migration import BrokenFile, Migration
from migrator.schema.record import NAME as SCHEMA

APPLIED, PENDING, FAILED, ROLLED_BACK = "applied", "pending", "failed", "rolled_back"
# Recorded before `up` runs. Read with the lock, it is RUNNING while its runner holds the lock and is not known
# dead (migrator.liveness), else INTERRUPTED: the runner died or stopped without recording an end (the next --all
# runs it again).
RUNNING, INTERRUPTED = "running", "interrupted"
DRAFT_FLAG = "draft: template not edited"


@dataclass
class StatusRow:
    name: str
    date: str
    state: str  # applied, pending, failed, rolled_back, running, interrupted
    action: str = ""  # of the latest entry: apply, rollback, mark_applied, restore
    runner: str = ""  # running or interrupted: host:pid of the runner
    at: datetime | None = None  # since when it is in this state
    duration_s: float | None = None  # applied: how long the apply took
    modified: int | None = None  # applied: documents changed by its applies (a re-run adds to the first count)
    marked: bool = False  # recorded with --mark-applied, not run
    changed: bool = False  # applied, and its file has changed since
    missing_file: bool = False  # in the changelog, but no file any more
    broken: str = ""  # its file cannot be read or ordered: the error (migrator.discovery); nothing runs meanwhile
    error: str = ""
    checkpoint_done: int | None = None  # a batched run stopped half-way: documents done so far
    draft: bool = False  # its file is the --new template, not edited yet: it does not run
    out_of_order: str = ""  # pending, but ordered before this applied migration
    # running or interrupted: its runner; running: since when, and how far its batches are (add_progress)
    host: str | None = None
    pid: int | None = None
    runner_state: str | None = None  # running or interrupted: its runner is alive, dead or unknown (migrator.liveness)
    since: datetime | None = None  # running: when this runner started it (the server's clock)
    step: int | None = None  # running, batched: which walk of its `up` is under way (1 for the first)
    documents_done: int | None = None  # documents done of that walk's collection
    total: int | None = None  # documents of that walk, counted at its start (estimated: from the collection's count)
    total_estimated: bool | None = None
    percent: float | None = None
    rate_per_s: float | None = None  # documents a second since this run's first checkpoint, by the server's clock
    eta_s: float | None = None  # seconds left at that rate
    paused_by: str | None = None  # not applied, and paused by --pause (migrator.control): by user@host
    paused_since: datetime | None = None  # since when (the server's clock): a run of it waits (or starts paused)

    @property
    def flags(self) -> list[str]:
        flags = [flag for flag, on in (("marked", self.marked), ("changed", self.changed),
                                       ("missing file", self.missing_file)) if on]
        if self.checkpoint_done is not None and self.state != RUNNING:  # running: its progress says more
            what = "rollback resumable" if self.action == "rollback" else "resumable"
            flags.append(f"{what}: {self.checkpoint_done:,} documents done")
        if self.paused_by and self.state != RUNNING:  # running: its progress line says it
            flags.append(f"paused by {self.paused_by}: starts paused")
        if self.draft:
            flags.append(DRAFT_FLAG)
        if self.broken:
            flags.append(f"broken: {self.broken}")
        if self.out_of_order:
            flags.append(f"out-of-order: before the applied {self.out_of_order}")
        return flags


def state_of(entry: dict | None) -> str:
    return entry["state"] if entry else PENDING


def lost_lock_error(entries: list[dict]) -> str:
    """The failure a runner that lost the lock recorded about its run that started last (kept as history only,
    migrator.changelog): why an interrupted run stopped. Empty when it recorded none."""
    starts = [entry for entry in entries if sets_state(entry)]
    run_id = starts[-1].get("run_id") if starts and starts[-1]["state"] == RUNNING else None
    return next((entry.get("error", "") for entry in reversed(entries)
                 if run_id and entry.get("lock_lost") and entry.get("run_id") == run_id), "")


def latest_of(history: dict[str, list[dict]]) -> dict[str, dict]:
    return {name: entries[-1] for name, entries in history.items() if entries}


def _current_streak(entries: list[dict]) -> list[dict]:
    """The entries, oldest first, since the migration last entered its present state."""
    state, start = entries[-1]["state"], len(entries) - 1
    while start > 0 and entries[start - 1]["state"] == state:
        start -= 1
    return entries[start:]


def _row(name: str, date: str, entries: list[dict]) -> StatusRow:
    if entries and entries[-1]["state"] != RUNNING:  # a start, then its end: the end says it all
        entries = [entry for entry in entries if entry["state"] != RUNNING]
    if not entries:
        return StatusRow(name, date, PENDING)
    streak = _current_streak(entries)
    first, latest = streak[0], streak[-1]
    row = StatusRow(name, date, latest["state"], latest.get("action", ""), at=first["at"],
                    error=latest.get("error", "") if latest["state"] == FAILED else "")
    if row.state == RUNNING:  # since this runner's start, not that of a dead one before it
        row.runner = f"{latest.get('host', '?')}:{latest.get('pid', '?')}"
        row.host, row.pid, row.at = latest.get("host"), latest.get("pid"), latest["at"]
    if row.state == APPLIED:
        applies = [entry for entry in streak if entry["action"] == "apply"]
        row.duration_s = first.get("duration_s") if first["action"] == "apply" else None
        row.modified = sum(entry.get("modified") or 0 for entry in applies) if applies else None
        row.marked = first["action"] == "mark_applied"
    return row


def status_rows(migrations: list[Migration], history: dict[str, list[dict]],
                broken: Sequence[BrokenFile] = ()) -> list[StatusRow]:
    """One row per migration, in order, then one per broken file (its state as the changelog has it), then one per
    applied migration whose file is gone. `history`: every changelog entry of each migration, oldest first. The
    schema's runs (recorded as "schema") are no migration: whether the schema is current is the plan's to say
    (migrator.schema)."""
    rows = []
    early = out_of_order(migrations, latest_of({n: [e for e in es if sets_state(e)] for n, es in history.items()}))
    for migration in migrations:
        entries = [entry for entry in history.get(migration.name, []) if sets_state(entry)]
        row = _row(migration.name, migration.date, entries)
        row.draft = migration.draft
        row.out_of_order = early.get(migration.name, "")
        row.changed = row.state == APPLIED and not migration.is_version(entries[-1].get("checksum"))
        rows.append(row)
    for file in broken:
        row = _row(file.name, "?", [entry for entry in history.get(file.name, []) if sets_state(entry)])
        row.broken = file.error
        rows.append(row)
    known = {migration.name for migration in migrations} | {file.name for file in broken} | {SCHEMA}
    for name, entries in history.items():
        entries = [entry for entry in entries if sets_state(entry)]
        if name not in known and entries and state_of(entries[-1]) == APPLIED:
            row = _row(name, "?", entries)
            row.missing_file = True
            rows.append(row)
    return rows


@dataclass(frozen=True)
class NotCurrent:
    """One reason a database is not current: `kind` is the row's state (pending, failed, rolled_back, running,
    interrupted) or changed, missing_file, out_of_order, broken_file; `row` holds its details (error, runner, ...)."""
    name: str
    kind: str
    row: StatusRow


CHANGED, MISSING_FILE, OUT_OF_ORDER, BROKEN_FILE = "changed", "missing_file", "out_of_order", "broken_file"


def not_current(rows: list[StatusRow]) -> list[NotCurrent]:
    """Why the database is not current, in the rows' order: the one rule --check, --status and /health share.
    An applied migration whose file is gone counts: older code deployed onto a newer database; a broken file counts
    once, whatever its state."""
    reasons = []
    for row in rows:
        if row.broken:
            reasons.append(NotCurrent(row.name, BROKEN_FILE, row))
            continue
        if row.missing_file:
            reasons.append(NotCurrent(row.name, MISSING_FILE, row))
            continue
        if row.state != APPLIED:
            reasons.append(NotCurrent(row.name, row.state, row))
        if row.changed:
            reasons.append(NotCurrent(row.name, CHANGED, row))
        if row.out_of_order:
            reasons.append(NotCurrent(row.name, OUT_OF_ORDER, row))
    return reasons


def unverifiable(rows: list[StatusRow]) -> dict[str, str]:
    """{applied migration: why it cannot be verified}: its file is gone or broken."""
    return {row.name: f"its file is broken: {row.broken}" if row.broken else "its file is gone"
            for row in rows if row.state == APPLIED and (row.broken or row.missing_file)}


def pending(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    return [m for m in migrations if state_of(latest.get(m.name)) != APPLIED]


def applied(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    """The applied migrations, last in the order first: the order rollbacks go in (not the changelog's
    times, which a re-run of an early migration would make the newest)."""
    return [m for m in reversed(migrations) if state_of(latest.get(m.name)) == APPLIED]


def applied_or_rolling_back(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    """The applied ones and those whose rollback stopped half-way (failed, or its runner died), last in the
    order first: what `--rollback-last` and `--rollback-to` undo, so that running one again goes on."""
    def undoing(entry: dict | None) -> bool:
        return entry is not None and (entry["state"] == APPLIED or entry["action"] == "rollback"
                                      and entry["state"] in (FAILED, RUNNING))
    return [m for m in reversed(migrations) if undoing(latest.get(m.name))]


def checkpoints_of(row: StatusRow, checkpoints: list[dict]) -> list[dict]:
    """A migration's checkpoints of the work its latest entry is about: its rollback's, or its `up`'s."""
    action = "rollback" if row.action == "rollback" else "apply"
    return [checkpoint for checkpoint in checkpoints if checkpoint.get("action", "apply") == action]


def rollbackable(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    """What `--rollback NAME` may undo, last in the order first: applied, or failed or interrupted half-way."""
    return [m for m in reversed(migrations) if state_of(latest.get(m.name)) in (APPLIED, FAILED, RUNNING)]


def out_of_order(migrations: list[Migration], latest: dict[str, dict]) -> dict[str, str]:
    """{pending migration: the last applied one it is ordered before}: a migration added (or dated) into the
    past, which would run after migrations that come after it in the order."""
    last_applied = next((m.name for m in reversed(migrations) if state_of(latest.get(m.name)) == APPLIED), None)
    if last_applied is None:
        return {}
    found = {}
    for migration in migrations:
        if migration.name == last_applied:
            break
        if state_of(latest.get(migration.name)) == PENDING:
            found[migration.name] = last_applied
    return found


def changed(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    return [m for m in migrations if state_of(latest.get(m.name)) == APPLIED
            and not m.is_version(latest[m.name].get("checksum"))]


# ----- live progress of a running migration -----

def add_progress(row: StatusRow, checkpoints: list[dict], now: datetime) -> None:
    """Fill in a running row's progress from its checkpoints (one per walk of its `up`; none if not batched): the
    current walk's documents done of its total, the rate since this run's first checkpoint there, both times by
    the server's clock (`now` too), and the time left at that rate."""
    row.since = row.at
    if not checkpoints:
        return
    current = max(checkpoints, key=lambda checkpoint: checkpoint.get("step", 0))
    done, total = current.get("scanned", 0), current.get("total")
    row.step, row.documents_done = current.get("step"), done
    if total is not None:
        row.total, row.total_estimated = max(total, done), bool(current.get("total_estimated"))
        row.percent = 100.0 if current.get("done") or not row.total else _percent_floor(done, row.total)
    started_at, started_from = current.get("started_at"), current.get("started_from")
    if started_at is None or started_from is None or done <= started_from or current.get("done"):
        return
    if row.since and as_utc(started_at) < as_utc(row.since):  # saved by an earlier run: not this one's rate
        return
    elapsed_s = (as_utc(now) - as_utc(started_at)).total_seconds()
    if elapsed_s > 0:
        rate = (done - started_from) / elapsed_s
        row.rate_per_s = round(rate, 2)
        if row.total is not None:
            row.eta_s = round((row.total - done) / rate, 1)


def _percent_floor(done: int, total: int) -> float:
    """One decimal, rounded down: 100.0 only when all is done."""
    return math.floor(1000 * done / total) / 10

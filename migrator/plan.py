"""What is applied, pending, failed or changed: pure functions of the migrations and the changelog."""

from dataclasses import dataclass
from datetime import datetime

from migrator.changelog import sets_state
from migrator.migration import Migration

APPLIED, PENDING, FAILED, ROLLED_BACK = "applied", "pending", "failed", "rolled_back"
# Recorded before `up` runs. Read with the lock, it is RUNNING while its runner holds the lock, else
# INTERRUPTED: the runner died (the next --all runs it again).
RUNNING, INTERRUPTED = "running", "interrupted"
DRAFT_FLAG = "draft: template not edited"


@dataclass
class StatusRow:
    name: str
    date: str
    state: str  # applied, pending, failed, rolled_back, running, interrupted
    runner: str = ""  # running or interrupted: host:pid of the runner
    at: datetime | None = None  # since when it is in this state
    duration_s: float | None = None  # applied: how long the apply took
    modified: int | None = None  # applied: documents changed by its applies (a re-run adds to the first count)
    marked: bool = False  # recorded with --mark-applied, not run
    changed: bool = False  # applied, and its file has changed since
    missing_file: bool = False  # in the changelog, but no file any more
    error: str = ""
    checkpoint_done: int | None = None  # a batched run stopped half-way: documents done so far
    draft: bool = False  # its file is the --new template, not edited yet: it does not run
    out_of_order: str = ""  # pending, but ordered before this applied migration

    @property
    def flags(self) -> list[str]:
        flags = [flag for flag, on in (("marked", self.marked), ("changed", self.changed),
                                       ("missing file", self.missing_file)) if on]
        if self.checkpoint_done is not None:
            flags.append(f"resumable: {self.checkpoint_done:,} documents done")
        if self.draft:
            flags.append(DRAFT_FLAG)
        if self.out_of_order:
            flags.append(f"out-of-order: before the applied {self.out_of_order}")
        return flags


def state_of(entry: dict | None) -> str:
    return entry["state"] if entry else PENDING


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
    row = StatusRow(name, date, latest["state"], at=first["at"], error=latest.get("error", "") if
                    latest["state"] == FAILED else "")
    if row.state == RUNNING:
        row.runner = f"{latest.get('host', '?')}:{latest.get('pid', '?')}"
    if row.state == APPLIED:
        applies = [entry for entry in streak if entry["action"] == "apply"]
        row.duration_s = first.get("duration_s") if first["action"] == "apply" else None
        row.modified = sum(entry.get("modified") or 0 for entry in applies) if applies else None
        row.marked = first["action"] == "mark_applied"
    return row


def status_rows(migrations: list[Migration], history: dict[str, list[dict]]) -> list[StatusRow]:
    """One row per migration, in order, then one per applied migration whose file is gone.
    `history`: every changelog entry of each migration, oldest first."""
    rows = []
    early = out_of_order(migrations, latest_of({n: [e for e in es if sets_state(e)] for n, es in history.items()}))
    for migration in migrations:
        entries = [entry for entry in history.get(migration.name, []) if sets_state(entry)]
        row = _row(migration.name, migration.date, entries)
        row.draft = migration.draft
        row.out_of_order = early.get(migration.name, "")
        row.changed = row.state == APPLIED and entries[-1].get("checksum") not in (None, migration.checksum)
        rows.append(row)
    known = {migration.name for migration in migrations}
    for name, entries in history.items():
        entries = [entry for entry in entries if sets_state(entry)]
        if name not in known and entries and state_of(entries[-1]) == APPLIED:
            row = _row(name, "?", entries)
            row.missing_file = True
            rows.append(row)
    return rows


def pending(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    return [m for m in migrations if state_of(latest.get(m.name)) != APPLIED]


def applied(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    """The applied migrations, last in the order first: the order rollbacks go in (not the changelog's
    times, which a re-run of an early migration would make the newest)."""
    return [m for m in reversed(migrations) if state_of(latest.get(m.name)) == APPLIED]


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
            and latest[m.name].get("checksum") not in (None, m.checksum)]

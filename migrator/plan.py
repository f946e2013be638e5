"""What is applied, pending, failed or changed: pure functions of the migrations and the changelog."""

from dataclasses import dataclass
from datetime import datetime

from migrator.migration import Migration

APPLIED, PENDING, FAILED, ROLLED_BACK = "applied", "pending", "failed", "rolled_back"
DRAFT_FLAG = "draft: template not edited"


@dataclass
class StatusRow:
    name: str
    date: str
    state: str  # applied, pending, failed, rolled_back
    at: datetime | None = None
    duration_s: float | None = None
    modified: int | None = None
    marked: bool = False  # recorded with --mark-applied, not run
    changed: bool = False  # applied, and its file has changed since
    missing_file: bool = False  # in the changelog, but no file any more
    error: str = ""
    checkpoint_done: int | None = None  # a batched run stopped half-way: documents done so far
    draft: bool = False  # its file is the --new template, not edited yet: it does not run

    @property
    def flags(self) -> list[str]:
        flags = [flag for flag, on in (("marked", self.marked), ("changed", self.changed),
                                       ("missing file", self.missing_file)) if on]
        if self.checkpoint_done is not None:
            flags.append(f"resumable: {self.checkpoint_done:,} documents done")
        if self.draft:
            flags.append(DRAFT_FLAG)
        return flags


def state_of(entry: dict | None) -> str:
    return entry["state"] if entry else PENDING


def status_rows(migrations: list[Migration], latest: dict[str, dict]) -> list[StatusRow]:
    rows = []
    for migration in migrations:
        entry = latest.get(migration.name)
        state = state_of(entry)
        row = StatusRow(migration.name, migration.date, state, draft=migration.draft)
        if entry:
            row.at, row.duration_s, row.modified = entry["at"], entry.get("duration_s"), entry.get("modified")
            row.marked = entry["action"] == "mark_applied" and state == APPLIED
            row.changed = state == APPLIED and entry.get("checksum") not in (None, migration.checksum)
            row.error = entry.get("error", "")
        rows.append(row)
    known = {migration.name for migration in migrations}
    for name, entry in latest.items():
        if name not in known and state_of(entry) == APPLIED:
            rows.append(StatusRow(name, "?", APPLIED, entry["at"], entry.get("duration_s"), entry.get("modified"),
                                  missing_file=True))
    return rows


def pending(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    return [m for m in migrations if state_of(latest.get(m.name)) != APPLIED]


def applied(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    """The applied migrations, newest first by when they were applied."""
    done = [m for m in migrations if state_of(latest.get(m.name)) == APPLIED]
    return sorted(done, key=lambda m: (latest[m.name]["at"], str(latest[m.name]["_id"])), reverse=True)


def changed(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    rows = {row.name: row for row in status_rows(migrations, latest)}
    return [m for m in migrations if rows[m.name].changed]

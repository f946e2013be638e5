"""--metrics-file PATH: the run's counts as a Prometheus text-format file (for node exporter's textfile collector),
rewritten whole and atomically (a temporary file, then os.replace) at most every --progress-interval while
documents are done, at each change of a migration's state, and at the end.

Each sample is labelled with its migration and database; migration_state has one more label, state (running,
applied, failed, stopped, rolled_back, and the pauses and cancels other events tell), at 1. The names are a
contract: docs/production.md, "Machine-readable output".
"""

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from migrator import events
from migrator.errors import ExitCode, MigrationError
from migrator.output import log
from migrator.redact import redact


@dataclass
class Counts:
    done: int = 0
    total: int | None = None
    rate: float = 0.0
    batch_s: float = math.nan  # the last batch's duration, once one says it
    retries: int = 0
    throttled_s: float = 0.0  # the most the run's events say: the waits before the last one began, or the walks' ends
    throttled_walks_s: float = 0.0  # the ended walks' throttled seconds
    state: str = "running"

    @property
    def eta_s(self) -> float:
        if self.state != "running":
            return 0.0
        if self.total is None or self.rate <= 0:
            return math.nan
        return max(self.total - self.done, 0) / self.rate


FAMILIES: tuple[tuple[str, str, str, Callable[[Counts], float]], ...] = (
    ("migration_documents_done", "gauge", "Documents done so far.", lambda c: c.done),
    ("migration_documents_total", "gauge", "Documents to do (NaN: not known yet).",
     lambda c: math.nan if c.total is None else c.total),
    ("migration_rate_per_second", "gauge", "Documents a second since the walk (re)started.", lambda c: c.rate),
    ("migration_eta_seconds", "gauge", "Seconds left at the current rate (NaN: not known).", lambda c: c.eta_s),
    ("migration_batch_duration_seconds", "gauge", "How long the last batch took.", lambda c: c.batch_s),
    ("migration_retries_total", "counter", "Transient errors retried.", lambda c: c.retries),
    ("migration_throttled_seconds_total", "counter", "Seconds spent waiting for the server's health.",
     lambda c: c.throttled_s),
)
STATES = {events.Paused: "paused", events.Resumed: "running", events.CancelRequested: "cancelled"}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(number: float) -> str:
    return "NaN" if math.isnan(number) else repr(float(number)) if isinstance(number, float) else str(number)


class MetricsFile:
    """Fed the events with the migration they are about (`observe`), it keeps one Counts a migration and writes."""

    def __init__(self, path: Path, interval_s: float, clock: Callable[[], float] = time.monotonic):
        self.path, self.interval_s, self.clock = path, interval_s, clock
        self.database = ""
        self.counts: dict[str, Counts] = {}
        self._written_at = -math.inf
        self._warned = False

    def started(self, database: str) -> None:
        """The first write: a path that cannot be written is a usage error, before any change."""
        self.database = database
        try:
            self._write()
        except OSError as exc:
            self._warned = True  # said by this error: not again at the end
            raise MigrationError(f"--metrics-file: cannot write {self.path}: {exc.strerror or exc}",
                                 ExitCode.USAGE) from None

    def observe(self, event: events.Event, migration: str | None) -> None:
        if isinstance(event, events.Applying):
            self.counts[event.migration] = Counts()
        if migration is None:
            return
        counts = self.counts.setdefault(migration, Counts())
        if isinstance(event, events.ProgressEvent) and event.unit == "documents":
            counts.done, counts.total, counts.rate = event.done, event.total, event.rate
            if isinstance(event, events.ProgressMade) and self.clock() - self._written_at < self.interval_s:
                return
        elif isinstance(event, events.RetryScheduled):
            counts.retries += 1
        elif isinstance(event, events.BatchDone):
            counts.batch_s = event.duration_s
        elif isinstance(event, events.Throttled):  # waited_s: this migration's throttled seconds before this wait
            counts.throttled_s = max(counts.throttled_s, event.waited_s)
        elif isinstance(event, events.ThrottledTotal):
            counts.throttled_walks_s += event.seconds
            counts.throttled_s = max(counts.throttled_s, counts.throttled_walks_s)
        elif type(event) in STATES:
            counts.state = STATES[type(event)]
        elif isinstance(event, events.MigrationApplied):
            counts.state = "applied"
        elif isinstance(event, events.MigrationRolledBack):
            counts.state = "rolled_back"
        elif not isinstance(event, events.Applying):
            return
        self.write()

    def finish(self, exit_code: int) -> None:
        """The run's end: a migration still running failed (exit 1) or stopped (interrupted, terminated). Not
        written when the run ended before its start (no database reached: nothing to say)."""
        if not self.database:
            return
        stopped = exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED)
        for counts in self.counts.values():
            if counts.state in ("running", "paused") and exit_code != ExitCode.OK:
                counts.state = "stopped" if stopped else "failed"
        self.write()

    def text(self) -> str:
        lines = []
        database = _label(self.database)
        for name, kind, help_text, value in FAMILIES:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines += [f'{name}{{migration="{_label(migration)}",database="{database}"}} {_value(value(counts))}'
                      for migration, counts in self.counts.items()]
        lines += ["# HELP migration_state The migration's state: 1 for the state it is in.",
                  "# TYPE migration_state gauge"]
        lines += [f'migration_state{{migration="{_label(migration)}",database="{database}",state="{counts.state}"}} 1'
                  for migration, counts in self.counts.items()]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        """Once it fails (a full disk), said once; the run goes on."""
        try:
            self._write()
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("--metrics-file: cannot write %s (%s): the run goes on", self.path,
                            redact(exc.strerror or exc))

    def _write(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(self.text(), encoding="utf-8")
        os.replace(temporary, self.path)
        self._written_at = self.clock()

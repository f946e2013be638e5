"""Progress of long work: a rich bar in a terminal, a plain log line every few seconds elsewhere.

Docker logs and CI get lines like
    add_metadata_to_chat_messages: 40,000 of 100,000 documents (40%), 2,150 docs/s, 28 s left; 36,000 modified
or, for work that counts something else and changes nothing (unit="ids", counts_modified=False),
    add_metadata_to_chat_messages, reading the _ids: 30,000 ids, 9,800 ids/s
"""

import sys
import time

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from migrator.output import log

DEFAULT_INTERVAL_S = 5.0


class Progress:
    """Counts from `done` and `modified` (a resumed run's); the total comes later, with set_total.
    In a terminal the bar appears with the first total or count (one bar at a time: rich draws one)."""

    def __init__(self, label: str, done: int = 0, modified: int = 0, interval_s: float = DEFAULT_INTERVAL_S,
                 unit: str = "documents", counts_modified: bool = True):
        self.label, self.total, self.estimated = label, None, False
        self.done, self.modified = done, modified
        self.interval_s = interval_s
        self.unit, self.counts_modified = unit, counts_modified
        self._started = self._last_line = time.monotonic()
        self._first_done = done
        self._bar = None
        self._closed = False

    @property
    def _rate_unit(self) -> str:
        return "docs" if self.unit == "documents" else self.unit

    def _shown(self) -> RichProgress | None:
        """The terminal's bar, started on first use; None without a terminal or once closed."""
        if self._bar is None and not self._closed and sys.stderr.isatty():
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TaskProgressColumn(), TextColumn(f"{{task.fields[rate]}} {self._rate_unit}/s"),
                                     TimeRemainingColumn(), console=_log_console(), transient=True)
            self._task = self._bar.add_task(self.label, total=None, completed=self.done, rate="-")
            self._bar.start()
        return self._bar

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return (self.done - self._first_done) / elapsed if elapsed > 0 else 0.0

    def set_total(self, total: int, estimated: bool = False) -> None:
        self.total, self.estimated = total, estimated
        if bar := self._shown():
            label = f"{self.label} (~{total:,} estimated)" if estimated else self.label
            bar.update(self._task, total=total, description=label)

    def restart(self, done: int = 0, modified: int = 0) -> None:
        """Count from `done` again, the rate and time left from now: the work begins (again, after a failover)."""
        self.done, self.modified, self._first_done = done, modified, done
        self._started = self._last_line = time.monotonic()
        if self._bar:
            self._bar.reset(self._task, completed=done, rate="-")

    def advance(self, documents: int, modified: int = 0) -> None:
        self.done += documents
        self.modified += modified
        if bar := self._shown():
            bar.update(self._task, completed=self.done, rate=f"{self.rate:,.0f}")
        elif time.monotonic() - self._last_line >= self.interval_s:
            self._last_line = time.monotonic()
            log.info("%s", self.line())

    def line(self) -> str:
        of, share = "", ""
        if self.total:
            shown_total = max(self.total, self.done)
            of = f" of {'~' if self.estimated else ''}{shown_total:,}"
            share = f" ({100 * self.done / shown_total:.0f}%)"
        left = ""
        if self.total and self.rate > 0 and self.total > self.done:
            left = f", {_duration((self.total - self.done) / self.rate)} left"
        modified = f"; {self.modified:,} modified" if self.counts_modified else ""
        return (f"{self.label}: {self.done:,}{of} {self.unit}{share}, {self.rate:,.0f} {self._rate_unit}/s{left}"
                f"{modified}")

    def close(self) -> None:
        self._closed = True
        if self._bar:
            self._bar.stop()
            self._bar = None


def _log_console() -> Console:
    """The console the log lines go to, so that they print above the bar instead of through it."""
    for handler in log.handlers:
        if isinstance(handler, RichHandler):
            return handler.console
    return Console(stderr=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

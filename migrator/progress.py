"""Progress of long work: a rich bar in a terminal, a plain log line every few seconds elsewhere.

Docker logs and CI get lines like
    add_metadata_to_chat_messages: 40,000 of 100,000 documents (40%), 2,150 docs/s, 28 s left; 36,000 modified
"""

import sys
import time

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskProgressColumn, \
    TextColumn, TimeRemainingColumn

from migrator.output import log

DEFAULT_INTERVAL_S = 5.0


class Progress:
    """Counts from `done` and `modified` (a resumed run's); the total comes later, with set_total."""

    def __init__(self, label: str, done: int = 0, modified: int = 0, interval_s: float = DEFAULT_INTERVAL_S):
        self.label, self.total, self.estimated = label, None, False
        self.done, self.modified = done, modified
        self.interval_s = interval_s
        self._started = self._last_line = time.monotonic()
        self._first_done = done
        self._bar = None
        if sys.stderr.isatty():
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TaskProgressColumn(), TextColumn("{task.fields[rate]} docs/s"),
                                     TimeRemainingColumn(), console=_log_console(), transient=True)
            self._task = self._bar.add_task(label, total=None, completed=done, rate="-")
            self._bar.start()

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return (self.done - self._first_done) / elapsed if elapsed > 0 else 0.0

    def set_total(self, total: int, estimated: bool = False) -> None:
        self.total, self.estimated = total, estimated
        if self._bar:
            label = f"{self.label} (~{total:,} estimated)" if estimated else self.label
            self._bar.update(self._task, total=total, description=label)

    def advance(self, documents: int, modified: int = 0) -> None:
        self.done += documents
        self.modified += modified
        if self._bar:
            self._bar.update(self._task, completed=self.done, rate=f"{self.rate:,.0f}")
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
        return (f"{self.label}: {self.done:,}{of} documents{share}, {self.rate:,.0f} docs/s{left}; "
                f"{self.modified:,} modified")

    def close(self) -> None:
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

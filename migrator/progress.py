"""The counts of long work (a walk of batches, reading its ids, a restore): done, total, modified, the rate.

Each change is reported as an event (migrator.events: ProgressMade, then WalkDone and ProgressEnded); the CLI
draws them (migrator.commands.progress_view: a bar in a terminal, a line every few seconds elsewhere).
"""

import time

from migrator.events import ProgressEnded, ProgressMade, Reporter, WalkDone, silent

DEFAULT_INTERVAL_S = 5.0  # --progress-interval: a line that often without a terminal; how often an index build is asked


class Progress:
    """Counts from `done` and `modified` (a resumed run's); the total comes later, with set_total."""

    def __init__(self, label: str, report: Reporter = silent, done: int = 0, modified: int = 0,
                 unit: str = "documents", counts_modified: bool = True):
        self.label, self.report = label, report
        self.total: int | None = None
        self.estimated = False
        self.done, self.modified = done, modified
        self.unit, self.counts_modified = unit, counts_modified
        self._started = time.monotonic()
        self._first_done = done
        self._ended = False

    @property
    def rate(self) -> float:
        """Units a second since the work (re)started."""
        elapsed = time.monotonic() - self._started
        return (self.done - self._first_done) / elapsed if elapsed > 0 else 0.0

    def _counts(self) -> dict:
        return {"label": self.label, "done": self.done, "total": self.total, "estimated": self.estimated,
                "modified": self.modified, "unit": self.unit, "counts_modified": self.counts_modified,
                "rate": self.rate}

    def set_total(self, total: int, estimated: bool = False) -> None:
        self.total, self.estimated = total, estimated
        self.report(ProgressMade(**self._counts()))

    def restart(self, done: int = 0, modified: int = 0) -> None:
        """Count from `done` again, the rate and time left from now: the work begins (again, after a failover)."""
        self.done, self.modified, self._first_done = done, modified, done
        self._started = time.monotonic()
        self.report(ProgressMade(**self._counts(), restarted=True))

    def advance(self, documents: int, modified: int = 0) -> None:
        self.done += documents
        self.modified += modified
        self.report(ProgressMade(**self._counts()))

    def end(self) -> None:
        """No more progress of this work (done, failed or stopped): said once."""
        if not self._ended:
            self._ended = True
            self.report(ProgressEnded(self.label))

    def finish(self) -> None:
        """The work is over: its final counts."""
        self.end()
        self.report(WalkDone(**self._counts()))

"""The events of the work under the engine (migrator.events: progress, resumes, retries, stops) as the CLI shows
them: a rich bar when stderr is a terminal, a plain log line every --progress-interval seconds elsewhere.

Docker logs and CI get lines like
    add_metadata_to_chat_messages: 40,000 of 100,000 documents (40%), 2,150 docs/s, 28 s left; 36,000 modified
or, for work that counts something else and changes nothing (unit="ids", counts_modified=False),
    add_metadata_to_chat_messages, reading the _ids: 30,000 ids, 9,800 ids/s
"""

import logging
import sys
import time

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from migrator.durations import duration_text
from migrator.events import (
    BatchDone,
    CheckpointOfAnotherVersion,
    Event,
    MixedIdTypes,
    ProgressEnded,
    ProgressEvent,
    ProgressMade,
    ReadingIds,
    ResumedFromCheckpoint,
    RetryScheduled,
    StoppingAtOnce,
    StopRequested,
    Throttled,
    ThrottledTotal,
    ThrottleSignalOff,
    WalkDone,
)
from migrator.output import log, plural
from migrator.progress import DEFAULT_INTERVAL_S
from migrator.throttle import FLOW_CONTROL, LAG, SLOW_FACTOR

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}  # an event's level


def progress_line(event: ProgressEvent) -> str:
    rate_unit = _rate_unit(event.unit)
    of, share = "", ""
    if event.total:
        shown_total = max(event.total, event.done)
        of = f" of {'~' if event.estimated else ''}{shown_total:,}"
        share = f" ({100 * event.done / shown_total:.0f}%)"
    left = ""
    if event.total and event.rate > 0 and event.total > event.done:
        left = f", {duration_text((event.total - event.done) / event.rate)} left"
    modified = f"; {event.modified:,} modified" if event.counts_modified else ""
    return (f"{event.label}: {event.done:,}{of} {event.unit}{share}, {event.rate:,.0f} {rate_unit}/s{left}"
            f"{modified}")


def throttled_line(event: Throttled) -> str:
    """"throttling: replication lag 14.2 s > --max-lag 10 s; waiting" (and the other two signals)."""
    if event.reason == LAG:
        why = f"replication lag {event.figure:.1f} s > --max-lag {event.limit:g} s; waiting"
    elif event.reason == FLOW_CONTROL:
        why = f"flow control engaged on the server (target rate {event.figure:,.0f} writes/s); waiting"
    else:
        why = (f"batch latency {event.figure:.1f} s > {SLOW_FACTOR:g}x the recent median "
               f"({event.limit / SLOW_FACTOR:.2f} s); "
               f"waiting {event.figure:.1f} s")
    return f"{event.migration}: throttling: {why}"


def event_line(event: Event) -> str | None:
    """The one-off log line of an event (None: not one of these)."""
    if isinstance(event, WalkDone):
        return progress_line(event)
    if isinstance(event, ResumedFromCheckpoint):
        return (f"{event.migration}: resuming from the checkpoint: {event.done:,} documents of {event.collection} "
                f"were done (up to _id {event.last_id})")
    if isinstance(event, CheckpointOfAnotherVersion):
        return f"{event.migration}: the checkpoint was left by another version of the migration: starting over"
    if isinstance(event, MixedIdTypes):
        return (f"{event.migration}: {event.collection} has _ids of more than one type, which one _id range cannot "
                "span: reading its ids instead")
    if isinstance(event, ReadingIds):
        return f"{event.migration}: reading the _ids of the documents to change in {event.collection} ..."
    if isinstance(event, RetryScheduled):
        return f"{event.what}: {event.error}; retrying in {event.wait_s:.1f} s"
    if isinstance(event, StopRequested):
        if event.after_unit:
            return f"{event.signal}: stopping after the current batch (again to stop at once)"
        return f"{event.signal}: stopping (again to stop at once)"
    if isinstance(event, Throttled):
        return throttled_line(event)
    if isinstance(event, ThrottleSignalOff):
        return f"{event.migration}: throttling on {event.signal} is off: {event.why}"
    if isinstance(event, ThrottledTotal):
        seconds = f"{event.seconds:.1f} s" if event.seconds < 90 else duration_text(event.seconds)
        return (f"{event.migration}: throttled {seconds} on the server's health while walking "
                f"{event.collection} ({plural(event.waits, 'wait')})")
    if isinstance(event, StoppingAtOnce):
        return f"{event.signal} again: stopping at once; the next run does the current batch again"
    return None


class ProgressView:
    """`handle(event)`: shows the events of the work under the engine; False for an event it does not know.
    `terminal`: draw bars (None: when stderr is a terminal)."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, terminal: bool | None = None):
        self.interval_s = interval_s
        self.terminal = terminal
        self._bar: RichProgress | None = None  # rich draws one at a time
        self._bar_label = ""
        self._task: TaskID | None = None
        self._last_line: dict[str, float] = {}  # label: when its last line was logged (or its work began)
        self._last_done: dict[str, int] = {}

    def handle(self, event: Event) -> bool:
        if isinstance(event, ProgressMade):
            self._progress(event)
            return True
        if isinstance(event, ProgressEnded):
            self._end(event.label)
            return True
        if isinstance(event, BatchDone):  # one a batch: too many for the log but with --debug
            log.debug("%s: batch of %s documents of %s in %.3f s; %s modified", event.migration, f"{event.size:,}",
                      event.collection, event.duration_s, f"{event.modified:,}")
            return True
        line = event_line(event)
        if line is None:
            return False
        if isinstance(event, StoppingAtOnce):
            self._end(self._bar_label)
        log.log(LEVELS[event.level], "%s", line)
        if isinstance(event, StoppingAtOnce):  # the process exits right after: nothing left in a buffer
            for handler in log.handlers:
                handler.flush()
        return True

    def _progress(self, event: ProgressMade) -> None:
        if self.terminal if self.terminal is not None else sys.stderr.isatty():
            self._draw(event)
            return
        now, label = time.monotonic(), event.label
        if label not in self._last_line or event.restarted:
            self._last_line[label] = now
        elif (event.done != self._last_done.get(label) and now - self._last_line[label] >= self.interval_s
              and not _complete(event)):  # the walk's end (WalkDone) says its final counts, once
            self._last_line[label] = now
            log.info("%s", progress_line(event))
        self._last_done[label] = event.done

    def _draw(self, event: ProgressMade) -> None:
        if self._bar is not None and self._bar_label != event.label:
            self._end(self._bar_label)
        if self._bar is None:
            rate = TextColumn(f"{{task.fields[rate]}} {_rate_unit(event.unit)}/s")
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TaskProgressColumn(), rate, TimeRemainingColumn(), console=_log_console(),
                                     transient=True)
            self._bar_label = event.label
            self._task = self._bar.add_task(event.label, total=None, completed=event.done, rate="-")
            self._bar.start()
        task = self._task
        assert task is not None  # added with the bar
        if event.restarted:
            self._bar.reset(task, completed=event.done, rate="-")
            return
        label = f"{event.label} (~{event.total:,} estimated)" if event.total and event.estimated else event.label
        self._bar.update(task, total=event.total, completed=event.done, description=label)
        if event.done != self._last_done.get(event.label, event.done):
            self._bar.update(task, rate=f"{event.rate:,.0f}")
        self._last_done[event.label] = event.done

    def _end(self, label: str) -> None:
        self._last_line.pop(label, None)
        self._last_done.pop(label, None)
        if self._bar is not None and self._bar_label == label:
            self._bar.stop()
            self._bar, self._bar_label, self._task = None, "", None


def _complete(event: ProgressMade) -> bool:
    return bool(event.total) and not event.estimated and event.done >= (event.total or 0)


def _rate_unit(unit: str) -> str:
    return "docs" if unit == "documents" else unit


def _log_console() -> Console:
    """The console the log lines go to, so that they print above the bar instead of through it."""
    for handler in log.handlers:
        if isinstance(handler, RichHandler):
            return handler.console
    return Console(stderr=True)

"""--notify URL: a POST of JSON at the run's start, its success or failure, and when it stalls (no progress for
--stall-minutes), from a background thread with a short timeout: an endpoint that is down costs one warning line,
never the run nor its pace. The URL may hold a token (chat webhooks do): only its scheme and host are shown.

Each body has `event` (start, success, failure, stall), `ts`, `database`, `migration` (when one is under way),
`host`, `pid`, `message`; success and failure add `exit_code`, a stall `seconds_without_progress`, `done`, `total`.
"""

import json
import os
import queue
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from migrator import events
from migrator.errors import ExitCode
from migrator.output import log
from migrator.redact import MASK, redact

TIMEOUT_S = 3.0  # each POST; and the longest the run's end waits for the last ones
DEFAULT_STALL_MINUTES = 10.0
# Events that show the work goes on (a progress event counts when its `done` moved); by name: some are other modules'
_PROGRESS = {"Applying", "MigrationApplied", "MigrationRolledBack", "BatchDone", "IndexBuilding", "IndexBuilt",
             "SchemaDone", "Resumed"}


def shown(url: str) -> str:
    """The URL as printed: scheme and host (a path or query may be a secret, as in chat webhooks)."""
    parts = urlsplit(url)
    rest = f"/{MASK}" if parts.path.strip("/") or parts.query else ""
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{rest}"


def post_json(url: str, body: dict[str, Any], timeout_s: float = TIMEOUT_S) -> None:
    request = urllib.request.Request(url, data=json.dumps(body, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310 (the operator's own URL)
        answer.read()


class Notifier:
    """`started`, then `observe` each event, then `finish`: the POSTs are queued to one sender thread; a stall
    watcher thread POSTs `stall` once per quiet spell of `stall_s`."""

    def __init__(self, url: str, stall_s: float, post: Callable[[str, dict], None] = post_json,
                 clock: Callable[[], float] = time.monotonic):
        self.url, self.stall_s, self.post, self.clock = url, stall_s, post, clock
        self.database = ""
        self.migration: str | None = None
        self._queue: queue.Queue[dict | None] = queue.Queue()
        self._last_progress = clock()
        self._stall_said = False
        self._counts: tuple[int, int | None] = (0, None)
        self._warned = False
        self._ended = threading.Event()
        self._threads: list[threading.Thread] = []

    def started(self, database: str) -> None:
        self.database = database
        self._start_threads()
        self._send("start", f"migrations starting on database {database}")

    def _start_threads(self) -> None:
        """Once: at the start, or at the end of a run that failed before it (the server cannot be reached)."""
        if not self._threads:
            self._threads = [threading.Thread(target=self._send_all, name="notify", daemon=True),
                             threading.Thread(target=self._watch_stall, name="notify-stall", daemon=True)]
            for thread in self._threads:
                thread.start()

    def observe(self, event: events.Event, migration: str | None) -> None:
        self.migration = migration
        if isinstance(event, events.ProgressEvent):
            if (event.done, event.total) == self._counts:
                return
            self._counts = (event.done, event.total)
        elif type(event).__name__ not in _PROGRESS:
            return
        self._last_progress, self._stall_said = self.clock(), False

    def stalled(self) -> float | None:
        """The seconds without progress, once per quiet spell of stall_s or more (None: not stalled, or said)."""
        quiet = self.clock() - self._last_progress
        if quiet < self.stall_s or self._stall_said:
            return None
        self._stall_said = True
        return quiet

    def finish(self, exit_code: int, error: str = "") -> None:
        """The last POST (success or failure), then at most TIMEOUT_S for the queue to go out."""
        self._start_threads()
        if exit_code == ExitCode.OK:
            self._send("success", "migrations done", exit_code=0)
        else:
            self._send("failure", error or f"exit code {exit_code}", exit_code=int(exit_code))
        self._ended.set()
        self._queue.put(None)
        deadline = time.monotonic() + TIMEOUT_S
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))

    def _send(self, kind: str, message: str, **fields: Any) -> None:
        when = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._queue.put({"event": kind, "ts": when, "database": self.database, "migration": self.migration,
                         "host": socket.gethostname(), "pid": os.getpid(), "message": redact(message), **fields})

    def _send_all(self) -> None:
        while (body := self._queue.get()) is not None:
            try:
                self.post(self.url, body)
            except Exception as exc:  # down, refused, slow, an error answer: said once, never the run's failure
                if not self._warned:
                    self._warned = True
                    log.warning("--notify: %s could not be reached (%s): the run goes on without its notifications",
                                shown(self.url), redact(getattr(exc, "reason", None) or exc))

    def _watch_stall(self) -> None:
        poll_s = min(max(self.stall_s / 10, 0.05), 5.0)
        while not self._ended.wait(poll_s):
            if (quiet := self.stalled()) is not None:
                done, total = self._counts
                self._send("stall", f"no progress for {quiet / 60:.1f} minutes", seconds_without_progress=round(quiet),
                           done=done, total=total)

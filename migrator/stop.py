"""Ctrl-C and SIGTERM while work runs: batches and restores finish the unit under way, then stop; a migration's
own code awaiting something (outside batches) is cancelled at once. A second signal exits at once.

A batch under way is waited for GRACE_S at most after the signal (`StopRequest.within_grace`): one that gets no
reply by then (a server that cannot answer) is cancelled, and the run stops all the same, its lock released.

The handlers are the event loop's (loop.add_signal_handler), which wake the loop whichever thread the signal
reaches: a Python-level handler would run only when the main thread wakes up by itself (a migration that sleeps
a minute would ignore Ctrl-C for that minute). Requests nest: a signal goes to the innermost one in effect (the
batches of a migration's `up` rather than the `up` itself).
"""

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from migrator.errors import ExitCode, MigrationError
from migrator.events import Reporter, StoppingAtOnce, StopRequested, silent

T = TypeVar("T")
GRACE_S = 10.0  # after Ctrl-C or SIGTERM, how long the batch under way may still take before it is cancelled
_OUTERMOST: ContextVar["StopRequest | None"] = ContextVar("outermost_stop_request", default=None)


class StopRequest:
    """Ctrl-C or SIGTERM while it is `handled()`: `signal` says which, `received` is set. Without `cancels`, the
    work stops at the end of its unit (a batch: finish it, save the checkpoint, then stop); with it, that task
    is cancelled at once (see `stoppable`). A second signal exits at once: the batch under way is done again
    by the next run."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, report: Reporter = silent, cancels: asyncio.Task | None = None):
        self.report = report
        self.cancels = cancels
        self.signal: int | None = None
        self.received = asyncio.Event()
        self._nested: list[StopRequest] = []  # of the outermost: every request in effect, innermost last

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once on a stop request."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.received.wait(), timeout=seconds)

    async def within_grace(self, work: Awaitable[T], what: str, grace_s: float = GRACE_S) -> T:
        """Await `work` (one unit: a batch); after a stop request, `grace_s` more at most: then it is cancelled and
        MigrationError (exit 130 or 143) says so. Without a stop request it takes as long as it takes (its own
        deadline bounds it: migrator.fencing)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self.received.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                await asyncio.wait({task}, timeout=grace_s)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise MigrationError(f"{what} stopped by {self.signal_name}: the batch under way was not done "
                                     f"{grace_s:g} s after it and was cancelled (it is done again by the next run: "
                                     "run the same command again to resume)", self.exit_code)
            return task.result()
        finally:
            stopped.cancel()
            if not task.done():  # this task was cancelled (the lock lost): the unit goes with it
                task.cancel()

    @contextmanager
    def handled(self) -> Iterator["StopRequest"]:
        outer = _OUTERMOST.get()
        if outer is not None:  # the signals reach the outermost request, which hands them on
            outer._nested.append(self)
            try:
                yield self
            finally:
                outer._nested.remove(self)
            return
        loop = asyncio.get_running_loop()
        previous = {}
        for number in self.SIGNALS:
            try:
                handler = signal.getsignal(number)
                loop.add_signal_handler(number, self._route, number)
                previous[number] = handler
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
                pass
        self._nested = [self]
        token = _OUTERMOST.set(self)
        try:
            yield self
        finally:
            _OUTERMOST.reset(token)
            self._nested = []
            for number, handler in previous.items():
                loop.remove_signal_handler(number)
                signal.signal(number, handler)  # asyncio.run's own Ctrl-C handling, not the bare default

    def _route(self, number: int) -> None:
        stopping = next((request for request in self._nested if request.signal is not None), None)
        if stopping is not None:
            self._nested[-1].report(StoppingAtOnce(signal.Signals(number).name))
            os._exit(stopping.exit_code)  # a raised signal could be ignored (SIGTERM to PID 1 in a container)
        self._nested[-1]._received(number)

    def _received(self, number: int) -> None:
        self.signal = number
        self.received.set()
        self.report(StopRequested(signal.Signals(number).name, after_unit=self.cancels is None))
        if self.cancels is not None:
            self.cancels.cancel()

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.TERMINATED if self.signal == signal.SIGTERM else ExitCode.INTERRUPTED

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""


async def stoppable(work: Awaitable[T], what: str, report: Reporter = silent) -> T:
    """Await `work` (a migration's own code), cancelled at once by Ctrl-C or SIGTERM unless batches of it are
    under way (they stop at the end of theirs): MigrationError "`what` stopped by SIGINT", exit 130 or 143."""
    task = asyncio.current_task()
    stop = StopRequest(report, cancels=task)
    with stop.handled():
        try:
            result = await work
        except asyncio.CancelledError:
            if stop.signal is None:
                raise
    if stop.signal is None:
        return result
    if task is not None:
        task.uncancel()  # the cancel was ours: the work after this one (releasing the lock) must not be cancelled
    raise MigrationError(f"{what} stopped by {stop.signal_name}: run the same command again to finish",
                         stop.exit_code)

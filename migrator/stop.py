"""Ctrl-C and SIGTERM during long work (batches, restores): finish the unit under way, then stop."""

import asyncio
import logging
import os
import signal
from contextlib import contextmanager

from migrator.errors import ExitCode
from migrator.events import Reporter, silent
from migrator.output import log


class StopRequest:
    """Ctrl-C or SIGTERM while batches run: finish the batch, save the checkpoint, then stop.
    A second signal exits at once: the batch under way is done again by the next run."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, report: Reporter = silent):
        self.report = report
        self.signal: int | None = None
        self.received: asyncio.Event | None = None
        self.before_exit = lambda: None  # the progress bar's close: give the terminal its cursor back

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once on a stop request."""
        try:
            await asyncio.wait_for(self.received.wait(), timeout=seconds)
        except TimeoutError:
            pass

    @contextmanager
    def handled(self):
        self.received = asyncio.Event()
        loop = asyncio.get_running_loop()
        previous = {}
        for number in self.SIGNALS:
            try:
                handler = signal.getsignal(number)
                loop.add_signal_handler(number, self._received, number)
                previous[number] = handler
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
                pass
        try:
            yield self
        finally:
            for number, handler in previous.items():
                loop.remove_signal_handler(number)
                signal.signal(number, handler)  # asyncio.run's own Ctrl-C handling, not the bare default

    def _received(self, number: int) -> None:
        if self.signal is not None:
            self.before_exit()
            log.error("%s again: stopping at once; the next run does the current batch again",
                      signal.Signals(number).name)
            logging.shutdown()
            os._exit(self.exit_code)  # a raised signal could be ignored (SIGTERM to PID 1 in a container)
        self.signal = number
        self.received.set()
        log.warning("%s: stopping after the current batch (again to stop at once)", signal.Signals(number).name)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.TERMINATED if self.signal == signal.SIGTERM else ExitCode.INTERRUPTED

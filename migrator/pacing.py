"""Keeping a walk to --max-rate (migrator.batches): documents (or ids read) a second, at most, with no credit for
a burst after a slow stretch; the sleeps wake up at once on a stop request."""

import time

from migrator.stop import StopRequest


class Pace:
    def __init__(self, max_rate: float | None, stop: StopRequest):
        self.max_rate, self.stop = max_rate, stop
        self.started, self.done = 0.0, 0  # documents done since `started`

    def start(self) -> None:
        self.started, self.done = time.monotonic(), 0

    async def keep(self, done: int, burst: int) -> None:
        """Count `done` more, then sleep until all since `start` fit in --max-rate."""
        self.done += done
        if not self.max_rate:
            return
        ahead = self.done / self.max_rate - (time.monotonic() - self.started)
        if ahead > 0:
            await self.stop.sleep(ahead)
        elif ahead < -burst / self.max_rate:  # slower than the rate: no credit for a burst
            self.start()

    @property
    def ids_per_read(self) -> int:
        """Ids per getMore of the stream path's read: under --max-rate about a second's worth, so that the
        server reads at that pace too, not in bursts of 10,000."""
        return 10_000 if not self.max_rate else max(10, min(10_000, int(self.max_rate)))

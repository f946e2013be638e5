"""Waiting between batches while the server is unhealthy (migrator.batches): a backfill must not be what breaks
production.

Three signals, read at a batch boundary at most once every `interval_s` (a second), and again every `interval_s`
while the walk waits:
- replication lag (a replica set): the lag within which a majority of the data-bearing members are, from
  `replSetGetStatus` (each member's optimeDate against the primary's), else from the primary's `hello`
  (lastWriteDate against majorityWriteDate, when replSetGetStatus is refused): above --max-lag, wait. MongoDB's own
  flow control starts at 10 s of majority lag, hence that default;
- flow control engaged (a replica set): `serverStatus().flowControl.isLagged`: the server itself is holding writers
  back;
- batch latency (any server, FerretDB's only one): a batch that took more than SLOW_FACTOR times the median of the
  last LATENCY_WINDOW ones (and at least SLOW_FLOOR_S) is followed by a wait as long as it took.
A signal the runner may not read (a command refused: Unauthorized, or not on this server) is said once
(ThrottleSignalOff) and left out; the others go on. Each wait is one Throttled event; the walk's total waiting is
one ThrottledTotal at its end. A stop request ends a wait at once; the lock is renewed while it lasts.
"""

import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from migrator.events import Reporter, Throttled, ThrottledTotal, ThrottleSignalOff
from migrator.profile import ServerProfile
from migrator.redact import redact
from migrator.retry import is_transient
from migrator.stop import StopRequest

DEFAULT_MAX_LAG_S = 10.0
DEFAULT_INTERVAL_S = 1.0
LATENCY_WINDOW = 20  # batches whose median is "usual"
LATENCY_SAMPLES = 5  # batches timed before one can be called slow
SLOW_FACTOR = 4.0
SLOW_FLOOR_S = 1.0  # quicker than this is never slow: jitter of quick batches is not the server suffering
LAG, FLOW_CONTROL, LATENCY = "replication lag", "flow control", "batch latency"
ARBITER = 7  # replSetGetStatus' state of an arbiter, which holds no data


@dataclass(frozen=True)
class Reading:
    """An unhealthy signal: `figure` against `limit` (see events.Throttled)."""
    reason: str
    figure: float
    limit: float


# ----- reading the server's answers (pure) -----

def majority_lag(status: dict) -> float | None:
    """Seconds behind the primary within which a majority of the data-bearing members of `replSetGetStatus`
    are (a member down counts with its last known optime); None if it names no optimes."""
    members = [member for member in status.get("members", [])
               if member.get("state") != ARBITER and isinstance(member.get("optimeDate"), datetime)
               and member.get("votes", 1)]
    if not members:
        return None
    primary = next((member for member in members if member.get("state") == 1), None)
    newest = primary["optimeDate"] if primary else max(member["optimeDate"] for member in members)
    lags = sorted(max(0.0, (newest - member["optimeDate"]).total_seconds()) for member in members)
    return lags[len(lags) // 2]  # the majority's: len // 2 + 1 members are within it


def majority_lag_from_hello(hello: dict) -> float | None:
    """The primary's last write against its last majority-committed one (`hello`'s lastWrite); None without them."""
    last_write = hello.get("lastWrite") or {}
    newest, majority = last_write.get("lastWriteDate"), last_write.get("majorityWriteDate")
    if not isinstance(newest, datetime) or not isinstance(majority, datetime):
        return None
    return max(0.0, (newest - majority).total_seconds())


def flow_control_rate(server_status: dict) -> float | None:
    """Flow control's target rate (tickets a second) when it holds writers back (`isLagged`); None when it does not
    (or the server has none)."""
    flow = server_status.get("flowControl") or {}
    if not flow.get("enabled", True) or not flow.get("isLagged"):
        return None
    return float(flow.get("targetRateLimit", 0))


class LatencyWatch:
    """The recent batches' durations: `slow(seconds)` records one and says whether it was far above their median."""

    def __init__(self, window: int = LATENCY_WINDOW):
        self.recent: deque[float] = deque(maxlen=window)

    def slow(self, seconds: float) -> Reading | None:
        usual = statistics.median(self.recent) if len(self.recent) >= LATENCY_SAMPLES else None
        self.recent.append(seconds)
        if usual is None or seconds <= max(SLOW_FACTOR * usual, SLOW_FLOOR_S):
            return None
        return Reading(LATENCY, seconds, SLOW_FACTOR * usual)


# ----- waiting -----

@dataclass
class ThrottleSettings:
    max_lag_s: float = DEFAULT_MAX_LAG_S
    interval_s: float = DEFAULT_INTERVAL_S  # between two readings of the server's health, waiting or not


class Throttle:
    def __init__(self, database: AsyncDatabase, migration: str, profile: ServerProfile, settings: ThrottleSettings,
                 stop: StopRequest, check_lock: Callable[[float], Awaitable[None]], report: Reporter):
        self.database = database
        self.migration, self.settings, self.stop = migration, settings, stop
        self.check_lock, self.report = check_lock, report
        self.latency = LatencyWatch()
        self.off: set[str] = set() if profile.replica_set else {LAG, FLOW_CONTROL}
        self._status_refused: str | None = None  # why replSetGetStatus was refused: the lag is read from hello
        self.total_s, self.waits = 0.0, 0
        self._read_at = float("-inf")
        self._last_timed = 0.0
        self._walk_total_s, self._walk_waits = 0.0, 0

    async def wait(self, last_batch_s: float) -> None:
        """Before a batch: wait while the server is unhealthy (`last_batch_s`: how long the last batch took)."""
        slow = self._timed(last_batch_s)
        reading = slow or await self._health()
        if reading is None:
            return
        self.report(Throttled(self.migration, reading.reason, reading.figure, reading.limit, self.total_s))
        started = time.monotonic()
        until = started + slow.figure if slow else None  # a slow batch: wait as long as it took, once
        while self.stop.signal is None:
            now = time.monotonic()
            if until is not None and now >= until:
                break
            await self.check_lock(self.settings.interval_s)
            await self.stop.sleep(self.settings.interval_s if until is None else min(self.settings.interval_s,
                                                                                    until - now))
            if until is None and self.stop.signal is None and await self._health(now=True) is None:
                break
        self.total_s += time.monotonic() - started
        self.waits += 1

    def walk_done(self, collection: str) -> None:
        """The walk of `collection` is over: its throttled time, if any, said once."""
        seconds, waits = self.total_s - self._walk_total_s, self.waits - self._walk_waits
        self._walk_total_s, self._walk_waits = self.total_s, self.waits
        if waits:
            self.report(ThrottledTotal(self.migration, collection, seconds, waits))

    def _timed(self, last_batch_s: float) -> Reading | None:
        # The same figure twice: no batch ran since (the last batch of a walk found nothing left).
        if last_batch_s <= 0 or last_batch_s == self._last_timed:
            return None
        self._last_timed = last_batch_s
        return self.latency.slow(last_batch_s)

    async def _health(self, now: bool = False) -> Reading | None:
        """The first unhealthy signal of the server's; None when healthy, or when read less than interval_s ago."""
        if not now and time.monotonic() - self._read_at < self.settings.interval_s:
            return None
        self._read_at = time.monotonic()
        if LAG not in self.off and (lag := await self._lag()) is not None and lag > self.settings.max_lag_s:
            return Reading(LAG, lag, self.settings.max_lag_s)
        if FLOW_CONTROL not in self.off and (rate := await self._flow_control()) is not None:
            return Reading(FLOW_CONTROL, rate, 0.0)
        return None

    async def _lag(self) -> float | None:
        if self._status_refused is None:
            try:
                return majority_lag(await self.database.client.admin.command("replSetGetStatus"))
            except PyMongoError as exc:
                self._status_refused = refusal("replSetGetStatus", exc)
                if self._status_refused is None:  # not this time (a failover, a lost connection): read it again later
                    return None
        hello = await self._read(LAG, "hello")
        lag = None if hello is None else majority_lag_from_hello(hello)
        if hello is not None and lag is None:
            self._signal_off(LAG, f"{self._status_refused}, and hello says no lastWrite")
        return lag

    async def _flow_control(self) -> float | None:
        status = await self._read(FLOW_CONTROL, "serverStatus")
        return None if status is None else flow_control_rate(status)

    async def _read(self, signal: str, command: str) -> dict | None:
        """The command's answer; None when refused (the signal off, said once) or when the server could not answer
        this time (read again at the next check)."""
        try:
            return await self.database.client.admin.command(command)
        except PyMongoError as exc:
            if (why := refusal(command, exc)) is not None:
                self._signal_off(signal, why)
        return None

    def _signal_off(self, signal: str, why: str) -> None:
        if signal not in self.off:
            self.off.add(signal)
            self.report(ThrottleSignalOff(self.migration, signal, why))


def refusal(command: str, error: PyMongoError) -> str | None:
    """"replSetGetStatus refused (Unauthorized: not authorized on admin ...)" when the server said no and would say
    it again (Unauthorized, CommandNotFound, ...); None for a transient error (a failover, a lost connection)."""
    if not isinstance(error, OperationFailure) or is_transient(error):
        return None
    details = error.details or {}
    return f"{command} refused ({details.get('codeName', error.code)}: {redact(details.get('errmsg', str(error)))})"

"""--selftest NAME --chaos: a migration's run, and its rollback's, with one fault on the wire at a time.

The self-test (migrator.selftest) runs on its scratch copies through migrator.wire's proxy: its first `up`
and its rollback are the runs without faults, and their write commands the fault points. Then, for each of up to
`faults` points (all of them when there are few; else spread evenly over the writes, the kinds in turn; half at
most on the rollback, the two in turn), the copies are put back as that run found them, and it runs again with
one fault at that point:
    cut          the connection cut before the command reaches the server
    lost_reply   the command applied, its reply lost (the driver or the batches may send it again)
    kill         the process killed right after it; a fresh client runs it again, as the next run would
Where the fault stopped the run, it is run again, as an operator would. Then every document is compared with the
run without faults: one that differs fails the point, but for fields that differ from one run without faults to
the next (a time, say: a second run without faults tells them, once a point differs). Batches are of a fixed size
(no adaptive sizing: the points must fall on the same commands in every run), small enough that the sample spans
several. Nothing here prints: migrator.commands.prove narrates the ChaosReport.
"""
import asyncio
import math
import ssl
import time
from dataclasses import dataclass, field, replace
from itertools import zip_longest
from typing import Any, cast

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.server_type import SERVER_TYPE

from migrator import checkpoints
from migrator.batches import DEFAULT_SIZE, BatchSettings
from migrator.docdiff import MISSING, ORDER, Change, raw_changes, value_at
from migrator.errors import ExitCode, MigrationError
from migrator.events import Reporter, silent
from migrator.migration import Migration
from migrator.profile import ServerProfile
from migrator.retry import Retry, without_driver_details
from migrator.scratch import Scratch, State
from migrator.selftest_checks import DocumentPreview, Key, OnScratch, Snapshot, document_preview, keys_of, snapshot
from migrator.wire import CUT, KILL, KINDS, LOST_REPLY, FaultProxy, Point, Write

DEFAULT_FAULTS = 20
SPAN = 4  # batches the sample is cut into, at least
SHOWN = 3  # differing documents shown of a failing point
RETRY_FOR_S, RETRY_DELAY_S = 10.0, 0.01  # what a run's batches ride out: one lost connection, not an election
LEAST_TIMEOUT_S = 30.0  # a run with a fault gets 10 times the fault-free run's time, at least this
AUTH = ("SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN", "MONGODB-X509", "DEFAULT")  # what a client through the proxy
# can present; DEFAULT: no authMechanism in the URL, the driver negotiates SCRAM
KIND_SAID = {CUT: "connection cut before it", LOST_REPLY: "reply lost after it", KILL: "process killed after it"}


@dataclass
class PointResult:
    action: str  # "up" or "rollback"
    point: Point
    of: int  # commands of the same name and collection in the fault-free run
    ok: bool | None  # None: the run did not reach the point (it took another way)
    detail: str
    differing: int = 0  # documents unlike the fault-free run's
    documents: list[DocumentPreview] = field(default_factory=list)  # the first of them: fault-free -> this run
    advice: str = ""

    @property
    def where(self) -> str:
        write = self.point.write
        return f"{write.command} {write.collection} {write.nth} of {self.of}"


@dataclass
class ChaosReport:
    migration: Migration
    batch_size: int
    writes: dict[str, int]  # action: its write commands without faults
    points: list[PointResult] = field(default_factory=list)
    volatile: list[str] = field(default_factory=list)  # fields unlike from one fault-free run to the next
    seconds: float = 0.0

    @property
    def failed(self) -> list[PointResult]:
        return [point for point in self.points if point.ok is False]


@dataclass
class Baseline:
    """An action without faults: what each faulted run starts from and must end as."""
    action: str
    start: State
    before: Snapshot  # the documents at the start
    after: Snapshot  # and at the end
    indexes: dict[str, list[dict]]  # at the end: each collection's
    writes: list[Write]
    seconds: float
    # found by a second run without faults, once a run with one differs (most migrations never need it):
    volatile: dict[str, set[str]] = field(default_factory=dict)  # collection: fields unlike from run to run
    new_ids: set[str] = field(default_factory=set)  # collections whose added documents get new ids in each run
    run_twice: bool = False


def choose(writes: list[Write], budget: int) -> list[Point]:
    """Every (write, kind) when they are no more than `budget`; else `budget` of them spread over the writes, the
    kinds in turn."""
    if len(writes) * len(KINDS) <= budget:
        return [Point(write, kind) for write in writes for kind in KINDS]
    return [Point(writes[i * len(writes) // budget], KINDS[i % len(KINDS)]) for i in range(budget)]


def split(budget: int, up_writes: int, rollback_writes: int) -> tuple[int, int]:
    """The points for `up` and for the rollback: half each at most, what one cannot use goes to the other."""
    rollback = min(budget // 2, rollback_writes * len(KINDS))
    up = min(budget - rollback, up_writes * len(KINDS))
    return up, min(budget - up, rollback_writes * len(KINDS))


def fixed_batches(settings: BatchSettings, documents: int) -> BatchSettings:
    """Batches of one size in every run (the points must fall on the same commands), small enough that `documents`
    span several."""
    size = min(settings.size or DEFAULT_SIZE, max(1, math.ceil(documents / SPAN)))
    return replace(settings, size=size, min_size=size, target_batch_ms=0)


class Drill:
    """The runs of a chaos check, through the fault proxy. The self-test's own runs (`on_scratch`, one client) are
    the runs without faults (`recording`, then `recorded`); each run with a fault gets a client of its own, as a
    fresh process would."""

    def __init__(self, database: AsyncDatabase, migration: Migration, scratch: Scratch, settings: BatchSettings,
                 profile: ServerProfile, report: Reporter = silent):
        self.database, self.migration, self.scratch = database, migration, scratch
        self.settings, self.profile, self.report = settings, profile, report
        self.leave_out = scratch.database.scratch_name(checkpoints.COLLECTION)  # the batches' own: no fault point
        self.timeout_s = LEAST_TIMEOUT_S
        self.baselines: dict[str, Baseline] = {}
        self.now: Snapshot | None = None  # the copies' documents, when known
        self.proxy: FaultProxy
        self._client: AsyncMongoClient

    async def __aenter__(self) -> "Drill":
        client = self.database.client
        # the client's own TLS (on the async path, always the standard library's SSLContext)
        tls = cast(ssl.SSLContext | None, client.options.pool_options._ssl_context)
        self.proxy = FaultProxy(await _writable_server(self.database), tls, only=self.scratch.prefix)
        await self.proxy.__aenter__()
        self._client = self._new_client()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._client.close()
        await self.proxy.__aexit__(*exc_info)

    def on_scratch(self, client: AsyncMongoClient | None = None) -> OnScratch:
        return OnScratch(self.migration, self.scratch, self.settings, self.profile, self.report,
                         through=(client or self._client).get_database(
                             self.database.name, codec_options=self.database.codec_options,
                             write_concern=self.database.write_concern, read_concern=self.database.read_concern),
                         retry=Retry(RETRY_FOR_S, first_delay_s=RETRY_DELAY_S))

    async def recording(self, documents: Snapshot) -> State:
        """Before a run without faults: what it starts from (the copies hold `documents`); its writes are counted
        from here."""
        self.proxy.arm(None)
        self.now = None
        return {name: (indexes, [RawBSONDocument(raw) for (collection, _), raw in documents.items()
                                 if collection == name])
                for name, indexes in (await self.scratch.indexes()).items()}

    async def recorded(self, action: str, start: State, before: Snapshot, after: Snapshot, seconds: float) -> None:
        """After it: `action`'s run without faults, from `start` (documents `before`) to `after`."""
        writes = [Write(w.command, w.collection.removeprefix(self.scratch.prefix), w.nth) for w in self.proxy.writes
                  if w.collection != self.leave_out]
        self.baselines[action] = Baseline(action, start, before, after, await self.scratch.indexes(), writes,
                                          seconds)
        self.timeout_s = max(self.timeout_s, 10 * seconds)
        self.now = after  # and after the self-test's `up` again, which changed nothing, or it would have failed

    async def check(self, faults: int) -> ChaosReport:
        """Up to `faults` fault points over the runs recorded, each compared with its run without faults."""
        started = time.monotonic()
        up, rollback = self.baselines["up"], self.baselines.get("rollback")
        found = ChaosReport(self.migration, self.settings.size or DEFAULT_SIZE,
                            {action: len(baseline.writes) for action, baseline in self.baselines.items()})
        up_budget, rollback_budget = split(faults, len(up.writes), len(rollback.writes) if rollback else 0)
        planned = [(up, point) for point in choose(up.writes, up_budget)]
        if rollback is not None:  # in turn: a passing point leaves what the next starts from (no copy put back)
            rolled = [(rollback, point) for point in choose(rollback.writes, rollback_budget)]
            planned = [pair for pairs in zip_longest(planned, rolled) for pair in pairs if pair is not None]
        for baseline, point in planned:
            found.points.append(await self.faulted(baseline, point))
        found.volatile = sorted({f"{name}.{path}" for baseline in self.baselines.values()
                                 for name, paths in baseline.volatile.items() for path in paths})
        found.seconds = time.monotonic() - started
        return found

    async def faulted(self, baseline: Baseline, shown: Point) -> PointResult:
        """One fault at `point`, then the run again where the fault stopped it; compared with `baseline`."""
        write = shown.write
        point = Point(Write(write.command, self.scratch.prefix + write.collection, write.nth), shown.kind)
        of = sum(1 for other in baseline.writes if (other.command, other.collection) == (write.command,
                                                                                         write.collection))
        await self._start_from(baseline)
        self.proxy.arm(point)
        error = await self._run(baseline.action)
        fired, killed = self.proxy.fired, self.proxy.killed
        self.proxy.revive()
        result = PointResult(baseline.action, shown, of, None, "")
        if not fired and error:
            result.ok, result.detail = False, f"the run failed before it, without a fault: {error}"
            result.advice = f"this {baseline.action} does not run the same way twice: it must, to be run again"
            return result
        if not fired:
            result.detail = "the run did not reach it (it took another way than without faults)"
            return result
        if killed:
            happened = "killed; a fresh run went on from there"
        elif error:
            happened = f"the run stopped ({error}); run again"
        else:
            happened = "the run retried and went on"
        if killed or error:
            again = await self._run(baseline.action)
            if again:
                result.ok, result.detail = False, f"{happened}, it failed: {again}"
                result.advice = (f"a {baseline.action} stopped here cannot be finished by running it again: make "
                                 "each step safe to run twice (create or drop only what is missing or there, "
                                 "filter out what is done)")
                return result
        got = self.now = await snapshot(self.scratch)
        indexes = await self.scratch.indexes()
        if indexes != baseline.indexes:
            result.ok = False
            result.detail = (f"{happened}; the indexes differ from the fault-free run's: "
                             f"{_unlike(baseline.indexes, indexes)}")
            result.advice = (f"make this {baseline.action}'s index commands safe to run again (create what is "
                             "missing, drop only what is there)")
            return result
        differing = _differing(baseline, got)
        if differing and not baseline.run_twice:  # a field that differs from run to run (a time) is not a fault's
            await self._run_again_without_faults(baseline)
            differing = _differing(baseline, got)
        if not differing:
            result.ok, result.detail = True, f"{happened}; all {len(got):,} documents as without faults"
            return result
        result.ok, result.differing = False, len(differing)
        result.detail = f"{happened}; {len(differing):,} of {len(got):,} documents differ from the fault-free run's"
        result.documents = [document_preview(key, baseline.after.get(key), got.get(key)) for key in differing[:SHOWN]]
        result.advice = advice(baseline, shown.kind, differing[0], got)
        return result

    async def _run_again_without_faults(self, baseline: Baseline) -> None:
        self.now = None
        await self._start_from(baseline)
        error = await self._run(baseline.action)
        if error is not None:
            raise MigrationError(f"{self.migration.name}: {baseline.action} failed on a second run without faults, on "
                                 f"the scratch copies: {error}", ExitCode.VERIFY_FAILED)
        baseline.volatile, baseline.new_ids = _unstable(baseline.after, await snapshot(self.scratch))
        baseline.run_twice = True

    async def _start_from(self, baseline: Baseline) -> None:
        """The copies as `baseline` starts: put back, unless they are so already (the documents known to be those,
        and the same collections and indexes)."""
        if self.now != baseline.before or await self.scratch.indexes() != _indexes(baseline.start):
            await self.scratch.put_back(baseline.start)
        self.now = baseline.before

    async def _run(self, action: str) -> str | None:
        """`action` through the proxy with a client of its own: None, or why it failed. A kill cancels it."""
        self.now = None
        client = self._new_client()
        try:
            on_scratch = self.on_scratch(client)
            task = asyncio.ensure_future(on_scratch.up() if action == "up" else on_scratch.rollback())
            self.proxy.on_kill = task.cancel
            try:
                await asyncio.wait({task}, timeout=self.timeout_s)
            finally:
                self.proxy.on_kill = None
                while not task.done():  # a kill, the time-out or Ctrl-C: nothing of this run goes on
                    task.cancel()
                    await asyncio.wait({task}, timeout=1)
            if self.proxy.killed:
                return None
            if task.cancelled():
                return f"it did not finish within {self.timeout_s:.0f} s"
            error = task.exception()
            if error is None:
                return None
            if isinstance(error, MigrationError) and not error.stopped_by_signal:
                return without_driver_details(str(error))  # one line, as retries say it
            raise error
        finally:
            await client.close()

    def _new_client(self) -> AsyncMongoClient:
        """A client to the proxy, presenting the credentials the real client resolved (an SRV record's too)."""
        real = self.database.client
        credentials = real.options.pool_options._credentials
        auth: dict[str, Any] = {}
        if credentials is not None:
            if credentials.mechanism not in AUTH:
                raise MigrationError(f"--chaos connects through a proxy of its own, which cannot present "
                                     f"{credentials.mechanism} credentials; run it where the test server takes "
                                     f"{' or '.join(AUTH[:2])}", ExitCode.USAGE)
            auth = {"authSource": credentials.source,
                    **({"authMechanism": credentials.mechanism} if credentials.mechanism != "DEFAULT" else {}),
                    **({"username": credentials.username} if credentials.username else {}),
                    **({"password": credentials.password} if credentials.password else {})}
        host, port = self.proxy.address
        return AsyncMongoClient(host, port, directConnection=True, appname="flowise-proxy-migrations --chaos",
                                tz_aware=self.database.codec_options.tz_aware, serverSelectionTimeoutMS=5000,
                                retryWrites=real.options.retry_writes, retryReads=real.options.retry_reads,
                                w=self.database.write_concern.document.get("w", 1), **auth)


async def _writable_server(database: AsyncDatabase) -> tuple[str, int]:
    """The server the client writes to, as the driver found it: a replica set's primary, a standalone, a mongos."""
    writable = (SERVER_TYPE.RSPrimary, SERVER_TYPE.Standalone, SERVER_TYPE.Mongos)
    for _ in range(2):
        for address, server in database.client.topology_description.server_descriptions().items():
            if server.server_type in writable:
                return address[0], address[1] or 27017
        await database.command("ping")
    raise MigrationError("--chaos found no server to write to (a load balancer hides it): run it against the "
                         "server itself", ExitCode.USAGE)


# ----- comparing -----

def _unlike(want: dict[str, list[dict]], got: dict[str, list[dict]]) -> str:
    """The indexes one has and the other lacks, by collection and name."""
    def names(indexes: dict[str, list[dict]]) -> set[str]:
        return {f"{collection}.{index.get('name', index['key'])}" for collection, listed in indexes.items()
                for index in listed} | {f"{collection} (a collection)" for collection in indexes}
    missing, extra = sorted(names(want) - names(got)), sorted(names(got) - names(want))
    return "; ".join([*(["missing: " + ", ".join(missing)] if missing else []),
                      *(["more: " + ", ".join(extra)] if extra else [])]) or "their options"


def _indexes(state: State) -> dict[str, list[dict]]:
    return {name: indexes for name, (indexes, _) in state.items()}


def _unstable(first: Snapshot, second: Snapshot) -> tuple[dict[str, set[str]], set[str]]:
    """What differs between two fault-free runs: fields (by collection), and collections whose new documents' ids."""
    fields: dict[str, set[str]] = {}
    new_ids: set[str] = set()
    for key in keys_of(first, second):
        one, other = first.get(key), second.get(key)
        if one == other:
            continue
        if one is None or other is None:
            new_ids.add(key[0])
        else:
            fields.setdefault(key[0], set()).update(change.path for change in raw_changes(one, other))
    return fields, new_ids


def _differing(baseline: Baseline, got: Snapshot) -> list[Key]:
    """The documents unlike the fault-free run's, but for what differs between fault-free runs."""
    found = []
    for key in keys_of(baseline.after, got):
        want, have = baseline.after.get(key), got.get(key)
        if want == have:
            continue
        if want is None or have is None:
            if key[0] not in baseline.new_ids:
                found.append(key)
        elif any(change.path not in baseline.volatile.get(key[0], ()) for change in raw_changes(want, have)):
            found.append(key)
    for name in baseline.new_ids:  # documents added with new ids: as many as without faults
        more = [key for key in got if key[0] == name and key not in baseline.after]
        fewer = [key for key in baseline.after if key[0] == name and key not in got]
        if len(more) != len(fewer):
            found.extend(more if len(more) > len(fewer) else fewer)
    return found


# ----- saying what to change -----

def advice(baseline: Baseline, kind: str, key: Key, got: Snapshot) -> str:
    """What a failing point says to change, from the first field unlike the fault-free run's."""
    action = baseline.action
    want, have, before = baseline.after.get(key), got.get(key), baseline.before.get(key)
    again = "the write was sent again" if kind != KILL else "the batch was done again after a crash"
    if want is None or have is None:
        what = "a document added twice" if want is None else "a document missing"
        return (f"{what} when {again}: make this {action} idempotent (an insert by a fixed _id, an upsert, or a "
                "filter that leaves out what it already did)")
    change = next(c for c in raw_changes(want, have) if c.path not in baseline.volatile.get(key[0], ()))
    if change.path == ORDER:
        return f"the same fields in another order when {again}: set the whole sub-document at once"
    original = value_at(bson.decode(before), change.path) if before is not None else MISSING
    twice = _twice(change, original)
    if twice:
        return (f"this {action}'s update is not idempotent: {twice} ran twice on {change.path} when {again}: $set "
                "the value it computes, or filter out the documents it already changed")
    return (f"this {action} is not idempotent: {change.path} is not what one run gives when {again}; it must not "
            "depend on what its first try already changed ($set whole values, filter out what it already did)")


def _twice(change: Change, original: Any) -> str:
    """"$inc" or "$push" when the value is the fault-free change applied twice; "" otherwise."""
    want, have = change.before, change.after
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (want, have))
    start = 0 if original is MISSING else original
    if numbers and isinstance(start, int | float) and want != start and have - want == want - start:
        return "`$inc`"
    if isinstance(want, list) and isinstance(have, list):
        base = [] if original is MISSING else original
        if isinstance(base, list) and len(want) > len(base) and have == want + want[len(base):]:
            return "`$push`"
    return ""

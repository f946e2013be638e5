"""What a walk does at a batch boundary with the requests of --pause and --cancel (migrator/control.py: Honour),
on requests held in memory; no server."""

import asyncio
from datetime import UTC, datetime

import pytest

from migrator import control
from migrator.control import ALL, CANCELLED, PAUSED, Honour, Request, this_runner
from migrator.events import CancelRequested, Paused, Resumed
from migrator.stop import StopRequest

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Requests:
    """Controls, in memory: `then` are what the next reads find, one after the other (the last one stays)."""

    def __init__(self, *then: dict[str, Request]):
        self.then, self.cleared = list(then), []

    async def of(self, migration: str) -> Request | None:
        now = self.then.pop(0) if len(self.then) > 1 else self.then[0]
        return control.applies_to(now, migration)

    async def clear(self, migration: str | None = None, state: str | None = None) -> list[Request]:
        self.cleared.append((migration, state))
        return []


def honour(requests: Requests, stop: StopRequest | None = None) -> tuple[Request | None, list]:
    told: list = []

    async def boundary():
        return await Honour("backfill", stop or StopRequest(), requests, told.append)()  # type: ignore[arg-type]
    return asyncio.run(boundary()), told


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(control, "POLL_S", 0.01)


def pause(migration="backfill", by="ops@bastion") -> dict[str, Request]:
    return {migration: Request(migration, PAUSED, by, T0)}


def cancel(runner="") -> dict[str, Request]:
    return {"backfill": Request("backfill", CANCELLED, "ops@bastion", T0, runner)}


def test_paused_it_says_so_once_waits_and_says_when_it_goes_on():
    request, told = honour(Requests(pause(), pause(), pause(ALL), {}))
    assert request is None
    assert [type(event) for event in told] == [Paused, Paused, Resumed]  # the pause of all is another request
    assert (told[0].by, told[0].since, told[-1].by) == ("ops@bastion", T0, "ops@bastion")


def test_a_cancel_while_paused_stops_without_saying_it_resumed_and_is_cleared():
    requests = Requests(pause(), cancel(this_runner()))
    request, told = honour(requests)
    assert request is not None and request.state == CANCELLED
    assert [type(event) for event in told] == [Paused, CancelRequested]
    assert requests.cleared == [("backfill", CANCELLED)]


def test_a_cancel_of_another_run_is_cleared_not_honoured():
    requests = Requests(cancel("elsewhere:1"))
    assert honour(requests) == (None, [])
    assert requests.cleared == [("backfill", CANCELLED)]


def test_a_pause_of_another_migration_is_none_of_this_ones():
    assert honour(Requests(pause("other"))) == (None, [])


def test_ctrl_c_while_paused_ends_the_wait_and_the_walk_stops_as_after_a_signal():
    stop = StopRequest()

    async def signalled():
        asyncio.get_running_loop().call_later(0.05, stop._received, 2)
        return await Honour("backfill", stop, Requests(pause()), told.append)()  # type: ignore[arg-type]
    told: list = []
    assert asyncio.run(signalled()) is None
    assert [type(event) for event in told] == [Paused]  # not resumed: stopped
    assert stop.signal == 2

"""Which errors are worth sending again (migrator/retry.py), on the driver's own error objects; no server."""

import asyncio

import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidURI,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteConcernError,
    WriteError,
)

from migrator import retry
from migrator.commands.progress_view import event_line
from migrator.errors import MigrationError
from migrator.events import RetryScheduled
from migrator.retry import Retry, describe, is_transient


def bulk_error(write_codes=(), concern_codes=()) -> BulkWriteError:
    return BulkWriteError({"writeErrors": [{"index": i, "code": c, "errmsg": "x"} for i, c in enumerate(write_codes)],
                           "writeConcernErrors": [{"code": c, "errmsg": "x"} for c in concern_codes]})


@pytest.mark.parametrize("error", [
    AutoReconnect("connection closed"), NotPrimaryError("not primary"), NetworkTimeout("timed out"),
    ServerSelectionTimeoutError("no primary"), ConnectionFailure("refused"),
    OperationFailure("shutting down", code=91), OperationFailure("interrupted at shutdown", code=11600),
    OperationFailure("primary stepped down", code=189), OperationFailure("not writable primary", code=10107),
    OperationFailure("host unreachable", code=6), OperationFailure("network timeout", code=89),
    OperationFailure("anything", code=1, details={"errorLabels": ["RetryableWriteError"]}),
    WriteConcernError("waiting for replication timed out", code=64, details={}),
    bulk_error(concern_codes=[64]), bulk_error(write_codes=[11602, 189]),
], ids=lambda error: f"{type(error).__name__}-{getattr(error, 'code', None)}")
def test_lost_connections_elections_and_shutdowns_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    DuplicateKeyError("E11000 duplicate key", code=11000), OperationFailure("bad value", code=2),
    OperationFailure("authentication failed", code=18), OperationFailure("no code"),
    ExecutionTimeout("operation exceeded time limit", code=50), WriteError("document too large", code=10334),
    WriteConcernError("unknown replication write concern", code=79, details={}),
    bulk_error(write_codes=[11000]), bulk_error(write_codes=[11000], concern_codes=[64]), bulk_error(),
    ConfigurationError("bad option"), InvalidURI("bad url"), ValueError("not the driver's"), KeyError("x"),
], ids=lambda error: f"{type(error).__name__}-{getattr(error, 'code', None)}")
def test_errors_that_would_fail_again_are_not(error):
    assert not is_transient(error)


class Flaky:
    """An operation that raises the given errors, one per call, then returns "done"."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0

    async def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.fixture
def warnings(monkeypatch):
    """The events a Retry reports, as their lines (a reporter: `warnings.append`)."""
    monkeypatch.setattr(retry, "FIRST_DELAY_S", 0.001)
    return Lines()


class Lines(list):
    def append(self, event) -> None:
        assert isinstance(event, RetryScheduled) and event.level == "warning"
        super().append(event_line(event))


def test_a_transient_error_is_retried_until_the_operation_succeeds(warnings):
    operation = Flaky(AutoReconnect("connection reset"), NotPrimaryError("stepped down"))
    assert asyncio.run(Retry(10, warnings.append)("batch 4", operation)) == "done"
    assert operation.calls == 3
    assert [line.split("; retrying in")[0] for line in warnings] == [
        "batch 4: AutoReconnect: connection reset", "batch 4: NotPrimaryError: stepped down"]


def test_an_error_that_is_not_transient_is_raised_at_once(warnings):
    operation = Flaky(DuplicateKeyError("E11000", code=11000))
    with pytest.raises(DuplicateKeyError):
        asyncio.run(Retry(10, warnings.append)("insert", operation))
    assert operation.calls == 1 and warnings == []


def test_retry_for_zero_raises_a_transient_error_as_it_is(warnings):
    operation = Flaky(AutoReconnect("down"))
    with pytest.raises(AutoReconnect):
        asyncio.run(Retry(0, warnings.append)("health check", operation))
    assert operation.calls == 1 and warnings == []


def test_a_server_that_keeps_failing_ends_in_one_error_naming_the_work_and_the_limit(warnings):
    operation = Flaky(*[AutoReconnect("still down")] * 10_000)
    with pytest.raises(MigrationError) as caught:
        asyncio.run(Retry(0.05, warnings.append)("saving the checkpoint", operation))
    assert str(caught.value) == ("saving the checkpoint: the server still fails after 0.05 s of retries (--retry-for): "
                                 "AutoReconnect: still down")
    assert caught.value.exit_code == 1 and operation.calls >= 2


def test_describe_masks_a_password_and_drops_the_full_error():
    error = OperationFailure("cannot reach mongodb://u:Pq8-secret@h:1/app", code=6, details={"errmsg": "x"})
    assert describe(error) == "OperationFailure: cannot reach mongodb://u:****@h:1/app"


def test_describe_says_the_server_and_the_reason_without_the_drivers_topology_description():
    error = ServerSelectionTimeoutError(
        "10.0.0.5:27017: connection closed (configured timeouts: socketTimeoutMS: 20000.0ms, connectTimeoutMS: "
        "20000.0ms), Timeout: 4.99s, Topology Description: <TopologyDescription id: 6b13, topology_type: Single, "
        "servers: [<ServerDescription ('10.0.0.5', 27017) server_type: Unknown, rtt: None, error=AutoReconnect("
        "'10.0.0.5:27017: connection closed')>]>")
    assert describe(error) == "ServerSelectionTimeoutError: 10.0.0.5:27017: connection closed"

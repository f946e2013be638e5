"""The throttle's reading of the server's health (migrator/throttle.py), over recorded answers: the majority's
replication lag from replSetGetStatus or hello, flow control from serverStatus, a slow batch against the median."""

from datetime import datetime, timedelta
from pathlib import Path

from bson import json_util
from pymongo.errors import AutoReconnect, OperationFailure

from migrator.profile import profile_of
from migrator.throttle import (
    LATENCY,
    SLOW_FLOOR_S,
    LatencyWatch,
    flow_control_rate,
    majority_lag,
    majority_lag_from_hello,
    refusal,
)

STATUS = json_util.loads((Path(__file__).parent / "answers" / "mongodb-7.0-replSetGetStatus.json").read_text())
NOW = datetime(2026, 12, 5, 8, 0, 40)


def member(state: int, behind_s: float, **more) -> dict:
    return {"state": state, "optimeDate": NOW - timedelta(seconds=behind_s), **more}


def test_the_majority_lag_is_the_lag_a_majority_of_the_data_bearing_members_are_within():
    # a primary, secondaries 2 s and 14 s behind, one down 30 s behind, an arbiter: 3 of the 4 are within 14 s
    assert majority_lag(STATUS) == 14.0


def test_the_majority_lag_of_small_sets():
    assert majority_lag({"members": [member(1, 0), member(2, 14)]}) == 14.0  # both make the majority
    assert majority_lag({"members": [member(1, 0), member(2, 3), member(2, 600)]}) == 3.0
    assert majority_lag({"members": [member(2, 5), member(1, 0), member(2, 1), member(2, 9), member(2, 7)]}) == 5.0
    assert majority_lag({"members": [member(1, 0), member(2, 0, votes=0), member(2, 50)]}) == 50.0  # not voting
    assert majority_lag({"members": [member(2, 3), member(2, 1)]}) == 2.0  # no primary: against the newest
    assert majority_lag({"members": []}) is None
    assert majority_lag({"ok": 0}) is None


def test_the_majority_lag_from_hello_is_the_last_write_against_the_last_majority_write():
    hello = {"setName": "rs0", "lastWrite": {"lastWriteDate": NOW, "majorityWriteDate": NOW - timedelta(seconds=12.5)}}
    assert majority_lag_from_hello(hello) == 12.5
    assert majority_lag_from_hello({"setName": "rs0", "isWritablePrimary": True}) is None


def test_flow_control_is_engaged_when_the_server_says_it_is_lagged():
    lagged = {"flowControl": {"enabled": True, "targetRateLimit": 1250, "timeAcquiringMicros": 2_000_000,
                              "locksPerKiloOp": 1001.0, "sustainerRate": 900, "isLagged": True,
                              "isLaggedCount": 4, "isLaggedTimeMicros": 9_000_000}}
    assert flow_control_rate(lagged) == 1250.0
    assert flow_control_rate({"flowControl": {**lagged["flowControl"], "isLagged": False}}) is None
    assert flow_control_rate({"flowControl": {**lagged["flowControl"], "enabled": False}}) is None
    assert flow_control_rate({"host": "ferretdb", "ok": 1.0}) is None  # no flow control on this server


def test_a_batch_far_slower_than_the_recent_median_is_slow():
    watch = LatencyWatch(window=20)
    assert [watch.slow(0.3) for _ in range(4)] == [None] * 4  # too few to know what is usual
    assert watch.slow(5.0) is None
    for _ in range(20):
        assert watch.slow(0.3) is None
    slow = watch.slow(1.3)
    assert slow is not None and (slow.reason, slow.figure, round(slow.limit, 6)) == (LATENCY, 1.3, 1.2)
    assert watch.slow(1.1) is None  # within 4x the median


def test_quick_batches_are_never_slow_however_they_vary():
    watch = LatencyWatch()
    for _ in range(10):
        watch.slow(0.001)
    assert watch.slow(SLOW_FLOOR_S) is None
    assert watch.slow(SLOW_FLOOR_S * 1.1) is not None


def test_the_median_is_of_the_last_batches_only():
    watch = LatencyWatch(window=20)
    for _ in range(20):
        watch.slow(0.1)
    for _ in range(11):  # the server got slower for good: after a while, that is the usual
        watch.slow(2.0)
    assert watch.slow(2.5) is None


def test_a_refusal_is_said_with_its_code_name_and_a_transient_error_is_not_one():
    unauthorized = OperationFailure("not authorized on admin to execute command { replSetGetStatus: 1 }", 13,
                                    {"ok": 0, "code": 13, "codeName": "Unauthorized",
                                     "errmsg": "not authorized on admin to execute command { replSetGetStatus: 1 }"})
    assert refusal("replSetGetStatus", unauthorized) == ("replSetGetStatus refused (Unauthorized: not authorized on "
                                                         "admin to execute command { replSetGetStatus: 1 })")
    stepped_down = OperationFailure("not primary", 10107, {"ok": 0, "code": 10107, "codeName": "NotWritablePrimary"})
    assert refusal("serverStatus", stepped_down) is None
    assert refusal("serverStatus", AutoReconnect("connection reset")) is None


def test_only_a_replica_set_member_has_its_lag_and_flow_control_watched():
    build_info = {"version": "7.0.12"}
    assert profile_of(build_info, {"setName": "rs0", "logicalSessionTimeoutMinutes": 30}).replica_set
    assert not profile_of(build_info, {"msg": "isdbgrid", "logicalSessionTimeoutMinutes": 30}).replica_set  # mongos
    assert not profile_of(build_info, {"isWritablePrimary": True}).replica_set
    assert not profile_of({"version": "7.0.42", "ferretdbVersion": "v1.24.2"}, {"isWritablePrimary": True}).replica_set

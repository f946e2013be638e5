"""Throttling on the server's health (migrator/throttle.py), on the wire: the proxy presents the test server as a
replica set (tests/wire_proxy.py, replica_set=True) and answers replSetGetStatus itself, lagging or refused; flow
control is patched into serverStatus; a batch is held back to make it slow. The runner waits with one line naming
the figure, then goes on, and every document is migrated once."""

import re
import signal
import time
from datetime import UTC, datetime, timedelta

from conftest import HAS, NAME, SCRIPT, assert_nothing_lost, finish, load, run_here, start, without_timestamps
from wire_proxy import Fault, lagging

UNAUTHORIZED = 13
MIGRATED = f"{NAME}: modified 540 documents"  # of the 600 loaded, every tenth has metadata already


def run(env, *args):
    return run_here(SCRIPT, "--batch-size", "50", "--progress-interval", "600", "--throttle-interval", "0.05", *args,
                    env=env)


def lines(result, text: str) -> list[str]:
    return [line for line in without_timestamps(result.output).splitlines() if text in line]


def test_a_lagging_majority_makes_the_runner_wait_then_go_on(db, primary, primary_env):
    before = load(db, 600)
    lag = primary.add(Fault("replSetGetStatus", action="patch", patch=lagging(14), times=3))

    result = run(primary_env, "--max-lag", "5")

    assert result.code == 0, result
    assert lag.fired == 3 and primary.count("replSetGetStatus") >= 4  # asked again until the lag was gone
    said = f"WARNING {NAME}: throttling: replication lag 14.0 s > --max-lag 5 s; waiting"
    assert lines(result, "throttling: replication") == [said], result
    [total] = lines(result, "on the server's health")
    assert re.search(r"throttled \d+\.\d s on the server's health while walking chat_messages \(\d+ waits?\)", total)
    assert lines(result, MIGRATED), result
    assert db.chat_messages.count_documents(HAS) == 600
    assert_nothing_lost(db, before)


def test_a_lag_within_max_lag_throttles_nothing(db, primary, primary_env):
    load(db, 300)
    primary.add(Fault("replSetGetStatus", action="patch", patch=lagging(3), times=100))

    result = run(primary_env, "--max-lag", "5")

    assert result.code == 0, result
    assert primary.count("replSetGetStatus") >= 1
    assert not lines(result, "throttling: replication"), result


def test_flow_control_engaged_makes_the_runner_wait(db, primary, primary_env):
    load(db, 300)
    engaged = {"enabled": True, "targetRateLimit": 500, "isLagged": True, "isLaggedCount": 1}
    primary.add(Fault("serverStatus", action="patch", times=2, patch=lambda body: {**body, "flowControl": engaged}))

    result = run(primary_env)

    assert result.code == 0, result
    said = f"WARNING {NAME}: throttling: flow control engaged on the server (target rate 500 writes/s); waiting"
    assert lines(result, "throttling: flow") == [said], result
    assert db.chat_messages.count_documents(HAS) == 300


def test_a_signal_the_runner_may_not_read_is_said_once_and_the_run_completes(db, primary, primary_env):
    load(db, 600)
    for command in ("replSetGetStatus", "serverStatus"):
        primary.add(Fault(command, action="error", code=UNAUTHORIZED, labels=(), times=1000))

    result = run(primary_env)

    assert result.code == 0, result
    assert lines(result, "is off:") == [
        f"WARNING {NAME}: throttling on replication lag is off: replSetGetStatus refused (Unauthorized: injected by "
        "the test proxy: Unauthorized), and hello says no lastWrite",
        f"WARNING {NAME}: throttling on flow control is off: serverStatus refused (Unauthorized: injected by the test "
        "proxy: Unauthorized)"], result
    assert primary.count("replSetGetStatus") == 1 and primary.count("serverStatus") == 1  # not asked again
    assert lines(result, MIGRATED), result


def test_on_a_standalone_server_a_slow_batch_is_followed_by_a_wait_as_long(db, proxy, proxied_env):
    load(db, 600)
    slow = proxy.add(Fault("update", "chat_messages", nth=8, action="delay", seconds=1.5))

    result = run(proxied_env)

    assert result.code == 0, result
    assert slow.fired == 1
    said = re.compile(rf"WARNING {NAME}: throttling: batch latency (\d\.\d) s > 4x the recent median \(0\.\d\d s\); "
                      r"waiting \1 s")
    waits = lines(result, "throttling:")  # a loaded machine may make another batch slow too: one line each
    assert all(said.fullmatch(line) for line in waits) and any(float(said.fullmatch(line)[1]) >= 1.5
                                                               for line in waits), waits
    assert proxy.count("replSetGetStatus") == 0 and proxy.count("serverStatus") == 0  # FerretDB: latency only
    assert db.chat_messages.count_documents(HAS) == 600


def test_ctrl_c_ends_a_wait_at_once_and_the_next_run_completes(db, primary, primary_env):
    load(db, 300)
    primary.add(Fault("replSetGetStatus", action="patch", patch=lagging(60), times=10**6))  # lagging for good
    process = start(primary_env, "--batch-size", "50", "--throttle-interval", "5")
    deadline = time.monotonic() + 60
    while "throttling: replication lag 60.0 s > --max-lag 10 s; waiting" not in (line := process.stdout.readline()):
        assert line and time.monotonic() < deadline, "no throttling line"
    process.send_signal(signal.SIGINT)
    asked = time.monotonic()
    stopped = finish(process)

    assert stopped.code == 130, stopped
    assert time.monotonic() - asked < 4  # not the 5 s re-check: the wait ended at once
    assert "stopped by SIGINT after 0 documents; nothing written yet" in stopped.output, stopped
    assert db.migrations_lock.find_one({"_id": "lock"})["released_at"] is not None
    primary.clear()

    resumed = run_here(SCRIPT, env=primary_env)

    assert resumed.code == 0, resumed
    assert db.chat_messages.count_documents(HAS) == 300


def test_a_wait_longer_than_the_lease_keeps_the_lock(db, primary, primary_env):
    load(db, 300)
    primary.add(Fault("replSetGetStatus", action="patch", patch=lagging(30), times=25))  # about 6 s of lag

    result = run(primary_env, "--lease", "4", "--throttle-interval", "0.25")

    assert result.code == 0, result
    assert "lost the migration lock" not in result.output, result
    [total] = lines(result, "on the server's health")
    assert float(re.search(r"throttled (\d+\.\d) s", total)[1]) > 4  # longer than the lease, and the run completed
    assert db.chat_messages.count_documents(HAS) == 300


def test_where_replsetgetstatus_is_refused_the_lag_is_read_from_hellos_last_write(db, primary, primary_env):
    load(db, 300)
    primary.add(Fault("replSetGetStatus", action="error", code=UNAUTHORIZED, labels=(), times=1000))

    walking = primary.add(Fault("update", "chat_messages", action="patch", patch=lambda body: body))  # the first batch
    since: list[float] = []

    def last_write(body: dict) -> dict:  # from the first batch on, for half a second, the primary's last write 20 s
        if walking.fired:                 # ahead of its last majority-committed one (the lock reads hello's clock too)
            since[:] = since or [time.monotonic()]
        now, lag = datetime.now(UTC), 20 if since and time.monotonic() - since[0] < 0.5 else 0
        return {**body, "lastWrite": {"lastWriteDate": now, "majorityWriteDate": now - timedelta(seconds=lag)}}
    primary.add(Fault("hello", action="patch", patch=last_write, times=10**6))

    result = run(primary_env, "--max-lag", "5")

    assert result.code == 0, result
    assert since  # the lag was read from hello during the walk
    assert lines(result, "throttling: replication") == [f"WARNING {NAME}: throttling: replication lag 20.0 s > "
                                                        "--max-lag 5 s; waiting"], result
    assert not lines(result, "throttling on replication lag is off"), result
    assert db.chat_messages.count_documents(HAS) == 300

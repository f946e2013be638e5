"""Adaptive batches (migrator/sizing.py) against the real server: a latency injected on the batches' writes (the
wire proxy's delay) shrinks them, its end grows them back, and every document is migrated once, also when a run
stopped half-way resumes at another size. The sizes are read from the --debug line of each batch (BatchDone)."""

import re
import signal

import pytest

from conftest import NAME, SCRIPT, Result, assert_nothing_lost, finish, load, start, wait_for
from wire_proxy import Fault

BATCH_LINE = re.compile(rf"DEBUG\s+{NAME}: batch of ([\d,]+) documents of chat_messages in ([\d.]+) s")


def sizes(result: Result) -> list[int]:
    return [int(size.replace(",", "")) for size, _ in BATCH_LINE.findall(result.output)]


def lacking(before: dict) -> int:
    """The messages without metadata: those the stream path's batches hold."""
    return sum("metadata" not in doc for doc in before.values())


def assert_migrated_once(db, before: dict) -> None:
    assert_nothing_lost(db, before)
    assert db.migrations_changelog.find_one({"name": NAME, "state": "applied"})["modified"] == lacking(before)


def test_slow_writes_shrink_the_batches_and_quick_ones_grow_them_back(db, cli, proxy, proxied_env):
    before = load(db, 600)
    # The stream path's bulks are of 50 updates on FerretDB: the first two of the first batch held back 0.7 s each.
    slow = proxy.add(Fault("update", "chat_messages", action="delay", seconds=0.7, times=2))

    result = cli(SCRIPT, "--debug", "--batch-path", "stream", "--batch-size", "200", "--min-batch-size", "25",
                 "--target-batch-ms", "600", env=proxied_env)

    assert result.code == 0, result
    assert slow.fired == 2
    first, shrunk, *then = sizes(result)
    assert first == 200 and shrunk <= 200 * 0.6 / 1.4, result.output  # scaled by the target over its duration
    assert max(then) >= 2 * shrunk, result.output  # quick again: doubled at least once
    assert first + shrunk + sum(then) == lacking(before)
    assert_migrated_once(db, before)


def test_a_target_of_0_keeps_the_batch_size_however_slow(db, cli, proxy, proxied_env):
    before = load(db, 150)
    proxy.add(Fault("update", "chat_messages", action="delay", seconds=0.2, times=2))

    result = cli(SCRIPT, "--debug", "--batch-path", "stream", "--batch-size", "50", "--min-batch-size", "10",
                 "--target-batch-ms", "0", env=proxied_env)

    assert result.code == 0, result
    assert sizes(result) == [50, 50, 35]
    assert_migrated_once(db, before)


def test_a_run_stopped_after_shrinking_resumes_at_another_size_with_every_document_once(db, cli, proxy, proxied_env):
    before = load(db, 400)
    # Every bulk of the stream path's batches slow: they shrink to --min-batch-size; stopped after a few of those.
    proxy.add(Fault("update", "chat_messages", action="delay", seconds=0.15, times=1000))
    process = start(proxied_env, "--debug", "--batch-path", "stream", "--batch-size", "100", "--min-batch-size",
                    "10", "--target-batch-ms", "100")
    wait_for(lambda: (db.migrations_checkpoints.find_one({"batches": {"$gte": 4}}) is not None), "four batches",
             process)
    process.send_signal(signal.SIGINT)
    stopped = finish(process)
    assert stopped.code == 130, stopped
    first, *then = sizes(stopped)
    assert first == 100 and then[0] <= 50 and min(then) == 10, stopped  # at least halved, down to the minimum
    done = db.migrations_checkpoints.find_one()["scanned"]
    assert 0 < done < lacking(before)

    proxy.clear()
    resumed = cli(SCRIPT, "--debug", "--batch-path", "stream", "--batch-size", "70", env=proxied_env)

    assert resumed.code == 0, resumed
    assert f"resuming from the checkpoint: {done:,} documents of chat_messages were done" in resumed.output
    assert sum(sizes(resumed)) == lacking(before) - done and max(sizes(resumed)) == 70
    assert_migrated_once(db, before)


@pytest.mark.parametrize("action", ["error", "wce"])  # NotWritablePrimary; a write-concern timeout (code 64)
def test_a_batch_sent_again_halves_the_next_however_quick(db, cli, proxy, proxied_env, action):
    before = load(db, 300)
    code = 10107 if action == "error" else 64
    failed = proxy.add(Fault("update", "chat_messages", action=action, code=code))

    result = cli(SCRIPT, "--debug", "--batch-path", "stream", "--batch-size", "100", "--target-batch-ms", "60000",
                 env=proxied_env)

    assert result.code == 0, result
    assert failed.fired == 1 and "retrying in" in result.output
    assert sizes(result) == [100, 50, 100, 20], result.output  # then quick: doubled back
    assert_nothing_lost(db, before)  # the write that met the write-concern timeout landed: `modified` a lower bound

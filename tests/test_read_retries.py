"""The reads that finish the job ride out failovers like the writes do: the verification after `up`, the backup's
read of the documents (its find and its getMores), through the fault-injecting wire proxy (tests/wire_proxy.py).
The driver retries a read once by itself; two errors in a row, or a getMore (never retried by the driver), reach
the toolkit."""

import gzip
import json
import time

import bson

from conftest import HAS, RUNNER, SCRIPT, assert_nothing_lost, load, run_here, the_error
from wire_proxy import Fault

NOT_WRITABLE_PRIMARY = 10107


def retries(result) -> list[str]:
    return [line for line in result.output.splitlines() if "retrying in" in line]


def test_two_errors_in_a_row_on_the_verification_are_retried(db, env, proxy):
    before = load(db, 300)
    fault = proxy.add(Fault("aggregate", "chat_messages", times=2, code=NOT_WRITABLE_PRIMARY))

    result = run_here(SCRIPT, "--progress-interval", "600", env={**env, "MONGODB_URL": proxy.url})

    assert result.code == 0, result
    assert fault.fired == 2
    assert len(retries(result)) == 1 and "verify" in retries(result)[0], result
    assert_nothing_lost(db, before)


def test_a_backup_read_that_fails_twice_then_loses_a_getmore_is_read_again_and_exact(db, env, proxy, tmp_path):
    before = load(db, 1_000)  # more than a find's first batch (101): the backup's read needs getMores
    lacking = {doc["_id"]: doc for doc in db.chat_messages.find({"metadata": {"$exists": False}}, sort=[("_id", 1)])}
    backup_read = lambda body: "projection" not in body  # noqa: E731 (the stream path reads _ids with one)
    finds = proxy.add(Fault("find", "chat_messages", times=2, code=NOT_WRITABLE_PRIMARY, match=backup_read))
    get_more = proxy.add(Fault("getMore", None, action="drop", after=finds,
                               match=lambda body: body.get("collection") == "chat_messages"))

    result = run_here(SCRIPT, "--backup", "--progress-interval", "600",
                      env={**env, "MONGODB_URL": proxy.url, "MIGRATIONS_BACKUP_DIR": str(tmp_path)})

    assert result.code == 0, result
    assert (finds.fired, get_more.fired) == (2, 1)
    assert len(retries(result)) == 2, result
    [backup] = tmp_path.glob("*.bson.gz")
    with gzip.open(backup, "rb") as stream:
        manifest = json.loads(stream.readline())
        saved = list(bson.decode_file_iter(stream))
    assert manifest["count"] == len(saved) == len(lacking)
    as_saved = sorted(bson.encode(doc) for doc in saved)
    assert as_saved == sorted(bson.encode(doc) for doc in lacking.values())  # each once, byte for byte as it was
    assert_nothing_lost(db, before)
    assert db.chat_messages.count_documents(HAS) == len(before)


def test_retry_for_bounds_the_whole_wait_for_a_server_that_went_away(db, env, proxy):
    load(db, 300)
    gone = proxy.add(Fault("update", "chat_messages", action="drop"))  # then the server answers nothing more
    for command in ("hello", "ping", "find", "aggregate", "update", "insert", "getMore", "findAndModify", "delete"):
        proxy.add(Fault(command, None, action="drop", times=10**6, after=gone))

    started = time.monotonic()
    result = run_here(RUNNER, "--all", "--retry-for", "5", "--progress-interval", "600",
                      env={**env, "MONGODB_URL": proxy.url})

    assert time.monotonic() - started < 20, result  # each try used to wait 30 s for a server
    assert result.code == 1, result
    error = the_error(result)
    assert "still fails after 5 s of retries (--retry-for)" in error and "Topology Description" not in result.output

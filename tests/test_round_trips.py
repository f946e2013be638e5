"""What a batched backfill costs on the wire, counted by PyMongo's command monitoring (bench/command_totals.py
runs the toolkit with a listener on): the range path's round trips and bytes a batch, the stream path's id read
(progress, --max-rate)."""

import asyncio
import json
import re
import subprocess
import sys
import uuid

import pytest
from pymongo import AsyncMongoClient

from conftest import MIGRATIONS, REPO, Result, plant_lock
from migrator.checkpoints import Checkpoints
from sample_messages import chat_messages

SCRIPT = MIGRATIONS / "add_metadata_to_chat_messages.py"
NAME = "add_metadata_to_chat_messages"
OBJECT_ID_BYTES = 17  # an `_id` element holding an ObjectId, alone: what reading a batch's ids costs per document


def counted(env, tmp_path, *args) -> tuple[Result, dict]:
    """Run the migration on its own, its commands counted; (result, totals)."""
    totals = tmp_path / f"totals-{uuid.uuid4().hex[:8]}.json"
    completed = subprocess.run([sys.executable, str(REPO / "bench" / "command_totals.py"), str(SCRIPT), *args],
                               env={**env, "BENCH_COMMAND_TOTALS": str(totals)}, capture_output=True, text=True,
                               timeout=180)
    return Result(completed), json.loads(totals.read_text())


def fresh_messages(db, count: int) -> None:
    """`count` messages, none migrated, no trace of an earlier run."""
    for collection in ("chat_messages", "migrations_changelog", "migrations_checkpoints"):
        db[collection].drop()
    db.chat_messages.insert_many(chat_messages(count, with_metadata_every=0))


def commands(totals: dict, name: str) -> int:
    return totals["by_command"].get(name, {}).get("count", 0)


@pytest.mark.slow
def test_the_range_path_costs_three_round_trips_a_batch_and_reads_no_ids_back(db, env, tmp_path):
    # Two runs that differ by five full batches of 100; each ends with a partial batch of 50. The start-up
    # (settings, lock, changelog, verification) is the same in both; a lease of 600 s renews nothing meanwhile.
    run = ("--batch-path", "range", "--batch-size", "100", "--target-batch-ms", "0", "--lease", "600",
           "--progress-interval", "600")  # fixed batches: their count is what is measured
    fresh_messages(db, 250)
    plant_lock(db, expires_in_s=-10)  # both runs take the lock over (the first one does not create it): one start-up
    short, short_totals = counted(env, tmp_path, *run)
    assert short.code == 0, short
    fresh_messages(db, 750)
    long, long_totals = counted(env, tmp_path, *run)
    assert long.code == 0, long
    assert db.chat_messages.count_documents({"metadata": None}) == 750

    batches = 5
    # --pause/--cancel requests are read at most once a second (migrator.control), not per batch: left out
    paced = {name: totals["by_target"].get("find migrations_control", 0) for name, totals in
             (("short", short_totals), ("long", long_totals))}
    per_batch = {name: (commands(long_totals, name) - commands(short_totals, name)
                        - (paced["long"] - paced["short"] if name == "find" else 0)) / batches
                 for name in long_totals["by_command"]}
    assert (long_totals["commands"] - short_totals["commands"] - paced["long"] + paced["short"]) / batches <= 3, \
        per_batch
    # the batch's bound (one find), its update_many and its checkpoint (two updates); no cursor, no clock read
    assert {name: n for name, n in per_batch.items() if n} == {"find": 1, "update": 2}, per_batch
    # the start-up and the last, partial batch cost a fixed amount: the whole short run (3 batches) stays small
    # (+ 2: the changelog's two entries each take their number from the lock: migrator.lock.MigrationLock.stamp;
    # + 1: the walk's end, the collection's last `_id` when it begins; + 1: `hello`, for the profile's topology;
    # the --pause/--cancel reads, paced by time, are counted apart: one before the first batch, then one a second)
    assert short_totals["commands"] - paced["short"] <= 3 * 3 + 34, short_totals["by_command"]
    assert paced["short"] >= 1, paced
    received = (long_totals["received"] - short_totals["received"]) / batches
    assert received < 100 * OBJECT_ID_BYTES, f"{received:.0f} bytes received a batch: its ids came back"
    assert (long_totals["sent"] - short_totals["sent"]) / batches < 100 * OBJECT_ID_BYTES


def test_the_stream_path_shows_progress_and_keeps_to_max_rate_while_it_reads_the_ids(db, env, tmp_path):
    db.chat_messages.insert_many(chat_messages(240, with_metadata_every=0))
    result, totals = counted(env, tmp_path, "--batch-path", "stream", "--batch-size", "120", "--max-rate", "120",
                             "--progress-interval", "0.001")

    assert result.code == 0, result
    assert db.chat_messages.count_documents({"metadata": None}) == 240
    reading = re.findall(rf"INFO    {NAME}, reading the _ids: ([\d,]+) ids, ([\d,]+) ids/s$", result.output,
                         re.MULTILINE)
    counts = [int(count.replace(",", "")) for count, _ in reading]
    assert counts[:2] == [120, 240] and counts[-1] == 240, result  # while it reads, then the total
    first_batch = result.output.index(f"INFO    {NAME}: 120 of 240 documents")
    assert result.output.index("reading the _ids: 240 ids") < first_batch
    # 240 ids at 120 a second: the second getMore waits a second, the end another one
    assert int(reading[-1][1].replace(",", "")) <= 126, result
    assert commands(totals, "getMore") >= 1  # read in getMores of about a second's worth


def test_a_checkpoint_saves_what_changed_and_is_saved_whole_again_if_it_was_removed(server_url, db_name, db):
    identity = {"collection": "items", "checksum": "c1", "work": "w1", "path": "range"}

    async def saves() -> None:
        client = AsyncMongoClient(server_url, tz_aware=True)
        try:
            checkpoints = Checkpoints(client[db_name])
            await checkpoints.save("m", 1, **identity, last_id=1, scanned=1, done=False)
            await checkpoints.save("m", 1, **identity, last_id=True, scanned=2, done=False)  # True == 1 in Python
            assert db.migrations_checkpoints.find_one()["last_id"] is True
            db.migrations_checkpoints.delete_many({})  # as a clear by another part of the runner would
            await checkpoints.save("m", 1, **identity, last_id="z", scanned=3, done=False)
        finally:
            await client.close()
    asyncio.run(saves())

    saved = db.migrations_checkpoints.find_one()
    at, started_at = saved.pop("at"), saved.pop("started_at")
    # saved whole again: the rate is measured from this save (started_at, started_from)
    assert saved == {"_id": "m/1", "migration": "m", "step": 1, **identity, "last_id": "z", "scanned": 3, "done": False,
                     "started_from": 3}
    assert abs((at - started_at).total_seconds()) < 1
    server_time = db.command("hello")["localTime"]
    assert abs((server_time.replace(tzinfo=at.tzinfo) - at).total_seconds()) < 30  # the server's clock

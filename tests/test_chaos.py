"""--selftest NAME --chaos (issue 25): a migration's runs with one fault on the wire at a time, against the real
server. Every run must leave the database exactly as it was, scratch collections included."""

import asyncio
import json
import re
import signal
from collections import Counter
from urllib.parse import urlsplit

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from conftest import contents, finish, proving_folder, selftest, start, the_error, verdicts, wait_for
from conftest import write_proving_migration as write
from migrator.scratch import PREFIX
from migrator.wire import FaultProxy, Write
from sample_messages import chat_messages

RUNNER = "run_migrations.py"
EXISTING = "add_metadata_to_chat_messages"

KINDS = ("connection cut before it", "reply lost after it", "process killed after it")

# A batched `up` whose first walk uses $inc, the second marking what it did: `up` again changes nothing (the plain
# self-test passes), but a batch sent again after a lost reply, or done again after a crash, counts twice.
BUMP = '''
    async def up(db, batches):
        await batches.update_many("chat_messages", {"stage": {"$exists": False}}, {"$inc": {"views": 1}})
        return await batches.update_many("chat_messages", {"stage": {"$exists": False}}, {"$set": {"stage": 1}})

    async def verify(db):
        return await db.chat_messages.count_documents({"stage": {"$exists": False}}) == 0

    async def rollback(db, batches):
        return await batches.update_many("chat_messages", {"stage": 1}, {"$unset": {"views": "", "stage": ""}})
    '''

# `up` is safe (one update a document, its filter checked again at each write); the rollback first takes the bonus
# back from the score of the documents still marked, then removes the mark: sent again, the first step reads marks
# it has not removed yet and takes the bonus back twice.
TAKE_BACK = '''
    async def up(db, batches):
        return await batches.update_many("chat_messages", {"bonus": {"$exists": False}},
                                         {"$set": {"bonus": 10}, "$inc": {"score": 10}}, recheck_filter=True)

    async def verify(db):
        return await db.chat_messages.count_documents({"bonus": {"$exists": False}}) == 0

    async def rollback(db, batches):
        await batches.update_many("chat_messages", {"bonus": 10}, {"$inc": {"score": -10}})
        return await batches.update_many("chat_messages", {"bonus": 10}, {"$unset": {"bonus": ""}})
    '''


@pytest.fixture
def folder(tmp_path, env):
    return proving_folder(tmp_path, env)


def chaos(cli, folder, name: str, *args: str):
    return selftest(cli, folder, name, "--chaos", *args)


def points(result) -> list[str]:
    """The verdicts of the fault points (after the four checks)."""
    return verdicts(result)[4:]


def scratch_left(db) -> list[str]:
    return [name for name in db.list_collection_names() if name.startswith(PREFIX)]


def test_the_shipped_migration_passes_every_fault_point_and_leaves_the_database_as_it_was(mongo, db, cli):
    db.chat_messages.insert_many(chat_messages(60, with_metadata_every=5))
    before = contents(mongo, db)

    result = cli(RUNNER, "--selftest", EXISTING, "--chaos", "--faults", "12")

    assert result.code == 0, result
    lines = points(result)
    assert len(lines) == 12 and all(line.startswith("PASS  ") for line in lines), result
    assert Counter(kind for line in lines for kind in KINDS if kind in line) == {kind: 4 for kind in KINDS}
    assert sum(line.startswith("PASS  rollback, ") for line in lines) == 6, result
    assert any("killed; a fresh run went on from there; all 60 documents as without faults" in line
               for line in lines), result
    assert re.search(r"self-test and chaos check passed: 12 fault points \(up: \d+ writes, rollback: \d+ writes\)",
                     result.stderr), result
    assert contents(mongo, db) == before and not scratch_left(db)


def test_a_batched_inc_fails_on_the_lost_reply_naming_the_doubled_field(mongo, db, cli, folder):
    write(folder, "bump_views", BUMP)
    db.chat_messages.insert_many(chat_messages(40))
    before = contents(mongo, db)

    result = chaos(cli, folder, "bump_views", "--faults", "6")

    assert result.code == 4, result
    assert not [line for line in verdicts(result)[:4] if line.startswith("FAIL")], result  # the plain self-test passes
    failed = [line for line in points(result) if line.startswith("FAIL")]
    assert failed and all(line.startswith("FAIL  up, ") for line in failed), result
    lost = "FAIL  up, reply lost after it (update chat_messages 3 of 8): "
    assert any(line.startswith(lost) for line in failed), result
    assert re.search(re.escape(lost) + r".*\n      chat_messages _id=ObjectId\('[0-9a-f]{24}'\): without faults -> "
                     r"with this fault\n        ~ views: 1 -> 2\n", result.stdout), result.stdout
    assert ("this up's update is not idempotent: `$inc` ran twice on views when the write was sent again: $set the "
            "value it computes, or filter out the documents it already changed") in result.stdout
    error = the_error(result)
    assert ("bump_views: chaos check failed: 1 of 6 fault points leave documents unlike a run without faults; first: "
            "up, reply lost after it (update chat_messages 3 of 8): this up's update is not idempotent: `$inc` ran "
            "twice on views") in error, error
    assert contents(mongo, db) == before and not scratch_left(db)


def test_a_rollback_that_reads_what_it_already_changed_fails_on_the_rollback(mongo, db, cli, folder):
    write(folder, "score_bonus", TAKE_BACK)
    db.chat_messages.insert_many([{**message, "score": 5} for message in chat_messages(40)])
    before = contents(mongo, db)

    result = chaos(cli, folder, "score_bonus", "--faults", "6")

    assert result.code == 4, result
    assert not [line for line in verdicts(result)[:4] if line.startswith("FAIL")], result  # reversible without faults
    up = [line for line in points(result) if " up, " in line]
    rollback = [line for line in points(result) if " rollback, " in line]
    assert len(up) == 3 and all(line.startswith("PASS") for line in up), result
    assert any(line.startswith("FAIL  rollback, reply lost after it (update chat_messages") for line in rollback), \
        result
    assert "        ~ score: 5 -> -5\n" in result.stdout, result.stdout
    assert "this rollback's update is not idempotent: `$inc` ran twice on score" in result.stdout
    assert "first: rollback, " in the_error(result)
    assert contents(mongo, db) == before and not scratch_left(db)


def test_json_names_each_point_its_fault_and_the_fields_that_differ(db, cli, folder):
    write(folder, "bump_views", BUMP)
    db.chat_messages.insert_many(chat_messages(40))

    result = chaos(cli, folder, "bump_views", "--faults", "6", "--json")

    assert result.code == 4, result
    report = json.loads(result.stdout)
    assert report["passed"] is False and len(report["checks"]) == 4  # the exit code's verdict
    assert all(check["ok"] is not False for check in report["checks"])  # the four checks pass
    found = report["chaos"]
    assert found["passed"] is False and found["writes"] == {"up": 8, "rollback": 4}
    assert [(p["action"], p["fault"], p["nth"]) for p in found["points"][:2]] == [("up", "cut", 1),
                                                                                 ("rollback", "cut", 1)]
    lost = next(p for p in found["points"] if p["fault"] == "lost_reply" and p["action"] == "up")
    assert lost["ok"] is False and lost["command"] == "update" and lost["collection"] == "chat_messages"
    assert lost["of"] == 8 and lost["differing"] == 10  # the batch sent again: 40 documents in 4 batches a walk
    assert lost["documents"][0]["changes"] == [{"field": "views", "change": "changed", "before": 1, "after": 2}]
    assert "`$inc` ran twice on views" in lost["advice"]


def test_a_field_that_differs_from_run_to_run_is_not_a_fault(mongo, db, cli, folder):
    write(folder, "stamp", '''
        from datetime import datetime, UTC

        async def up(db):
            return await db.chat_messages.update_many({"migrated_at": {"$exists": False}},
                                                      {"$set": {"migrated_at": datetime.now(UTC)}})

        async def verify(db):
            return await db.chat_messages.count_documents({"migrated_at": {"$exists": False}}) == 0

        async def rollback(db):
            return await db.chat_messages.update_many({}, {"$unset": {"migrated_at": ""}})
        ''')
    db.chat_messages.insert_many(chat_messages(20))

    result = chaos(cli, folder, "stamp", "--faults", "6")

    assert result.code == 0, result
    assert len(points(result)) == 6, result
    assert ("stamp: not compared, as they differ from one run without faults to the next: "
            "chat_messages.migrated_at") in result.stderr


def test_a_write_around_the_scratch_copies_is_refused_on_the_wire(mongo, db, cli, folder):
    write(folder, "sneaky", '''
        async def up(db):
            return await db.client[db.name].chat_messages.update_many({}, {"$set": {"sneaked": 1}})

        async def verify(db):
            return True
        ''')
    db.chat_messages.insert_many(chat_messages(10))
    before = contents(mongo, db)

    result = chaos(cli, folder, "sneaky")

    assert result.code == 4, result
    assert "the chaos check writes only scratch copies" in the_error(result), result
    assert contents(mongo, db) == before and not scratch_left(db)


@pytest.mark.parametrize("args, said", [
    (("--faults", "5"), "--faults goes with --chaos"),
    (("--chaos", "--faults", "0"), "--faults"),
    (("--chaos", "--faults", "many"), "--faults"),
    (("--chaos", "--faults", ""), "--faults"),
    (("--chaos", "--sample", "-3"), "--sample"),
])
def test_bad_chaos_flags_are_one_line_and_exit_2(db, cli, args, said):
    result = cli(RUNNER, "--selftest", EXISTING, *args)
    assert result.code == 2, result
    assert said in result.stderr and "Traceback" not in result.output, result


@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopping_mid_chaos_leaves_no_scratch_collection(mongo, db, env, folder, tmp_path, stop, code):
    marks = tmp_path / "runs"
    write(folder, "slow_seen", f'''
        async def up(db):
            with open({str(marks)!r}, "a") as runs:
                runs.write("up\\n")
            await db.chat_messages.update_many({{"seen": {{"$exists": False}}}}, {{"$set": {{"seen": 1}}}})
            await asyncio.sleep(0.5)

        async def verify(db):
            return await db.chat_messages.count_documents({{"seen": {{"$exists": False}}}}) == 0

        async def rollback(db):
            return await db.chat_messages.update_many({{}}, {{"$unset": {{"seen": ""}}}})
        ''')
    db.chat_messages.insert_many(chat_messages(20))
    before = contents(mongo, db)
    process = start(env, "--selftest", "slow_seen", "--chaos", "--migrations-dir", str(folder), script=RUNNER)
    try:  # two runs of the self-test, then the chaos check's first
        wait_for(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 3, "a run with a fault", process)
        process.send_signal(stop)
        result = finish(process, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert result.code == code, result
    assert "Traceback" not in result.output
    assert contents(mongo, db) == before and not scratch_left(db)


def test_the_proxy_refuses_a_write_outside_the_scratch_prefix_and_counts_the_writes(server_url, db):
    host, port = urlsplit(server_url).hostname, urlsplit(server_url).port

    async def attempt() -> tuple[str, list[Write]]:
        async with FaultProxy((host, port), only="_selftest_ab_") as proxy:
            client = AsyncMongoClient(*proxy.address, directConnection=True)
            try:
                database = client[db.name]
                await database["_selftest_ab_chat_messages"].insert_one({"n": 1})
                with pytest.raises(OperationFailure) as refused:
                    await database.chat_messages.insert_one({"n": 1})
                return str(refused.value), proxy.writes
            finally:
                await client.close()

    refusal, writes = asyncio.run(attempt())
    assert "the chaos check writes only scratch copies (_selftest_ab_*), not chat_messages" in refusal
    assert writes == [Write("insert", "_selftest_ab_chat_messages", 1), Write("insert", "chat_messages", 1)]
    assert "chat_messages" not in db.list_collection_names()


def test_a_run_that_fails_before_its_fault_point_fails_the_point(db, cli, folder, tmp_path):
    calls = tmp_path / "calls"
    write(folder, "flaky", f'''
        async def up(db):
            with open({str(calls)!r}, "a") as seen:
                seen.write("up\\n")
            if len(open({str(calls)!r}).read().splitlines()) > 2:  # after the self-test's two runs
                raise RuntimeError("not the same twice")
            return await db.chat_messages.update_many({{"seen": {{"$exists": False}}}}, {{"$set": {{"seen": 1}}}})

        async def verify(db):
            return await db.chat_messages.count_documents({{"seen": {{"$exists": False}}}}) == 0
        ''')
    db.chat_messages.insert_many(chat_messages(10))

    result = chaos(cli, folder, "flaky")

    assert result.code == 4, result
    assert "FAIL  up, connection cut before it (update chat_messages 1 of 1): the run failed before it, without a " \
        "fault: flaky: up failed on the scratch copies: RuntimeError: not the same twice" in result.stdout, result
    assert "chaos check passed" not in result.output

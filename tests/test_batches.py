"""Backfills in batches: both server paths, checkpoints, resuming after a signal or kill -9, throttle,
progress lines. Each test forces the path with --batch-path, so both run on any server."""

import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MIGRATIONS, REPO, Result, the_error
from sample_messages import chat_messages

SCRIPT = "add_metadata_to_chat_messages.py"
NAME = "add_metadata_to_chat_messages"
PATHS = ["range", "stream"]
PROGRESS_LINE = re.compile(rf"INFO    {NAME}: [\d,]+( of ~?[\d,]+)? documents( \(\d+%\))?, [\d,]+ docs/s"
                           r"(, [\d.]+ (s|min|h) left)?; [\d,]+ modified$", re.MULTILINE)


def load(db, count: int, every: int = 10) -> dict:
    db.chat_messages.insert_many(chat_messages(count, with_metadata_every=every))
    return {doc["_id"]: doc for doc in db.chat_messages.find()}


def assert_migrated_once(db, before: dict) -> None:
    """Every message lacking metadata has it as null, the others are as they were, none gained or lost."""
    after = {doc["_id"]: doc for doc in db.chat_messages.find()}
    assert after.keys() == before.keys()
    for _id, old in before.items():
        assert after[_id] == (old if "metadata" in old else {**old, "metadata": None})
    assert db.migrations_checkpoints.count_documents({}) == 0
    applied = list(db.migrations_changelog.find({"name": NAME, "state": "applied"}))
    assert len(applied) == 1
    assert applied[0]["modified"] == sum("metadata" not in doc for doc in before.values())


def start(env, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(MIGRATIONS / SCRIPT), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> Result:
    output, _ = process.communicate(timeout=120)
    return Result(subprocess.CompletedProcess(process.args, process.returncode, output, ""))


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("path", PATHS)
def test_each_path_migrates_every_document_once_in_batches(db, cli, path):
    before = load(db, 95)

    result = cli(SCRIPT, "--batch-path", path, "--batch-size", "10")

    assert result.code == 0, result
    assert_migrated_once(db, before)
    assert "; 85 modified" in result.output
    assert db.migrations_changelog.find_one({"state": "applied"})["matched"] == 85


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_at_a_batch_boundary_and_the_next_run_resumes(db, cli, env, path, signal_number, exit_code):
    before = load(db, 200, every=4)
    process = start(env, "--batch-path", path, "--batch-size", "20", "--max-rate", "150")
    wait_for(lambda: db.migrations_checkpoints.find_one() or process.poll() is not None, "the first checkpoint")
    process.send_signal(signal_number)
    stopped = finish(process)

    assert stopped.code == exit_code, stopped
    name = signal.Signals(signal_number).name
    assert f"stopped by {name} after" in stopped.output and "run the same command again to resume" in stopped.output
    assert "Traceback" not in stopped.output
    checkpoint = db.migrations_checkpoints.find_one()
    assert checkpoint["done"] is False and checkpoint["scanned"] % 20 == 0 and 0 < checkpoint["scanned"] < 200
    migrated = [doc for doc in db.chat_messages.find() if "metadata" not in before[doc["_id"]] and "metadata" in doc]
    assert len(migrated) == checkpoint["modified"]  # stopped at the boundary: nothing half-done
    assert all(doc["_id"] <= checkpoint["last_id"] for doc in migrated)
    assert db.migrations_lock.find_one({"_id": "lock"})["released_at"] is not None
    status = cli("run_migrations.py", "--status")
    assert re.search(rf"{NAME} .* failed .*resumable: {checkpoint['scanned']} documents done", status.output), status

    resumed = cli(SCRIPT, "--batch-path", path, "--batch-size", "20")

    assert resumed.code == 0, resumed
    done = checkpoint["scanned"]
    assert f"resuming from the checkpoint: {done} documents of chat_messages were done" in resumed.output
    assert_migrated_once(db, before)
    assert "resumable" not in cli("run_migrations.py", "--status").output


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_batch_loses_nothing_and_the_next_run_completes(db, cli, env):
    before = load(db, 1500, every=0)
    # One batch: every kill is mid-batch. A short lease, so that the next run can take the dead one's lock.
    process = start(env, "--batch-path", "stream", "--batch-size", "1500", "--lease", "2")
    wait_for(lambda: db.chat_messages.find_one({"metadata": {"$exists": True}}) or process.poll() is not None,
             "the first migrated message")
    process.kill()
    process.wait()

    assert process.returncode == -signal.SIGKILL, finish(process)
    assert db.migrations_checkpoints.find_one() is None  # the batch never completed
    half_done = db.chat_messages.count_documents({"metadata": {"$exists": True}})
    assert 0 < half_done < 1500

    resumed = cli(SCRIPT, "--batch-path", "stream", "--lock-timeout", "30")

    assert resumed.code == 0, resumed
    after = {doc["_id"]: doc for doc in db.chat_messages.find()}
    assert after == {_id: {**old, "metadata": None} for _id, old in before.items()}
    assert db.migrations_checkpoints.count_documents({}) == 0


def final_rate(output: str) -> int:
    return int(re.findall(r"([\d,]+) docs/s", output)[-1].replace(",", ""))


def test_max_rate_slows_the_run_down(db, cli):
    load(db, 300, every=0)
    result = cli(SCRIPT, "--batch-size", "50", "--max-rate", "200")

    assert result.code == 0, result
    # 300 documents in batches of 50 at 200/s: the last batch starts after 1.25 s, so about 240/s at most
    assert final_rate(result.output) <= 260, result


@pytest.mark.parametrize("path", PATHS)
def test_progress_without_a_terminal_is_one_plain_line_at_a_time(db, cli, path):
    load(db, 120)
    result = cli(SCRIPT, "--batch-path", path, "--batch-size", "10", "--progress-interval", "0.001")

    assert result.code == 0, result
    lines = PROGRESS_LINE.findall(result.output)
    assert len(lines) >= 5, result
    assert "\x1b[" not in result.output and "\r" not in result.output  # no terminal codes in logs
    estimated = "of ~" in result.output
    assert estimated == (path == "range")  # the range path knows the total only from the cheap estimate


def test_progress_in_a_terminal_is_a_bar_with_counts_rate_and_time_left(db, env):
    before = load(db, 300, every=0)
    master, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, str(MIGRATIONS / SCRIPT), "--batch-size", "20", "--max-rate", "200"],
                               stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                               env={**env, "COLUMNS": "150"})
    os.close(terminal)
    shown = b""
    while True:  # until the terminal closes with the process
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert process.wait(timeout=60) == 0, shown.decode(errors="replace")

    screen = shown.decode(errors="replace")
    assert "\x1b[" in screen  # drawn, not logged
    assert re.search(r"\b\d+/300\b", screen), screen  # documents done of the total
    assert re.search(r"[\d,]+ docs/s", screen) and re.search(r"\d+:\d\d:\d\d", screen), screen  # rate, time left
    assert len(before) == db.chat_messages.count_documents({"metadata": None})


def test_write_concern_majority_is_accepted(db, cli):
    before = load(db, 30)
    result = cli("run_migrations.py", "--all", "--write-concern", "majority", "--batch-size", "7")
    assert result.code == 0, result
    assert_migrated_once(db, before)


def test_a_checkpoint_of_another_version_of_the_migration_is_not_used(db, cli):
    before = load(db, 40)
    db.migrations_checkpoints.insert_one({"_id": f"{NAME}/1", "migration": NAME, "step": 1, "checksum": "old",
                                          "collection": "chat_messages", "last_id": max(before), "scanned": 40,
                                          "matched": 36, "modified": 36, "batches": 1, "done": False})
    result = cli(SCRIPT)
    assert result.code == 0, result
    assert "left by another version of the migration: starting over" in result.output
    assert_migrated_once(db, before)


def test_ids_of_several_types_are_all_reached_on_the_range_path(db, cli):
    db.chat_messages.insert_many([{"_id": 5, "n": 1}, {"_id": "b", "n": 2}, {"n": 3}, {"_id": 2.5, "n": 4}])
    result = cli(SCRIPT, "--batch-path", "range", "--batch-size", "2")
    assert result.code == 0, result
    assert "has _ids of more than one type" in result.output
    assert db.chat_messages.count_documents({"metadata": None}) == 4


def test_a_boolean_id_is_a_type_of_its_own_not_a_number(db, cli):
    db.chat_messages.insert_many([{"_id": 1}, {"_id": 2}, {"_id": True}])
    result = cli(SCRIPT, "--batch-path", "range", "--batch-size", "1")
    assert result.code == 0, result
    assert db.chat_messages.count_documents({"metadata": None}) == 3


def test_a_resume_on_the_stream_path_reaches_the_ids_of_every_type(db, cli, env):
    db.chat_messages.insert_many([{"_id": n} for n in range(60)] + [{"_id": f"s{n:02}"} for n in range(60)])
    process = start(env, "--batch-path", "stream", "--batch-size", "10", "--max-rate", "40")
    wait_for(lambda: db.migrations_checkpoints.find_one() or process.poll() is not None, "the first checkpoint")
    process.send_signal(signal.SIGINT)
    assert finish(process).code == 130
    assert isinstance(db.migrations_checkpoints.find_one()["last_id"], int)  # numbers sort before strings

    resumed = cli(SCRIPT, "--batch-path", "stream")

    assert resumed.code == 0, resumed
    assert db.chat_messages.count_documents({"metadata": None}) == 120


def test_the_server_chooses_the_path(db, cli):
    load(db, 30)
    result = cli(SCRIPT, "--batch-size", "10")
    assert result.code == 0, result
    on_ferretdb = "ferretdbVersion" in db.client.admin.command("buildInfo")
    assert ("reading the _ids of the documents to change" in result.output) == on_ferretdb, result


FAILS_VERIFY = '''"""Sets a; its verify fails while FAIL_VERIFY is set.

Date: 2025-01-01
"""
import os


async def up(db, batches):
    return await batches.update_many("items", {"a": {"$exists": False}}, {"$set": {"a": 1}})


async def verify(db):
    return not os.environ.get("FAIL_VERIFY") and await db.items.count_documents({"a": {"$exists": False}}) == 0
'''


def test_a_run_whose_verification_fails_leaves_no_checkpoint_to_skip_work_with(db, cli, env, tmp_path):
    (tmp_path / "sets_a.py").write_text(FAILS_VERIFY)
    db.items.insert_many([{"n": i} for i in range(30)])
    runner = ("run_migrations.py", "--all", "--migrations-dir", str(tmp_path), "--batch-size", "10")

    failed = cli(*runner, env={**env, "FAIL_VERIFY": "1"})
    assert failed.code == 1 and "sets_a: verification failed after it ran" in failed.output, failed
    assert db.migrations_checkpoints.count_documents({}) == 0  # the next run starts over, not "done"

    db.items.update_many({}, {"$unset": {"a": ""}})  # as if the work had been undone meanwhile
    again = cli(*runner)
    assert again.code == 0, again
    assert db.items.count_documents({"a": 1}) == 30


@pytest.mark.parametrize("count", [100, 7])  # a whole number of batches; fewer than one batch
def test_the_range_path_counts_the_last_batch_right(db, cli, count):
    before = load(db, count, every=0)
    result = cli(SCRIPT, "--batch-path", "range", "--batch-size", "10")

    assert result.code == 0, result
    assert_migrated_once(db, before)
    assert f"{NAME}: {count} of ~{count} documents (100%)" in result.output, result
    assert db.migrations_changelog.find_one({"state": "applied"})["matched"] == count


def test_a_signal_during_the_paced_id_read_stops_at_once_with_nothing_written(db, env):
    load(db, 400, every=0)
    process = start(env, "--batch-path", "stream", "--max-rate", "40", "--progress-interval", "0.001")
    wait_for_line = time.monotonic() + 60
    while "reading the _ids: 40 ids" not in (line := process.stdout.readline()):  # 10 s of reading at 40/s
        assert line and time.monotonic() < wait_for_line, "no progress line while the ids are read"
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    stopped = finish(process)

    assert stopped.code == 130, stopped
    assert time.monotonic() - started < 5  # not after the rest of the read
    assert "stopped by SIGINT after 0 documents; nothing written yet" in stopped.output, stopped
    assert db.chat_messages.count_documents({"metadata": {"$exists": True}}) == 0


# ----- computed backfills: batches.update_each ------------------------------------------------------------

EXAMPLE = REPO / "tests" / "example_migrations" / "add_content_length_to_chat_messages.py"
BACKFILL = EXAMPLE.stem


@pytest.fixture
def backfill(tmp_path, env):
    """A migrations folder holding the example of update_each; run by run_migrations.py --migrations-dir."""
    env["PYTHONPATH"] = str(REPO)
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder)
    return ("--migrations-dir", str(folder))


def assert_lengths_right(db, before: dict) -> None:
    """Every message has content_length = len(content), every other field as it was, none gained or lost."""
    after = {doc["_id"]: doc for doc in db.chat_messages.find()}
    assert after == {_id: {**old, "content_length": len(old["content"])} for _id, old in before.items()}


@pytest.mark.parametrize("path", PATHS)
def test_a_computed_backfill_stopped_half_way_resumes_with_every_document_right_once(db, cli, env, backfill, path):
    before = load(db, 300)
    runner = [sys.executable, str(MIGRATIONS / "run_migrations.py"), "--migration", BACKFILL, *backfill,
              "--batch-path", path, "--batch-size", "25", "--max-rate", "200", "--progress-interval", "0.001"]
    process = subprocess.Popen(runner, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: db.migrations_checkpoints.find_one() or process.poll() is not None, "the first checkpoint")
    process.send_signal(signal.SIGTERM)
    stopped = finish(process)

    assert stopped.code == 143, stopped
    checkpoint = db.migrations_checkpoints.find_one()
    assert checkpoint["done"] is False and checkpoint["scanned"] % 25 == 0 and 0 < checkpoint["scanned"] < 300
    written = list(db.chat_messages.find({"content_length": {"$exists": True}}))
    assert len(written) == checkpoint["scanned"] == checkpoint["modified"]  # stopped at a batch boundary
    assert all(doc["_id"] <= checkpoint["last_id"] and doc["content_length"] == len(doc["content"]) for doc in written)
    progress = rf"INFO    {BACKFILL}: [\d,]+ of ~?[\d,]+ documents \(\d+%\), [\d,]+ docs/s"
    assert re.search(progress, stopped.output), stopped

    resumed = cli("run_migrations.py", "--migration", BACKFILL, *backfill, "--batch-path", path, "--batch-size", "25")

    assert resumed.code == 0, resumed
    done = checkpoint["scanned"]
    assert f"resuming from the checkpoint: {done} documents of chat_messages were done" in resumed.output
    assert f"{BACKFILL}: modified 300 documents (300 matched)" in resumed.output
    assert_lengths_right(db, before)
    applied = db.migrations_changelog.find_one({"name": BACKFILL, "state": "applied"})
    assert (applied["matched"], applied["modified"]) == (300, 300)  # each document written once, counted once
    assert db.migrations_checkpoints.count_documents({}) == 0

    undone = cli("run_migrations.py", "--rollback", BACKFILL, *backfill, "--batch-path", path, "--yes", "--no-backup")
    assert undone.code == 0, undone
    assert {doc["_id"]: doc for doc in db.chat_messages.find()} == before


MOTOR_STYLE_BACKFILL = '''"""motor_style_backfill

Date: 2026-12-05 04:00:00
Description: words = the number of words of content, written in Motor's style
"""


async def words(message):  # an async function of the document works too
    return None if message["role"] == "user" else {"$set": {"words": len(message["content"].split())}}


async def up(db, batches):
    return await batches.update_each(db.chat_messages, {"words": {"$exists": False}}, words)


async def verify(db):
    return await db.chat_messages.count_documents({"role": "assistant", "words": {"$exists": False}}) == 0
'''


def test_update_each_takes_the_collection_and_an_async_function_and_leaves_what_it_returns_none_for(db, cli,
                                                                                                    backfill):
    before = load(db, 60)
    (Path(backfill[1]) / "motor_style_backfill.py").write_text(MOTOR_STYLE_BACKFILL)
    result = cli("run_migrations.py", "--migration", "motor_style_backfill", *backfill, "--batch-size", "7",
                 "--allow-out-of-order")
    assert result.code == 0, result
    assert "motor_style_backfill: modified 30 documents (30 matched)" in result.output
    after = {doc["_id"]: doc for doc in db.chat_messages.find()}
    assert after == {_id: {**old, "words": len(old["content"].split())} if old["role"] == "assistant" else old
                     for _id, old in before.items()}


# ----- a write the server refuses: its message, code and document, in one line ------------------------------

REFUSED_INC = '''"""counts_views

Date: 2026-12-05 04:00:00
Description: one more view on each message; one message holds its views as a string
"""


async def up(db, batches):
    return await batches.update_many("chat_messages", {"counted": {"$exists": False}},
                                     {"$inc": {"views": 1}, "$set": {"counted": True}})


async def verify(db):
    return await db.chat_messages.count_documents({"counted": {"$exists": False}}) == 0
'''

REFUSED_UNIQUE = '''"""slugs_by_role

Date: 2026-12-05 04:00:00
Description: a slug computed from each message, which a unique index refuses on the third
"""


async def up(db, batches):
    return await batches.update_each("chat_messages", {"slug": {"$exists": False}},
                                     lambda message: {"$set": {"slug": message["role"]}})


async def verify(db):
    return await db.chat_messages.count_documents({"slug": {"$exists": False}}) == 0
'''


@pytest.mark.parametrize("path", PATHS)
def test_a_write_the_server_refuses_is_its_message_code_and_document_in_one_line(db, cli, backfill, path):
    folder = Path(backfill[1])
    db.chat_messages.insert_many([{"_id": n, "views": n} for n in range(1, 8)] + [{"_id": 9, "views": "nine"}])
    (folder / "counts_views.py").write_text(REFUSED_INC)
    refused = cli("run_migrations.py", "--migration", "counts_views", "--allow-out-of-order", *backfill,
                  "--batch-path", path, "--batch-size", "20")
    assert refused.code == 1, refused
    line = the_error(refused)
    assert "counts_views: up failed: write error on chat_messages" in line and "KeyError" not in refused.output
    assert "Cannot apply $inc to a value of non-numeric type" in line and "(code 14)" in line
    assert ("_id=9: " if path == "stream" else "{_id: 9}") in line  # the range path's one update_many: its message

    db.chat_messages.drop()
    db.chat_messages.create_index("slug", unique=True)
    db.chat_messages.insert_many([{"_id": n, "role": role} for n, role in enumerate(["user", "assistant", "user"])])
    (folder / "slugs_by_role.py").write_text(REFUSED_UNIQUE)
    unique = cli("run_migrations.py", "--migration", "slugs_by_role", "--allow-out-of-order", *backfill,
                 "--batch-path", path)
    assert unique.code == 1, unique
    line = the_error(unique)
    assert "slugs_by_role: up failed: write error on chat_messages _id=2: " in line, unique
    assert "KeyError" not in unique.output and re.search(r"(duplicate key|UNIQUE constraint).* \(code \d+\)", line)

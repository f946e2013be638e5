"""The progress of a running migration (migrator/plan.py: add_progress and its text), from its checkpoints and the
server's clock; no server."""

from datetime import UTC, datetime, timedelta

from conftest import a_migration
from migrator.commands.rows import progress_text, running_text
from migrator.durations import eta_text
from migrator.plan import INTERRUPTED, RUNNING, StatusRow, add_progress, status_rows

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def running_row() -> StatusRow:
    return StatusRow("backfill", "2026-01-01", RUNNING, runner="deploy-7:4242", host="deploy-7", pid=4242, at=T0)


def checkpoint(step=1, scanned=120, total=300, started_from=20, started_s=10, done=False, **fields) -> dict:
    return {"step": step, "scanned": scanned, "total": total, "total_estimated": False, "done": done,
            "started_from": started_from, "started_at": T0 + timedelta(seconds=started_s), **fields}


def test_done_of_total_the_rate_since_this_runs_first_checkpoint_and_the_time_left():
    row = running_row()
    add_progress(row, [checkpoint()], now=T0 + timedelta(seconds=14))  # 100 documents in the 4 s since started_at

    assert (row.since, row.step, row.documents_done, row.total, row.percent, row.rate_per_s, row.eta_s) == \
        (T0, 1, 120, 300, 40.0, 25.0, 7.2)
    assert progress_text(row) == "120 of 300 documents (40.0%), 25 documents/s, about 7 s left"
    assert running_text(row) == ("running on deploy-7:4242 since 2026-01-01 12:00:00 UTC: "
                                 "120 of 300 documents (40.0%), 25 documents/s, about 7 s left")


def test_the_rate_is_by_the_servers_clock_now_so_a_stalled_runner_slows_down():
    row = running_row()
    add_progress(row, [checkpoint()], now=T0 + timedelta(seconds=110))  # 100 documents in 100 s

    assert (row.rate_per_s, row.eta_s) == (1.0, 180.0)
    assert progress_text(row).endswith(", 1 documents/s, about 3 min left")


def test_the_percentage_is_rounded_down_and_reaches_100_only_when_the_walk_is_done():
    row = running_row()
    add_progress(row, [checkpoint(scanned=2999, total=3000)], now=T0 + timedelta(seconds=20))
    assert row.percent == 99.9

    finished = running_row()  # its last batch done, `up` not returned yet (verification, a next step)
    add_progress(finished, [checkpoint(scanned=3000, total=3000, done=True)], now=T0 + timedelta(seconds=20))
    assert (finished.percent, finished.rate_per_s, finished.eta_s) == (100.0, None, None)


def test_no_rate_before_a_second_checkpoint_of_this_run():
    row = running_row()
    add_progress(row, [checkpoint(scanned=20, started_from=20)], now=T0 + timedelta(seconds=30))

    assert (row.documents_done, row.percent, row.rate_per_s, row.eta_s) == (20, 6.6, None, None)
    assert progress_text(row) == "20 of 300 documents (6.6%)"


def test_a_count_that_grew_past_the_estimate_shows_the_count_done():
    row = running_row()
    add_progress(row, [checkpoint(scanned=350, total=300, total_estimated=True)], now=T0 + timedelta(seconds=20))

    assert (row.total, row.percent, row.eta_s) == (350, 100.0, 0.0)
    assert progress_text(row).startswith("350 of ~350 documents (100.0%)")


def test_the_current_walk_is_the_last_step_and_is_named_when_not_the_first():
    row = running_row()
    add_progress(row, [checkpoint(step=1, scanned=300, done=True), checkpoint(step=2, scanned=50, total=1000,
                                                                              started_from=50)],
                 now=T0 + timedelta(seconds=20))

    assert (row.step, row.documents_done, row.total, row.percent) == (2, 50, 1000, 5.0)
    assert progress_text(row) == "step 2: 50 of 1,000 documents (5.0%)"


def test_a_checkpoint_left_by_an_earlier_run_gives_no_rate_until_this_run_saves_one():
    row = running_row()  # resumed at T0; the checkpoint is the dead runner's, from a minute before
    add_progress(row, [checkpoint(started_s=-60)], now=T0 + timedelta(seconds=14))

    assert (row.documents_done, row.percent, row.rate_per_s, row.eta_s) == (120, 40.0, None, None)


def test_without_a_checkpoint_only_the_runner_and_since():
    row = running_row()
    add_progress(row, [], now=T0 + timedelta(seconds=20))

    assert (row.since, row.documents_done, row.percent, row.rate_per_s) == (T0, None, None, None)
    assert running_text(row) == "running on deploy-7:4242 since 2026-01-01 12:00:00 UTC"


def test_a_checkpoint_of_an_older_toolkit_has_no_total_nor_start():
    row = running_row()
    add_progress(row, [{"step": 1, "scanned": 40, "done": False}], now=T0 + timedelta(seconds=20))

    assert (row.documents_done, row.total, row.percent, row.rate_per_s) == (40, None, None, None)
    assert progress_text(row) == "40 documents"


def test_time_left_in_words():
    assert [eta_text(s) for s in (0.4, 7.2, 89, 90, 5399, 5400, 36_000)] == [
        "under a second", "about 7 s", "about 89 s", "about 2 min", "about 90 min", "about 1.5 h", "about 10.0 h"]


def test_a_run_after_a_dead_one_is_running_since_its_own_start_on_its_own_runner():
    def start(minute, host, pid):
        return {"name": "a", "action": "apply", "state": RUNNING, "at": T0 + timedelta(minutes=minute),
                "host": host, "pid": pid}
    [row] = status_rows([a_migration("a")], {"a": [start(1, "old", 1), start(5, "new", 2)]})

    assert (row.state, row.runner, row.host, row.pid, row.at) == (RUNNING, "new:2", "new", 2, T0 + timedelta(minutes=5))


def test_a_running_row_does_not_also_say_resumable():
    row = running_row()
    row.checkpoint_done = 120
    assert row.flags == []
    row.state = INTERRUPTED
    assert row.flags == ["resumable: 120 documents done"]


def test_a_paused_run_says_by_whom_and_since_when_and_a_pending_one_that_it_starts_paused():
    row = running_row()
    row.paused_by, row.paused_since = "ops@bastion", T0 + timedelta(minutes=5)
    add_progress(row, [checkpoint()], now=T0 + timedelta(seconds=14))

    assert running_text(row) == ("running on deploy-7:4242 since 2026-01-01 12:00:00 UTC, paused by ops@bastion "
                                 "since 2026-01-01 12:05:00 UTC (--resume goes on): 120 of 300 documents (40.0%), "
                                 "25 documents/s, about 7 s left")
    assert row.flags == []  # running: its line says it
    waiting = StatusRow("backfill", "2026-01-01", "pending", paused_by="ops@bastion", paused_since=T0)
    assert waiting.flags == ["paused by ops@bastion: starts paused"]

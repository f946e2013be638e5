"""What is applied, pending, failed or changed (migrator/plan.py), from a changelog history; no server."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import a_migration, names
from migrator.changelog import sets_state
from migrator.migration import BrokenFile
from migrator.plan import (
    APPLIED,
    DRAFT_FLAG,
    FAILED,
    PENDING,
    ROLLED_BACK,
    RUNNING,
    StatusRow,
    applied,
    changed,
    latest_of,
    not_current,
    out_of_order,
    pending,
    rollbackable,
    status_rows,
    unverifiable,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def entry(name: str, action: str, state: str, minute: int, **details) -> dict:
    return {"name": name, "action": action, "state": state, "at": at(minute), "checksum": f"sum-{name}", **details}


def history_of(*entries: dict) -> dict[str, list[dict]]:
    """As Changelog.history gives it: every entry of each migration, oldest first."""
    found: dict[str, list[dict]] = {}
    for e in sorted(entries, key=lambda e: e["at"]):
        found.setdefault(e["name"], []).append(e)
    return found


def latest(*entries: dict) -> dict[str, dict]:
    """As Changelog.latest gives it: the latest entry of each migration of those that set its state."""
    return latest_of({name: [e for e in es if sets_state(e)] for name, es in history_of(*entries).items()})


def migrations(*specs: str):
    """Migrations a, b, c... in that order (by date), each with the checksum its changelog entries carry."""
    return [a_migration(name, f"2025-01-{day:02d}", checksum=f"sum-{name}") for day, name in enumerate(specs, 1)]


def row_of(rows: list[StatusRow], name: str) -> StatusRow:
    [row] = [row for row in rows if row.name == name]
    return row


def test_without_a_changelog_every_migration_is_pending_in_order():
    rows = status_rows(migrations("a", "b"), {})
    assert [(row.name, row.date, row.state, row.at, row.flags) for row in rows] == [
        ("a", "2025-01-01", PENDING, None, []), ("b", "2025-01-02", PENDING, None, [])]


def test_an_applied_migration_shows_since_when_how_long_and_how_many_documents():
    [row] = status_rows(migrations("a"), history_of(entry("a", "apply", APPLIED, 3, duration_s=2.5, modified=18)))
    assert (row.state, row.at, row.duration_s, row.modified, row.marked, row.flags) == \
        (APPLIED, at(3), 2.5, 18, False, [])


def test_a_re_run_keeps_the_first_since_duration_and_count_and_adds_what_it_changed():
    history = history_of(entry("a", "apply", APPLIED, 1, duration_s=9.0, modified=18),
                         entry("a", "apply", APPLIED, 5, duration_s=0.1, modified=0))
    [row] = status_rows(migrations("a"), history)
    assert (row.at, row.duration_s, row.modified) == (at(1), 9.0, 18)

    history["a"].append(entry("a", "apply", APPLIED, 9, duration_s=0.2, modified=3))
    [row] = status_rows(migrations("a"), history)
    assert (row.at, row.duration_s, row.modified) == (at(1), 9.0, 21)


def test_since_restarts_when_the_state_changes_and_comes_back():
    history = history_of(entry("a", "apply", APPLIED, 1, modified=5), entry("a", "rollback", ROLLED_BACK, 2),
                         entry("a", "apply", APPLIED, 3, duration_s=1.0, modified=4))
    [row] = status_rows(migrations("a"), history)
    assert (row.state, row.at, row.modified, row.duration_s) == (APPLIED, at(3), 4, 1.0)


def test_a_rolled_back_migration_is_rolled_back_since_the_rollback():
    [row] = status_rows(migrations("a"), history_of(entry("a", "apply", APPLIED, 1, modified=5),
                                                    entry("a", "rollback", ROLLED_BACK, 4)))
    assert (row.state, row.at, row.modified, row.duration_s) == (ROLLED_BACK, at(4), None, None)


def test_a_failed_run_shows_its_error_and_a_later_success_clears_it():
    history = history_of(entry("a", "apply", FAILED, 1, error="boom"), entry("a", "apply", FAILED, 2, error="again"))
    [row] = status_rows(migrations("a"), history)
    assert (row.state, row.at, row.error) == (FAILED, at(1), "again")

    history["a"].append(entry("a", "apply", APPLIED, 3, modified=1, error="not shown"))
    [row] = status_rows(migrations("a"), history)
    assert (row.state, row.error) == (APPLIED, "")


def test_entries_of_a_runner_that_lost_the_lock_are_ignored():
    history = history_of(entry("a", "apply", APPLIED, 1, modified=7),
                         entry("a", "apply", FAILED, 2, error="lost the lock", lock_lost=True),
                         entry("b", "apply", FAILED, 3, error="lost the lock", lock_lost=True))
    rows = status_rows(migrations("a", "b"), history)
    assert [(row.state, row.at, row.modified, row.error) for row in rows] == [
        (APPLIED, at(1), 7, ""), (PENDING, None, None, "")]
    assert latest(*history["a"], *history["b"]) == {"a": history["a"][0]}


def test_a_started_run_shows_as_running_on_its_runner_until_its_end_is_recorded():
    history = history_of(entry("a", "apply", APPLIED, 1, modified=5),
                         entry("a", "apply", RUNNING, 2, host="deploy-7", pid=4242))
    [row] = status_rows(migrations("a"), history)
    assert (row.state, row.runner, row.at) == (RUNNING, "deploy-7:4242", at(2))

    history["a"].append(entry("a", "apply", APPLIED, 3, modified=2))
    [row] = status_rows(migrations("a"), history)
    assert (row.state, row.runner, row.at, row.modified) == (APPLIED, "", at(1), 7)  # the start is no state change


def test_a_marked_migration_has_no_duration_and_says_marked():
    [row] = status_rows(migrations("a"), history_of(entry("a", "mark_applied", APPLIED, 1)))
    assert (row.state, row.marked, row.duration_s, row.modified, row.flags) == (APPLIED, True, None, None, ["marked"])


def test_an_applied_migration_whose_code_changed_is_flagged_but_one_without_a_checksum_is_not():
    edited = migrations("a", "b", "c")
    edited[0].checksum = "edited"
    history = history_of(entry("a", "apply", APPLIED, 1), entry("b", "apply", APPLIED, 2, checksum=None),
                         entry("c", "rollback", ROLLED_BACK, 3))
    edited[2].checksum = "edited too"
    rows = status_rows(edited, history)
    assert [row.changed for row in rows] == [True, False, False]  # c is not applied: its change runs as it is now
    assert names(changed(edited, latest(*[e for es in history.values() for e in es]))) == ["a"]


def test_an_applied_migration_whose_file_is_gone_is_listed_last():
    history = history_of(entry("gone", "apply", APPLIED, 1, modified=2), entry("undone", "apply", APPLIED, 2),
                         entry("undone", "rollback", ROLLED_BACK, 3), entry("a", "apply", APPLIED, 4))
    rows = status_rows(migrations("a"), history)
    assert [(row.name, row.date, row.state, row.flags) for row in rows] == [
        ("a", "2025-01-01", APPLIED, []), ("gone", "?", APPLIED, ["missing file"])]


def test_a_broken_file_has_a_row_with_its_changelog_state_and_is_one_reason_not_current_whatever_its_state():
    history = history_of(entry("applied_then_broke", "apply", APPLIED, 1), entry("gone", "apply", APPLIED, 2),
                         entry("a", "apply", APPLIED, 3))
    broken = [BrokenFile("applied_then_broke", Path("applied_then_broke.py"), "applied_then_broke.py: failed to load"),
              BrokenFile("new", Path("new.py"), "new.py: syntax error at line 5: expected ':'")]
    rows = status_rows(migrations("a"), history, broken)
    assert [(row.name, row.date, row.state, row.flags) for row in rows] == [
        ("a", "2025-01-01", APPLIED, []),
        ("applied_then_broke", "?", APPLIED, ["broken: applied_then_broke.py: failed to load"]),
        ("new", "?", PENDING, ["broken: new.py: syntax error at line 5: expected ':'"]),
        ("gone", "?", APPLIED, ["missing file"])]
    assert [(r.name, r.kind) for r in not_current(rows)] == [
        ("applied_then_broke", "broken_file"), ("new", "broken_file"), ("gone", "missing_file")]
    assert unverifiable(rows) == {"applied_then_broke": "its file is broken: applied_then_broke.py: failed to load",
                                  "gone": "its file is gone"}


def test_a_pending_migration_ordered_before_an_applied_one_is_out_of_order():
    history = history_of(entry("b", "apply", APPLIED, 1), entry("d", "apply", APPLIED, 2))
    ordered = migrations("a", "b", "c", "d", "e")
    rows = status_rows(ordered, history)
    assert {row.name: row.out_of_order for row in rows} == {"a": "d", "b": "", "c": "d", "d": "", "e": ""}
    assert row_of(rows, "c").flags == ["out-of-order: before the applied d"]
    assert out_of_order(ordered, {}) == {}


def test_the_flags_come_in_a_fixed_order():
    row = StatusRow("a", "2025-01-01", APPLIED, marked=True, changed=True, missing_file=True, checkpoint_done=12345,
                    draft=True, out_of_order="z")
    assert row.flags == ["marked", "changed", "missing file", "resumable: 12,345 documents done", DRAFT_FLAG,
                         "out-of-order: before the applied z"]


def test_a_draft_is_flagged():
    draft = a_migration("a", draft_reasons=("write its Description",))
    assert status_rows([draft], {})[0].flags == [DRAFT_FLAG]


def test_pending_applied_and_rollbackable_each_keep_their_order():
    ordered = migrations("a", "b", "c", "d", "e")
    state = latest(entry("a", "apply", APPLIED, 1), entry("b", "apply", FAILED, 2),
                   entry("c", "apply", APPLIED, 3), entry("d", "rollback", ROLLED_BACK, 4),
                   entry("e", "apply", RUNNING, 5))
    assert names(pending(ordered, state)) == ["b", "d", "e"]  # in the order they run
    assert names(applied(ordered, state)) == ["c", "a"]  # last in the order first: the order rollbacks go in
    assert names(rollbackable(ordered, state)) == ["e", "c", "b", "a"]  # failed or cut off half-way: undoable too


def test_rollback_order_follows_the_migrations_not_the_changelog_times():
    ordered = migrations("a", "b")
    state = latest(entry("b", "apply", APPLIED, 1), entry("a", "apply", APPLIED, 2))  # a re-run of a: newest
    assert names(applied(ordered, state)) == ["b", "a"]


def test_not_current_names_each_reason_once_as_data_and_an_applied_row_without_a_file_is_one():
    rows = [StatusRow("a", "2025-01-01", APPLIED), StatusRow("b", "2025-01-02", APPLIED, changed=True),
            StatusRow("c", "2025-01-03", PENDING, out_of_order="d"), StatusRow("d", "2025-01-04", APPLIED),
            StatusRow("e", "2025-01-05", FAILED, error="boom"), StatusRow("gone", "?", APPLIED, missing_file=True)]
    assert [(r.name, r.kind) for r in not_current(rows)] == [
        ("b", "changed"), ("c", "pending"), ("c", "out_of_order"), ("e", "failed"), ("gone", "missing_file")]
    assert not_current(rows[:1]) == []


def test_the_schemas_runs_are_no_migration_whose_file_is_gone():
    history = history_of(entry("a", "apply", APPLIED, 1), entry("schema", "apply", RUNNING, 2),
                         entry("schema", "rollback", FAILED, 3), entry("schema", "apply", APPLIED, 4))
    rows = status_rows(migrations("a"), history)
    assert [(row.name, row.state, row.missing_file) for row in rows] == [("a", APPLIED, False)]
    assert not_current(rows) == []

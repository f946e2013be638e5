"""A rollback stopped half-way (failed, or its runner died): what --rollback-last and --rollback-to go on with,
and which checkpoints --status reads for it. Pure: migrations and changelog entries, no server."""

from pathlib import Path

from migrator import plan
from migrator.commands.apply import select_after, select_last
from migrator.commands.rows import running_text
from migrator.migration import Migration


def migration(name: str) -> Migration:
    return Migration(name=name, date="2025-01-01", description="", up=None, verify=None, path=Path(f"{name}.py"))


A, B, C = migration("a"), migration("b"), migration("c")
ALL = [A, B, C]


def entry(action: str, state: str) -> dict:
    return {"action": action, "state": state, "host": "deploy-7", "pid": 42, "at": None}


class Engine:  # what select_after needs of one
    migrations = ALL


def test_rollback_last_goes_on_with_a_stopped_rollback_of_the_last_one():
    for stopped in (plan.FAILED, plan.RUNNING):
        latest = {"a": entry("apply", plan.APPLIED), "b": entry("rollback", stopped)}
        assert select_last(ALL, latest) == [B]
        latest["c"] = entry("apply", plan.APPLIED)
        assert select_last(ALL, latest) == [C]  # by the order, as ever
    clean = {"a": entry("apply", plan.APPLIED), "b": entry("apply", plan.APPLIED)}
    assert select_last(ALL, clean) == [B]
    failed_apply = {"a": entry("apply", plan.APPLIED), "b": entry("apply", plan.FAILED)}
    assert select_last(ALL, failed_apply) == [A]  # a failed apply is not a rollback to go on with


def test_rollback_to_includes_a_stopped_rollback_after_its_target():
    latest = {"a": entry("apply", plan.APPLIED), "b": entry("rollback", plan.FAILED), "c": entry("apply", plan.APPLIED)}
    assert select_after(Engine, "a")(ALL, latest) == [C, B]
    latest["c"] = entry("rollback", plan.ROLLED_BACK)
    assert select_after(Engine, "a")(ALL, latest) == [B]


def test_a_rollback_row_reads_its_own_checkpoints_and_says_what_is_resumable():
    up = {"_id": "b/1", "step": 1, "scanned": 700}
    down = {"_id": "b/rollback/1", "step": 1, "scanned": 300, "action": "rollback"}
    rolling = plan.StatusRow("b", "2025-01-01", plan.FAILED, "rollback")
    assert plan.checkpoints_of(rolling, [up, down]) == [down]
    rolling.checkpoint_done = 300
    assert "rollback resumable: 300 documents done" in rolling.flags
    applying = plan.StatusRow("b", "2025-01-01", plan.FAILED, "apply")
    assert plan.checkpoints_of(applying, [up, down]) == [up]


def test_a_running_rollback_is_shown_as_rolling_back():
    row = plan.StatusRow("b", "2025-01-01", plan.RUNNING, "rollback", runner="deploy-7:42")
    assert running_text(row) == "rolling back on deploy-7:42"
    row.action = "apply"
    assert running_text(row) == "running on deploy-7:42"

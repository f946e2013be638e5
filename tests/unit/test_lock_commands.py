"""The lock document's commands for both clocks (MongoDB's `$$NOW`, a time read from FerretDB), the changelog's
order, and the lock's message when it is lost: pure logic, no server (MongoDB's path cannot run here)."""

from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from migrator import lock_commands as commands
from migrator.changelog import order_key
from migrator.errors import ExitCode
from migrator.liveness import PID_SPACE
from migrator.lock import LockLost, MigrationLock

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LIVE = {"$expr": {"$gt": ["$expires_at", "$$NOW"]}}


def test_on_the_servers_clock_a_renewal_is_one_pipeline_update_by_epoch_owner_and_live_lease():
    query, update = commands.renewal(4, "a:1:x", 2.5, None, 0.3)
    assert query == {"_id": "lock", "epoch": 4, "owner": "a:1:x", "released_at": None, **LIVE}
    assert update == [{"$set": {"renewed_at": "$$NOW", "expires_at": {"$add": ["$$NOW", 2500]}}}]


def test_on_a_read_clock_a_renewal_needs_more_than_the_margin_left():
    query, update = commands.renewal(4, "a:1:x", 2.5, NOW, 0.3)
    assert query == {"_id": "lock", "epoch": 4, "owner": "a:1:x", "released_at": None,
                     "expires_at": {"$gt": NOW + timedelta(seconds=0.3)}}
    assert update == {"$set": {"renewed_at": NOW, "expires_at": NOW + timedelta(seconds=2.5)}}


def test_a_takeover_moves_the_epoch_on_from_the_one_read_and_only_when_free():
    read = {"_id": "lock", "epoch": 7, "owner": "b:2:y", "released_at": None, "expires_at": NOW}
    query, update = commands.takeover(read, "a:1:x", 3.0, None, 0.3)
    assert query == {"_id": "lock", "epoch": 7, "$or": [{"released_at": {"$ne": None}},
                                                        {"$expr": {"$lte": ["$expires_at", "$$NOW"]}}]}
    [stage] = update
    assert stage["$set"]["epoch"] == {"$literal": 8} and stage["$set"]["owner"] == {"$literal": "a:1:x"}
    assert stage["$set"]["took_over"] == {"$literal": "b:2:y"}  # it had not released it: it was taken over
    assert stage["$set"]["acquired_at"] == "$$NOW" and stage["$set"]["expires_at"] == {"$add": ["$$NOW", 3000]}

    query, update = commands.takeover({**read, "released_at": NOW}, "a:1:x", 3.0, NOW, 0.3)
    assert query["$or"][1] == {"expires_at": {"$lte": NOW - timedelta(seconds=0.3)}}  # waits the margin past it
    assert update["$set"]["epoch"] == 8 and update["$set"]["took_over"] is None
    assert update["$set"]["expires_at"] == NOW + timedelta(seconds=3) and update["$set"]["acquired_at"] == NOW


@pytest.mark.parametrize("skew_s", [None, 0.0, 0.29], ids=["server clock", "one read", "reads 0.58 s apart"])
def test_a_renewal_and_a_takeover_cannot_both_match(skew_s):
    """Evaluated here on one document, as the server would: at most one of the two filters matches it, also when
    the renewal's clock was read up to a margin (0.3 s) before now and the takeover's up to a margin after."""
    for left_s in (-1.0, -0.6, -0.3, -0.1, 0.0, 0.1, 0.3, 0.6, 1.0):
        document = {"_id": "lock", "epoch": 3, "owner": "a:1:x", "released_at": None,
                    "expires_at": NOW + timedelta(seconds=left_s)}
        early = None if skew_s is None else NOW - timedelta(seconds=skew_s)
        late = None if skew_s is None else NOW + timedelta(seconds=skew_s)
        renewal, _ = commands.renewal(3, "a:1:x", 2.0, early, 0.3)
        takeover, _ = commands.takeover(document, "b:2:y", 2.0, late, 0.3)
        assert not (matches(renewal, document) and matches(takeover, document)), left_s


def matches(query: dict, document: dict) -> bool:
    """The few operators the lock's filters use, with `$$NOW` as NOW."""
    for key, want in query.items():
        if key == "$expr":
            [(op, (_, _))] = want.items()
            if not {"$gt": document["expires_at"] > NOW, "$lte": document["expires_at"] <= NOW}[op]:
                return False
        elif key == "$or":
            if not any(matches(part, document) for part in want):
                return False
        elif isinstance(want, dict):
            value = document.get(key)
            for op, operand in want.items():
                if not compare(op, value, operand):
                    return False
        elif document.get(key) != want:
            return False
    return True


def compare(op: str, value, operand) -> bool:
    if op == "$ne":
        return value != operand
    return value > operand if op == "$gt" else value <= operand


@pytest.mark.parametrize("now", [None, NOW], ids=["server clock", "read clock"])
def test_stamp_touch_release_and_force_unlock_are_conditional_on_the_epoch(now):
    live = LIVE if now is None else {"expires_at": {"$gt": NOW}}
    held = {"_id": "lock", "epoch": 2, "owner": "a:1:x", "released_at": None}
    assert commands.stamp(2, "a:1:x", now) == ({**held, **live}, {"$inc": {"seq": 1}})
    assert commands.touch(2, "a:1:x", now) == ({**held, **live}, {"$inc": {"touches": 1}})
    query, update = commands.release(2, "a:1:x", now)
    assert query == held
    assert update == ([{"$set": {"released_at": "$$NOW"}}] if now is None else {"$set": {"released_at": NOW}})
    query, update = commands.force_unlock(2, "c:3:z", now)
    assert query == {"_id": "lock", "epoch": 2}
    fields = update[0]["$set"] if now is None else update["$set"]
    assert fields["epoch"] in (3, {"$literal": 3})  # so the holder's renewals, stamps and touches fail
    assert fields["released_at"] == ("$$NOW" if now is None else NOW)


def test_a_new_lock_is_epoch_1_with_its_lease_and_an_empty_sequence():
    assert commands.new_lock("a:1:x", 2.0, NOW) == {
        "_id": "lock", "epoch": 1, "owner": "a:1:x", "acquired_at": NOW, "expires_at": NOW + timedelta(seconds=2),
        "released_at": None, "seq": 0, "took_over": None, "pid_space": PID_SPACE}


def test_a_lock_is_free_once_released_or_run_out_by_the_margin():
    lock = {"owner": "a", "released_at": None, "expires_at": NOW}
    assert commands.is_free(None, NOW)
    assert commands.is_free({**lock, "released_at": NOW}, NOW - timedelta(hours=1))
    assert not commands.is_free(lock, NOW - timedelta(seconds=1))
    assert commands.is_free(lock, NOW)
    assert not commands.is_free(lock, NOW + timedelta(seconds=0.2), margin_s=0.3)
    assert commands.is_free(lock, NOW.replace(tzinfo=None) + timedelta(seconds=0.4), margin_s=0.3)  # naive: UTC


def entry(at_s: float, seq: int | None = None, epoch: int = 1) -> dict:
    found = {"_id": ObjectId(), "at": NOW + timedelta(seconds=at_s)}
    return found if seq is None else {**found, "seq": seq, "epoch": epoch}


def test_the_changelog_is_ordered_by_the_locks_sequence_never_by_a_clock():
    old_first, old_second = entry(-100), entry(-50)  # the previous version's: by their time, first
    apply, rollback = entry(0, seq=1), entry(-30, seq=2)  # a clock 30 s behind for the rollback
    retaken = entry(-60, seq=2, epoch=2)  # the same number after a non-atomic takeover: the epoch decides
    found = sorted([retaken, rollback, apply, old_second, old_first], key=order_key)
    assert found == [old_first, old_second, apply, rollback, retaken]


def test_lock_lost_exits_3():
    assert LockLost("lost").exit_code == ExitCode.LOCKED


def test_a_renewal_that_finds_another_epoch_names_the_new_holder():
    lock = MigrationLock(database=_NoDatabase(), lease_s=4, owner="a:1:x")  # type: ignore[arg-type]
    lock.epoch = 3
    lock._lose({"_id": "lock", "epoch": 4, "owner": "b:2:y", "acquired_at": NOW, "released_at": None})
    with pytest.raises(LockLost, match="another runner took it over: b:2:y since 2026-01-01 12:00:00 UTC"):
        lock.check()


def test_a_lock_that_is_not_held_has_no_stamp_and_nothing_to_check():
    import asyncio
    lock = MigrationLock(database=_NoDatabase(), lease_s=4)  # type: ignore[arg-type]
    lock.check()
    assert asyncio.run(lock.stamp()) == {}


class _NoDatabase:
    name = "nothing"

    def get_collection(self, name, **options):
        return None

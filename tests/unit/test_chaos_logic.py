"""The pure logic of --selftest --chaos (migrator/chaos.py, migrator/wire.py): which commands write, which fault
points are chosen, how a faulted run's documents are compared and what a failing point advises; no server."""

from datetime import UTC, datetime

import bson
import pytest

from migrator.batches import DEFAULT_SIZE, BatchSettings
from migrator.chaos import Baseline, _differing, _twice, _unlike, _unstable, advice, choose, fixed_batches, split
from migrator.docdiff import MISSING, Change, value_at
from migrator.rawbson import id_key
from migrator.wire import CUT, HEADER, KILL, KINDS, LOST_REPLY, OP_MSG, Point, Write, body_of, op_msg, outside, written

# ----- wire.written: (command, collection) of a write, None of anything else -----


@pytest.mark.parametrize("body, expected", [
    ({"insert": "messages", "documents": [{"_id": 1}]}, ("insert", "messages")),
    ({"update": "messages", "updates": [{"q": {}, "u": {"$set": {"a": 1}}}]}, ("update", "messages")),
    ({"delete": "messages", "deletes": [{"q": {}, "limit": 0}]}, ("delete", "messages")),
    ({"findAndModify": "messages", "query": {}, "update": {"$inc": {"n": 1}}}, ("findAndModify", "messages")),
    ({"createIndexes": "messages", "indexes": [{"key": {"a": 1}, "name": "a_1"}]}, ("createIndexes", "messages")),
    ({"renameCollection": "app.old.messages", "to": "app.messages"}, ("renameCollection", "old.messages")),
    ({"aggregate": "messages", "pipeline": [{"$match": {}}, {"$out": "copy"}]}, ("aggregate", "messages")),
    ({"aggregate": "messages", "pipeline": [{"$merge": {"into": "copy"}}]}, ("aggregate", "messages")),
    ({"aggregate": "messages", "pipeline": [{"$match": {}}, {"$group": {"_id": "$a"}}], "cursor": {}}, None),
    ({"find": "messages", "filter": {}}, None),
    ({"insert": 1}, None),  # not a collection's name
    ({}, None),
    (None, None),
])
def test_written_names_the_commands_that_write_and_nothing_else(body, expected):
    assert written(body) == expected


def test_an_op_msg_reads_back_as_its_body_with_its_flags_and_other_sections_kept():
    rest = b"\x01" + bson.encode({"x": 1})  # stands for a kind-1 section, passed as it came
    message = op_msg(7, 3, {"insert": "messages"}, rest, flags=2)
    length, request_id, response_to, op_code = HEADER.unpack_from(message)
    assert (length, request_id, response_to, op_code) == (len(message), 7, 3, OP_MSG)
    payload = message[HEADER.size:]
    assert payload[:4] == b"\x02\x00\x00\x00" and payload.endswith(rest)
    assert body_of(OP_MSG, payload) == {"insert": "messages"}
    assert body_of(2004, payload) is None  # OP_QUERY: not read


# ----- chaos.choose, split, fixed_batches -----

def writes(count: int) -> list[Write]:
    return [Write("update", "messages", nth) for nth in range(1, count + 1)]


def test_few_writes_get_every_kind_of_fault_at_each():
    chosen = choose(writes(3), budget=20)
    assert chosen == [Point(write, kind) for write in writes(3) for kind in KINDS]
    assert len(chosen) == 9


def test_many_writes_get_exactly_the_budget_spread_from_the_first_to_near_the_last_kinds_in_turn():
    many = writes(100)
    chosen = choose(many, budget=20)
    assert len(chosen) == len(set(chosen)) == 20
    assert [point.write.nth for point in chosen] == list(range(1, 100, 5))  # the first, every 5th, the 96th
    assert [point.kind for point in chosen[:4]] == [CUT, LOST_REPLY, KILL, CUT]


def test_a_budget_a_little_under_every_point_still_gives_distinct_points():
    chosen = choose(writes(5), budget=10)  # 15 possible: each write twice at most, never the same kind twice
    assert len(chosen) == len(set(chosen)) == 10
    assert {point.write.nth for point in chosen} == {1, 2, 3, 4, 5}


@pytest.mark.parametrize("budget, up_writes, rollback_writes, expected", [
    (20, 100, 100, (10, 10)),  # half each
    (21, 100, 100, (11, 10)),  # the odd one to up
    (20, 100, 2, (14, 6)),  # what the rollback cannot use goes to up
    (20, 2, 100, (6, 14)),  # and what up cannot use to the rollback
    (20, 100, 0, (20, 0)),  # no rollback: all to up
    (20, 1, 1, (3, 3)),  # fewer than the budget: every point
])
def test_split_gives_the_rollback_half_at_most_unless_up_cannot_use_the_rest(budget, up_writes, rollback_writes,
                                                                           expected):
    assert split(budget, up_writes, rollback_writes) == expected


@pytest.mark.parametrize("size, documents, expected", [
    (None, 2000, 500),  # the sample spans 4 batches
    (None, 10_000, DEFAULT_SIZE),  # never larger than the size asked for
    (100, 2000, 100),
    (None, 10, 3),
    (None, 0, 1),
])
def test_fixed_batches_are_of_one_size_small_enough_to_span_several(size, documents, expected):
    fixed = fixed_batches(BatchSettings(size=size, target_batch_ms=800, max_rate=50.0), documents)
    assert (fixed.size, fixed.min_size, fixed.target_batch_ms) == (expected, expected, 0)
    assert fixed.max_rate == 50.0


# ----- chaos._twice, docdiff.value_at, advice -----

@pytest.mark.parametrize("original, want, have, expected", [
    (1, 2, 3, "`$inc`"),
    (MISSING, 5, 10, "`$inc`"),  # $inc on a missing field starts from 0
    (1.5, 2.0, 2.5, "`$inc`"),
    (1, 2, 7, ""),  # a different value, not the same step again
    (1, 1, 1, ""),
    (["a"], ["a", "b"], ["a", "b", "b"], "`$push`"),
    (MISSING, ["x"], ["x", "x"], "`$push`"),
    (["a"], ["a", "b"], ["a", "c"], ""),
    ("old", "new", "newer", ""),
])
def test_twice_tells_a_change_applied_twice(original, want, have, expected):
    assert _twice(Change("field", want, have), original) == expected


def test_at_follows_a_dotted_path():
    assert value_at({"a": {"b": {"c": 3}}}, "a.b.c") == 3
    assert value_at({"a": {"b": 1}}, "a.b.c") is MISSING
    assert value_at({"a": 1}, "x") is MISSING


KEY = ("messages", id_key(1))


def doc(**fields) -> bytes:
    return bson.encode({"_id": 1, **fields})


def baseline(before: dict, after: dict, action: str = "up", **unstable) -> Baseline:
    return Baseline(action, {}, before, after, {}, [], 0.0, **unstable)


def test_advice_names_an_inc_run_twice():
    said = advice(baseline({KEY: doc(n=1)}, {KEY: doc(n=2)}), LOST_REPLY, KEY, {KEY: doc(n=3)})
    assert said.startswith("this up's update is not idempotent: `$inc` ran twice on n when the write was sent again")


def test_advice_names_a_push_run_twice_after_a_crash():
    said = advice(baseline({KEY: doc(tags=[])}, {KEY: doc(tags=["x"])}, "rollback"), KILL, KEY,
                  {KEY: doc(tags=["x", "x"])})
    assert said.startswith("this rollback's update is not idempotent: `$push` ran twice on tags when the batch was "
                           "done again after a crash")


def test_advice_names_a_document_missing_or_added_twice():
    missing = advice(baseline({KEY: doc()}, {KEY: doc()}), CUT, KEY, {})
    assert missing.startswith("a document missing when the write was sent again: make this up idempotent")
    added = advice(baseline({}, {}), KILL, KEY, {KEY: doc()})
    assert added.startswith("a document added twice when the batch was done again after a crash")


def test_advice_for_another_difference_is_the_general_one_and_skips_fields_that_differ_from_run_to_run():
    runs = baseline({KEY: doc(at=1, label="a")}, {KEY: doc(at=2, label="b")}, volatile={"messages": {"at"}})
    said = advice(runs, LOST_REPLY, KEY, {KEY: doc(at=9, label="c")})
    assert said.startswith("this up is not idempotent: label is not what one run gives when the write was sent again")


def test_advice_for_fields_in_another_order():
    said = advice(baseline({KEY: doc()}, {KEY: doc(a=1, b=2)}), LOST_REPLY, KEY, {KEY: doc(b=2, a=1)})
    assert said.startswith("the same fields in another order when the write was sent again")


# ----- chaos._unstable, _differing, _unlike -----

def at(hour: int) -> datetime:
    return datetime(2026, 1, 1, hour, tzinfo=UTC)


LOG = "migration_log"


def test_unstable_finds_fields_and_new_ids_that_differ_between_two_fault_free_runs():
    first = {KEY: doc(n=2, at=at(1)), (LOG, id_key("a")): bson.encode({"_id": "a"})}
    second = {KEY: doc(n=2, at=at(2)), (LOG, id_key("b")): bson.encode({"_id": "b"})}
    assert _unstable(first, second) == ({"messages": {"at"}}, {LOG})
    assert _unstable(first, first) == ({}, set())


def runs_twice() -> Baseline:
    """Two fault-free runs told `at` and the log's ids apart."""
    after = {KEY: doc(n=2, at=at(1)), (LOG, id_key("a")): bson.encode({"_id": "a"})}
    volatile, new_ids = _unstable(after, {KEY: doc(n=2, at=at(2)), (LOG, id_key("b")): bson.encode({"_id": "b"})})
    return baseline({KEY: doc(n=1)}, after, volatile=volatile, new_ids=new_ids, run_twice=True)


def test_a_field_that_differs_between_fault_free_runs_is_not_counted():
    got = {KEY: doc(n=2, at=at(3)), (LOG, id_key("c")): bson.encode({"_id": "c"})}
    assert _differing(runs_twice(), got) == []


def test_a_field_that_did_not_differ_between_fault_free_runs_is_counted():
    got = {KEY: doc(n=3, at=at(3)), (LOG, id_key("c")): bson.encode({"_id": "c"})}
    assert _differing(runs_twice(), got) == [KEY]
    assert _differing(baseline({}, {KEY: doc(n=2, at=at(1))}), {KEY: doc(n=2, at=at(3))}) == [KEY]  # one run only


def test_documents_with_new_ids_are_counted_by_number():
    got = {KEY: doc(n=2, at=at(3)), (LOG, id_key("c")): bson.encode({"_id": "c"}),
           (LOG, id_key("d")): bson.encode({"_id": "d"})}
    assert sorted(_differing(runs_twice(), got)) == [(LOG, id_key("c")), (LOG, id_key("d"))]


def test_a_document_with_a_new_id_that_a_faulted_run_lost_is_listed():
    assert _differing(runs_twice(), {KEY: doc(n=2, at=at(3))}) == [(LOG, id_key("a"))]


def index(name: str, **key) -> dict:
    return {"name": name, "key": key}


def test_unlike_names_the_indexes_and_collections_one_side_lacks():
    want = {"messages": [index("_id_", _id=1), index("a_1", a=1)]}
    assert _unlike(want, {"messages": [index("_id_", _id=1)]}) == "missing: messages.a_1"
    got = {**want, "extra": [index("_id_", _id=1)]}
    assert _unlike(want, got) == "more: extra (a collection), extra._id_"
    assert _unlike(want, {"messages": [index("_id_", _id=1), index("a_1", a=1, unique=True)]}) == "their options"


@pytest.mark.parametrize("body, refused", [
    ({"dropDatabase": 1}, "(dropDatabase)"),
    ({"applyOps": []}, "(applyOps)"),
    ({"renameCollection": "app._s_x", "to": "app.victim"}, "victim"),
    ({"renameCollection": "app._s_x", "to": "app._s_y"}, None),
    ({"aggregate": "_s_x", "pipeline": [{"$out": "chat_messages"}]}, "chat_messages"),
    ({"aggregate": "_s_x", "pipeline": [{"$merge": {"into": {"db": "app", "coll": "real"}}}]}, "real"),
    ({"aggregate": "_s_x", "pipeline": [{"$merge": {"into": "_s_y"}}]}, None),
    ({"update": "chat_messages", "updates": []}, "chat_messages"),
    ({"update": "_s_x", "updates": []}, None),
    ({"find": "chat_messages"}, None),
])
def test_the_proxy_refuses_what_writes_outside_the_scratch_copies(body, refused):
    assert outside(body, "_s_") == refused

"""The schema plan (migrator/schema/diff.py): matched by keys and options, adopted, created, replaced in a safe order,
dropped only when the toolkit created it or it is declared removed, unknown kept; skipped where the server cannot;
and the drift --check, --status and /health report. No server."""

import asyncio
from pathlib import Path

import pytest
from pymongo import IndexModel

from migrator.errors import ExitCode, MigrationError
from migrator.profile import ferretdb, mongodb, profile_of
from migrator.schema.declared import Declared
from migrator.schema.diff import (
    BROKEN_SPEC,
    CREATED_BY_TOOLKIT,
    DECLARED_REMOVED,
    EXTRA_INDEX,
    HIDDEN_INDEX,
    INDEX_OPTIONS,
    MISSING_INDEX,
    REMOVED_INDEX,
    VALIDATOR_DIFFERS,
    SchemaState,
    drift,
    plan_schema,
    schema_state,
)
from migrator.schema.listed import Listed, index_of, validator_of
from migrator.schema.model import CREATE, DROP, REPLACE, SKIP, UNHIDE, VALIDATOR, Index, SchemaPlan

MONGODB, FERRETDB = mongodb("7.0.12"), ferretdb("7.0.42")
C = "chat_messages"


def ix(*keys, collection=C, **options) -> Index:
    return index_of(collection, IndexModel(list(keys), **options).document)


COMPOUND, USER, SESSION = ix(("session_id", 1), ("created_at", 1)), ix(("user_id", 1)), ix(("session_id", 1))
SCHEMA = {"validator": {"$jsonSchema": {"bsonType": "object", "required": ["session_id"]}}}


def spec(*indexes, removed=(), validators=None) -> Declared:
    return Declared(Path("_schema.py"), tuple(indexes), tuple(removed), validators or {})


def kinds(plan: SchemaPlan) -> list[tuple[str, str]]:
    return [(step.kind, step.index.name if step.index else step.collection) for step in plan.steps]


def test_the_chat_messages_declaration_on_a_database_beanie_indexed():
    """Beanie built session_id_1: the compound index is created first, then session_id_1 (declared removed)
    dropped; user_id_1 created; nothing rebuilt."""
    plan = plan_schema(spec(COMPOUND, USER, removed=[SESSION]), Listed((SESSION,)), set(), MONGODB)
    assert kinds(plan) == [(CREATE, COMPOUND.name), (CREATE, USER.name), (DROP, SESSION.name)]
    assert plan.steps[-1].reason == DECLARED_REMOVED
    assert plan.unknown == () and plan.adopted == ()


def test_an_index_that_matches_is_adopted_whatever_its_name():
    by_hand = Index(C, COMPOUND.keys, COMPOUND.options, name="history")
    plan = plan_schema(spec(COMPOUND, USER), Listed((by_hand, USER)), set(), MONGODB)
    assert plan.steps == () and [index.name for index in plan.adopted] == ["history", "user_id_1"]
    assert drift(plan) == []


def test_same_keys_other_options_is_replaced_drop_first_unless_both_can_stand():
    unique = ix(("user_id", 1), unique=True)
    plan = plan_schema(spec(unique), Listed((USER,)), set(), MONGODB)
    assert kinds(plan) == [(REPLACE, "user_id_1")]
    assert plan.steps[0].previous == USER and not plan.steps[0].build_first  # unique: cannot stand beside it
    french = ix(("user_id", 1), collation={"locale": "fr"}, name="user_id_fr")
    plan = plan_schema(spec(french), Listed((USER,)), set(), MONGODB)
    assert plan.steps[0].build_first  # differs by collation alone, named differently: built before the drop
    same_name = ix(("user_id", 1), collation={"locale": "fr"})
    assert not plan_schema(spec(same_name), Listed((USER,)), set(), MONGODB).steps[0].build_first
    [difference] = drift(plan_schema(spec(unique), Listed((USER,)), set(), MONGODB))
    assert difference.kind == INDEX_OPTIONS and "user_id_1 {user_id: 1} differs" in difference.text
    assert "{user_id: 1}, unique" in difference.text


def test_only_indexes_the_toolkit_created_or_declared_removed_are_dropped_unknown_ones_are_kept():
    by_hand, old = ix(("content", 1)), ix(("role", 1))
    plan = plan_schema(spec(COMPOUND), Listed((COMPOUND, by_hand, old)), {old, COMPOUND}, MONGODB)
    assert kinds(plan) == [(DROP, "role_1")] and plan.steps[0].reason == CREATED_BY_TOOLKIT
    assert plan.unknown == (by_hand,)
    assert [(d.name, d.kind) for d in drift(plan)] == [("chat_messages.role_1", EXTRA_INDEX)]


def test_a_name_taken_by_an_unknown_index_is_said_before_the_build_fails():
    squatter = Index(C, (("role", 1),), name="user_id_1")
    plan = plan_schema(spec(USER), Listed((squatter,)), set(), MONGODB)
    assert kinds(plan) == [(CREATE, "user_id_1")] and plan.unknown == (squatter,)
    assert plan.steps[0].reason == ("its name is taken by chat_messages.user_id_1 {role: 1}: the build will fail; "
                                    "name one of them otherwise")


def test_toolkit_created_indexes_of_a_collection_no_longer_declared_are_dropped():
    gone = ix(("at", -1), collection="audit")
    plan = plan_schema(spec(COMPOUND), Listed((COMPOUND, gone)), {gone}, MONGODB)
    assert kinds(plan) == [(DROP, "at_-1")] and plan.steps[0].collection == "audit"


def test_drops_come_after_every_build():
    other = ix(("at", 1), collection="audit")
    plan = plan_schema(spec(COMPOUND, other, removed=[SESSION]), Listed((SESSION,)), set(), MONGODB)
    assert kinds(plan) == [(CREATE, COMPOUND.name), (CREATE, "at_1"), (DROP, SESSION.name)]


def test_a_hidden_declared_index_is_unhidden_not_rebuilt():
    plan = plan_schema(spec(USER), Listed((USER,), hidden=frozenset({USER})), set(), MONGODB)
    assert kinds(plan) == [(UNHIDE, "user_id_1")] and plan.adopted == (USER,)
    assert drift(plan)[0].kind == HIDDEN_INDEX


def test_what_ferretdb_cannot_build_is_skipped_with_a_reason_and_is_no_drift():
    partial = ix(("status", 1), partialFilterExpression={"rating": {"$gt": 5}})
    declared = [partial, ix(("email", 1), sparse=True), ix(("at", 1), expireAfterSeconds=60),
                ix(("c", 1), collation={"locale": "fr"}), ix(("content", "text")), COMPOUND]
    plan = plan_schema(spec(*declared), Listed(()), set(), FERRETDB)
    assert [step.kind for step in plan.steps] == [SKIP] * 5 + [CREATE]
    reasons = [step.reason for step in plan.steps[:5]]
    assert reasons == [f"{FERRETDB.label} cannot build {what}" for what in (
        "a partial index (partialFilterExpression)", "a sparse index", "a TTL index (expireAfterSeconds)",
        "an index with a collation")] + [f"{FERRETDB.label} cannot build a text index (keys of 1 and -1 only)"]
    assert [d.kind for d in drift(plan)] == [MISSING_INDEX]
    plain = ix(("at", 1))  # built by an earlier run, before the declaration became a TTL index: kept, not dropped
    kept = plan_schema(spec(ix(("at", 1), expireAfterSeconds=60)), Listed((plain,)), {plain}, FERRETDB)
    assert [step.kind for step in kept.steps] == [SKIP] and kept.unknown == ()
    assert all(step.kind == CREATE for step in plan_schema(spec(*declared), Listed(()), set(), MONGODB).steps)


def test_validators_are_compared_set_when_they_differ_and_skipped_on_ferretdb():
    wanted = validator_of({**SCHEMA, "validationLevel": "moderate"})
    assert wanted is not None
    plan = plan_schema(spec(validators={C: wanted}), Listed(), set(), MONGODB)
    assert kinds(plan) == [(VALIDATOR, C)] and plan.steps[0].validator == wanted
    assert plan.steps[0].reason == "none yet"
    assert [(d.name, d.kind) for d in drift(plan)] == [(C, VALIDATOR_DIFFERS)]
    same = Listed(validators={C: validator_of({**SCHEMA, "validationLevel": "moderate"})})
    assert plan_schema(spec(validators={C: wanted}), same, set(), MONGODB).steps == ()
    other = Listed(validators={C: validator_of(SCHEMA)})  # strict: another level
    assert plan_schema(spec(validators={C: wanted}), other, set(), MONGODB).steps[0].reason == \
        "differs from the declared one"
    skipped = plan_schema(spec(validators={C: wanted}), Listed(), set(), FERRETDB)
    assert kinds(skipped) == [(SKIP, C)] and skipped.steps[0].reason == f"{FERRETDB.label} has no validators"
    assert drift(skipped) == []
    undeclared = plan_schema(spec(), other, set(), MONGODB)  # a validator not declared is left alone
    assert undeclared.steps == ()


def test_hidden_indexes_need_mongodb_4_4_and_commit_quorum_a_replica_set_too():
    assert mongodb("4.4.0").hidden_indexes and mongodb("7.0.12").hidden_indexes
    assert not mongodb("4.2.24").hidden_indexes and not FERRETDB.hidden_indexes
    replica_set = {"setName": "rs0", "logicalSessionTimeoutMinutes": 30}
    assert profile_of({"version": "7.0.12"}, replica_set).commit_quorum
    assert not profile_of({"version": "4.2.24"}, replica_set).commit_quorum
    assert not profile_of({"version": "7.0.12"}, {}).commit_quorum  # a standalone server
    ferret = profile_of({"version": "7.0.42", "ferretdbVersion": "v1.24.2"}, {})
    assert not (ferret.commit_quorum or ferret.validators or ferret.partial_indexes or ferret.ttl_indexes)


def test_drift_names_each_difference():
    plan = plan_schema(spec(COMPOUND, removed=[SESSION]), Listed((SESSION,)), set(), MONGODB)
    assert [(d.name, d.kind, d.text) for d in drift(plan)] == [
        ("chat_messages.session_id_1_created_at_1", MISSING_INDEX,
         "missing index chat_messages.session_id_1_created_at_1 {session_id: 1, created_at: 1}"),
        ("chat_messages.session_id_1", REMOVED_INDEX,
         "index chat_messages.session_id_1 {session_id: 1} is there, declared removed")]
    assert drift(None) == []


def test_a_broken_spec_module_is_one_difference_other_errors_go_on():
    async def broken():
        raise MigrationError("_schema.py: syntax error at line 3: invalid syntax", ExitCode.USAGE)

    state = asyncio.run(schema_state(broken))
    [difference] = state.differences
    assert state.plan is None and state.declared and difference.kind == BROKEN_SPEC
    assert "_schema.py: syntax error at line 3" in difference.text

    async def unreachable():
        raise MigrationError("cannot reach", ExitCode.UNREACHABLE)

    async def nothing_declared():
        return None

    assert asyncio.run(schema_state(nothing_declared)) == SchemaState(None, (), declared=False)
    with pytest.raises(MigrationError):
        asyncio.run(schema_state(unreachable))

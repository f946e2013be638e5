"""What undoes a schema run (migrator/schema/build.py: rollback_plan), and how its steps are named; no server."""

from migrator.schema.build import collmod_options, rollback_plan
from migrator.schema.model import CREATE, DROP, VALIDATOR, Index

A = Index("c", (("a", 1),), name="a_1")
B = Index("c", (("b", -1), ("a", 1)), (("unique", True),))
OLD = Index("c", (("a", 1),), (("unique", True),), name="a_unique")


def test_a_rollback_drops_what_the_run_created_last_first_then_builds_what_it_dropped_then_sets_validators_back():
    planned = rollback_plan([A, B], [OLD], {"c": {"validator": {"x": 1}}, "d": {}})
    assert [(step.kind, step.index, step.validator) for step in planned.steps] == [
        (DROP, B, None), (DROP, A, None), (CREATE, OLD, None),
        (VALIDATOR, None, {"validator": {"x": 1}}), (VALIDATOR, None, {"validator": {}})]
    assert [step.collection for step in planned.steps] == ["c", "c", "c", "c", "d"]


def test_an_index_is_named_by_its_name_else_by_the_servers_default_name():
    assert A.server_name == "a_1" and B.server_name == "b_-1_a_1"
    assert B.shown() == "c.b_-1_a_1 {b: -1, a: 1}, unique" and A.shown() == "c.a_1 {a: 1}"


def test_a_validator_goes_to_collmod_with_its_level_and_action():
    assert collmod_options({"$jsonSchema": {}}) == {"validator": {"$jsonSchema": {}}}
    assert collmod_options({"validator": {"$jsonSchema": {}}, "validationLevel": "moderate", "other": 1}) == {
        "validator": {"$jsonSchema": {}}, "validationLevel": "moderate"}

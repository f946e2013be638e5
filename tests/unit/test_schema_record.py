"""How schema runs are recorded, and which indexes the toolkit created (migrator/schema/record.py); no server."""

from migrator.schema.model import Index, freeze
from migrator.schema.record import NAME, SchemaRecord, created_indexes, definition, index_of, last_run

BY_SESSION = Index("chat_messages", (("session_id", 1), ("created_at", 1)), name="session_id_1_created_at_1")
BY_USER = Index("chat_messages", (("user_id", 1),), name="user_id_1")
UNIQUE_EMAIL = Index("users", (("email", 1),), (("unique", True),), name="email_1")
PARTIAL = Index("users", (("email", 1),), (("partialFilterExpression", freeze({"$and": [{"a": 1}, {"b": {"$gt": 2}}]})),
                                          ("unique", True)), name="email_partial")


def run(run_id: str, action: str = "apply", state: str = "applied", **what) -> list[dict]:
    """A run as the changelog has it: its start, then its end with the schema field."""
    record = SchemaRecord(**what)
    start = {"name": NAME, "action": action, "state": "running", "run_id": run_id}
    end = {"name": NAME, "action": action, "state": state, "run_id": run_id, NAME: record.field()}
    if action == "rollback":
        start["rolls_back"] = end["rolls_back"] = what.pop("of", None) or run_id.removeprefix("undo-")
    return [start, end]


def test_a_definition_builds_the_same_index_again():
    for index in (BY_SESSION, BY_USER, UNIQUE_EMAIL, PARTIAL):
        again = index_of(definition(index))
        assert again == index and again.name == index.name and hash(again) == hash(index)


def test_a_definition_read_back_from_bson_compares_equal():
    stored = {"collection": "users", "keys": [{"field": "email", "direction": 1.0}], "name": "email_partial",
              "options": {"unique": True, "partialFilterExpression": {"$and": [{"a": 1}, {"b": {"$gt": 2}}]}}}
    assert index_of(stored) == PARTIAL


def test_created_is_what_applied_runs_created_minus_what_they_dropped():
    entries = run("r1", created=[BY_SESSION, BY_USER]) + run("r2", created=[UNIQUE_EMAIL], dropped=[BY_USER])
    assert created_indexes(entries) == {BY_SESSION, UNIQUE_EMAIL}


def test_a_failed_run_owns_what_it_built_before_failing_and_a_start_owns_nothing():
    entries = run("r1", state="failed", created=[BY_SESSION]) + run("r2")[:1]
    assert created_indexes(entries) == {BY_SESSION}


def test_other_names_and_adopted_indexes_are_not_the_toolkits():
    entries = [{"name": "20250101_x", "action": "apply", "state": "applied"}] + run("r1", adopted=[BY_USER])
    assert created_indexes(entries) == set()


def test_a_rollback_gives_back_the_owner_each_index_had():
    # r1 created BY_USER; r2 dropped it and BY_SESSION (declared removed, never the toolkit's) and created UNIQUE_EMAIL
    entries = (run("r1", created=[BY_USER]) + run("r2", created=[UNIQUE_EMAIL], dropped=[BY_USER, BY_SESSION])
               + run("undo-r2", action="rollback", state="rolled_back", created=[BY_USER, BY_SESSION],
                     dropped=[UNIQUE_EMAIL]))
    assert created_indexes(entries) == {BY_USER}


def test_the_last_run_is_the_latest_that_changed_something_and_is_not_rolled_back():
    first = run("r1", created=[BY_USER])
    assert last_run(first) == first[-1]
    nothing = run("r2", adopted=[BY_SESSION])
    assert last_run(first + nothing) == first[-1]
    second = run("r3", state="failed", created=[UNIQUE_EMAIL])
    assert last_run(first + second) == second[-1]
    undone = run("undo-r3", action="rollback", state="rolled_back", dropped=[UNIQUE_EMAIL])
    assert last_run(first + second + undone) == first[-1]
    assert last_run(first + run("undo-r1", action="rollback", state="rolled_back", dropped=[BY_USER])) is None
    assert last_run([]) is None

"""The transactional path's protocol, on the wire (migrator.fencing.TransactionFence): FerretDB has no transactions,
so the proxy presents it as a replica set's primary and answers commitTransaction/abortTransaction itself
(tests/wire_proxy.py, replica_set=True). What it proves: each batch is one transaction that touches the lock
first, MongoDB's retry rules are followed, and a lost lock aborts. What it cannot: isolation (that an aborted
transaction left nothing): every statement is applied when the proxy forwards it. A real replica set shows that."""

from conftest import NAME, SCRIPT, load, run_here
from wire_proxy import Fault, WireProxy

WRITE_CONFLICT, SHUTDOWN_IN_PROGRESS = 112, 91
TOUCH = ("findAndModify", "migrations_lock")


def transactions(proxy: WireProxy) -> list[list[dict]]:
    """The commands of each transaction, in order of their first command (by session and txnNumber)."""
    found: dict[tuple, list[dict]] = {}
    for body in proxy.bodies:
        if "autocommit" in body or next(iter(body)) in ("commitTransaction", "abortTransaction"):
            found.setdefault((body["lsid"]["id"], body["txnNumber"]), []).append(body)
    return list(found.values())


def name(body: dict) -> tuple[str, object]:
    command = next(iter(body))
    return command, body[command]


def run(env, *args):
    # fixed batches (--target-batch-ms 0): the tests count them, and a loaded machine must not resize them
    return run_here(SCRIPT, "--batch-size", "200", "--target-batch-ms", "0", "--progress-interval", "600", *args,
                    env=env)


def test_each_batch_is_one_transaction_that_touches_the_lock_first(db, primary, primary_env):
    load(db, 600)  # 540 to migrate: 3 batches of 200 at most, and the walk's last checkpoint

    result = run(primary_env)

    assert result.code == 0, result
    done = transactions(primary)
    for commands in done:
        assert name(commands[0]) == TOUCH, [name(body) for body in commands]
        assert commands[0]["startTransaction"] is True
        assert all("startTransaction" not in body for body in commands[1:])
        assert all(body["autocommit"] is False and body["lsid"] == commands[0]["lsid"] for body in commands)
        assert name(commands[-1])[0] == "commitTransaction"
    batches = [commands for commands in done if any(name(body) == ("update", "chat_messages") for body in commands)]
    assert len(batches) == 3
    for commands in batches:  # the data, then the checkpoint, in the same transaction
        assert name(commands[-2]) == ("update", "migrations_checkpoints")
    records = [commands for commands in done if ("insert", "migrations_changelog") in map(name, commands)]
    assert len(records) == 2  # running, then applied: each stamped and inserted in a transaction that touched the lock
    for commands in records:
        assert [name(body) for body in commands] == [TOUCH, TOUCH, ("insert", "migrations_changelog"),
                                                     ("commitTransaction", 1)]
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0
    assert db.migrations_changelog.count_documents({"name": NAME, "state": "applied"}) == 1


def test_a_transient_transaction_error_runs_the_whole_transaction_again(db, primary, primary_env):
    load(db, 600)
    conflict = primary.add(Fault("update", "chat_messages", nth=5, action="error", code=WRITE_CONFLICT,
                                 labels=("TransientTransactionError",)))  # the 2nd batch's first bulk of 50

    result = run(primary_env)

    assert result.code == 0, result
    assert conflict.fired == 1
    done = transactions(primary)
    aborted = [commands for commands in done if name(commands[-1])[0] == "abortTransaction"]
    assert len(aborted) == 1
    assert [name(body)[0] for body in aborted[0]] == ["findAndModify", "update", "abortTransaction"]
    again = done[done.index(aborted[0]) + 1]  # the same batch, from its first statement: the lock touched again
    assert name(again[0]) == TOUCH and again[0]["startTransaction"] is True
    assert [name(body) for body in again] == [TOUCH, *[("update", "chat_messages")] * 4,
                                              ("update", "migrations_checkpoints"), ("commitTransaction", 1)]
    assert "retrying in" not in result.output  # with_transaction's own retry, not the toolkit's
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0
    assert db.migrations_changelog.count_documents({"name": NAME, "state": "applied"}) == 1


def test_an_unknown_commit_result_commits_again_without_running_the_transaction_again(db, primary, primary_env):
    load(db, 600)
    unknown = primary.add(Fault("commitTransaction", nth=2, action="error", code=64,
                                labels=("UnknownTransactionCommitResult",)))

    result = run(primary_env)

    assert result.code == 0, result
    assert unknown.fired == 1
    done = transactions(primary)
    twice = [commands for commands in done if [name(body)[0] for body in commands].count("commitTransaction") == 2]
    assert len(twice) == 1
    assert [name(body)[0] for body in twice[0]].count("findAndModify") == 1  # the statements were not sent again
    assert twice[0][-1]["writeConcern"]["w"] == "majority"
    applied = db.migrations_changelog.find_one({"name": NAME, "state": "applied"})
    assert applied["modified"] == 540 and "modified_at_least" not in applied  # exact: no statement sent twice


def test_a_lock_touch_that_matches_nothing_aborts_and_stops_the_run(db, primary, primary_env):
    load(db, 600)
    # The 1st transaction records the run's start (the lock touched, then the changelog's stamp); the 2nd clears a
    # rollback's checkpoints; the 3rd is the first batch; the 2nd batch's touch (the 5th findAndModify in a
    # transaction) finds the lock another's.
    lost = primary.add(Fault("findAndModify", "migrations_lock", nth=5, action="patch",
                             match=lambda body: "autocommit" in body,
                             patch=lambda reply: {**reply, "value": None,
                                                  "lastErrorObject": {"n": 0, "updatedExisting": False}}))

    result = run(primary_env)

    assert result.code == 3, result
    assert lost.fired == 1
    assert "lost the migration lock" in result.output
    done = transactions(primary)
    assert [name(body)[0] for body in done[1]] == ["findAndModify", "delete", "commitTransaction"]
    assert [name(body)[0] for body in done[3]] == ["findAndModify", "abortTransaction"]  # nothing after the touch
    assert len(done) == 4  # and no transaction after it
    assert primary.count("update", "chat_messages") == 4  # the first batch's 4 bulks of 50 only
    assert db.migrations_changelog.count_documents({"state": {"$in": ["applied", "rolled_back"]}}) == 0

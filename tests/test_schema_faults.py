"""The schema's build (migrator/schema/build.py) under what a replica set does to a run, shown on the wire with the
fault-injecting proxy (tests/wire_proxy.py): a lost reply, a step-down, a lock lost while an index builds. And an
index made by hand with the declared keys but other options, replaced. Real server."""

import textwrap

import pytest

from conftest import RUNNER, indexes, schema_runs, the_error, without_timestamps
from wire_proxy import Fault

HOST_UNREACHABLE, UNAUTHORIZED, NOT_WRITABLE_PRIMARY = 6, 13, 10107
SCHEMA = '''
    from pymongo import IndexModel

    INDEXES = {"chat_messages": [IndexModel([("session_id", 1), ("created_at", 1)]), IndexModel([("user_id", 1)])]}
    REMOVED = {"chat_messages": ["session_id"]}
    '''
DECLARED = {"_id_": {"_id": 1}, "session_id_1_created_at_1": {"session_id": 1, "created_at": 1},
            "user_id_1": {"user_id": 1}}
APPLIED = ("apply", "applied", ["session_id_1_created_at_1", "user_id_1"], ["session_id_1"])


@pytest.fixture
def folder(tmp_path):
    """A migrations folder with no migration and a _schema.py: two indexes to build, `session_id_1` to drop."""
    path = tmp_path / "migrations"
    path.mkdir()
    (path / "_schema.py").write_text(textwrap.dedent(SCHEMA))
    return path


@pytest.fixture
def loaded(db):
    db.chat_messages.insert_many([{"session_id": f"s{n % 10}", "seq": n // 10, "user_id": f"u{n % 7}",
                                   "created_at": n} for n in range(200)])
    db.chat_messages.create_index([("session_id", 1)])  # what Beanie used to build, declared removed
    return db


@pytest.mark.parametrize("command", ["createIndexes", "dropIndexes"])
def test_a_lost_reply_to_a_build_or_a_drop_is_sent_again_and_the_run_is_recorded_as_done(
        cli, loaded, folder, proxy, proxied_env, command):
    lost = proxy.add(Fault(command, "chat_messages", action="lose_reply"))  # applied, its reply never comes

    result = cli(RUNNER, "--all", "--migrations-dir", str(folder), "--retry-for", "30", env=proxied_env)

    assert result.code == 0, result
    assert lost.fired == 1
    assert proxy.count(command, "chat_messages") == {"createIndexes": 3, "dropIndexes": 2}[command]  # one sent again
    assert "retrying in" in result.output
    assert indexes(loaded) == DECLARED
    assert schema_runs(loaded)[-1] == APPLIED  # the drop whose reply was lost (IndexNotFound when sent again) too
    assert "schema applied: 2 indexes created, 1 index dropped in " in result.stderr
    assert cli(RUNNER, "--check", "--migrations-dir", str(folder)).code == 0


def test_a_build_refused_by_a_primary_that_stepped_down_is_sent_again(cli, loaded, folder, proxy, proxied_env):
    stepped_down = proxy.add(Fault("createIndexes", "chat_messages", times=2, action="error",
                                   code=NOT_WRITABLE_PRIMARY))

    result = cli(RUNNER, "--all", "--migrations-dir", str(folder), "--retry-for", "30", env=proxied_env)

    assert result.code == 0, result
    assert stepped_down.fired == 2
    assert "chat_messages: building index session_id_1_created_at_1: NotPrimaryError" in result.output
    assert indexes(loaded) == DECLARED and schema_runs(loaded)[-1] == APPLIED


def test_a_runner_that_loses_the_lock_while_an_index_builds_records_nothing_done_and_sends_nothing_more(
        cli, loaded, folder, proxy, proxied_env):
    build = proxy.add(Fault("createIndexes", "chat_messages", action="hold", seconds=6))  # lands late
    proxy.add(Fault("update", "migrations_lock", times=10**6, action="error", code=HOST_UNREACHABLE, after=build))

    first = cli(RUNNER, "--all", "--migrations-dir", str(folder), "--lease", "3", env=proxied_env)

    assert first.code == 3, first
    assert "lost the migration lock" in the_error(first)
    assert proxy.count("dropIndexes") == 0 and proxy.count("collMod") == 0
    assert proxy.count("createIndexes") == 1  # the one under way: no other build after it
    failed = loaded.migrations_changelog.find_one({"name": "schema", "state": "failed"})
    assert failed["lock_lost"] is True and failed["schema"]["created"] == failed["schema"]["dropped"] == []
    assert loaded.migrations_changelog.count_documents({"name": "schema", "state": "applied"}) == 0

    second = cli(RUNNER, "--all", "--migrations-dir", str(folder), "--lock-timeout", "20")  # takes the lock over
    assert second.code == 0, second
    assert indexes(loaded) == DECLARED
    assert [run[:2] for run in schema_runs(loaded)][-1] == ("apply", "applied")
    assert cli(RUNNER, "--check", "--migrations-dir", str(folder)).code == 0


UNIQUE_SEQ = '''
    from pymongo import IndexModel

    INDEXES = {"chat_messages": [IndexModel([("session_id", 1), ("seq", 1)], unique=True, name="session_seq")]}
    '''


def test_an_index_with_the_declared_keys_but_other_options_is_named_by_check_and_replaced(cli, loaded, folder):
    (folder / "_schema.py").write_text(textwrap.dedent(UNIQUE_SEQ))
    loaded.chat_messages.create_index([("session_id", 1), ("seq", 1)], name="session_seq")  # by hand, not unique

    check = cli(RUNNER, "--check", "--migrations-dir", str(folder))
    assert check.code == 6, check
    assert "index chat_messages.session_seq {session_id: 1, seq: 1} differs from the declared" in check.output

    replaced = cli(RUNNER, "--all", "--migrations-dir", str(folder))
    assert replaced.code == 0, replaced
    listed = {index["name"]: index for index in loaded.chat_messages.list_indexes()}
    assert dict(listed["session_seq"]["key"]) == {"session_id": 1, "seq": 1}
    assert listed["session_seq"].get("unique") is True
    assert cli(RUNNER, "--check", "--migrations-dir", str(folder)).code == 0
    lines = without_timestamps(replaced.stderr)
    assert "chat_messages: index session_seq dropped" in lines and "building index session_seq" in lines


def test_a_long_build_reports_the_progress_the_server_gives_and_nothing_where_it_gives_none(
        cli, loaded, folder, proxy, proxied_env):
    polls = iter(range(1, 10**6))

    def building(answer: dict) -> dict:  # what MongoDB's currentOp says of an index build under way
        return {**answer, "inprog": [{"ns": f"{loaded.name}.chat_messages", "msg": "Index Build: scanning collection",
                                      "progress": {"done": 50 * next(polls), "total": 200}}]}
    proxy.add(Fault("createIndexes", "chat_messages", times=2, action="delay", seconds=1.0))
    asked = proxy.add(Fault("currentOp", times=3, action="patch", patch=building))
    refused = proxy.add(Fault("currentOp", action="error", code=UNAUTHORIZED, labels=(), after=asked))  # no inprog

    result = cli(RUNNER, "--all", "--migrations-dir", str(folder), "--progress-interval", "0.2", env=proxied_env)

    assert result.code == 0, result
    assert asked.fired == 3 and refused.fired == 1
    watched = [name for name, _ in proxy.commands if name in ("createIndexes", "currentOp")]
    second = watched.index("createIndexes", 1)
    assert watched[:5] == ["createIndexes"] + ["currentOp"] * 4
    # refused: asked no more (the next build's first ask, on another connection, may reach the proxy before its build)
    assert second <= 6, watched
    assert watched[5:].count("currentOp") >= 3  # the next build asked again, every 0.2 s: FerretDB's answer, none
    lines = without_timestamps(result.stderr)
    assert "WARNING" not in lines and "ERROR" not in lines
    assert "INFO    chat_messages: building index session_id_1_created_at_1: 100 of 200 documents (50%), " in lines
    assert "building index user_id_1:" not in lines  # FerretDB has no progress to give: no line, no error
    assert "INFO    chat_messages: index user_id_1 built in " in lines
    assert indexes(loaded) == DECLARED and schema_runs(loaded)[-1] == APPLIED

"""Bad settings, unreachable or refusing servers, and the test-database reset: one line, exit code, masked."""

import socket
import time

import pytest

from sample_messages import chat_messages

PASSWORD = "Sup3rSecretPw"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_clear_line(result, code, *texts):
    assert result.code == code, result
    errors = [line for line in result.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result
    for text in texts:
        assert text in errors[0], result
    assert "Traceback" not in result.output


def test_unreachable_server_fails_fast_clear_and_masked(cli, env):
    url = f"mongodb://admin:{PASSWORD}@127.0.0.1:{closed_port()}/app?authSource=admin"
    started = time.monotonic()
    result = cli("run_migrations.py", "--all", "--server-timeout", "1", env={**env, "MONGODB_URL": url})
    assert time.monotonic() - started < 15
    assert_one_clear_line(result, 5, "cannot reach MongoDB at 127.0.0.1:", "mongodb://admin:****@127.0.0.1")
    assert PASSWORD not in result.output


def test_wrong_credentials_exit_5_masked(cli, env, is_ferretdb, server_url):
    if not is_ferretdb and "@" in server_url:
        pytest.skip("needs a server URL without credentials to add wrong ones to")
    host = server_url.split("://", 1)[1].split("/", 1)[0]
    url = f"mongodb://intruder:{PASSWORD}@{host}/app?authSource=admin"
    result = cli("run_migrations.py", "--all", env={**env, "MONGODB_URL": url})
    assert_one_clear_line(result, 5, "authentication to", "failed", "mongodb://intruder:****@")
    assert PASSWORD not in result.output


def test_malformed_url_is_a_settings_error(cli, env):
    result = cli("run_migrations.py", "--all", env={**env, "MONGODB_URL": f"mongodb//admin:{PASSWORD}@nowhere"})
    assert_one_clear_line(result, 2, "MONGODB_URL is not a valid MongoDB URL")
    assert PASSWORD not in result.output


def test_missing_url_names_the_setting(cli, env, tmp_path):
    environment = {k: v for k, v in env.items() if k != "MONGODB_URL"}
    result = cli("run_migrations.py", "--all", env=environment, cwd=tmp_path)
    assert_one_clear_line(result, 2, "MONGODB_URL is not set")


def test_env_file_is_read_and_environment_wins(cli, env, db, tmp_path):
    db.chat_messages.insert_many(chat_messages(3, with_metadata_every=0))
    env_file = tmp_path / "custom.env"
    env_file.write_text(f"MONGODB_URL={env['MONGODB_URL']}\nMONGODB_DATABASE_NAME=ignored_test\n")
    environment = {k: v for k, v in env.items() if k != "MONGODB_URL"}  # the database name stays in the environment

    result = cli("run_migrations.py", "--all", "--env-file", str(env_file), env=environment)

    assert result.code == 0, result
    assert db.chat_messages.count_documents({"metadata": None}) == 3


def test_missing_env_file_is_named(cli, env):
    result = cli("run_migrations.py", "--all", env={**env, "ENV_FILE": "nope.env"})
    assert_one_clear_line(result, 2, "env file 'nope.env' not found")


RESET = "reset_chat_messages_session_test.py"


def test_reset_empties_chat_messages_and_bookkeeping_of_a_test_database(db, cli):
    db.chat_messages.insert_many(chat_messages(5))
    db.migrations_changelog.insert_one({"name": "x"})
    db.keep_me.insert_one({"x": 1})

    result = cli(RESET, "--yes")

    assert result.code == 0, result
    assert "dropped chat_messages (5 documents)" in result.output
    assert sorted(db.list_collection_names()) == ["keep_me"]


def test_reset_refuses_a_database_not_named_test(mongo, cli, env):
    name = "flowise_proxy_prod"
    mongo[name].chat_messages.insert_one({"x": 1})
    try:
        result = cli(RESET, "--yes", env={**env, "MONGODB_DATABASE_NAME": name})
        assert_one_clear_line(result, 2, "refusing to reset 'flowise_proxy_prod'")
        assert mongo[name].chat_messages.count_documents({}) == 1
    finally:
        mongo.drop_database(name)


def test_reset_without_yes_on_a_non_terminal_changes_nothing(db, cli):
    db.chat_messages.insert_many(chat_messages(2))
    result = cli(RESET, input="yes\n")
    assert_one_clear_line(result, 2, "refusing to delete every document")
    assert db.chat_messages.count_documents({}) == 2

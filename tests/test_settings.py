"""Settings a user can get wrong: database names, env files, URLs. One ERROR line, exit 2, no traceback."""

import subprocess
import sys

import pytest

from conftest import REPO, databases
from sample_messages import chat_messages

RULE = 'a MongoDB database name has at most 63 bytes and none of / \\ . " $, a space or NUL'


def the_error(result) -> str:
    """The one ERROR line of a failed command (and no traceback)."""
    errors = [line for line in result.output.splitlines() if " ERROR " in f" {line} "]
    assert len(errors) == 1 and "Traceback" not in result.output, result
    return errors[0]


@pytest.fixture
def without_settings(env, tmp_path) -> dict:
    """The environment with no MONGODB_* settings and no .env of the developer's: the env file decides."""
    return {k: v for k, v in env.items() if k not in {"MONGODB_URL", "MONGODB_DATABASE_NAME"}}


@pytest.mark.parametrize("name, says", [
    ("chat$messages_test", "contains $"),
    ("chat messages_test", "contains a space"),
    ("chat.messages_test", "contains ."),
    ("chat/messages_test", "contains /"),
    ('chat"messages_test', 'contains "'),
    ("chat\\messages_test", "contains \\"),
    ("x" * 59 + "_test", "is 64 bytes long"),
], ids=["dollar", "space", "dot", "slash", "quote", "backslash", "64 bytes"])
def test_a_database_name_mongodb_forbids_is_exit_2_naming_the_setting_and_the_rule(cli, env, mongo, name, says):
    before = set(databases(mongo, name))

    result = cli("run_migrations.py", "--status", env={**env, "MONGODB_DATABASE_NAME": name})

    assert result.code == 2, result
    error = the_error(result)
    assert "MONGODB_DATABASE_NAME" in error and "(from the environment)" in error, error
    assert f"{says}: {RULE}" in error, error
    assert set(databases(mongo, name)) == before


def test_63_bytes_is_still_a_valid_name(cli, env, mongo):
    name = "x" * 58 + "_test"
    try:
        result = cli("run_migrations.py", "--status", env={**env, "MONGODB_DATABASE_NAME": name})
        assert result.code == 0, result
    finally:
        mongo.drop_database(name)


@pytest.mark.parametrize("name", ["café_test", "sales*2026_test"], ids=["non-ASCII", "asterisk"])
def test_a_name_the_server_refuses_is_exit_2_and_one_allowed_by_mongodb_is_used(cli, env, mongo, is_ferretdb, name):
    """Legal on MongoDB for Linux; FerretDB (and a Windows server, for `*`) refuses them: code 73, InvalidNamespace."""
    try:
        result = cli("run_migrations.py", "--status", env={**env, "MONGODB_DATABASE_NAME": name})
        if is_ferretdb:
            assert result.code == 2, result
            error = the_error(result)
            assert f"refuses the database name {name!r} (MONGODB_DATABASE_NAME): FerretDB takes only Latin letters, " \
                   "digits, _ and - (at most 63); choose another name" in error, error
        else:
            assert result.code == 0, result
    finally:
        mongo.drop_database(name)


def test_a_utf16_env_file_is_exit_2_saying_to_save_it_as_utf8(cli, env, without_settings, tmp_path):
    env_file = tmp_path / "notepad.env"  # Windows Notepad's "Unicode": UTF-16 with a byte-order mark
    env_file.write_text(f"MONGODB_URL={env['MONGODB_URL']}\r\nMONGODB_DATABASE_NAME=x_test\r\n", encoding="utf-16")

    result = cli("run_migrations.py", "--status", "--env-file", str(env_file), env=without_settings)

    assert result.code == 2, result
    assert the_error(result).endswith(f"{env_file} is not UTF-8 (save it as UTF-8)")


def test_a_utf8_env_file_with_a_byte_order_mark_is_read(cli, env, db, without_settings, tmp_path):
    db.chat_messages.insert_many(chat_messages(2))
    env_file = tmp_path / "notepad.env"  # Notepad's "UTF-8 with BOM"
    env_file.write_text(f"MONGODB_URL={env['MONGODB_URL']}\r\nMONGODB_DATABASE_NAME={db.name}\r\n",
                        encoding="utf-8-sig")

    result = cli("run_migrations.py", "--all", "--env-file", str(env_file), env=without_settings)

    assert result.code == 0, result
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0


def test_a_line_of_the_env_file_that_cannot_be_read_is_named_with_the_file(cli, env, without_settings, tmp_path):
    env_file = tmp_path / "broken.env"
    env_file.write_text(f"MONGODB_DATABASE_NAME=x_test\nMONGODB_URL=\"{env['MONGODB_URL']}\n")  # unclosed quote

    result = cli("run_migrations.py", "--status", env={**without_settings, "ENV_FILE": str(env_file)})

    assert result.code == 2, result
    assert the_error(result).endswith(f"{env_file}, line 2: not a NAME=value line (check its quotes)")


def test_errors_about_a_setting_of_the_env_file_name_the_file(cli, without_settings, tmp_path):
    env_file = tmp_path / "custom.env"
    env_file.write_text("MONGODB_URL=http://example.com\nMONGODB_DATABASE_NAME=x_test\n")
    invalid = cli("run_migrations.py", "--status", "--env-file", str(env_file), env=without_settings)
    env_file.write_text("MONGODB_DATABASE_NAME=x_test\n")
    missing = cli("run_migrations.py", "--status", "--env-file", str(env_file), env=without_settings)

    assert (invalid.code, missing.code) == (2, 2)
    assert f"MONGODB_URL is not a valid MongoDB URL (from {env_file}): " in the_error(invalid)
    assert the_error(missing).endswith(f"MONGODB_URL is not set: set it in the environment or in {env_file}")


def test_a_url_with_surrounding_spaces_is_used_without_them(cli, env, db, without_settings, tmp_path):
    db.chat_messages.insert_many(chat_messages(2))
    env_file = tmp_path / "spaced.env"
    env_file.write_text(f'MONGODB_URL=" {env["MONGODB_URL"]} "\nMONGODB_DATABASE_NAME={db.name}\n')

    result = cli("run_migrations.py", "--all", "--env-file", str(env_file), env=without_settings)

    assert result.code == 0, result
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0


def test_sample_messages_says_which_database_name_the_server_refuses(env, is_ferretdb):
    if not is_ferretdb:
        pytest.skip("MongoDB on Linux takes this name")
    completed = subprocess.run([sys.executable, str(REPO / "scripts" / "sample_messages.py"), "--count", "3"],
                               env={**env, "MONGODB_DATABASE_NAME": "café_test"}, cwd=REPO,
                               capture_output=True, text=True, timeout=60)

    assert completed.returncode == 2, completed.stderr
    assert completed.stderr == ("error: the server refuses the database name 'café_test' (MONGODB_DATABASE_NAME): "
                                "FerretDB takes only Latin letters, digits, _ and - (at most 63)\n")

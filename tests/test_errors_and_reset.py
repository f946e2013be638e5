"""Settings from an env file, and the test-database reset. (Their bad inputs are rows of test_bad_input.py.)"""

from sample_messages import chat_messages


def test_env_file_is_read_and_environment_wins(cli, env, db, tmp_path):
    db.chat_messages.insert_many(chat_messages(3, with_metadata_every=0))
    env_file = tmp_path / "custom.env"
    env_file.write_text(f"MONGODB_URL={env['MONGODB_URL']}\nMONGODB_DATABASE_NAME=ignored_test\n")
    environment = {k: v for k, v in env.items() if k != "MONGODB_URL"}  # the database name stays in the environment

    result = cli("run_migrations.py", "--all", "--env-file", str(env_file), env=environment)

    assert result.code == 0, result
    assert db.chat_messages.count_documents({"metadata": None}) == 3


RESET = "reset_chat_messages_session_test.py"


def test_reset_empties_chat_messages_and_bookkeeping_of_a_test_database(db, cli):
    db.chat_messages.insert_many(chat_messages(5))
    db.migrations_changelog.insert_one({"name": "x"})
    db.migrations_checkpoints.insert_one({"_id": "add_metadata_to_chat_messages/1", "last_id": "x"})
    db.migrations_control.insert_one({"_id": "*", "state": "paused"})  # a pause left behind: the next run would wait
    db.keep_me.insert_one({"x": 1})

    result = cli(RESET, "--yes")

    assert result.code == 0, result
    assert "dropped chat_messages (5 documents)" in result.output
    assert sorted(db.list_collection_names()) == ["keep_me"]


"""--history and the provenance of every changelog entry: who ran it, from which commit, in which CI run."""

import getpass
import json
import subprocess

from conftest import REPO
from sample_messages import chat_messages

RUNNER = "run_migrations.py"
NAME = "add_metadata_to_chat_messages"


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def test_history_lists_apply_and_rollback_with_user_commit_and_ci_run(db, cli, env):
    db.chat_messages.insert_many(chat_messages(12, with_metadata_every=4))
    env.update(GITHUB_ACTIONS="true", GITHUB_REPOSITORY="acme/proxy", GITHUB_RUN_ID="4242",
               GITHUB_SERVER_URL="https://github.example")
    assert cli(RUNNER, "--all", env=env).code == 0
    assert cli(RUNNER, "--rollback-last", "--yes", env=env).code == 0

    listed = cli(RUNNER, "--history", "--json", env=env)

    assert listed.code == 0, listed
    events = json.loads(listed.stdout)
    # --all builds the indexes migrations/_schema.py declares after the migration: a schema run, recorded alike
    assert [(e["name"], e["action"], e["state"]) for e in events] == [(NAME, "apply", "running"),
                                                                         (NAME, "apply", "applied"),
                                                                         ("schema", "apply", "running"),
                                                                         ("schema", "apply", "applied"),
                                                                         (NAME, "rollback", "running"),
                                                                         (NAME, "rollback", "rolled_back")]
    for event in events:
        assert event["user"] == getpass.getuser()
        assert event["commit"] == head_commit() and len(event["commit"]) == 40
        assert event["ci"] == "https://github.example/acme/proxy/actions/runs/4242"
        assert event["host"] and event["pid"] and event["at"]
    assert events[1]["modified"] == 9 and events[5]["modified"] == 9

    table = cli(RUNNER, "--history", NAME, env=env).stdout.splitlines()
    assert table[0].split()[:4] == ["AT", "(UTC)", "MIGRATION", "ACTION"]
    assert len(table) == 5 and "rollback" in table[4] and head_commit()[:10] in table[4]


def test_history_of_an_unknown_migration_is_exit_2_and_of_none_says_so(db, cli):
    unknown = cli(RUNNER, "--history", "no_such_thing")
    assert unknown.code == 2 and "unknown migration 'no_such_thing'" in unknown.output
    empty = cli(RUNNER, "--history")
    assert empty.code == 0 and "no changelog entries" in empty.stdout


def test_a_migrations_folder_outside_git_records_no_commit(db, cli, tmp_path):
    (tmp_path / "plain.py").write_text('"""plain\n\nDate: 2025-01-01\n"""\n\nasync def up(db):\n    return None\n\n'
                                       'async def verify(db):\n    return True\n')
    assert cli(RUNNER, "--all", "--migrations-dir", str(tmp_path)).code == 0
    assert db.migrations_changelog.find_one({"name": "plain"})["commit"] == ""

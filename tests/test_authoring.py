"""Writing migrations: the --new template is a draft until edited, files that misbehave while being
imported, `Date:` (with a time) and `depends_on` checked; against the real server."""

import asyncio
import json
import re
import shutil
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from conftest import MIGRATIONS, digest, finish_draft, the_error, write_migration
from migrator.discovery import discover
from migrator.engine import Engine, Options
from migrator.errors import MigrationError
from migrator.migration import parse_date
from sample_messages import chat_messages

RUNNER = "run_migrations.py"
EXISTING = "add_metadata_to_chat_messages"


@pytest.fixture
def folder(tmp_path, env):
    """A migrations folder with the project's migration in it; its files find the toolkit through PYTHONPATH."""
    env["PYTHONPATH"] = str(MIGRATIONS.parent)
    path = tmp_path / "migrations"
    path.mkdir()
    shutil.copy(MIGRATIONS / f"{EXISTING}.py", path)
    return path


# ----- item 4: a fresh template is a draft ----------------------------------------------------------

def test_a_fresh_template_refuses_to_run_by_every_path_and_writes_nothing(db, cli, folder):
    dir_ = ("--migrations-dir", str(folder))
    assert cli(RUNNER, "--new", "add_language", *dir_).code == 0
    draft = folder / "add_language.py"
    db.chat_messages.insert_many(chat_messages(4))
    before = digest(db)

    for argv, script in ([("--all", *dir_), RUNNER], [("--migration", "add_language", *dir_), RUNNER],
                         [("--mark-applied", "add_language", *dir_), RUNNER],
                         [("--mark-applied", "add_language", "--force", *dir_), RUNNER],
                         [("--mark-applied-all", "add_language", "--force", *dir_), RUNNER],
                         [(), str(draft)]):
        result = cli(script, *argv)
        assert result.code == 2, (argv, result)
        error = the_error(result)
        assert "add_language.py is a draft (template not edited)" in error, error
        assert ("delete the `DRAFT:` line of its docstring; write its Description; "
                'replace "TODO_field" with the field it changes; nothing was changed') in error, error
    # refused before anything ran or took the lock, the project's pending migration included
    assert digest(db) == before
    assert set(db.list_collection_names()) == {"chat_messages"}


def test_the_engine_refuses_a_draft_whoever_calls_it(server_url, db, cli, folder):
    assert cli(RUNNER, "--new", "add_language", "--migrations-dir", str(folder)).code == 0
    db.chat_messages.insert_many(chat_messages(2))
    draft = next(m for m in discover(folder).migrations if m.name == "add_language")
    assert draft.draft and len(draft.draft_reasons) == 3

    async def attempts() -> list[MigrationError]:
        client = AsyncMongoClient(server_url, tz_aware=True)
        engine, refused = Engine(client[db.name], [draft]), []
        try:
            for attempt in (engine.apply_one(draft), engine.mark_applied([draft], Options(force=True))):
                with pytest.raises(MigrationError) as caught:
                    await attempt
                refused.append(caught.value)
        finally:
            await client.close()
        return refused

    for error in asyncio.run(attempts()):
        assert error.exit_code == 2 and str(error).startswith("add_language.py is a draft (template not edited)")
    assert db.chat_messages.count_documents({"TODO_field": {"$exists": True}}) == 0
    assert set(db.list_collection_names()) == {"chat_messages"}


def test_list_and_status_show_a_draft(db, cli, folder):
    dir_ = ("--migrations-dir", str(folder))
    assert cli(RUNNER, "--new", "add_language", *dir_).code == 0
    listed = cli(RUNNER, "--list", *dir_)
    assert listed.code == 0, listed
    assert listed.stdout.splitlines()[1].endswith("add_language  TODO: one line saying what this changes and why  "
                                                  "(draft: template not edited)")
    assert "draft" not in listed.stdout.splitlines()[0]
    status = cli(RUNNER, "--status", *dir_)
    assert status.code == 0, status
    row = next(line for line in status.stdout.splitlines() if line.startswith("add_language"))
    assert row.split()[3] == "pending" and row.endswith("draft: template not edited"), status.stdout
    rows = {row["name"]: row for row in json.loads(cli(RUNNER, "--status", "--json", *dir_).stdout)}
    assert rows["add_language"]["flags"] == ["draft: template not edited"] and rows["add_language"]["draft"] is True
    assert rows[EXISTING]["flags"] == [] and rows[EXISTING]["draft"] is False


def test_a_half_edited_template_names_what_is_left_and_an_edited_one_runs(db, cli, folder):
    dir_ = ("--migrations-dir", str(folder))
    assert cli(RUNNER, "--new", "add_language", *dir_).code == 0
    draft = folder / "add_language.py"
    db.chat_messages.insert_many(chat_messages(3))
    draft.write_text(re.sub(r"^DRAFT:.*\n", "", draft.read_text(), flags=re.MULTILINE))  # only the marker
    half = cli(RUNNER, "--migration", "add_language", *dir_)
    assert half.code == 2
    assert the_error(half).endswith('add_language.py is a draft (template not edited), so it does not run: '
                                    'write its Description; replace "TODO_field" with the field it changes; '
                                    'nothing was changed')

    finish_draft(draft)
    assert "draft" not in cli(RUNNER, "--list", *dir_).stdout
    done = cli(RUNNER, "--all", *dir_)
    assert done.code == 0, done
    assert db.chat_messages.count_documents({"language": None}) == 3
    assert db.chat_messages.count_documents({"TODO_field": {"$exists": True}}) == 0
    assert db.migrations_changelog.count_documents({"name": "add_language", "state": "applied"}) == 1


# ----- item 8: a file that exits, raises or runs the CLI while being imported --------------------------

HOOKS = '''
async def up(db):
    return await db.chat_messages.update_many({}, {"$set": {"ran": 1}})

async def verify(db):
    return await db.chat_messages.count_documents({"ran": {"$exists": False}}) == 0
'''

AT_IMPORT = [
    ("raise SystemExit(0)", "exited (SystemExit: 0) while being imported: a migration file must only define things"),
    ("import sys\nsys.exit('bye')", "exited (SystemExit: bye) while being imported"),
    ("import os\nos._exit(0)", "exited (os._exit(0)) while being imported: a migration file must only define"),
    ("class Stop(BaseException):\n    pass\nraise Stop('halt')", "failed to load: Stop: halt"),
    ("import asyncio\nraise asyncio.CancelledError()", "failed to load: CancelledError"),
    ("def deep(n):\n    return deep(n + 1)\ndeep(0)", "failed to load: RecursionError: maximum recursion depth"),
]


@pytest.mark.parametrize("statement, says", AT_IMPORT, ids=[case[0].splitlines()[-1] for case in AT_IMPORT])
def test_a_file_that_exits_or_raises_at_import_is_named_and_nothing_runs(db, cli, folder, statement, says):
    (folder / "zz_exits.py").write_text(f'"""zz_exits\n\nDate: 2025-12-01\n"""\n{HOOKS}\n{statement}\n')
    db.chat_messages.insert_many(chat_messages(3))
    before = digest(db)
    for argv in (("--all",), ("--list",)):
        result = cli(RUNNER, *argv, "--migrations-dir", str(folder))
        assert result.code == 2, (argv, result)
        assert f"zz_exits.py: {says}" in the_error(result), result
    shown = cli(RUNNER, "--status", "--migrations-dir", str(folder))  # looking works: the file is shown broken
    assert shown.code == 0 and f"zz_exits: its file is broken: zz_exits.py: {says}" in shown.stdout, shown
    assert digest(db) == before


def _unguarded(body: str) -> str:
    return f'"""zz_unguarded\n\nDate: 2025-12-01\n"""\n{HOOKS}\n' + textwrap.dedent(body)


DIRECT = '''
from migrator.cli import exit_with, standalone_main

exit_with(standalone_main(__file__))
'''
ALIASED = '''
from migrator.cli import exit_with, standalone_main as main

exit_with(main(__file__))
'''
THROUGH_A_HELPER = '''
def main():
    from migrator.cli import exit_with, standalone_main
    exit_with(standalone_main(__file__))

main()
'''


@pytest.mark.parametrize("body, says", [
    (DIRECT, "zz_unguarded.py: calls standalone_main() when imported: put the lines that run the file on its own under "
             '`if __name__ == "__main__":`, as the template does'),
    (ALIASED, "zz_unguarded.py: calls standalone_main() when imported"),
    (THROUGH_A_HELPER, "zz_unguarded.py: calls standalone_main() when imported: put the lines that run the file "
                       'on its own under `if __name__ == "__main__":`'),
], ids=["direct", "aliased", "through a helper"])
def test_a_file_without_a_main_guard_is_named_by_the_runner_and_on_its_own(db, cli, folder, body, says):
    path = folder / "zz_unguarded.py"
    path.write_text(_unguarded(body))
    db.chat_messages.insert_many(chat_messages(3))
    before = digest(db)
    on_its_own = cli(str(path))
    assert on_its_own.code == 2, on_its_own
    assert says in the_error(on_its_own)
    runner = cli(RUNNER, "--all", "--migrations-dir", str(folder))
    assert runner.code == 2, runner
    if body is THROUGH_A_HELPER:  # argparse prints the file's usage before the runner can tell: then named
        assert says in [line for line in runner.output.splitlines() if " ERROR " in line][-1], runner
    else:
        assert says in the_error(runner)
    assert digest(db) == before


# ----- item 15: Date, depends_on, the template, order by time ----------------------------------------

@pytest.mark.parametrize("date", ["2026-13-45", "2026-02-30", "2026-11-27 25:00", "2026-1-5", "27.11.2026", ""])
def test_an_invalid_date_is_named_and_nothing_runs(db, cli, folder, date):
    write_migration(folder, "zz_dated", date=date)
    db.chat_messages.insert_many(chat_messages(2))
    before = digest(db)
    for argv in (("--all",), ("--list",)):
        result = cli(RUNNER, *argv, "--migrations-dir", str(folder))
        assert result.code == 2, result
        assert (f"zz_dated.py: Date '{date}' is not a valid date: write YYYY-MM-DD HH:MM (or HH:MM:SS), or "
                "YYYY-MM-DD for the start of that day") in the_error(result)
    assert digest(db) == before


@pytest.mark.parametrize("depends_on", ["[1, None]", "5", "['']", "{'a': 1}"])
def test_depends_on_that_is_not_a_list_of_names_is_named(db, cli, folder, depends_on):
    write_migration(folder, "zz_needy", body=f"depends_on = {depends_on}\n{HOOKS}")
    db.chat_messages.insert_many(chat_messages(2))
    before = digest(db)
    for argv in (("--all",), ("--list",)):
        result = cli(RUNNER, *argv, "--migrations-dir", str(folder))
        assert result.code == 2, result
        assert ("zz_needy.py: depends_on must be a list of migration names, e.g. depends_on = "
                f'["add_metadata_to_chat_messages"], not {depends_on}') in the_error(result)
    assert digest(db) == before


def test_depends_on_accepts_a_file_name(db, cli, folder):
    write_migration(folder, "aa_needy", date="2020-01-01", depends_on=[f"{EXISTING}.py"])
    listed = cli(RUNNER, "--list", "--migrations-dir", str(folder))
    assert [line.split()[1] for line in listed.stdout.splitlines()] == [EXISTING, "aa_needy"]


def test_new_writes_the_time_in_utc_and_mentions_depends_on(cli, folder):
    assert cli(RUNNER, "--new", "zz_new", "--migrations-dir", str(folder)).code == 0
    text = (folder / "zz_new.py").read_text()
    written = parse_date(re.search(r"^Date: (.*)$", text, re.MULTILINE).group(1))
    now = datetime.now(UTC).replace(tzinfo=None)
    assert now - timedelta(minutes=2) < written <= now
    assert '\n# depends_on = ["add_metadata_to_chat_messages"]' in text
    assert text.count("if __name__ == \"__main__\":") == 1


def test_three_new_in_a_row_are_listed_in_the_order_they_were_written(cli, folder):
    for name in ("zz_written_first", "mm_written_second", "aa_written_third"):
        assert cli(RUNNER, "--new", name, "--migrations-dir", str(folder)).code == 0
    listed = cli(RUNNER, "--list", "--migrations-dir", str(folder))
    assert [line.split()[2] for line in listed.stdout.splitlines()[1:]] == [
        "zz_written_first", "mm_written_second", "aa_written_third"], listed


def test_same_day_migrations_run_by_time_and_a_plain_date_first(db, cli, folder):
    write_migration(folder, "a_afternoon", date="2026-11-27 14:05")
    write_migration(folder, "b_morning", date="2026-11-27 09:30")
    write_migration(folder, "c_iso_noon", date="2026-11-27T12:00")
    write_migration(folder, "z_plain", date="2026-11-27")  # the start of that day
    write_migration(folder, "y_next_day", date="2026-11-28")
    db.chat_messages.insert_many(chat_messages(2))
    dir_ = ("--migrations-dir", str(folder))
    listed = cli(RUNNER, "--list", *dir_)
    assert listed.code == 0, listed
    assert listed.stdout.splitlines() == [
        f"2025-07-15        {EXISTING}  set metadata=null on chat_messages documents that lack the field",
        "2026-11-27        z_plain  sets z_plain",
        "2026-11-27 09:30  b_morning  sets b_morning",
        "2026-11-27T12:00  c_iso_noon  sets c_iso_noon",
        "2026-11-27 14:05  a_afternoon  sets a_afternoon",
        "2026-11-28        y_next_day  sets y_next_day",
    ]
    ran = cli(RUNNER, "--all", *dir_)
    assert ran.code == 0, ran
    applying = re.findall(r"(\w+): applying", ran.output)
    assert applying == [EXISTING, "z_plain", "b_morning", "c_iso_noon", "a_afternoon", "y_next_day"]
    assert db.migrations_changelog.count_documents({"state": "applied"}) == 6



def test_an_up_that_returns_nothing_is_not_said_to_have_changed_nothing(db, cli, folder):
    write_migration(folder, "zz_inserts", body="""
        async def up(db):
            await db.settings.insert_one({"_id": "theme", "value": "dark"})

        async def verify(db):
            return await db.settings.count_documents({"_id": "theme"}) == 1
        """)
    result = cli(RUNNER, "--migration", "zz_inserts", "--allow-out-of-order", "--migrations-dir", str(folder))
    assert result.code == 0, result
    assert "zz_inserts: up ran in " in result.stderr
    assert "it returned no counts (return its write result or an Outcome to have them)" in result.stderr
    assert "nothing to change" not in result.stderr

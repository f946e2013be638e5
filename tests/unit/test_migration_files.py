"""Finding and reading migration files (migrator/discovery.py, migrator/migration.py), and what a migration
returns; no server."""

import subprocess
import sys

import pytest

from conftest import REPO, names, write_migration
from migrator.commands import new_migration
from migrator.discovery import MIGRATIONS_DIR, discover, find
from migrator.errors import MigrationError
from migrator.migration import Outcome, load_migration

SIDE_EFFECT = "import pathlib\npathlib.Path(__file__).with_suffix('.imported').touch()\n"


def refused(folder) -> str:
    """discover's error, which must be a usage error (exit 2)."""
    with pytest.raises(MigrationError) as caught:
        discover(folder)
    assert caught.value.exit_code == 2
    return str(caught.value)


def found(folder) -> list[str]:
    """The names of the migrations discover finds in `folder`, in order, when none of its files is broken."""
    files = discover(folder)
    assert files.broken == []
    return names(files.migrations)


def test_the_repository_holds_one_migration_and_its_tools_are_not_migrations():
    assert found(MIGRATIONS_DIR) == ["add_metadata_to_chat_messages"]


def test_files_starting_with_an_underscore_are_skipped_without_being_imported(tmp_path):
    write_migration(tmp_path, "real")
    write_migration(tmp_path, "_shared")
    (tmp_path / "_helpers.py").write_text(SIDE_EFFECT + "raise RuntimeError('never imported')\n")
    assert found(tmp_path) == ["real"]
    assert not (tmp_path / "_helpers.imported").exists()


def test_a_file_that_declares_no_migration_is_not_imported(tmp_path):
    write_migration(tmp_path, "real")
    (tmp_path / "a_tool.py").write_text(SIDE_EFFECT + "def main():\n    print('not a migration')\n")
    (tmp_path / "notes.txt").write_text("async def up(db): ...\n")
    assert found(tmp_path) == ["real"]
    assert not (tmp_path / "a_tool.imported").exists()


@pytest.mark.parametrize("source, message", [
    ('"""Date: 2025-01-01"""\nasync def up(db)\n    pass\n', "broken.py: syntax error at line 2: expected ':'"),
    ('"""Date: 2025-01-01"""\nimport no_such_module_here\nasync def up(db): pass\nasync def verify(db): pass\n',
     "broken.py: failed to load: ModuleNotFoundError: No module named 'no_such_module_here'"),
    ('"""Date: 2025-01-01"""\nimport sys\nsys.exit(3)\nasync def up(db): pass\nasync def verify(db): pass\n',
     "broken.py: exited (SystemExit: 3) while being imported"),
    ('"""Date: 2025-01-01"""\ndef up(db): pass\nasync def verify(db): pass\n',
     "broken.py: up() must be an `async def` function"),
    ('"""Date: 2025-01-01"""\nasync def up(db): pass\n', "broken.py: missing `async def verify(db)`"),
    ('"""No date."""\nasync def up(db): pass\nasync def verify(db): pass\n',
     "broken.py: its docstring needs a line `Date: ...`"),
    ('"""Date: 2025-02-30"""\nasync def up(db): pass\nasync def verify(db): pass\n',
     "broken.py: Date '2025-02-30' is not a valid date"),
    ('"""Date: 2025-01-01"""\ndepends_on = [1]\nasync def up(db): pass\nasync def verify(db): pass\n',
     "broken.py: depends_on must be a list of migration names"),
    ('"""Date: 2025-01-01"""\nfrom migrator.cli import standalone_main\nasync def up(db): pass\n'
     'async def verify(db): pass\nstandalone_main(__file__)\n', "broken.py: calls standalone_main() when imported"),
], ids=["syntax", "import error", "exit", "not async", "no verify", "no date", "bad date", "bad depends_on",
        "runs the cli"])
def test_a_broken_file_is_found_as_broken_with_its_error_beside_the_good_ones(tmp_path, monkeypatch, source, message):
    # discovery runs under the runner's command line, which a file calling the command line at import parses:
    # not this pytest process's own (a pytest-xdist worker's is empty, and would run the file's migration)
    monkeypatch.setattr(sys, "argv", ["run_migrations.py", "--all"])
    write_migration(tmp_path, "fine")
    write_migration(tmp_path, "later", date="2025-09-01", depends_on=["broken"])  # its order leaves "broken" out
    (tmp_path / "broken.py").write_text(source)
    files = discover(tmp_path)
    assert names(files.migrations) == ["fine", "later"]
    [broken] = files.broken
    assert (broken.name, broken.path) == ("broken", tmp_path / "broken.py")
    assert broken.error.startswith(message) and "\n" not in broken.error


def test_a_file_whose_dependency_does_not_exist_or_which_is_in_a_cycle_is_broken(tmp_path):
    write_migration(tmp_path, "fine")
    write_migration(tmp_path, "typo", depends_on=["fien"])
    write_migration(tmp_path, "x", depends_on=["y"])
    write_migration(tmp_path, "y", depends_on=["x"])
    files = discover(tmp_path)
    assert names(files.migrations) == ["fine"]
    assert [(file.name, file.error) for file in files.broken] == [
        ("typo", "typo.py: depends on fien, which does not exist"),
        ("x", "x.py: migrations depend on each other in a cycle: x, y"),
        ("y", "y.py: migrations depend on each other in a cycle: x, y")]


def test_a_missing_folder_is_named(tmp_path):
    assert refused(tmp_path / "nowhere") == f"migrations folder {tmp_path / 'nowhere'} not found"


def test_a_file_read_gives_its_date_description_hooks_and_dependencies(tmp_path):
    write_migration(tmp_path, "second", date="2025-02-01 10:30", depends_on="first.py")
    migration = load_migration(tmp_path / "second.py")
    assert (migration.name, migration.date, migration.description, migration.depends_on) == \
        ("second", "2025-02-01 10:30", "sets second", ("first",))
    assert migration.path == tmp_path / "second.py" and migration.file_name == "second.py"
    assert migration.rollback is None and not migration.draft


def test_find_takes_a_name_or_a_file_name_and_names_the_known_ones(tmp_path):
    write_migration(tmp_path, "one")
    write_migration(tmp_path, "two", date="2025-09-01")
    migrations = discover(tmp_path).migrations
    assert find(migrations, "two.py").name == "two"
    with pytest.raises(MigrationError, match=r"unknown migration 'three' \(known: one, two\)"):
        find(migrations, "three")
    with pytest.raises(MigrationError, match=r"\(known: none\)"):
        find([], "one")


def test_a_fresh_template_is_a_draft_until_each_placeholder_is_edited(tmp_path):
    path = new_migration(tmp_path, "add_language", [])
    assert load_migration(path).draft_reasons == (
        "delete the `DRAFT:` line of its docstring", "write its Description",
        'replace "TODO_field" with the field it changes')
    path.write_text(path.read_text().replace('"TODO_field"', '"language"'))
    assert len(load_migration(path).draft_reasons) == 2
    with pytest.raises(MigrationError, match="a migration named add_language already exists"):
        new_migration(tmp_path, "add_language", [])
    with pytest.raises(MigrationError, match="'Add-Language' is not a valid migration name"):
        new_migration(tmp_path, "Add-Language", [])


def test_outcome_accepts_driver_results_and_refuses_others():
    class Result:
        matched_count, modified_count = 3, 2
    assert Outcome.of(Result()) == Outcome(matched=3, modified=2)
    assert Outcome.of(None) == Outcome(counted=False)  # "nothing to change" would be a guess
    with pytest.raises(TypeError):
        Outcome.of(42)


def test_the_shipped_migration_is_the_same_migration_for_databases_that_applied_its_earlier_versions():
    [shipped] = [m for m in discover(MIGRATIONS_DIR).migrations if m.name == "add_metadata_to_chat_messages"]
    released = "71c8f9e2a8def9e6014cf18fb03191d4616ae671ea251db722be4f50cf429cde"  # as of 2026-11-27
    assert shipped.checksum != released and shipped.is_version(released) and shipped.is_version(shipped.checksum)
    assert not shipped.is_version("0" * 64)


def test_a_migration_name_too_long_for_a_file_is_one_clear_refusal(tmp_path):
    from migrator.commands.authoring import MAX_NAME, new_migration_with_test
    folder = tmp_path / "migrations"
    folder.mkdir()
    with pytest.raises(MigrationError, match=f"300 characters is too long: at most {MAX_NAME}") as refused:
        new_migration_with_test(folder, "a" * 300, [])
    assert refused.value.exit_code == 2 and list(tmp_path.rglob("*.py")) == []
    path, test = new_migration_with_test(folder, "a" * MAX_NAME, [])  # the longest fits, with its test
    assert path.exists() and test.exists()


def test_new_writes_files_that_pass_the_project_s_lint_whatever_the_name_s_length(tmp_path):
    """A --new alone must not turn CI red: ruff (scripts/lint.sh, 120 columns) on both files, with a long name."""
    from migrator.commands.authoring import MAX_NAME, new_migration_with_test
    folder = tmp_path / "migrations"
    folder.mkdir()
    written = [path for length in (23, 90, MAX_NAME)
               for path in new_migration_with_test(folder, "add_" + "x" * (length - 4), [])]
    linted = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                             str(REPO / "pyproject.toml"), *map(str, written)], capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr

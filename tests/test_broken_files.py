"""A broken migration file (a syntax error, an import that fails) beside good ones: every command that only looks or
repairs works (--status, --history, --check, --verify, --force-unlock, --restore, --new; --list lists it, then exits
2); every command that runs or records a migration refuses, exit 2, in one line naming the file, before any write."""

import json
import shutil

from conftest import MIGRATIONS, REPO, digest, plant_lock, run_here, status_json, the_error, write_migration
from sample_messages import chat_messages

RUNNER = "run_migrations.py"
MIGRATION = "add_metadata_to_chat_messages"
SYNTAX_ERROR = '"""broken\n\nDate: 2025-09-01\n"""\nasync def up(db)\n    pass\n'  # line 5: no colon
ERROR = "broken.py: syntax error at line 5: expected ':'"
REFUSAL = (f"a migration file is broken: {ERROR}: fix it or move it out of the migrations folder; nothing runs until "
           "then, and nothing was changed")

M2 = '''
    async def up(db):
        return await db.chat_messages.update_many({"m2": {"$exists": False}}, {"$set": {"m2": 1}})

    async def verify(db):
        return await db.chat_messages.count_documents({"m2": {"$exists": False}}) == 0

    def touches(action, purge=False):
        return {"chat_messages": {"m2": {"$exists": False}}}
    '''


def scene(db, cli, env, tmp_path) -> tuple[str, ...]:
    """The shipped migration applied with a backup, then a file with a syntax error beside it."""
    shutil.copy(MIGRATIONS / f"{MIGRATION}.py", tmp_path / f"{MIGRATION}.py")
    env["MIGRATIONS_BACKUP_DIR"] = str(tmp_path / "backups")
    folder = ("--migrations-dir", str(tmp_path))
    db.chat_messages.insert_many(chat_messages(200))
    assert cli(RUNNER, "--all", "--backup", *folder, env=env).code == 0
    (tmp_path / "broken.py").write_text(SYNTAX_ERROR)
    return folder


def test_looking_and_unlocking_work_beside_a_broken_file_and_every_run_refuses_writing_nothing(db, cli, env,
                                                                                                 tmp_path):
    folder = scene(db, cli, env, tmp_path)

    rows = status_json(cli, *folder)
    assert (rows[MIGRATION]["state"], rows[MIGRATION]["flags"]) == ("applied", [])
    assert (rows["broken"]["state"], rows["broken"]["flags"], rows["broken"]["broken"]) == (
        "pending", [f"broken: {ERROR}"], ERROR)
    shown = cli(RUNNER, "--status", *folder)
    assert shown.code == 0 and f"broken: {ERROR}" in shown.stdout and "1 applied, 1 pending, 1 with problems" in \
        shown.stdout
    history = cli(RUNNER, "--history", "--json", *folder)
    assert history.code == 0 and [e["name"] for e in json.loads(history.stdout)] == [MIGRATION, MIGRATION]
    assert "no changelog entries for broken" in cli(RUNNER, "--history", "broken", *folder).stdout
    check = cli(RUNNER, "--check", *folder)
    assert (check.code, check.stdout.splitlines()) == (6, [f"broken: its file is broken: {ERROR}"])
    verified = cli(RUNNER, "--verify", *folder)
    assert verified.code == 0 and f"{MIGRATION}: ok" in verified.output
    listed = cli(RUNNER, "--list", *folder)  # no database: lists all, then exit 2 (a check before a commit)
    assert listed.code == 2 and listed.stdout.splitlines()[-1] == f"?           broken  (broken: {ERROR})"
    assert the_error(listed).endswith(REFUSAL)

    db.migrations_lock.delete_many({})  # the scene's runner released its lock: another runner holds it now
    plant_lock(db, expires_in_s=600)
    unlocked = cli(RUNNER, "--force-unlock", "--yes", *folder)
    assert unlocked.code == 0 and "lock removed (was held by deploy-7:4242:abcd" in unlocked.output, unlocked
    assert "nothing to unlock" in cli(RUNNER, "--force-unlock", "--yes", *folder).output

    before = digest(db)
    environment = {**env, "PYTHONPATH": str(REPO)}  # the migration's own script, outside migrations/
    for result in (cli(RUNNER, "--all", *folder), cli(RUNNER, "--all", "--dry-run", *folder),
                   cli(RUNNER, "--migration", MIGRATION, *folder), cli(RUNNER, "--migration", "broken", *folder),
                   cli(RUNNER, "--rollback", MIGRATION, "--yes", *folder), cli(RUNNER, "--rollback-last", "--yes",
                                                                                 *folder),
                   cli(RUNNER, "--mark-applied", "broken", *folder), cli(RUNNER, "--selftest", MIGRATION, *folder),
                   run_here(str(tmp_path / f"{MIGRATION}.py"), "--rollback", "--yes", env=environment),
                   run_here(str(tmp_path / f"{MIGRATION}.py"), "--dry-run", env=environment),
                   cli(RUNNER, "--all", *folder, env={**env, "MONGODB_URL": "mongodb://127.0.0.1:1/"})):  # no server
        assert result.code == 2, result
        assert the_error(result).endswith(REFUSAL)
    assert digest(db) == before

    new = cli(RUNNER, "--new", "add_language", *folder)  # writing a migration runs nothing
    assert new.code == 0 and (tmp_path / "add_language.py").exists(), new


def test_a_backup_is_restored_beside_a_broken_file(db, cli, env, tmp_path):
    folder = scene(db, cli, env, tmp_path)
    [backup] = (tmp_path / "backups").glob(f"*-{MIGRATION}-apply-*.bson.gz")

    restored = cli(RUNNER, "--restore", str(backup), "--yes", *folder, env=env)

    assert restored.code == 0, restored
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 180
    assert status_json(cli, *folder)[MIGRATION]["state"] == "rolled_back"


def test_an_applied_migration_whose_file_broke_is_shown_applied_and_said_unverifiable(db, cli, env, tmp_path):
    write_migration(tmp_path, "m2", date="2025-01-01", body=M2)
    folder = scene(db, cli, env, tmp_path)  # m2 comes first: applied by the scene's --all, before the backup
    (tmp_path / "m2.py").write_text((tmp_path / "m2.py").read_text() + "import no_such_module_here\n")
    why = "its file is broken: m2.py: failed to load: ModuleNotFoundError: No module named 'no_such_module_here'"

    row = status_json(cli, *folder)["m2"]
    assert (row["state"], row["flags"]) == ("applied", [why.removeprefix("its file is ")])
    verified = cli(RUNNER, "--verify", *folder)
    assert verified.code == 4 and f"m2: applied, but {why}: it cannot be verified" in verified.output
    assert f"{MIGRATION}: ok" in verified.output and "cannot verify m2" in the_error(verified)

    [backup] = (tmp_path / "backups").glob(f"*-{MIGRATION}-apply-*.bson.gz")
    restored = cli(RUNNER, "--restore", str(backup), "--yes", *folder, env=env)
    assert restored.code == 0, restored
    assert f"m2: applied, but {why}: it could not be verified after the restore" in restored.output
    assert db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 180

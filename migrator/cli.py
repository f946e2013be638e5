"""The command lines: the runner, a migration run on its own, and the one way they all run.

Parses flags, calls migrator.commands, and turns MigrationError into one line and an exit code
(see errors.ExitCode). Tracebacks only with --debug.
"""

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import contextmanager, suppress
from pathlib import Path

from migrator import commands, plan
from migrator.commands import Context, Narration
from migrator.commands.metrics import MetricsFile
from migrator.commands.notify import DEFAULT_STALL_MINUTES, Notifier
from migrator.commands.progress_view import ProgressView
from migrator.connection import WRITE_TIMEOUT_MS, connect, ignored_options
from migrator.discovery import MIGRATIONS_DIR, MigrationFiles, discover, find
from migrator.engine import Engine
from migrator.errors import ExitCode, MigrationError
from migrator.flags import (
    BACKUP_MODIFIERS,
    BATCH_MODIFIERS,
    Command,
    Parser,
    batch_settings_from,
    build_parser,
    chosen,
    engine_options,
    nonempty_path,
)
from migrator.migration import Migration, refuse_if_broken
from migrator.output import JSON, TEXT, log, say, setup_logging
from migrator.profile import detect
from migrator.redact import redact
from migrator.schema.record import NAME as SCHEMA
from migrator.selftest import DEFAULT_SAMPLE, PREVIEW_SAMPLE
from migrator.settings import Settings, SettingsError, load_settings

Work = Callable[[Context], Awaitable[int]]


class Terminated(BaseException):
    """SIGTERM outside batches (which stop at a batch boundary themselves): unwind like Ctrl-C, so that
    the lock is released on the way out. Not an Exception, so no `except Exception` swallows it."""


def _raise_terminated(signum, frame):
    raise Terminated


@contextmanager
def _sigterm_unwinds():
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals to the caller
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, migrations: Callable[[], MigrationFiles], work: Work,
        check: Callable[[Settings], None] | None = None) -> int:
    """Load settings, discover, connect, do the work; every failure becomes one line and an exit code."""
    options = vars(args)
    setup_logging(args.debug, options.get("log_format") or TEXT)
    narration = _narration(args)
    code, error = _attempt(args, migrations, work, check, narration)
    narration.finished(code, error)
    return code


def _narration(args: argparse.Namespace) -> Narration:
    """The one reporter, with the views the flags ask for."""
    options = vars(args)
    json = options.get("log_format") == JSON
    metrics = options.get("metrics_file")
    notify = options.get("notify")
    stall_minutes = options.get("stall_minutes") or DEFAULT_STALL_MINUTES
    return Narration(view=ProgressView(args.progress_interval, terminal=False if json else None), json=json,
                     metrics=MetricsFile(metrics, args.progress_interval) if metrics else None,
                     notifier=Notifier(notify, stall_minutes * 60) if notify else None)


def _attempt(args, migrations, work, check, narration: Narration) -> tuple[int, str]:
    """The exit code, and the line that said why it is not 0."""
    try:
        settings = load_settings(args.env_file)  # first: it remembers the password to mask, also in discovery errors
        found = migrations()
        if check:
            check(settings)
        with _sigterm_unwinds():
            return asyncio.run(_connected(args, settings, found, work, narration)), ""
    except SettingsError as exc:
        return _failed(ExitCode.USAGE, "%s", exc)
    except MigrationError as exc:
        return _failed(exc.exit_code, "%s", exc, debug=args.debug)
    except KeyboardInterrupt:
        return _failed(ExitCode.INTERRUPTED, "interrupted: run the same command again to finish")
    except Terminated:
        return _failed(ExitCode.TERMINATED, "stopped by SIGTERM: run the same command again to finish")
    except Exception as exc:  # a bug or an unforeseen server answer: still one line
        return _failed(ExitCode.FAILED, "unexpected error: %s: %s (run again with --debug for the traceback)",
                       type(exc).__name__, redact(exc), debug=args.debug)


def _failed(code: int, message: str, *values, debug: bool = False) -> tuple[int, str]:
    log.error(message, *values, exc_info=debug)
    return code, redact(message % values)


async def _connected(args, settings: Settings, migrations: MigrationFiles, work: Work, narration: Narration) -> int:
    client, database = await connect(settings.mongodb_url, settings.database_name, args.server_timeout,
                                     args.retry_for)
    try:
        profile = await detect(database)
        log.info("database %s at %s (%s)", settings.database_name, redact(settings.mongodb_url), profile.label)
        _say_ignored_options(settings.mongodb_url, args.retry_for)
        narration.started(settings.database_name)
        engine = Engine(database, migrations, lease_s=args.lease, retry_for_s=args.retry_for,
                        batch_settings=batch_settings_from(args), profile=profile, report=narration,
                        url=settings.mongodb_url)
        return await work(Context(engine, settings, engine_options(args)))
    finally:
        await client.close()


def _say_ignored_options(url: str, retry_for_s: float) -> None:
    """One line naming every option of the URL the runner replaced or dropped (a warning for w=0)."""
    ignored = ignored_options(url, retry_for_s)
    if not ignored:
        return
    named = ", ".join(f"{name}={value}" for name, value in ignored.items())
    unacknowledged = any(name.lower() == "w" and value == "0" for name, value in ignored.items())
    (log.warning if unacknowledged else log.info)(
        "the runner uses its own client options instead of MONGODB_URL's %s (primary reads, without options of "
        "other read preferences; majority journaled writes, bounded by %d s; retries; no socket timeout)%s",
        named, WRITE_TIMEOUT_MS // 1000,
        ": w=0 (unacknowledged writes) is never used, --write-concern 1 asks the least of batches"
        if unacknowledged else "")


def _offline(args: argparse.Namespace, action: Callable[[], int]) -> int:
    """A command that needs no database (--list, --new): same error handling."""
    setup_logging(args.debug, vars(args).get("log_format") or TEXT)
    with suppress(SettingsError):  # not needed, but it remembers the password to mask, should a migration repeat it
        load_settings(args.env_file)
    try:
        return action()
    except MigrationError as exc:
        log.error("%s", exc)
        return exc.exit_code


# ----- the runner: migrations/run_migrations.py -----------------------------------------------

def _named(ctx: Context, name: str) -> Migration:
    return find(ctx.engine.migrations, name)


def _given(value: str | bool) -> str | None:
    """An optional NAME: the flag alone is True."""
    return value if isinstance(value, str) else None


RUN = ("allow_changed", "allow_out_of_order", *BACKUP_MODIFIERS, *BATCH_MODIFIERS)
APPLY = ("dry_run", *RUN)
ROLLBACK = ("purge", "allow_changed", *BACKUP_MODIFIERS, *BATCH_MODIFIERS)
RUNNER = (
    Command("--all", "apply every pending migration, in order, verifying each; then, when the schema declared in "
            "the migrations folder's _schema.py is behind, its index and validator steps (recorded as \"schema\")",
            lambda ctx, a: commands.apply_pending(ctx, a.dry_run), accepts=APPLY, runs=True),
    Command("--migration", "apply one migration (again, if it is applied: forward is idempotent); refused ahead of "
            "earlier pending ones without --allow-out-of-order",
            lambda ctx, a: commands.apply_one(ctx, _named(ctx, a.migration), a.dry_run), metavar="NAME",
            accepts=APPLY, runs=True),
    Command("--status", "show every migration: its state and since when, for an applied one how long it took and "
            "how many documents it changed, and problems", lambda ctx, a: commands.status(ctx, a.json),
            accepts=("json",)),
    Command("--history", "every changelog event (of NAME, or of all), oldest first: what, state, when, how long, "
            "documents, host, pid, user, commit, error", lambda ctx, a: commands.history(ctx, a.history, a.json),
            metavar="NAME", optional=True, accepts=("json",)),
    Command("--list", "list the migrations in the order they run, then each broken file with its error (exit 2 if "
            "any; no database needed)", offline=lambda a: list_migrations(discover(a.migrations_dir))),
    Command("--check", "for deploy pipelines: exit 6, one line per reason, while a migration is pending, "
            "failed, interrupted, out of order or changed since it was applied, or a migration file is broken, or the "
            "schema differs from migrations/_schema.py (an index missing, one the toolkit created no longer declared "
            "or one declared removed still there, other options, a validator); an unknown index is named, and kept; "
            "exit 0 when all are applied and the schema is as declared", lambda ctx, a: commands.check(ctx)),
    Command("--plan", "what --all would do, writing nothing: the pending migrations, then the schema steps "
            "(create, replace, drop, validator; skip: what the server cannot do, and why), then the unknown indexes "
            "(never dropped)", lambda ctx, a: commands.plan(ctx, a.json), accepts=("json",)),
    Command("--verify", "check every applied migration is still in place (exit 4 if not)",
            lambda ctx, a: commands.verify_applied(ctx)),
    Command("--rollback", "roll back one applied (or failed, half-applied) migration (asks first); `--rollback "
            "schema` undoes the latest schema run: drops the indexes it created, builds again those it dropped (from "
            "their recorded definitions), sets back the validators it replaced",
            lambda ctx, a: commands.rollback_schema(ctx, a.yes) if a.rollback == SCHEMA
            else commands.rollback(ctx, commands.select_named(ctx.engine, a.rollback), a.yes),
            metavar="NAME", accepts=ROLLBACK, runs=True),
    Command("--rollback-last", "roll back the applied migration that comes last in the order",
            lambda ctx, a: commands.rollback(ctx, commands.select_last, a.yes), accepts=ROLLBACK, runs=True),
    Command("--rollback-to", "roll back every applied migration after NAME in the order, last first",
            lambda ctx, a: commands.rollback(ctx, commands.select_after(ctx.engine, a.rollback_to), a.yes),
            metavar="NAME", accepts=ROLLBACK, runs=True),
    Command("--mark-applied", "record NAME as applied without running it, if it verifies (for databases "
            "migrated before the changelog)",
            lambda ctx, a: commands.mark_applied(ctx, [_named(ctx, a.mark_applied)], a.yes),
            metavar="NAME", accepts=("force",), runs=True),
    Command("--mark-applied-all", "the same for every pending migration up to NAME",
            lambda ctx, a: commands.mark_applied(ctx, commands.up_to(ctx.engine, a.mark_applied_all), a.yes),
            metavar="NAME", accepts=("force",), runs=True),
    Command("--pause", "from any terminal, machine or pod: the run of NAME (default: the migration running now, else "
            "every migration) waits at its next batch boundary, holding the lock and writing nothing, until --resume; "
            "a run started meanwhile starts paused. A migration that takes no batches cannot be paused while it runs",
            lambda ctx, a: commands.pause(ctx, _given(a.pause)), metavar="NAME", optional=True),
    Command("--resume", "undo --pause (of NAME, else every pause): the run goes on; \"nothing is paused\" when none is",
            lambda ctx, a: commands.resume(ctx, _given(a.resume)), metavar="NAME", optional=True),
    Command("--cancel", "stop the run of NAME (default: the one running) at its next batch boundary, as SIGTERM does: "
            "checkpoint saved, exit 7, the same command again resumes",
            lambda ctx, a: commands.cancel(ctx, _given(a.cancel)), metavar="NAME", optional=True),
    Command("--force-unlock", "remove the lock of a runner that died (asks first); refuses a runner "
            "still alive on this host, naming its pid",
            lambda ctx, a: commands.force_unlock(ctx, a.yes)),
    Command("--restore", "put back exactly the documents a --backup saved in FILE (checks all of it first; asks "
            "first; --force for a backup of another database)", lambda ctx, a: commands.restore(ctx, a.restore, a.yes),
            metavar="FILE", type=nonempty_path("a backup file"), accepts=("force",)),
    Command("--new", "write migrations/NAME.py from the template (a draft until you edit it), and its test "
            "tests/migrations/test_NAME.py (runs --selftest --chaos on a small fixture)",
            offline=lambda a: _scaffold(a.migrations_dir, a.new), metavar="NAME"),
    Command("--selftest", "prove NAME on scratch copies of a sample of its documents (--sample N, default "
            f"{DEFAULT_SAMPLE}): up then verify, up again changes nothing, other documents untouched, rollback gives "
            "every document back; with --chaos, faults on the wire change nothing either; exit 4 if one fails. The "
            "real collections are only read",
            lambda ctx, a: commands.selftest(ctx, _named(ctx, a.selftest), a.sample, a.chaos, a.faults, a.json),
            metavar="NAME", accepts=("sample", "chaos", "faults", "json"), runs=True),
    Command("--preview", "show what NAME would do to a few of its documents (--sample N, default "
            f"{PREVIEW_SAMPLE}), field by field, from a run on scratch copies, and what --dry-run would count; writes "
            "nothing to the real collections",
            lambda ctx, a: commands.preview(ctx, _named(ctx, a.preview), a.sample, a.json), metavar="NAME",
            accepts=("sample", "json"), runs=True),
)


def runner_parser() -> Parser:
    parser = build_parser("run_migrations.py", "Apply, check and roll back the migrations in migrations/, in order. "
                          "Every run is recorded in the collection migrations_changelog; one runner at a time holds "
                          "migrations_lock.", RUNNER)
    parser.add_argument("--migrations-dir", type=nonempty_path("a folder"), default=MIGRATIONS_DIR, metavar="DIR",
                        help="where the migrations are (default: this folder)")
    return parser


def runner_main(argv: list[str] | None = None) -> int:
    parser = runner_parser()
    args = parser.parse_args(argv)
    command = chosen(parser, args, RUNNER)
    if command.offline:
        offline = command.offline
        return _offline(args, lambda: offline(args))
    return run(args, lambda: _for(command, discover(args.migrations_dir)), lambda ctx: _run(command, ctx, args))


def _run(command: Command, ctx: Context, args: argparse.Namespace) -> Awaitable[int]:
    assert command.run is not None, command.flag  # a command without `offline` has `run`
    return command.run(ctx, args)


def _for(command: Command, files: MigrationFiles) -> MigrationFiles:
    """A command that runs or records a migration is refused while a file is broken (the engine's workflows refuse
    too): here before connecting, and before a name is looked up, so that a broken file is named, not "unknown"."""
    if command.runs:
        refuse_if_broken(files.broken)
    return files


def list_migrations(files: MigrationFiles) -> int:
    """--list: the order, then each broken file (which has no place in it) with its error, then exit 2 for those."""
    width = max((len(migration.date) for migration in files.migrations), default=1)
    for migration in files.migrations:
        draft = f"  ({plan.DRAFT_FLAG})" if migration.draft else ""
        say(f"{migration.date:<{width}}  {migration.name}  {migration.description}{draft}")
    for broken in files.broken:
        say(f"{'?':<{width}}  {broken.name}  (broken: {broken.error})")
    if not files.migrations and not files.broken:
        log.info("no migrations found")
    refuse_if_broken(files.broken)
    return ExitCode.OK


def _scaffold(folder: Path, name: str) -> int:
    path, test = commands.new_migration_with_test(folder, name, discover(folder).migrations)
    log.info("wrote %s: a draft, which refuses to run until you edit it: write its Description and functions, "
             "delete its DRAFT line, then run it with --dry-run first", path)
    log.info("wrote %s: its test, which runs --selftest --chaos on a small fixture (skipped while the migration is a "
             "draft): make the fixture look like your documents", test)
    return ExitCode.OK


# ----- one migration on its own: python migrations/<name>.py -----------------------------------

def _this(ctx, args) -> Migration:
    """The script's own migration, among all of its folder's: the engine checks order and dependencies as for
    run_migrations.py --migration (one door)."""
    return find(ctx.engine.migrations, args.this)


STANDALONE = (
    Command(None, "apply it", lambda ctx, a: commands.apply_one(ctx, _this(ctx, a)), accepts=RUN, runs=True),
    Command("--verify", "check the change is in place; exit 4 if not",
            lambda ctx, a: commands.verify(ctx, [_this(ctx, a)])),
    Command("--rollback", "undo the change (asks first)",
            lambda ctx, a: commands.rollback(ctx, commands.select_named(ctx.engine, a.this), a.yes),
            accepts=ROLLBACK, runs=True),
    Command("--dry-run", "count what would change; write nothing",
            lambda ctx, a: commands.dry_run(ctx, [_this(ctx, a)]), runs=True),
)


def standalone_main(file: str, argv: list[str] | None = None) -> int:
    path = Path(file).resolve()
    parser = build_parser(path.name, f"Run the migration {path.stem} on its own: the same as run_migrations.py "
                          f"--migration {path.stem} (recorded in the changelog, under the lock).", STANDALONE)
    args = parser.parse_args(argv)
    command = chosen(parser, args, STANDALONE)

    args.this = path.stem

    def this_migration() -> MigrationFiles:
        found = discover(path.parent)  # all of them: the order and the dependencies are checked as by the runner
        if path.stem not in {m.name for m in found.migrations} | {file.name for file in found.broken}:
            raise MigrationError(f"{path.name} declares no migration", ExitCode.USAGE)
        return _for(command, found)

    return run(args, this_migration, lambda ctx: _run(command, ctx, args))


def exit_with(code: int) -> None:
    sys.exit(int(code))

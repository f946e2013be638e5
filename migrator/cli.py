"""The command lines: the runner, a migration run on its own, and the shared way they run.

Parses flags, calls the engine, prints what it returns, and turns MigrationError into one line
and an exit code (see errors.ExitCode). Tracebacks only with --debug.
"""

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from app.settings import Settings, SettingsError, load_settings
from migrator.connection import connect, server_info
from migrator.discovery import MIGRATIONS_DIR, discover, find
from migrator.engine import ApplyResult, Engine, format_counts
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, load_migration
from migrator.output import confirm, log, say, setup_logging
from migrator.redact import redact

EXIT_CODES_HELP = """exit codes:
  0  success          1  a migration (or its verification) failed    2  usage or settings error
  3  lock held        4  verification failed (--verify)              5  cannot reach or log in to MongoDB
  130 interrupted"""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", metavar="FILE", help="read MONGODB_URL and MONGODB_DATABASE_NAME from FILE "
                        "instead of .env (or set ENV_FILE); real environment variables win")
    parser.add_argument("-y", "--yes", action="store_true", help="answer yes to every confirmation (for scripts)")
    parser.add_argument("--server-timeout", type=float, default=5.0, metavar="SECONDS",
                        help="give up reaching the server after SECONDS (default: 5)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


@dataclass
class Context:
    args: argparse.Namespace
    settings: Settings
    engine: Engine


Work = Callable[[Context], Awaitable[int]]


def run(args: argparse.Namespace, migrations: Callable[[], list[Migration]], work: Work,
        check: Callable[[Settings], None] | None = None) -> int:
    """Discover, load settings, connect, do the work; every failure becomes one line and an exit code."""
    setup_logging(args.debug)
    try:
        found = migrations()
        settings = load_settings(args.env_file)
        if check:
            check(settings)
        return asyncio.run(_connected(args, settings, found, work))
    except SettingsError as exc:
        log.error("%s", exc)
        return ExitCode.USAGE
    except MigrationError as exc:
        log.error("%s", exc, exc_info=args.debug)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted: run the same command again to finish")
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug or an unforeseen server answer: still one line
        log.error("unexpected error: %s: %s (run again with --debug for the traceback)",
                  type(exc).__name__, redact(exc), exc_info=args.debug)
        return ExitCode.FAILED


async def _connected(args, settings: Settings, migrations: list[Migration], work: Work) -> int:
    client, database = await connect(settings.mongodb_url, settings.database_name, args.server_timeout)
    try:
        server = await server_info(database)
        log.info("database %s at %s (%s)", settings.database_name, redact(settings.mongodb_url), server.label)
        return await work(Context(args, settings, Engine(database, migrations)))
    finally:
        await client.close()


# ----- what the commands do -------------------------------------------------------------------

def report_apply(result: ApplyResult) -> None:
    name, outcome = result.migration.name, result.outcome
    for note in {result.before.note, outcome.note} - {""}:
        log.info("%s: %s", name, note)
    log.info("%s: before: %s", name, format_counts(result.before.counts))
    if outcome.modified:
        log.info("%s: modified %d documents (%d matched) in %.2f s", name, outcome.modified, outcome.matched, result.seconds)
    else:
        log.info("%s: modified 0 documents: nothing to change", name)
    log.info("%s: after: %s: verified", name, format_counts(result.after.counts))


async def apply_all(ctx: Context, selected: list[Migration]) -> int:
    for migration in selected:
        if ctx.args.dry_run:
            pending = await ctx.engine.count_pending(migration)
            would = "an unknown number of" if pending is None else str(pending)
            log.info("%s: dry run: would change %s documents; nothing written", migration.name, would)
            continue
        log.info("%s: applying (%s)", migration.name, migration.description)
        report_apply(await ctx.engine.apply(migration))
    if not ctx.args.dry_run:
        log.info("done: %d migration(s) applied and verified", len(selected))
    return ExitCode.OK


async def verify_all(ctx: Context, selected: list[Migration]) -> int:
    failed = []
    for migration in selected:
        verification = await ctx.engine.verify(migration)
        state = "ok" if verification.ok else "NOT in place"
        log.info("%s: %s (%s)%s", migration.name, state, format_counts(verification.counts),
                 f": {verification.note}" if verification.note else "")
        if not verification.ok:
            failed.append(migration.name)
    if failed:
        log.error("verification failed: %s", ", ".join(failed))
        return ExitCode.VERIFY_FAILED
    return ExitCode.OK


async def rollback_one(ctx: Context, migration: Migration) -> int:
    purge = ctx.args.purge
    if purge:
        log.warning("%s: --purge also removes data the app wrote since the migration ran", migration.name)
    confirm(f"roll back {migration.name} on database {ctx.settings.database_name}"
            f"{' and purge app-written data' if purge else ''}", ctx.args.yes)
    result = await ctx.engine.rollback(migration, purge=purge)
    log.info("%s: rolled back: %d documents changed in %.2f s%s", migration.name, result.outcome.modified,
             result.seconds, f" ({format_counts(result.outcome.counts)})" if result.outcome.counts else "")
    if result.outcome.note:
        log.info("%s: %s", migration.name, result.outcome.note)
    return ExitCode.OK


# ----- the runner: migrations/run_migrations.py -----------------------------------------------

def runner_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run_migrations.py",
        description="Apply, verify and roll back the migrations in migrations/, in order.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    command = parser.add_mutually_exclusive_group(required=True)
    command.add_argument("--all", action="store_true", help="apply every migration, in order, verifying each")
    command.add_argument("--migration", metavar="NAME", help="apply one migration")
    command.add_argument("--list", action="store_true", help="list the migrations in the order they run")
    command.add_argument("--verify", action="store_true", help="check that every migration is in place (exit 4 if not)")
    command.add_argument("--rollback", metavar="NAME", help="roll back one migration (asks first)")
    parser.add_argument("--dry-run", action="store_true", help="with --all or --migration: count, change nothing")
    parser.add_argument("--purge", action="store_true", help="with --rollback: also remove data written since")
    parser.add_argument("--migrations-dir", type=Path, default=MIGRATIONS_DIR, metavar="DIR",
                        help="where the migrations are (default: this folder)")
    add_common_options(parser)
    args = parser.parse_args(argv)
    if args.dry_run and not (args.all or args.migration):
        parser.error("--dry-run goes with --all or --migration")
    if args.purge and not args.rollback:
        parser.error("--purge goes with --rollback")

    if args.list:
        return list_migrations(args)

    async def work(ctx: Context) -> int:
        migrations = ctx.engine.migrations
        if args.verify:
            return await verify_all(ctx, migrations)
        if args.rollback:
            return await rollback_one(ctx, find(migrations, args.rollback))
        selected = [find(migrations, args.migration)] if args.migration else migrations
        return await apply_all(ctx, selected)

    return run(args, lambda: discover(args.migrations_dir), work)


def list_migrations(args: argparse.Namespace) -> int:
    setup_logging(args.debug)
    try:
        migrations = discover(args.migrations_dir)
    except MigrationError as exc:
        log.error("%s", exc)
        return exc.exit_code
    for migration in migrations:
        say(f"{migration.date}  {migration.name}  {migration.description}")
    if not migrations:
        log.info("no migrations in migrations/")
    return ExitCode.OK


# ----- one migration on its own: python migrations/<name>.py -----------------------------------

def standalone_main(path: str, argv: list[str] | None = None) -> int:
    path = Path(path).resolve()
    parser = argparse.ArgumentParser(
        prog=path.name,
        description=f"Run the migration {path.stem} on its own (the runner does the same with --migration).",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--verify", action="store_true", help="check the change is in place; exit 4 if not")
    mode.add_argument("--rollback", action="store_true", help="undo the change (asks first)")
    mode.add_argument("--dry-run", action="store_true", help="count what would change; change nothing")
    parser.add_argument("--purge", action="store_true", help="with --rollback: also remove data written since")
    add_common_options(parser)
    args = parser.parse_args(argv)
    if args.purge and not args.rollback:
        parser.error("--purge goes with --rollback")

    def this_migration() -> list[Migration]:
        migration = load_migration(path)
        if migration is None:
            raise MigrationError(f"{path.name} declares no migration", ExitCode.USAGE)
        return [migration]

    async def work(ctx: Context) -> int:
        migration = ctx.engine.migrations[0]
        if args.verify:
            return await verify_all(ctx, [migration])
        if args.rollback:
            return await rollback_one(ctx, migration)
        return await apply_all(ctx, [migration])

    return run(args, this_migration, work)


def exit_with(code: int) -> None:
    sys.exit(int(code))

"""The command lines: the runner, a migration run on its own, and the one way they all run.

Parses flags, calls migrator.commands, and turns MigrationError into one line and an exit code
(see errors.ExitCode). Tracebacks only with --debug.
"""

import argparse
import asyncio
import math
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Awaitable, Callable

from app.settings import Settings, SettingsError, load_settings
from migrator import backup, batches, commands, plan
from migrator.commands import Context, Options
from migrator.connection import connect, ignored_options, server_info
from migrator.discovery import MIGRATIONS_DIR, discover, find
from migrator.engine import Engine
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, load_migration
from migrator.output import log, say, setup_logging
from migrator.redact import redact
from migrator.retry import DEFAULT_RETRY_FOR_S

EXIT_CODES_HELP = """exit codes:
  0  success           1  a migration, its verification or a rollback failed   2  usage or settings error
  3  lock held         4  verification failed (--verify, --mark-applied, --restore)
  5  cannot reach or log in to MongoDB
  130 interrupted (Ctrl-C)   143 stopped by SIGTERM (docker stop); both resume from the checkpoint when run again"""

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


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage block is what --help is for) and exit 2."""

    def error(self, message: str):
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", type=_text("a file name"), metavar="FILE", help="read MONGODB_URL and MONGODB_DATABASE_NAME from FILE "
                        "instead of .env (or set ENV_FILE); real environment variables win")
    parser.add_argument("-y", "--yes", action="store_true", help="answer yes to every confirmation (for scripts)")
    parser.add_argument("--lock-timeout", type=_number(float, minimum=0), default=60.0, metavar="SECONDS",
                        help="wait this long for another runner's lock before exit 3 (default: 60)")
    parser.add_argument("--lease", type=_positive(float), default=60.0, metavar="SECONDS", help=argparse.SUPPRESS)
    parser.add_argument("--server-timeout", type=_positive(float), default=5.0, metavar="SECONDS",
                        help="give up reaching the server after SECONDS (default: 5)")
    parser.add_argument("--retry-for", type=_number(float), default=DEFAULT_RETRY_FOR_S, metavar="SECONDS",
                        help="when the server fails over or a connection drops, retry each batch and each write of "
                        f"the lock, changelog and checkpoints for up to SECONDS (default: {DEFAULT_RETRY_FOR_S:g})")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def add_backup_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backup", action=argparse.BooleanOptionalAction, default=None,
                        help="save whole every document the migration (or rollback) will change, before it runs, to "
                        "a .jsonl.gz file that --restore puts back; on by default for rollbacks (--no-backup skips)")
    parser.add_argument("--backup-dir", type=_path("a folder"), metavar="DIR", help="where backups go (default: "
                        "$MIGRATIONS_BACKUP_DIR, else backups/ of the repository)")
    parser.add_argument("--backup-full", action="store_true", help="first dump the whole database with mongodump "
                        "(MongoDB Database Tools) to DIR/<database>-<time>.archive.gz")


BATCH_FLAGS = ("batch_size", "max_rate", "write_concern", "batch_path")  # those without a default


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("large collections (migrations that walk a collection in batches)")
    group.add_argument("--batch-size", type=_positive(int), metavar="N", help=f"documents per batch; a checkpoint is "
                       f"saved after each, so a re-run resumes there (default: {batches.DEFAULT_SIZE})")
    group.add_argument("--max-rate", type=_positive(float), metavar="DOCS_PER_S", help="process at most this many "
                       "documents per second, to spare live traffic (default: as fast as the server goes)")
    group.add_argument("--write-concern", choices=["majority", "1"], help="acknowledgement of each batch's writes "
                       "(default: the URL's, else the server's: majority on MongoDB 5.0+ replica sets)")
    group.add_argument("--batch-path", choices=[batches.RANGE, batches.STREAM], help=argparse.SUPPRESS)
    group.add_argument("--progress-interval", type=_positive(float), default=batches.DEFAULT_INTERVAL_S,
                       metavar="SECONDS", help="without a terminal: a progress line every SECONDS (default: 5)")


def _number(kind, minimum: float = 0, above_minimum: bool = False):
    """An argparse type: a finite number of `kind`, at least (or, with above_minimum, more than) `minimum`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
        if value < minimum or (above_minimum and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'more than' if above_minimum else 'at least'} {minimum}: {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _positive(kind):
    return _number(kind, minimum=0, above_minimum=True)


def _text(what: str):
    """An argparse type that refuses an empty value, so that `--migration ""` is an error, not "no flag"."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"needs {what}, got an empty value")
        return text
    parse.__name__ = what
    return parse


def _path(what: str):
    def parse(text: str) -> Path:
        return Path(_text(what)(text))
    parse.__name__ = what
    return parse


def batch_settings_from(args: argparse.Namespace, is_ferretdb: bool) -> batches.BatchSettings:
    """From the flags of add_batch_options; a command without them (reset) gets the defaults."""
    option = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    return batches.BatchSettings(size=option("batch_size"), max_rate=option("max_rate"),
                                 write_concern=option("write_concern"),
                                 path=option("batch_path"), server_is_ferretdb=is_ferretdb,
                                 progress_interval_s=option("progress_interval", batches.DEFAULT_INTERVAL_S))


def options_from(args: argparse.Namespace) -> Options:
    backup_dir = getattr(args, "backup_dir", None) or os.environ.get("MIGRATIONS_BACKUP_DIR") or backup.DEFAULT_DIR
    return Options(dry_run=getattr(args, "dry_run", False), purge=getattr(args, "purge", False), yes=args.yes,
                   force=getattr(args, "force", False), allow_changed=getattr(args, "allow_changed", False),
                   lock_timeout_s=args.lock_timeout, as_json=getattr(args, "json", False),
                   backup=getattr(args, "backup", None), backup_dir=Path(backup_dir),
                   backup_full=getattr(args, "backup_full", False))


def run(args: argparse.Namespace, migrations: Callable[[], list[Migration]], work: Work,
        check: Callable[[Settings], None] | None = None) -> int:
    """Load settings, discover, connect, do the work; every failure becomes one line and an exit code."""
    setup_logging(args.debug)
    try:
        settings = load_settings(args.env_file)  # first: it remembers the password to mask, also in discovery errors
        found = migrations()
        if check:
            check(settings)
        with _sigterm_unwinds():
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
    except Terminated:
        log.error("stopped by SIGTERM: run the same command again to finish")
        return ExitCode.TERMINATED
    except Exception as exc:  # a bug or an unforeseen server answer: still one line
        log.error("unexpected error: %s: %s (run again with --debug for the traceback)",
                  type(exc).__name__, redact(exc), exc_info=args.debug)
        return ExitCode.FAILED


async def _connected(args, settings: Settings, migrations: list[Migration], work: Work) -> int:
    client, database = await connect(settings.mongodb_url, settings.database_name, args.server_timeout)
    try:
        server = await server_info(database)
        log.info("database %s at %s (%s)", settings.database_name, redact(settings.mongodb_url), server.label)
        _say_ignored_options(settings.mongodb_url)
        engine = Engine(database, migrations, lease_s=args.lease, retry_for_s=args.retry_for,
                        batch_settings=batch_settings_from(args, server.is_ferretdb))
        return await work(Context(engine, settings, options_from(args)))
    finally:
        await client.close()


def _say_ignored_options(url: str) -> None:
    ignored = ignored_options(url)
    if ignored.get("w") == "0":
        log.warning("MONGODB_URL asks for w=0 (unacknowledged writes): the runner never uses it, its writes are "
                    "acknowledged by a majority (--write-concern 1 for batches asks less)")
    others = ", ".join(f"{name}={value}" for name, value in ignored.items() if name != "w")
    if others:
        log.info("the runner uses its own client options instead of MONGODB_URL's %s (primary reads, majority "
                 "writes, retries, no socket timeout)", others)


def _offline(args: argparse.Namespace, action: Callable[[], int]) -> int:
    """A command that needs no database (--list, --new): same error handling."""
    setup_logging(args.debug)
    try:
        load_settings(args.env_file)  # not needed, but it remembers the password to mask, should a migration repeat it
    except SettingsError:
        pass
    try:
        return action()
    except MigrationError as exc:
        log.error("%s", exc)
        return exc.exit_code


# ----- the runner: migrations/run_migrations.py -----------------------------------------------

def runner_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="run_migrations.py",
        description="Apply, check and roll back the migrations in migrations/, in order. Every run is recorded "
                    "in the collection migrations_changelog; one runner at a time holds migrations_lock.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    command = parser.add_mutually_exclusive_group(required=True)
    add = command.add_argument
    name = _text("a migration name")
    add("--all", action="store_true", help="apply every pending migration, in order, verifying each")
    add("--migration", type=name, metavar="NAME", help="apply one migration (again, if it is applied: forward is "
        "idempotent)")
    add("--status", action="store_true", help="show every migration: applied (when, how long, how many "
        "documents) or pending, and problems")
    add("--list", action="store_true", help="list the migrations in the order they run (no database needed)")
    add("--verify", action="store_true", help="check every applied migration is still in place (exit 4 if not)")
    add("--rollback", type=name, metavar="NAME", help="roll back one applied (or failed, half-applied) migration "
        "(asks first)")
    add("--rollback-last", action="store_true", help="roll back the applied migration that comes last in the order")
    add("--rollback-to", type=name, metavar="NAME", help="roll back every applied migration after NAME in the order, "
        "last first")
    add("--mark-applied", type=name, metavar="NAME", help="record NAME as applied without running it, if it verifies "
        "(for databases migrated before the changelog)")
    add("--mark-applied-all", type=name, metavar="NAME", help="the same for every pending migration up to NAME")
    add("--force-unlock", action="store_true", help="remove the lock of a runner that died (asks first)")
    add("--restore", metavar="FILE", type=_path("a backup file"), help="put back exactly the documents a --backup "
        "saved in FILE (checks all of it first; asks first; --force for a backup of another database)")
    add("--new", type=name, metavar="NAME", help="write migrations/NAME.py from the template")
    parser.add_argument("--dry-run", action="store_true", help="with --all or --migration: count what would change; "
                        "write nothing, not even the changelog or the lock")
    parser.add_argument("--purge", action="store_true", help="with a rollback: also remove data written since")
    parser.add_argument("--json", action="store_true", help="with --status: print JSON")
    parser.add_argument("--allow-changed", action="store_true", help="with --all: run although an applied "
                        "migration's file has changed")
    parser.add_argument("--force", action="store_true", help="with --mark-applied: record even if it does not verify "
                        "(asks first); with --restore: restore a backup of another database")
    add_backup_options(parser)
    add_batch_options(parser)
    parser.add_argument("--migrations-dir", type=_path("a folder"), default=MIGRATIONS_DIR, metavar="DIR",
                        help="where the migrations are (default: this folder)")
    add_common_options(parser)
    return parser


ROLLBACKS = ("rollback", "rollback_last", "rollback_to")
# The modifier flags each command accepts (a flag given without one of its commands is a usage error).
GOES_WITH = {"dry_run": ("all", "migration"), "json": ("status",), "allow_changed": ("all",), "purge": ROLLBACKS,
             "force": ("mark_applied", "mark_applied_all", "restore"),
             **{flag: ("all", "migration", *ROLLBACKS) for flag in ("backup", "backup_dir", "backup_full")},
             **{flag: ("all", "migration") for flag in BATCH_FLAGS}}
OFFLINE = {"list": lambda args: list_migrations(discover(args.migrations_dir)),
           "new": lambda args: _scaffold(args.migrations_dir, args.new)}


def _runner_commands(args: argparse.Namespace) -> dict[str, Callable[[Context], Awaitable[int]]]:
    """What each command flag does once connected: one entry each, and no default."""
    named = lambda ctx, name: find(ctx.engine.migrations, name)  # noqa: E731
    return {
        "all": commands.apply_pending,
        "migration": lambda ctx: commands.apply_one(ctx, named(ctx, args.migration)),
        "status": commands.status,
        "verify": commands.verify_applied,
        "rollback": lambda ctx: commands.rollback(ctx, commands.select_named(ctx.engine, args.rollback)),
        "rollback_last": lambda ctx: commands.rollback(ctx, commands.select_last),
        "rollback_to": lambda ctx: commands.rollback(ctx, commands.select_after(ctx.engine, args.rollback_to)),
        "mark_applied": lambda ctx: commands.mark_applied(ctx, [named(ctx, args.mark_applied)]),
        "mark_applied_all": lambda ctx: commands.mark_applied(ctx, commands.up_to(ctx.engine, args.mark_applied_all)),
        "restore": lambda ctx: commands.restore(ctx, args.restore),
        "force_unlock": commands.force_unlock,
    }


def _given(args: argparse.Namespace, dest: str) -> bool:
    return getattr(args, dest) not in (None, False)


def runner_main(argv: list[str] | None = None) -> int:
    parser = runner_parser()
    args = parser.parse_args(argv)
    for flag, allowed in GOES_WITH.items():
        if _given(args, flag) and not any(_given(args, name) for name in allowed):
            parser.error(f"--{flag.replace('_', '-')} goes with " + " or ".join(f"--{a.replace('_', '-')}" for a in allowed))
    online = _runner_commands(args)
    [chosen] = [dest for dest in (*OFFLINE, *online) if _given(args, dest)]  # argparse let exactly one through
    if chosen in OFFLINE:
        return _offline(args, lambda: OFFLINE[chosen](args))
    return run(args, lambda: discover(args.migrations_dir), online[chosen])


def list_migrations(migrations: list[Migration]) -> int:
    width = max((len(migration.date) for migration in migrations), default=0)
    for migration in migrations:
        draft = f"  ({plan.DRAFT_FLAG})" if migration.draft else ""
        say(f"{migration.date:<{width}}  {migration.name}  {migration.description}{draft}")
    if not migrations:
        log.info("no migrations found")
    return ExitCode.OK


def _scaffold(folder: Path, name: str) -> int:
    path = commands.new_migration(folder, name, discover(folder))
    log.info("wrote %s: a draft, which refuses to run until you edit it: write its Description and functions, "
             "delete its DRAFT line, then run it with --dry-run first", path)
    return ExitCode.OK


# ----- one migration on its own: python migrations/<name>.py -----------------------------------

def standalone_main(path: str, argv: list[str] | None = None) -> int:
    path = Path(path).resolve()
    parser = Parser(
        prog=path.name,
        description=f"Run the migration {path.stem} on its own: the same as run_migrations.py --migration "
                    f"{path.stem} (recorded in the changelog, under the lock).",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--verify", action="store_true", help="check the change is in place; exit 4 if not")
    mode.add_argument("--rollback", action="store_true", help="undo the change (asks first)")
    mode.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")
    parser.add_argument("--purge", action="store_true", help="with --rollback: also remove data written since")
    add_backup_options(parser)
    add_batch_options(parser)
    add_common_options(parser)
    args = parser.parse_args(argv)
    if args.purge and not args.rollback:
        parser.error("--purge goes with --rollback")
    if (args.backup is not None or args.backup_dir or args.backup_full) and (args.verify or args.dry_run):
        parser.error("--backup, --no-backup, --backup-dir and --backup-full go with a run or --rollback")
    if any(getattr(args, flag) for flag in BATCH_FLAGS) and \
            (args.verify or args.dry_run or args.rollback):
        parser.error("--batch-size, --max-rate and --write-concern go with a run (no --verify, --dry-run, --rollback)")

    def this_migration() -> list[Migration]:
        migration = load_migration(path)
        if migration is None:
            raise MigrationError(f"{path.name} declares no migration", ExitCode.USAGE)
        return [migration]

    async def work(ctx: Context) -> int:
        migration = ctx.engine.migrations[0]
        if args.verify:
            return await commands.verify(ctx, [migration])
        if args.rollback:
            return await commands.rollback(ctx, commands.select_named(ctx.engine, migration.name))
        return await commands.apply_one(ctx, migration)

    return run(args, this_migration, work)


def exit_with(code: int) -> None:
    sys.exit(int(code))

"""The flags: one table of commands builds each parser, its "goes with" checks and its dispatch.

A command is one row (`Command`: its flag, what it does, the modifier flags it accepts); a modifier is
one row of MODIFIERS. Adding a command is one row in migrator/cli.py plus the function it calls; adding a
modifier is one row here plus the code that reads it: a command's argument (cli.py's rows hand it over), or,
for one the engine reads, its line in `engine_options` and its field of engine.Options.
"""

import argparse
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from migrator import backup, batches, chaos, selftest, sizing, throttle
from migrator.commands import Context
from migrator.commands.notify import DEFAULT_STALL_MINUTES
from migrator.commands.progress_view import DEFAULT_INTERVAL_S
from migrator.engine import Options
from migrator.errors import ExitCode
from migrator.lock import LEASE_S, WAIT_S
from migrator.output import JSON, TEXT
from migrator.retry import DEFAULT_RETRY_FOR_S

EXIT_CODES_HELP = """exit codes:
  0  success           1  a migration, its verification or a rollback failed   2  usage or settings error
  3  lock held         4  verification failed (--verify, --mark-applied, --restore, --selftest)
  5  cannot reach or log in to MongoDB                   6  --check: not up to date
  7  stopped by --cancel   130 interrupted (Ctrl-C)   143 stopped by SIGTERM (docker stop); the three resume from the
     checkpoint when run again"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage block is what --help is for) and exit 2."""

    def error(self, message: str):
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see --help)\n")


# ----- value types: bad values are usage errors naming the flag -----

def number(kind, minimum: float = 0, above_minimum: bool = False):
    """A finite number of `kind`, at least (or, with above_minimum, more than) `minimum`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
        if value < minimum or (above_minimum and value == minimum):
            bound = "more than" if above_minimum else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum}: {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def positive(kind):
    return number(kind, minimum=0, above_minimum=True)


def text(what: str):
    """Refuses an empty value, so that `--migration ""` is an error, not "no flag"."""
    def parse(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"needs {what}, got an empty value")
        return value
    parse.__name__ = what
    return parse


def nonempty_path(what: str):
    def parse(value: str) -> Path:
        return Path(text(what)(value))
    parse.__name__ = what
    return parse


NAME = text("a migration name")


def web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError("needs an http:// or https:// URL with a host")
    return value


web_url.__name__ = "a URL"


# ----- the tables -----

@dataclass(frozen=True)
class Command:
    flag: str | None  # "--all"; None: what a migration's own script does when given no command flag
    help: str
    run: Callable[[Context, argparse.Namespace], Awaitable[int]] | None = None  # with a database
    offline: Callable[[argparse.Namespace], int] | None = None  # without one
    metavar: str | None = None  # the value it takes, if any
    type: Callable[[str], Any] = NAME
    accepts: tuple[str, ...] = ()  # the modifiers it takes (their dests)
    optional: bool = False  # its value may be left out (the flag alone is then True)
    runs: bool = False  # it runs or records migrations: refused while a migration file is broken, before connecting

    @property
    def dest(self) -> str:
        return dest_of(self.flag) if self.flag else "run"


@dataclass(frozen=True)
class Modifier:
    flag: str
    options: dict
    group: str = ""  # a heading of --help
    needs: str = ""  # another modifier it goes with, e.g. "--chaos"


BACKUPS = "backups (see README, Backups and restore)"
LARGE = "large collections (migrations that walk a collection in batches)"
class EitherNotBoth(argparse.BooleanOptionalAction):
    """--X or --no-X, refused together (argparse would let the last one win silently)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None and option_string:
            given_before = getattr(namespace, self.dest)
            if given_before != (not option_string.startswith("--no-")):
                parser.error(f"{self.option_strings[0]} and {self.option_strings[1]} contradict each other: give one")
        super().__call__(parser, namespace, values, option_string)


MODIFIERS = (
    Modifier("--dry-run", dict(action="store_true", help="count what would change; write nothing, not even the "
                               "changelog or the lock")),
    Modifier("--purge", dict(action="store_true", help="with a rollback: also remove data written since")),
    Modifier("--json", dict(action="store_true", help="with --status, --history, --plan, --selftest or --preview: "
                             "print JSON")),
    Modifier("--allow-changed", dict(action="store_true", help="run or roll back although an applied migration's "
                                     "file has changed since it ran")),
    Modifier("--allow-out-of-order", dict(action="store_true", help="run a migration that comes before one already "
                                          "applied, or --migration NAME ahead of earlier pending ones")),
    Modifier("--force", dict(action="store_true", help="with --mark-applied: record even if it does not verify (asks "
                             "first); with --restore: restore a backup of another database, or one older than "
                             "migrations applied since, and overwrite or insert documents the app changed or deleted "
                             "since")),
    Modifier("--backup", dict(action=EitherNotBoth, default=None, help="save whole every document "
                              "the migration (or rollback) will change, before it runs, to a file that --restore puts "
                              "back; on by default for rollbacks (--no-backup skips)"), BACKUPS),
    Modifier("--backup-dir", dict(type=nonempty_path("a folder"), metavar="DIR", help="where backups go (default: "
                                  "$MIGRATIONS_BACKUP_DIR, else backups/ of the repository)"), BACKUPS),
    Modifier("--backup-full", dict(action="store_true", help="first dump the whole database with mongodump "
                                   "(MongoDB Database Tools) to DIR/<database>-<time>.archive.gz"), BACKUPS),
    Modifier("--batch-size", dict(type=positive(int), metavar="N", help="documents per batch, at most (the first "
                                  "batch's size); a checkpoint is saved after each, so a re-run resumes there "
                                  f"(default: {batches.DEFAULT_SIZE})"), LARGE),
    Modifier("--target-batch-ms", dict(type=number(float), metavar="MS", help="size the batches so that each takes "
                                       "about MS: smaller at once after a slow batch, a retry or a write-concern "
                                       "timeout, larger again while they are quick, between --min-batch-size and "
                                       f"--batch-size; 0: every batch --batch-size (default: "
                                       f"{sizing.DEFAULT_TARGET_MS})"), LARGE),
    Modifier("--min-batch-size", dict(type=positive(int), metavar="N", help="the smallest batch --target-batch-ms "
                                      f"shrinks to (default: {sizing.DEFAULT_MIN_SIZE})"), LARGE),
    Modifier("--max-rate", dict(type=positive(float), metavar="DOCS_PER_S", help="process at most this many documents "
                                "per second, to spare live traffic (default: as fast as the server goes)"), LARGE),
    Modifier("--write-concern", dict(choices=["majority", "1"], help="acknowledgement of each batch's writes "
                                     "(default: majority)"), LARGE),
    Modifier("--batch-path", dict(choices=[batches.RANGE, batches.STREAM], help=argparse.SUPPRESS), LARGE),
    Modifier("--max-lag", dict(type=positive(float), metavar="SECONDS", help="on a replica set, wait between batches "
                               "while the majority's replication lag is above SECONDS or flow control holds writers "
                               f"back (default: {throttle.DEFAULT_MAX_LAG_S:g}); on any server, a batch far slower "
                               "than the recent ones is followed by a wait as long"), LARGE),
    Modifier("--throttle-interval", dict(type=positive(float), help=argparse.SUPPRESS), LARGE),  # tests: seconds
    Modifier("--chaos", dict(action="store_true", help="with --selftest: run NAME, then its rollback, with one "
                             "fault on the wire at a time (a connection cut, a reply lost, the process killed after a "
                             "write), run it again as an operator would, and compare every document with a run "
                             "without faults; exit 4 if one differs")),
    Modifier("--faults", dict(type=positive(int), metavar="K", help="with --chaos: at most K fault points in all, "
                              "spread over the writes, half at most on the rollback (default: "
                              f"{chaos.DEFAULT_FAULTS})"), needs="--chaos"),
    Modifier("--sample", dict(type=positive(int), metavar="N", help="with --selftest (default: "
                              f"{selftest.DEFAULT_SAMPLE}) or --preview (default: {selftest.PREVIEW_SAMPLE}): how many "
                              "of the documents the migration changes to copy and run it on")),
)
BACKUP_MODIFIERS = ("backup", "backup_dir", "backup_full")
BATCH_MODIFIERS = ("batch_size", "target_batch_ms", "min_batch_size", "max_rate", "write_concern", "batch_path",
                   "max_lag", "throttle_interval")


def dest_of(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """What every command takes (also the reset script's)."""
    parser.add_argument("--env-file", type=text("a file name"), metavar="FILE", help="read MONGODB_URL and "
                        "MONGODB_DATABASE_NAME from FILE instead of .env (or set ENV_FILE); real environment "
                        "variables win")
    parser.add_argument("-y", "--yes", action="store_true", help="answer yes to every confirmation (for scripts)")
    parser.add_argument("--lock-timeout", type=number(float, minimum=0), default=WAIT_S, metavar="SECONDS",
                        help=f"wait this long for another runner's lock before exit 3 (default: {WAIT_S:g})")
    parser.add_argument("--lease", type=positive(float), default=LEASE_S, metavar="SECONDS",
                        help="the migration lock's lease: a runner that cannot renew it (killed, or its event loop "
                        "blocked by synchronous work in a migration) loses the lock after 0.8 x SECONDS, and a dead "
                        f"runner's lock is free after SECONDS (default: {LEASE_S:g})")
    parser.add_argument("--server-timeout", type=positive(float), default=5.0, metavar="SECONDS",
                        help="give up reaching the server at the first contact after SECONDS (default: 5)")
    parser.add_argument("--retry-for", type=number(float), default=DEFAULT_RETRY_FOR_S, metavar="SECONDS",
                        help="when the server fails over or a connection drops, retry each batch and each write of "
                        f"the lock, changelog and checkpoints for up to SECONDS (default: {DEFAULT_RETRY_FOR_S:g})")
    parser.add_argument("--progress-interval", type=positive(float), default=DEFAULT_INTERVAL_S,
                        metavar="SECONDS", help="without a terminal: a progress line every SECONDS; a long index build "
                        "is asked how far it is that often (default: 5)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """What a run tells machines (docs/production.md, "Machine-readable output")."""
    group = parser.add_argument_group("machine-readable output (docs/production.md, Machine-readable output)")
    group.add_argument("--log-format", choices=[TEXT, JSON], default=TEXT, help="json: every log line and every "
                       "event of the run as one JSON object a line on stderr (ts, level, event, migration, message, "
                       "and the event's own fields), masked (default: text)")
    group.add_argument("--metrics-file", type=nonempty_path("a file name"), metavar="PATH", help="keep PATH a "
                       "Prometheus text-format file of the run (documents done and total, rate, ETA, batch duration, "
                       "retries, throttled seconds, state), rewritten atomically every --progress-interval and at "
                       "the end: for node exporter's textfile collector")
    group.add_argument("--notify", type=web_url, metavar="URL", help="POST JSON to URL at the start, the success or "
                       "failure, and a stall of the run; an endpoint that is down costs one warning, never the run")
    group.add_argument("--stall-minutes", type=positive(float), metavar="N", help="with --notify: a stall is N "
                       f"minutes without progress (default: {DEFAULT_STALL_MINUTES:g})")


def build_parser(prog: str, description: str, table: tuple[Command, ...]) -> Parser:
    """The commands as mutually exclusive flags, then the modifiers some of them accept, then the common options."""
    parser = Parser(prog=prog, description=description, epilog=EXIT_CODES_HELP,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=all(command.flag for command in table))
    for command in table:
        if not command.flag:
            continue
        if command.metavar:
            optional: dict[str, Any] = {"nargs": "?", "const": True} if command.optional else {}
            group.add_argument(command.flag, metavar=command.metavar, type=command.type, help=command.help,
                               **optional)
        else:
            group.add_argument(command.flag, action="store_true", help=command.help)
    accepted = {dest for command in table for dest in command.accepts}
    groups: dict[str, argparse._ActionsContainer] = {"": parser}
    for modifier in MODIFIERS:
        if dest_of(modifier.flag) in accepted:
            if modifier.group not in groups:
                groups[modifier.group] = parser.add_argument_group(modifier.group)
            groups[modifier.group].add_argument(modifier.flag, **modifier.options)
    add_common_options(parser)
    add_output_options(parser)
    return parser


def given(args: argparse.Namespace, dest: str) -> bool:
    return getattr(args, dest, None) not in (None, False)


def chosen(parser: Parser, args: argparse.Namespace, table: tuple[Command, ...]) -> Command:
    """The one command given (or the table's default), once every modifier is checked against it."""
    flagged = [command for command in table if command.flag and given(args, command.dest)]
    command = flagged[0] if flagged else next(command for command in table if not command.flag)
    commands = {c.dest for c in table}  # --dry-run is a command of a migration's own script
    for modifier in MODIFIERS:
        dest = dest_of(modifier.flag)
        if given(args, dest) and dest not in command.accepts and dest not in commands:
            takers = [c.flag or "a run" for c in table if dest in c.accepts]
            parser.error(f"{modifier.flag} goes with {' or '.join(takers)}")
        if given(args, dest) and modifier.needs and not given(args, dest_of(modifier.needs)):
            parser.error(f"{modifier.flag} goes with {modifier.needs}")
    if args.stall_minutes is not None and not args.notify:
        parser.error("--stall-minutes goes with --notify")
    return command


# ----- what the engine is handed -----

def engine_options(args: argparse.Namespace) -> Options:
    """The modifiers the engine reads (a parser without one leaves its default); --backup-dir, else
    $MIGRATIONS_BACKUP_DIR, else the default folder."""
    values = vars(args)
    backup_dir = values.get("backup_dir") or os.environ.get("MIGRATIONS_BACKUP_DIR") or backup.DEFAULT_DIR
    return Options(purge=given(args, "purge"), force=given(args, "force"), allow_changed=given(args, "allow_changed"),
                   allow_out_of_order=given(args, "allow_out_of_order"), lock_timeout_s=args.lock_timeout,
                   backup=values.get("backup"), backup_dir=Path(backup_dir), backup_full=given(args, "backup_full"),
                   progress_interval_s=values.get("progress_interval") or DEFAULT_INTERVAL_S)


def batch_settings_from(args: argparse.Namespace) -> batches.BatchSettings:
    values = vars(args)
    health = throttle.ThrottleSettings(max_lag_s=values.get("max_lag") or throttle.DEFAULT_MAX_LAG_S,
                                       interval_s=values.get("throttle_interval") or throttle.DEFAULT_INTERVAL_S)
    return batches.BatchSettings(size=values.get("batch_size"), min_size=values.get("min_batch_size"),
                                 target_batch_ms=values.get("target_batch_ms"), max_rate=values.get("max_rate"),
                                 write_concern=values.get("write_concern"), path=values.get("batch_path"),
                                 throttle=health)

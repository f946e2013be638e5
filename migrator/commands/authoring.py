"""--mark-applied, --force-unlock, --new: adopting a database, freeing the lock, scaffolding a migration."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from migrator import liveness
from migrator.commands.narration import Context
from migrator.durations import duration_text
from migrator.errors import ExitCode, MigrationError
from migrator.lock import describe, refusal_to_unlock
from migrator.migration import Migration, date_of, in_parens
from migrator.output import confirm, log

# ----- adopting a database, the lock -----

async def mark_applied(ctx: Context, migrations: list[Migration], yes: bool = False) -> int:
    """--mark-applied(-all): the engine records each that verifies; with --force, asked first, one that does not."""
    if ctx.options.force:
        for name, verification in (await ctx.engine.plan_mark_applied(migrations)).items():
            if not verification.ok:
                log.warning("%s: NOT in place%s", name, in_parens(verification.counts))
                confirm(f"record {name} as applied on database {ctx.settings.database_name} although its change is "
                        "not in place", yes)
    await ctx.engine.mark_applied(migrations, ctx.options)
    return ExitCode.OK


async def force_unlock(ctx: Context, yes: bool = False) -> int:
    """Refused for a runner alive on this host; one elsewhere cannot be known dead: say when it last renewed."""
    holder = await ctx.engine.lock_holder()
    if holder is None:
        log.info("the migration lock is free: nothing to unlock")
        return ExitCode.OK
    if holder.runner == liveness.ALIVE:
        raise refusal_to_unlock(holder.lock)
    if holder.runner == liveness.DEAD:
        log.info("its runner is no longer running on this host: it died without releasing the lock")
    else:
        log.warning("its runner is not on this host (%s), or in another container: whether it is alive cannot be "
                    "known from here. It last renewed its lease %s ago (a live runner renews it every quarter of "
                    "its lease: every 15 s by default); the lease ends by itself in %s",
                    liveness.HOST, duration_text(max(0.0, holder.renewed_s_ago)),
                    duration_text(max(0.0, holder.expires_in_s)))
    confirm(f"remove the migration lock held by {describe(holder.lock)} (only if that runner is dead: a live one "
            "would go on writing beside the next runner)", yes)
    removed = await ctx.engine.force_unlock()
    log.info("lock removed%s", f" (was held by {describe(removed)})" if removed else "")
    return ExitCode.OK


# ----- scaffolding -----

TEMPLATE = Path(__file__).parents[1] / "migration_template.py.txt"
MAX_NAME = 100  # characters of a migration's name: its file and its test's must fit any file system's names


def check_name(name: str) -> None:
    if len(name) > MAX_NAME:
        raise MigrationError(f"a migration name of {len(name)} characters is too long: at most {MAX_NAME}",
                             ExitCode.USAGE)
    if not name.isidentifier() or name.startswith("_") or not name.islower():
        raise MigrationError(f"{name!r} is not a valid migration name: use lower_case_with_underscores", ExitCode.USAGE)


def new_migration(folder: Path, name: str, migrations: list[Migration]) -> Path:
    check_name(name)
    path = folder / f"{name}.py"
    if path.exists() or any(m.name == name for m in migrations):
        raise MigrationError(f"a migration named {name} already exists ({path})", ExitCode.USAGE)
    written = date_to_write(datetime.now(UTC).replace(tzinfo=None, microsecond=0), migrations)
    path.write_text(TEMPLATE.read_text().replace("{name}", name).replace("{date}", f"{written:%Y-%m-%d %H:%M:%S}"))
    return path


def date_to_write(now: datetime, migrations: list[Migration]) -> datetime:
    """The Date of a migration written `now` (UTC, so that time zones keep the order they were written in), to
    the second; and a second after the latest migration's, should that be as late (by less than a minute):
    migrations written within a second (by a script, say) run in the order they were written, not by name."""
    latest = max((date_of(migration) for migration in migrations), default=now - timedelta(days=1))
    return latest + timedelta(seconds=1) if now <= latest < now + timedelta(minutes=1) else now


# ----- scaffolding: a new migration's own test -----

TEST_TEMPLATE = Path(__file__).parents[1] / "migration_test_template.py.txt"


def migration_test_path(folder: Path, name: str) -> Path:
    """tests/migrations/test_NAME.py beside the migrations folder."""
    return Path(folder).resolve().parent / "tests" / "migrations" / f"test_{name}.py"


def new_migration_with_test(folder: Path, name: str, migrations: list[Migration]) -> tuple[Path, Path]:
    """--new: the migration from the template, and tests/migrations/test_NAME.py, which runs --selftest on a
    small fixture (and is skipped while the migration is a draft)."""
    check_name(name)
    test = migration_test_path(folder, name)
    if test.exists():
        raise MigrationError(f"{test} already exists: remove it, or choose another name; nothing was written",
                             ExitCode.USAGE)
    path = new_migration(folder, name, migrations)
    test.parent.mkdir(parents=True, exist_ok=True)
    package = test.parent / "__init__.py"  # a package: test_NAME may share a name with another test module
    if not package.exists():
        package.write_text("")
    test.write_text(TEST_TEMPLATE.read_text().replace("{name}", name))
    return path, test

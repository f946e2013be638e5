"""--all, --migration, --dry-run, the rollbacks: the engine's workflows; a rollback asks first."""

from migrator import plan
from migrator.commands.narration import Context, all_applied
from migrator.commands.prove import report_estimate
from migrator.commands.schema import step_text
from migrator.discovery import find
from migrator.engine import Engine, Select
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration
from migrator.output import confirm, log

# ----- applying -----

async def dry_run(ctx: Context, migrations: list[Migration]) -> int:
    """--dry-run: what each would change, and how long it would take (at most at --max-rate)."""
    for migration in migrations:
        count = await ctx.engine.count_pending(migration)
        would = "an unknown number of" if count is None else f"{count:,}"
        log.info("%s: dry run: would change %s documents; nothing written", migration.name, would)
        await report_estimate(ctx, migration, count)
    if not migrations:
        log.info("dry run: no pending migrations")
    return ExitCode.OK


async def apply_pending(ctx: Context, dry_run_only: bool = False) -> int:
    """--all: every pending migration, in order."""
    if dry_run_only:
        code = await dry_run(ctx, await ctx.engine.plan_apply(ctx.options))  # refused as the real run would be
        await dry_run_schema(ctx)
        return code
    report = await ctx.engine.apply_pending(ctx.options)
    if not report.pending and report.schema is None:
        log.info("nothing to do: %s", all_applied(report.total))
    elif not report.pending:
        log.info("done: %s; the schema is as declared", all_applied(report.total))
    elif report.applied:
        log.info("done: %d migration(s) applied and verified", len(report.applied))
    else:
        log.info("nothing to do: another runner applied them meanwhile")
    return ExitCode.OK


async def dry_run_schema(ctx: Context) -> None:
    """--all --dry-run: the schema steps --all would run after the migrations (a unique index over duplicates is
    refused here as it would be there); nothing written."""
    planned = await ctx.engine.plan_apply_schema()
    if planned is None:
        return
    if not planned.runnable:
        log.info("schema: dry run: as declared, nothing to do")
    for step in planned.steps:
        log.info("schema: dry run: would %s", step_text(step))


async def apply_one(ctx: Context, migration: Migration, dry_run_only: bool = False) -> int:
    """--migration NAME (and a migration run on its own): run it, applied or not; forward is idempotent."""
    if dry_run_only:
        await ctx.engine.plan_apply_one(migration, ctx.options)
        return await dry_run(ctx, [migration])
    await ctx.engine.apply_one(migration, ctx.options)
    return ExitCode.OK


# ----- rolling back -----

async def rollback(ctx: Context, select: Select, yes: bool = False) -> int:
    """Roll back what `select(migrations, latest changelog entries)` returns, last in the order first.
    Every target is checked (it has a rollback, nothing applied still depends on it, its backup can be taken)
    before asking."""
    engine, options = ctx.engine, ctx.options
    targets = await engine.plan_rollback(select, options)
    if not targets:
        log.info("nothing to roll back")
        return ExitCode.OK
    names = ", ".join(m.name for m in targets)
    if options.purge:
        log.warning("--purge also removes data the app wrote since the migration ran")
    if options.backup is False:
        log.warning("--no-backup: the documents the rollback changes are not saved first")
    confirm(f"roll back {names} on database {ctx.settings.database_name}"
            f"{' and purge app-written data' if options.purge else ''}", yes)
    await engine.rollback(targets, options)
    return ExitCode.OK


async def rollback_schema(ctx: Context, yes: bool = False) -> int:
    """--rollback schema: undo the latest schema run not rolled back yet; says what it will do, then asks."""
    planned = await ctx.engine.plan_schema_rollback()
    if planned is None:
        log.info("nothing to roll back: no schema run recorded (or each is rolled back already)")
        return ExitCode.OK
    entry, steps = planned
    for step in steps.steps:
        log.info("schema rollback: will %s", step_text(step))
    confirm(f"roll back the schema run of {entry['at']:%Y-%m-%d %H:%M:%S} UTC ({entry['state']}) on database "
            f"{ctx.settings.database_name}", yes)
    if await ctx.engine.rollback_schema(ctx.options) is None:
        log.info("nothing to roll back: another runner rolled it back meanwhile")
    return ExitCode.OK


def select_named(engine: Engine, name: str) -> Select:
    migration = find(engine.migrations, name)

    def select(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
        if migration not in plan.rollbackable(migrations, latest):
            raise MigrationError(f"{migration.name} is not applied: nothing to roll back", ExitCode.USAGE)
        return [migration]
    return select


def select_after(engine: Engine, name: str) -> Select:
    target = find(engine.migrations, name)

    def select(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
        applied = plan.applied(migrations, latest)
        if target not in applied:
            raise MigrationError(f"{target.name} is not applied: --rollback-to needs an applied migration",
                                 ExitCode.USAGE)
        undoing = plan.applied_or_rolling_back(migrations, latest)  # a stopped rollback goes on
        return undoing[:undoing.index(target)]
    return select


def select_last(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    """The last applied one, or the last whose rollback stopped half-way: the same command again goes on."""
    return plan.applied_or_rolling_back(migrations, latest)[:1]


def up_to(engine: Engine, name: str) -> list[Migration]:
    """--mark-applied-all NAME: every migration up to NAME in the order."""
    last = engine.migrations.index(find(engine.migrations, name))
    return engine.migrations[:last + 1]

"""--pause, --resume, --cancel: requests a running walk honours at its next batch boundary (migrator.control)."""

from migrator.commands.narration import Context
from migrator.control import ALL, CANCELLED, Request
from migrator.discovery import find
from migrator.errors import ExitCode
from migrator.output import log
from migrator.plan import StatusRow

AT_BOUNDARIES = ("takes no batches: pause and cancel act only at batch boundaries, so this run cannot be paused or "
                 "cancelled (Ctrl-C or SIGTERM on its runner stops it)")


async def pause(ctx: Context, name: str | None) -> int:
    """NAME, else the migration running now, else every migration (a run then starts paused)."""
    _check_known(ctx, name)
    running = await ctx.engine.running()
    request = await ctx.engine.pause(name)
    if request.migration == ALL:
        log.info("every migration paused by %s: nothing runs now; a run waits at its first batch, holding the lock "
                 "and writing nothing, until --resume", request.by)
    elif running is not None and running.name == request.migration:
        log.info("%s: paused by %s: its runner %s waits at its next batch boundary, holding the lock and writing "
                 "nothing, until --resume; --status shows it", request.migration, request.by, running.runner)
        _batched(ctx, running)
    else:
        log.info("%s: paused by %s: not running now; a run of it waits at its first batch, until --resume",
                 request.migration, request.by)
    return ExitCode.OK


async def resume(ctx: Context, name: str | None) -> int:
    _check_known(ctx, name)
    cleared = await ctx.engine.resume(name)
    if not cleared:
        log.info("nothing is paused")
    for request in cleared:
        what = "every migration" if request.migration == ALL else request.migration
        how = "its cancel request withdrawn" if request.state == CANCELLED else "resumed"
        log.info("%s: %s (%s by %s since %s UTC)", what, how, request.state, request.by, _time(request))
    return ExitCode.OK


async def cancel(ctx: Context, name: str | None) -> int:
    _check_known(ctx, name)
    running = await ctx.engine.running()
    if running is not None and running.name == (name or running.name) and not _batched(ctx, running):
        return ExitCode.OK  # nothing recorded: no batch boundary would ever read it
    request = await ctx.engine.cancel(name)
    if request is None:
        log.info("%s: nothing to cancel", f"{name} is not running" if name else "nothing is running")
        return ExitCode.OK
    log.info("%s: cancel requested by %s: its runner stops at its next batch boundary, its checkpoint saved, and "
             "exits %d; the same command again resumes", request.migration, request.by, ExitCode.CANCELLED)
    return ExitCode.OK


def _check_known(ctx: Context, name: str | None) -> None:
    if name:
        find(ctx.engine.migrations, name)  # an unknown name: one line, exit 2


def _batched(ctx: Context, row: StatusRow) -> bool:
    """Whether the run of `row` walks in batches; when not, says that it cannot be paused or cancelled."""
    migration = next((m for m in ctx.engine.migrations if m.name == row.name), None)
    hook = "rollback" if row.action == "rollback" else "up"
    if migration is None or migration.accepts(hook, "batches"):
        return True
    log.warning("%s: its %s %s", row.name, hook, AT_BOUNDARIES)
    return False


def _time(request: Request) -> str:
    return f"{request.at:%Y-%m-%d %H:%M:%S}"

"""--status, --history, --check, --verify: reading the state; nothing here writes."""

import json

from migrator import plan
from migrator.commands.narration import Context, all_applied
from migrator.commands.rows import failed_text, interrupted_text, row_json, running_text
from migrator.commands.schema import check_lines, read_state, status_json, status_lines, unknown_lines
from migrator.discovery import find
from migrator.errors import ExitCode
from migrator.migration import Migration, in_parens
from migrator.output import log, say, table
from migrator.schema.record import NAME as SCHEMA
from migrator.schema.record import schema_entries


async def verify(ctx: Context, migrations: list[Migration]) -> int:
    failed = []
    for migration in migrations:
        verification = await ctx.engine.verify(migration)
        state = "ok" if verification.ok else "NOT in place"
        note = f": {verification.note}" if verification.note else ""
        (log.info if verification.ok else log.warning)("%s: %s%s%s", migration.name, state,
                                                       in_parens(verification.counts), note)
        if not verification.ok:
            failed.append(migration.name)
    if failed:
        log.error("verification failed: %s", ", ".join(failed))
        return ExitCode.VERIFY_FAILED
    return ExitCode.OK


async def verify_applied(ctx: Context) -> int:
    """--verify on the runner: every applied migration is still in place; say which files changed, are gone or are
    broken (those cannot be verified: exit 4 once the others are)."""
    changed, applied, unverifiable = await ctx.engine.applied_files()
    for migration in changed:
        log.warning("%s: its file changed since it was applied: verified with the code as it is now", migration.name)
    for name, why in unverifiable.items():
        log.warning("%s: applied, but %s: it cannot be verified", name, why)
    if not applied and not unverifiable:
        log.info("no applied migrations to verify")
        return ExitCode.OK
    code = await verify(ctx, applied) if applied else ExitCode.OK
    if unverifiable:
        log.error("cannot verify %s: the file is gone or broken (restore it from version control, or fix it)",
                  ", ".join(unverifiable))
        return ExitCode.VERIFY_FAILED
    return code


async def check(ctx: Context) -> int:
    """--check: exit 6, one line per reason, unless every migration is applied as its file says and the schema is as
    declared (an unknown index is said, and is no reason)."""
    rows = await ctx.engine.status()
    schema = await read_state(ctx)
    reasons = [f"{reason.name}: {_why(reason)}" for reason in plan.not_current(rows)] + check_lines(schema)
    for reason in reasons:
        say(reason)
    for line in unknown_lines(schema.plan) if schema.plan else []:
        say(line)
    if reasons:
        return ExitCode.NOT_CURRENT
    say(f"up to date: {all_applied(len(rows))}" + ("; schema as declared" if schema.declared else ""))
    return ExitCode.OK


def _why(reason: plan.NotCurrent) -> str:
    row = reason.row
    if reason.kind == plan.BROKEN_FILE:
        return f"its file is broken: {row.broken}"
    if reason.kind == plan.MISSING_FILE:
        return "applied, but its file is gone (older code on a newer database?)"
    if reason.kind == plan.CHANGED:
        return "its file changed since it was applied"
    if reason.kind == plan.OUT_OF_ORDER:
        return f"out of order: it comes before the applied {row.out_of_order}"
    why = {plan.FAILED: failed_text(row), plan.ROLLED_BACK: "rolled back",
           plan.RUNNING: running_text(row),
           plan.INTERRUPTED: interrupted_text(row)}.get(row.state, "pending")
    if row.checkpoint_done is not None and row.state != plan.RUNNING:
        why += f" ({row.checkpoint_done:,} documents done)"
    return why


async def status(ctx: Context, as_json: bool = False) -> int:
    rows = await ctx.engine.status()
    schema = await read_state(ctx)
    if as_json:
        schema_row = status_json(schema)
        say(json.dumps([row_json(row) for row in rows] + ([schema_row] if schema_row else []), indent=2, default=str))
        return ExitCode.OK
    table(["migration", "date", "state", "since (UTC)", "took", "docs", "flags"], [
        [row.name, row.date, row.state.replace("_", " "), f"{row.at:%Y-%m-%d %H:%M:%S}" if row.at else "",
         f"{row.duration_s:.2f} s" if row.duration_s is not None else "", _docs_cell(row), ", ".join(row.flags)]
        for row in rows])
    say(_summary(rows))
    if schema_run := last_schema_run(await ctx.engine.history()):
        say(schema_run)
    for row in rows:
        if row.state == plan.RUNNING:
            say(f"{row.name}: {running_text(row)}")
        if row.state == plan.INTERRUPTED:
            say(f"{row.name}: {interrupted_text(row)}")
        if row.state == plan.FAILED and row.error:
            say(f"{row.name} {failed_text(row)}")
        if row.broken:
            say(f"{row.name}: its file is broken: {row.broken}; nothing runs until it is fixed or moved out of the "
                "migrations folder")
    for line in status_lines(schema):
        say(line)
    return ExitCode.OK


def last_schema_run(entries: list[dict]) -> str:
    """`schema: last run applied at 2026-01-01 12:00:00 UTC in 0.42 s: created 2, dropped 0, adopted 1`; "" if none."""
    runs = [entry for entry in schema_entries(entries) if entry.get("state")]
    if not runs:
        return ""
    last = runs[-1]
    what = "rollback" if last.get("action") == "rollback" else "run"
    if last["state"] == plan.RUNNING:
        return (f"{SCHEMA}: last {what} started at {last['at']:%Y-%m-%d %H:%M:%S} UTC by {last.get('host', '?')}:"
                f"{last.get('pid', '?')}, no end recorded: running, or stopped (--history schema)")
    done = last.get(SCHEMA) or {}
    counts = ", ".join(f"{name} {len(done.get(name, []))}" for name in ("created", "dropped", "adopted"))
    took = f" in {last['duration_s']:.2f} s" if last.get("duration_s") is not None else ""
    error = f"; {last['error']}" if last.get("error") else ""
    return (f"{SCHEMA}: last {what} {last['state'].replace('_', ' ')} at {last['at']:%Y-%m-%d %H:%M:%S} UTC{took}: "
            f"{counts}{error}")


def _summary(rows: list[plan.StatusRow]) -> str:
    """Each migration counted once, by its state; then those --check fails on for more than being pending."""
    applied = sum(row.state == plan.APPLIED for row in rows)
    pending = sum(row.state in (plan.PENDING, plan.RUNNING, plan.INTERRUPTED) for row in rows)
    failed = sum(row.state == plan.FAILED for row in rows)
    rolled_back = sum(row.state == plan.ROLLED_BACK for row in rows)
    running = sum(row.state == plan.RUNNING for row in rows)
    problems = {reason.name for reason in plan.not_current(rows) if reason.kind != reason.row.state}  # not counted yet
    return (f"{applied} applied, {pending} pending" + (f" ({running} running now)" if running else "")
            + (f", {failed} failed" if failed else "") + (f", {rolled_back} rolled back" if rolled_back else "")
            + (f", {len(problems)} with problems" if problems else ""))


def _docs_cell(row: plan.StatusRow) -> str:
    """Applied: the documents it changed; running, batched: done of total."""
    if row.state == plan.RUNNING and row.documents_done is not None:
        share = "" if row.percent is None else f" ({row.percent:.1f}%)"
        return f"{row.documents_done:,}" + ("" if row.total is None else f" of {row.total:,}") + share
    return "" if row.modified is None else f"{row.modified:,}"


async def history(ctx: Context, name: str | bool, as_json: bool = False) -> int:
    """--history [NAME]: the changelog, oldest first."""
    entries = await ctx.engine.history()
    if isinstance(name, str):
        broken = {file.name for file in ctx.engine.broken}  # a broken file's history is there to read
        known = {m.name for m in ctx.engine.migrations} | broken | {e["name"] for e in entries}
        name = find(ctx.engine.migrations, name).name if name not in known else name
        entries = [entry for entry in entries if entry["name"] == name]
    if as_json:
        say(json.dumps([{**entry, "_id": str(entry["_id"]), "at": entry["at"].isoformat()} for entry in entries],
                       indent=2, default=str))
        return ExitCode.OK
    table(["at (UTC)", "migration", "action", "state", "took", "docs", "host:pid", "user", "commit", "error"], [
        [f"{e['at']:%Y-%m-%d %H:%M:%S}", e["name"], e["action"], e["state"].replace("_", " ")
         + (" (lock lost)" if e.get("lock_lost") else ""),
         f"{e['duration_s']:.2f} s" if e.get("duration_s") is not None else "",
         f"{e['modified']:,}" if e.get("modified") is not None else "", f"{e.get('host', '')}:{e.get('pid', '')}",
         e.get("user", ""), e.get("commit", "")[:10], e.get("error", "")]
        for e in entries])
    if not entries:
        say("no changelog entries" + ("" if name is True else f" for {name}"))
    return ExitCode.OK

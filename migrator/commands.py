"""What each command does, narrated as it goes. The CLI parses flags and calls these.

Every command that writes holds the lock; after taking it, the changelog is read again, so work
that another runner finished meanwhile is not done twice.
"""

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.text import Text

from migrator.settings import Settings
from migrator import backup, live, plan
from migrator.backup import DEFAULT_DIR as DEFAULT_BACKUP_DIR
from migrator.clock import server_now
from migrator.connection import server_info
from migrator.engine import ApplyResult, Engine, RollbackResult, format_counts, in_parens
from migrator.errors import ExitCode, MigrationError
from migrator.lock import describe
from migrator.migration import Migration, refuse_if_draft
from migrator.discovery import find
from migrator.output import confirm, log, say, table
from migrator import docdiff, selftest as prover
from migrator.redact import redact


@dataclass
class Options:
    dry_run: bool = False
    purge: bool = False
    yes: bool = False
    force: bool = False
    allow_changed: bool = False
    allow_out_of_order: bool = False
    lock_timeout_s: float = 60.0
    as_json: bool = False
    backup: bool | None = None  # save the documents first: None = only for rollbacks
    backup_dir: Path = DEFAULT_BACKUP_DIR
    backup_full: bool = False  # mongodump the whole database first
    sample: int | None = None  # --selftest, --preview: documents to copy (None: the command's default)


@dataclass
class Context:
    engine: Engine
    settings: Settings
    options: Options


# ----- applying -----

def report_apply(result: ApplyResult) -> None:
    name, outcome = result.migration.name, result.outcome
    for note in dict.fromkeys([outcome.note, result.after.note]):
        if note:
            log.info("%s: %s", name, note)
    if outcome.modified:
        log.info("%s: modified %s documents (%s matched%s) in %.2f s", name, f"{outcome.modified:,}",
                 f"{outcome.matched:,}", f", {format_counts(outcome.counts)}" if outcome.counts else "", result.seconds)
    else:
        log.info("%s: modified 0 documents: nothing to change", name)
    counts = result.after.counts
    log.info("%s: after: %sverified", name, f"{format_counts(counts)}: " if counts else "")


async def dry_run(ctx: Context, migrations: list[Migration]) -> int:
    for migration in migrations:
        count = await ctx.engine.count_pending(migration)
        would = "an unknown number of" if count is None else f"{count:,}"
        log.info("%s: dry run: would change %s documents; nothing written", migration.name, would)
        await report_estimate(ctx, migration, count)
    if not migrations:
        log.info("dry run: no pending migrations")
    return ExitCode.OK


def refuse_changed(migrations: list[Migration], latest: dict, allow_changed: bool) -> None:
    """Every way of running a migration's code stops at an applied migration whose file changed since."""
    edited = plan.changed(migrations, latest)
    if edited and not allow_changed:
        files = ", ".join(str(m.path.name) for m in edited)
        raise MigrationError(f"applied migration file changed since it ran: {files}; restore it, or write a new "
                             "migration for the new change (--allow-changed runs anyway)")
    for migration in edited:
        log.warning("%s: changed since it was applied (--allow-changed)", migration.name)


def refuse_out_of_order(to_run: list[Migration], latest: dict, all_migrations: list[Migration], allow: bool) -> None:
    """A migration never run, ordered before one already applied, would run after it: refuse unless allowed."""
    early = plan.out_of_order(all_migrations, latest)
    named = [m.name for m in to_run if m.name in early]
    if named and not allow:
        raise MigrationError(f"{', '.join(named)} comes before {early[named[0]]} in the order, but "
                             f"{early[named[0]]} is already applied: check its Date (or rename it), or run it "
                             "anyway with --allow-out-of-order")
    for name in named:
        log.warning("%s: runs after %s, which comes later in the order (--allow-out-of-order)", name, early[name])


async def apply_pending(ctx: Context) -> int:
    """--all: every pending migration, in order."""
    engine = ctx.engine
    if ctx.options.dry_run:
        return await dry_run(ctx, await engine.pending())
    latest = await engine.changelog.latest()
    pending = plan.pending(engine.migrations, latest)
    refuse_changed(engine.migrations, latest, ctx.options.allow_changed)
    refuse_out_of_order(pending, latest, engine.migrations, ctx.options.allow_out_of_order)
    for migration in pending:  # before any of them runs (Engine.apply refuses a draft too)
        refuse_if_draft(migration)
    if not pending:
        log.info("nothing to do: %s", _all_applied(len(engine.migrations)))
        return ExitCode.OK
    check_backups(ctx, pending, "apply")
    async with engine.lock.held(ctx.options.lock_timeout_s):
        latest = await engine.changelog.latest()  # again: another runner may have applied some meanwhile
        pending = plan.pending(engine.migrations, latest)
        if pending:
            await dump_database(ctx)
        for migration in pending:
            _warn_if_interrupted(migration, latest)
            engine.lock.check()
            log.info("%s: applying (%s)", migration.name, migration.description)
            backups = await take_backup(ctx, migration, "apply")
            report_apply(await engine.apply(migration, backups))
            report_post_images(migration, backups)
    if pending:
        log.info("done: %d migration(s) applied and verified", len(pending))
    else:
        log.info("nothing to do: another runner applied them meanwhile")
    return ExitCode.OK


def _warn_if_interrupted(migration: Migration, latest: dict[str, dict]) -> None:
    """A start recorded, and no end, while we hold the lock: the runner that started it died."""
    entry = latest.get(migration.name)
    if plan.state_of(entry) == plan.RUNNING:
        log.warning("%s: interrupted: its runner %s:%s died while running it (started %s UTC); running it again",
                    migration.name, entry.get("host", "?"), entry.get("pid", "?"), f"{entry['at']:%Y-%m-%d %H:%M:%S}")


def _all_applied(count: int) -> str:
    return "the one migration is applied" if count == 1 else f"all {count:,} migrations are applied"


async def apply_one(ctx: Context, migration: Migration) -> int:
    """--migration NAME (and a migration run on its own): run it, applied or not; forward is idempotent."""
    engine = ctx.engine
    if ctx.options.dry_run:
        return await dry_run(ctx, [migration])
    refuse_if_draft(migration)  # before the lock (Engine.apply refuses a draft too)
    latest = await engine.changelog.latest()
    refuse_changed([migration], latest, ctx.options.allow_changed)
    refuse_out_of_order([migration], latest, engine.migrations, ctx.options.allow_out_of_order)
    missing = [name for name in migration.depends_on if plan.state_of(latest.get(name)) != plan.APPLIED]
    if missing:
        raise MigrationError(f"{migration.name} depends on {', '.join(missing)}, not applied yet: run --all",
                             ExitCode.USAGE)
    check_backups(ctx, [migration], "apply")
    async with engine.lock.held(ctx.options.lock_timeout_s):
        await dump_database(ctx)
        log.info("%s: applying (%s)", migration.name, migration.description)
        backups = await take_backup(ctx, migration, "apply")
        report_apply(await engine.apply(migration, backups))
        report_post_images(migration, backups)
    return ExitCode.OK


# ----- checking -----

async def verify(ctx: Context, migrations: list[Migration]) -> int:
    failed = []
    for migration in migrations:
        verification = await ctx.engine.verify(migration)
        state = "ok" if verification.ok else "NOT in place"
        (log.info if verification.ok else log.warning)("%s: %s%s%s", migration.name, state, in_parens(verification.counts),
                                                       f": {verification.note}" if verification.note else "")
        if not verification.ok:
            failed.append(migration.name)
    if failed:
        log.error("verification failed: %s", ", ".join(failed))
        return ExitCode.VERIFY_FAILED
    return ExitCode.OK


async def verify_applied(ctx: Context) -> int:
    """--verify on the runner: every applied migration is still in place; say which files changed or are gone."""
    engine = ctx.engine
    latest = await engine.changelog.latest()
    for migration in plan.changed(engine.migrations, latest):
        log.warning("%s: its file changed since it was applied: verified with the code as it is now", migration.name)
    gone = [row.name for row in plan.status_rows(engine.migrations, await engine.changelog.history())
            if row.missing_file]
    for name in gone:
        log.warning("%s: applied, but its file is gone: it cannot be verified", name)
    applied = list(reversed(plan.applied(engine.migrations, latest)))
    if not applied and not gone:
        log.info("no applied migrations to verify")
        return ExitCode.OK
    code = await verify(ctx, applied) if applied else ExitCode.OK
    if gone:
        log.error("cannot verify %s: the file is gone (restore it from version control)", ", ".join(gone))
        return ExitCode.VERIFY_FAILED
    return code


async def check(ctx: Context) -> int:
    """--check: exit 6, one line per reason, unless every migration is applied as its file says."""
    rows = await ctx.engine.status()
    reasons = []
    for row in rows:
        if row.missing_file:
            continue
        if row.state != plan.APPLIED:
            why = {plan.FAILED: f"failed: {row.error}" if row.error else "failed", plan.ROLLED_BACK: "rolled back",
                   plan.RUNNING: f"running now on {row.runner}",
                   plan.INTERRUPTED: f"interrupted: its runner {row.runner} died"}.get(row.state, "pending")
            if row.checkpoint_done is not None:
                why += f" (interrupted: {row.checkpoint_done:,} documents done)"
            reasons.append(f"{row.name}: {why}")
        if row.changed:
            reasons.append(f"{row.name}: its file changed since it was applied")
        if row.out_of_order:
            reasons.append(f"{row.name}: out of order: it comes before the applied {row.out_of_order}")
    for reason in reasons:
        say(reason)
    if reasons:
        return ExitCode.NOT_CURRENT
    say(f"up to date: {_all_applied(len(rows))}")
    return ExitCode.OK


async def status(ctx: Context) -> int:
    rows = await live.status_rows(ctx.engine)
    if ctx.options.as_json:
        say(json.dumps([{**row.__dict__, "at": row.at.isoformat() if row.at else None,
                         "since": row.since.isoformat() if row.since else None, "flags": row.flags}
                        for row in rows], indent=2))
        return ExitCode.OK
    table(["migration", "date", "state", "since (UTC)", "took", "docs", "flags"], [
        [row.name, row.date, row.state.replace("_", " "), f"{row.at:%Y-%m-%d %H:%M:%S}" if row.at else "",
         f"{row.duration_s:.2f} s" if row.duration_s is not None else "", _docs_cell(row), ", ".join(row.flags)]
        for row in rows])
    pending = sum(row.state != plan.APPLIED for row in rows if not row.missing_file)
    running = sum(row.state == plan.RUNNING for row in rows)
    problems = [row for row in rows if row.changed or row.missing_file or row.state == plan.FAILED]
    say(f"{len(rows) - pending} applied, {pending} pending" + (f" ({running} running now)" if running else "")
        + (f", {len(problems)} with problems" if problems else ""))
    for row in rows:
        if row.state == plan.RUNNING:
            say(f"{row.name}: {plan.running_text(row)}")
        if row.state == plan.FAILED and row.error:
            say(f"{row.name} failed: {row.error}")
    return ExitCode.OK


def _docs_cell(row: plan.StatusRow) -> str:
    """Applied: the documents it changed; running, batched: done of total."""
    if row.state == plan.RUNNING and row.done is not None:
        share = "" if row.percent is None else f" ({row.percent:.1f}%)"
        return f"{row.done:,}" + ("" if row.total is None else f" of {row.total:,}") + share
    return "" if row.modified is None else f"{row.modified:,}"


async def history(ctx: Context, name: str | bool) -> int:
    """--history [NAME]: the changelog, oldest first."""
    entries = await ctx.engine.changelog.entries()
    if name is not True:
        known = {m.name for m in ctx.engine.migrations} | {e["name"] for e in entries}
        name = find(ctx.engine.migrations, name).name if name not in known else name
        entries = [entry for entry in entries if entry["name"] == name]
    if ctx.options.as_json:
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


# ----- rolling back -----

Select = Callable[[list[Migration], dict[str, dict]], list[Migration]]


async def rollback(ctx: Context, select: Select) -> int:
    """Roll back what `select(migrations, latest changelog entries)` returns, last in the order first.
    Every target is checked (it has a rollback, nothing applied still depends on it) before asking."""
    engine = ctx.engine
    latest = await engine.changelog.latest()
    targets = select(engine.migrations, latest)
    if not targets:
        log.info("nothing to roll back")
        return ExitCode.OK
    refuse_changed(targets, latest, ctx.options.allow_changed)
    for migration in targets:
        engine.check_rollback(migration, ctx.options.purge)
    _refuse_dependents(engine.migrations, targets, await engine.changelog.latest())
    names = ", ".join(m.name for m in targets)
    if ctx.options.purge:
        log.warning("--purge also removes data the app wrote since the migration ran")
    check_backups(ctx, targets, "rollback")
    if ctx.options.backup is False:
        log.warning("--no-backup: the documents the rollback changes are not saved first")
    confirm(f"roll back {names} on database {ctx.settings.database_name}"
            f"{' and purge app-written data' if ctx.options.purge else ''}", ctx.options.yes)
    done: list[str] = []
    async with engine.lock.held(ctx.options.lock_timeout_s):
        latest = await engine.changelog.latest()  # again, under the lock: another runner may have been quicker
        undoable = {m.name for m in plan.rollbackable(engine.migrations, latest)}
        _refuse_dependents(engine.migrations, targets, latest)
        if undoable.intersection(m.name for m in targets):
            await dump_database(ctx)
        try:
            for migration in targets:
                if migration.name not in undoable:
                    log.info("%s: already rolled back by another runner", migration.name)
                    continue
                engine.lock.check()
                backups = await take_backup(ctx, migration, "rollback")
                report_rollback(await engine.rollback(migration, purge=ctx.options.purge, backups=backups))
                report_post_images(migration, backups)
                done.append(migration.name)
        except MigrationError as exc:
            if len(targets) == 1:
                raise
            left = [m.name for m in targets if m.name not in done]
            raise MigrationError(f"{exc}; rolled back: {', '.join(done) or 'none'}; not rolled back: "
                                 f"{', '.join(left)}", ExitCode.FAILED) from exc
    return ExitCode.OK


def report_rollback(result: RollbackResult) -> None:
    name, outcome = result.migration.name, result.outcome
    log.info("%s: rolled back: %s documents changed in %.2f s%s", name, f"{outcome.modified:,}", result.seconds,
             in_parens(outcome.counts))
    if outcome.note:
        log.info("%s: %s", name, outcome.note)
    if result.after is not None:
        log.info("%s: rollback verified%s", name, in_parens(result.after.counts))


def _refuse_dependents(migrations: list[Migration], targets: list[Migration], latest: dict[str, dict]) -> None:
    """A migration cannot be rolled back while one that depends on it stays applied."""
    leaving = {m.name for m in targets}
    for target in targets:
        dependents = [m.name for m in migrations if target.name in m.depends_on and m.name not in leaving
                      and plan.state_of(latest.get(m.name)) == plan.APPLIED]
        if dependents:
            raise MigrationError(f"{', '.join(dependents)} depends on {target.name}: roll it back first "
                                 "(or use --rollback-to); nothing was rolled back", ExitCode.USAGE)


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
            raise MigrationError(f"{target.name} is not applied: --rollback-to needs an applied migration", ExitCode.USAGE)
        return applied[:applied.index(target)]
    return select


def select_last(migrations: list[Migration], latest: dict[str, dict]) -> list[Migration]:
    return plan.applied(migrations, latest)[:1]


def up_to(engine: Engine, name: str) -> list[Migration]:
    """--mark-applied-all NAME: every migration up to NAME in the order."""
    last = engine.migrations.index(find(engine.migrations, name))
    return engine.migrations[:last + 1]


# ----- backups and restoring them -----

def check_backups(ctx: Context, migrations: list[Migration], action: str) -> None:
    """Before anything changes: refuse a backup that cannot be taken."""
    if ctx.options.backup:
        backup.require_declared(migrations, action, ctx.options.purge)
    if ctx.options.backup_full:
        backup.require_mongodump()
    if ctx.options.backup or ctx.options.backup_full or (ctx.options.backup is None and action == "rollback"):
        backup.require_folder(ctx.options.backup_dir)


async def dump_database(ctx: Context) -> None:
    """--backup-full: the whole database with mongodump, under the lock, before the first change."""
    if not ctx.options.backup_full:
        return
    name = ctx.settings.database_name
    log.info("backup: dumping database %s with mongodump ...", name)
    path = await backup.dump_database(ctx.settings.mongodb_url, name, ctx.options.backup_dir)
    log.info("backup: database %s dumped to %s (to put it back: mongorestore --gzip --archive=%s --drop)",
             name, backup.shown(path), backup.shown(path))


async def take_backup(ctx: Context, migration: Migration, action: str) -> list[backup.Saved]:
    """Save the documents `up`/`rollback` will change, right before it runs: with --backup, and for rollbacks."""
    wanted = ctx.options.backup if ctx.options.backup is not None else action == "rollback"
    if not wanted:
        return []
    if ctx.options.backup is None and backup.touched(migration, action, ctx.options.purge) is None:
        log.warning("%s: declares no touches(), so its documents are not saved before the rollback%s", migration.name,
                    "" if ctx.options.backup_full else " (--backup-full dumps the whole database)")
        return []
    saved = await ctx.engine.save_backup(migration, action, ctx.options.backup_dir, ctx.options.purge)
    if not saved:
        log.info("%s: backup: its touches() declares no documents: nothing to save", migration.name)
    for one in saved:
        if one.path is None:
            log.info("%s: backup: no document of %s to save: no file written", migration.name, one.collection)
        else:
            log.info("%s: backup: %d documents of %s saved to %s", migration.name, one.count, one.collection,
                     backup.shown(one.path))
    return saved


def report_post_images(migration: Migration, backups: list[backup.Saved]) -> None:
    for saved in backups:
        if saved.post_images:
            log.info("%s: backup: the %d documents as the migration left them recorded in %s", migration.name,
                     saved.count, backup.shown(saved.post_images))
        elif saved.path:
            log.warning("%s: backup: the documents as the migration left them could not be recorded (%s): a restore "
                        "of %s cannot tell the app's later changes apart", migration.name, saved.post_images_error,
                        backup.shown(saved.path))


async def restore(ctx: Context, path: Path) -> int:
    """--restore FILE: put a backup's documents back exactly, after checking all of the file; asks first.
    Those the app changed or deleted since the migration (told by its post-images) are left alone, but with --force."""
    engine, database, force = ctx.engine, ctx.settings.database_name, ctx.options.force
    ferretdb = (await server_info(engine.database)).is_ferretdb
    file = backup.read(path, backup.ferretdb_refuses if ferretdb else None)
    post_images = backup.read_post_images(file)
    shown = backup.shown(file.path)
    log.info("%s: %d documents of %s.%s, saved before the %s of %s at %s (checksum verified)", shown, file.count,
             file.database, file.collection, file.action, file.migration, file.manifest["created_at"])
    warn_of_format(file, post_images, force)
    if file.database != database:
        if not force:
            raise MigrationError(f"refusing to restore {shown}: it is a backup of database {file.database}, not "
                                 f"{database}; nothing was changed (--force restores it here anyway)", ExitCode.USAGE)
        log.warning("--force: restoring a backup of database %s into %s", file.database, database)
    if not file.count:
        log.info("nothing to restore: the backup holds no documents")
        return ExitCode.OK
    await refuse_undoing(ctx, file, warn=True)
    spared = " (but those the app changed or deleted since)" if post_images and not force else ""
    confirm(f"replace {file.count} documents of {database}.{file.collection}{spared} with their versions from "
            f"{shown}", ctx.options.yes)
    async with engine.lock.held(ctx.options.lock_timeout_s):
        await refuse_undoing(ctx, file, warn=False)  # again: another runner may have applied one meanwhile
        restored = await engine.restore(file, post_images, force)
    for name, said in restored.not_in_place:
        log.warning("%s: no longer in place after the restore (%s): recorded as failed; --all applies it again",
                    name, said)
    report_left_alone(restored, file)
    if problem := restored.problem(file):
        raise MigrationError(f"restored documents are not as in the backup: {problem}", ExitCode.VERIFY_FAILED)
    if restored.skipped:
        log.info("restored %d of %d documents of %s and read them back: each as in the backup; %d left as the "
                 "app has them", restored.restored, file.count, file.collection, restored.skipped)
    else:
        log.info("restored %d documents of %s and read them back: count and checksum match the backup",
                 restored.restored, file.collection)
    state = "rolled back" if file.action == "apply" else "applied"
    log.info("%s is recorded as %s again, as when the backup was taken", file.migration, state)
    return ExitCode.OK


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def warn_of_format(file: backup.BackupFile, post_images: backup.PostImages | None, force: bool) -> None:
    """One WARNING line for what an older backup, or one without post-images, cannot do."""
    shown, caveats = backup.shown(file.path), []
    if not file.manifest_covered:
        caveats.append("its manifest (migration, action, database, collection) is not covered by its checksum, "
                       "only its documents are")
    if post_images is None and not force:
        caveats.append("it has no post-images (the documents as the migration left them: a backup of an older "
                       "format, or its migration did not complete), so changes the app made since cannot be told "
                       "apart: every document is put back")
    if caveats:
        older = "a backup of the previous format: " if not file.manifest_covered else ""
        log.warning("%s: %s%s", shown, older, "; and ".join(caveats))


def report_left_alone(restored: backup.Restored, file: backup.BackupFile) -> None:
    """The documents the app changed or deleted since the migration: one WARNING line each kind."""
    for listed, what, undo in ((restored.changed, "changed by the app since the migration: left as they are",
                                "overwrites them"),
                               (restored.deleted, "deleted by the app since the migration: not put back",
                                "inserts them again")):
        if listed.count:
            more = ", ..." if listed.count > len(listed.first) else ""
            log.warning("%s of %s %s %s (_id %s%s); --force %s", plural(listed.count, "document"), file.collection,
                        "was" if listed.count == 1 else "were", what, ", ".join(listed.first), more, undo)


async def refuse_undoing(ctx: Context, file: backup.BackupFile, warn: bool) -> None:
    """A backup older than migrations applied since to its collection would undo them: refused without --force."""
    later = await ctx.engine.applied_since(file)
    if not later:
        return
    names, shown = ", ".join(later), backup.shown(file.path)
    if not ctx.options.force:
        raise MigrationError(f"refusing to restore {shown}: it was taken at {file.manifest['created_at']}, and "
                             f"{names} {'was' if len(later) == 1 else 'were'} applied to {file.collection} since: "
                             "the restore would undo their change there while the changelog still says applied; "
                             "nothing was changed (roll them back first, or --force restores anyway and records "
                             "those no longer in place as failed, for --all to apply again)", ExitCode.USAGE)
    if warn:
        log.warning("--force: restoring %s although %s %s applied to %s since it was taken", shown, names,
                    "was" if len(later) == 1 else "were", file.collection)


# ----- adopting a database, the lock -----

async def mark_applied(ctx: Context, migrations: list[Migration]) -> int:
    engine = ctx.engine
    for migration in migrations:  # before the lock (Engine.mark_applied refuses a draft too)
        refuse_if_draft(migration)
    async with engine.lock.held(ctx.options.lock_timeout_s):
        latest = await engine.changelog.latest()
        for migration in migrations:
            if plan.state_of(latest.get(migration.name)) == plan.APPLIED:
                log.info("%s: already applied", migration.name)
                continue
            verification = await engine.verify(migration)
            if not verification.ok and ctx.options.force:
                log.warning("%s: NOT in place%s", migration.name, in_parens(verification.counts))
                confirm(f"record {migration.name} as applied on database {ctx.settings.database_name} although its "
                        "change is not in place", ctx.options.yes)
            verification = await engine.mark_applied(migration, force=ctx.options.force, verification=verification)
            how = "verified" if verification.ok else "NOT verified, --force"
            log.info("%s: marked as applied without running it (%s%s)", migration.name, how,
                     f": {format_counts(verification.counts)}" if verification.counts else "")
    return ExitCode.OK


async def force_unlock(ctx: Context) -> int:
    lock = ctx.engine.lock
    latest = await lock.latest()
    if lock.is_free(latest, await server_now(ctx.engine.database)):
        log.info("the migration lock is free: nothing to unlock")
        return ExitCode.OK
    confirm(f"remove the migration lock held by {describe(latest)} (only if that runner is dead)", ctx.options.yes)
    removed = await lock.force_unlock()
    log.info("lock removed%s", f" (was held by {describe(removed)})" if removed else "")
    return ExitCode.OK


# ----- scaffolding -----

TEMPLATE = Path(__file__).with_name("migration_template.py.txt")


def new_migration(folder: Path, name: str, migrations: list[Migration]) -> Path:
    if not name.isidentifier() or name.startswith("_") or not name.islower():
        raise MigrationError(f"{name!r} is not a valid migration name: use lower_case_with_underscores", ExitCode.USAGE)
    path = folder / f"{name}.py"
    if path.exists() or any(m.name == name for m in migrations):
        raise MigrationError(f"a migration named {name} already exists ({path})", ExitCode.USAGE)
    # UTC: migrations written the same day in different time zones keep the order they were written in
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    path.write_text(TEMPLATE.read_text().replace("{name}", name).replace("{date}", written))
    return path


# ----- proving a migration on scratch copies: --selftest, --preview, the estimate of --dry-run -----

async def _is_ferretdb(ctx: Context) -> bool:
    known = ctx.engine.batch_settings.server_is_ferretdb  # the CLI passes what it already asked the server
    return known if known is not None else (await server_info(ctx.engine.database)).is_ferretdb


async def _warn_of_leftovers(ctx: Context) -> None:
    found = await prover.leftovers(ctx.engine.database)
    if found:
        log.warning("scratch collections of another self-test, running now or killed: %s: once none runs, drop "
                    "them (they are copies)", ", ".join(found))


def _report_samples(migration: Migration, samples: list[prover.Sample]) -> None:
    for sample in samples:
        if sample.note:
            log.info("%s: %s", migration.name, sample.note)
        else:
            log.info("%s: copied %s documents of %s it changes and %s it must leave alone", migration.name,
                     f"{sample.changes:,}", sample.collection, f"{sample.untouched:,}")


async def selftest(ctx: Context, migration: Migration) -> int:
    """--selftest NAME: its checks on scratch copies of a sample, a line each; exit 4 naming the one that fails."""
    size = ctx.options.sample or prover.DEFAULT_SAMPLE
    await _warn_of_leftovers(ctx)
    log.info("%s: self-test on scratch copies of up to %s of the documents it changes", migration.name, f"{size:,}")
    proof = await prover.prove(ctx.engine.database, migration, size, ctx.engine.batch_settings,
                               await _is_ferretdb(ctx))
    _report_samples(migration, proof.samples)
    for check in proof.checks:
        say(f"{_VERDICT[check.ok]}  {check.name}: {check.detail}")
        for line in check.example:
            say(f"      {line}")
    scratch = "its scratch copies are removed; the real collections were only read"
    if proof.failed:
        raise MigrationError(f"{migration.name}: self-test failed: {proof.failed.failure}: {proof.failed.detail}; "
                             f"{scratch}", ExitCode.VERIFY_FAILED)
    rate = f" ({proof.modified / proof.seconds:,.0f} documents/s)" if proof.modified and proof.seconds > 0 else ""
    log.info("%s: self-test passed: up modified %s documents in %.2f s%s; %s", migration.name, f"{proof.modified:,}",
             proof.seconds, rate, scratch)
    return ExitCode.OK


_VERDICT = {True: "PASS", False: "FAIL", None: "SKIP"}


async def preview(ctx: Context, migration: Migration) -> int:
    """--preview NAME: a few documents before and after `up`, run on scratch copies; and the --dry-run count."""
    await _warn_of_leftovers(ctx)
    count = await ctx.engine.count_pending(migration)  # of the real collections: a read
    found = await prover.preview(ctx.engine.database, migration, ctx.options.sample or prover.PREVIEW_SAMPLE,
                                 ctx.engine.batch_settings, await _is_ferretdb(ctx))
    if ctx.options.as_json:
        say(json.dumps({"migration": migration.name, "would_change": count,
                        "verified": found.verification.ok if found.verification else None,
                        "notes": [sample.note for sample in found.samples if sample.note],
                        "documents": [{"collection": d.collection, "_id": docdiff.as_plain(d.id), "state": d.state,
                                       "changes": [change.as_json() for change in d.changes]}
                                      for d in found.documents]}, indent=2))
        return ExitCode.OK
    for document in found.documents:
        _say_styled([(f"{document.collection} _id={docdiff.shown(document.id)}: {document.state}", "bold")]
                    + [(f"  {change.line()}", _STYLES[change.line()[0]]) for change in document.changes])
    if not found.documents:
        log.info("%s: nothing to preview: %s", migration.name, "; ".join(s.note for s in found.samples if s.note))
    elif found.verification is not None:
        log.info("%s: on the copies: up modified %s of %s documents; verify %s%s", migration.name,
                 f"{found.modified:,}", f"{len(found.documents):,}", "passes" if found.verification.ok else "FAILS",
                 in_parens(found.verification.counts))
    would = "an unknown number of" if count is None else f"{count:,}"
    log.info("%s: would change %s documents; the preview wrote only scratch copies, now removed", migration.name,
             would)
    return ExitCode.OK


_STYLES = {"+": "green", "-": "red", "~": "yellow"}


def _say_styled(lines: list[tuple[str, str]]) -> None:
    """Lines on stdout: coloured in a terminal, plain otherwise. Already masked (docdiff.shown)."""
    if not sys.stdout.isatty():
        for text, _ in lines:
            say(text)
        return
    console = Console(highlight=False)
    for text, style in lines:
        console.print(Text(redact(text), style=style))


async def report_estimate(ctx: Context, migration: Migration, count: int | None) -> None:
    """--dry-run: how long `up` would take, timed on a scratch copy of a sample; can its filter use an index."""
    settings = ctx.engine.batch_settings
    found = await prover.estimate(ctx.engine.database, migration, count, settings, await _is_ferretdb(ctx))
    for collection, answer in found.indexes.items():
        log.info("%s: index use of its filter on %s: %s", migration.name, collection, answer)
    if found.note:
        log.info("%s: estimate: none: %s", migration.name, found.note)
        return
    if not found.documents:
        return
    rate = min(found.rate, settings.max_rate) if settings.max_rate else found.rate
    log.info("%s: estimate: %s for %s documents, at %s documents/s%s (timed on a scratch copy of %s of them, "
             "now removed)", migration.name, _about(found.documents / rate), f"{found.documents:,}", f"{rate:,.0f}",
             " (--max-rate)" if rate != found.rate else "", f"{found.sampled:,}")


def _about(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


# ----- scaffolding: a new migration's own test -----

TEST_TEMPLATE = Path(__file__).with_name("migration_test_template.py.txt")


def migration_test_path(folder: Path, name: str) -> Path:
    """tests/migrations/test_NAME.py beside the migrations folder."""
    return Path(folder).resolve().parent / "tests" / "migrations" / f"test_{name}.py"


def new_migration_with_test(folder: Path, name: str, migrations: list[Migration]) -> tuple[Path, Path]:
    """--new: the migration from the template, and tests/migrations/test_NAME.py, which runs --selftest on a
    small fixture (and is skipped while the migration is a draft)."""
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

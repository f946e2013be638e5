"""The engine, the one door to change a database: apply pending, apply one, roll back, restore, mark applied, and
the declared schema (its indexes and validators: apply_schema, rollback_schema).

Each workflow refuses what it must before anything changes (a draft, an applied migration whose file
changed, one out of order, a backup that cannot be taken), then holds the lock while it writes, reads
the changelog again under it (another runner may have been quicker), keeps the backup policy, verifies
and records every step (migrator.steps, private to the engine). It returns results and prints nothing:
what it tells while it runs are events (migrator.events) handed to the one reporter it was given (the
CLI's renders them; the default tells no one). A workflow the command line asks about first is split in
two: `plan_...` checks and says what would be done, then the doing.
From Python (see the README's "From Python"):

    engine = Engine(database, discover())               # the migrations, and the broken files (shown, not run)
    report = await engine.apply_pending(Options())      # MigrationError: refused or failed
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import TypeVar

from pymongo.asynchronous.database import AsyncDatabase

from migrator import backup, control, events, liveness, plan
from migrator import selftest as prover
from migrator.backup import DEFAULT_DIR as DEFAULT_BACKUP_DIR
from migrator.batches import BatchSettings
from migrator.changelog import Changelog, sets_state
from migrator.checkpoints import Checkpoints
from migrator.clock import server_now
from migrator.control import Controls
from migrator.discovery import MigrationFiles, discover
from migrator.errors import ExitCode, MigrationError
from migrator.events import Reporter, silent
from migrator.hooks import Hooks
from migrator.lock import LEASE_S, WAIT_S, Holder, LockLost, MigrationLock
from migrator.migration import (
    ApplyResult,
    BrokenFile,
    Migration,
    RollbackResult,
    Verification,
    refuse_if_broken,
    refuse_if_draft,
)
from migrator.profile import ServerProfile
from migrator.progress import DEFAULT_INTERVAL_S
from migrator.provenance import provenance
from migrator.retry import DEFAULT_RETRY_FOR_S, Retry
from migrator.schema import record
from migrator.schema.build import Builder, rollback_plan, skipped_what
from migrator.schema.declared import load_declared
from migrator.schema.diff import plan_schema
from migrator.schema.listed import read_listed
from migrator.schema.model import SKIP, SchemaPlan
from migrator.schema.runs import SchemaResult, recorded_run
from migrator.steps import Steps, check_rollback

T = TypeVar("T")

Select = Callable[[list[Migration], dict[str, dict]], list[Migration]]


@dataclass
class Options:
    """What the workflows read (the command line's modifiers that reach the engine)."""
    purge: bool = False  # a rollback also removes data written since
    force: bool = False  # mark_applied: record what does not verify; restore: what it would otherwise refuse
    allow_changed: bool = False
    allow_out_of_order: bool = False
    lock_timeout_s: float = WAIT_S
    backup: bool | None = None  # save the documents first: None = only for rollbacks
    backup_dir: Path = DEFAULT_BACKUP_DIR
    backup_full: bool = False  # mongodump the whole database first
    progress_interval_s: float = DEFAULT_INTERVAL_S  # how often a long index build is asked how far it is


@dataclass
class RunReport:
    """What apply_pending did: `pending` were pending when it started; `applied` ran under the lock (fewer
    when another runner applied some meanwhile)."""
    total: int
    pending: int
    applied: list[ApplyResult] = field(default_factory=list)
    schema: SchemaResult | None = None  # the schema run after them, when the schema was behind


@dataclass
class RestorePlan:
    file: backup.BackupFile
    post_images: backup.PostImages | None
    force: bool


class Engine:
    """The safe workflows, and what they read (the state, verifications, proofs on scratch copies).
    Composed of the changelog, the lock, the checkpoints the batches keep, the one hook runner, and the
    single recorded steps built on them. `migrations`: what `discover()` found (the default), or a list of them;
    while a file is broken, the workflows that run or record a migration refuse (`refuse_if_broken`), and those that
    read the state, unlock or restore work. `url`: the server's, needed only by `backup_full` (mongodump);
    `profile`: the server's (migrator.profile), detected when first needed if not given; `report`: who hears
    the events (migrator.events)."""

    def __init__(self, database: AsyncDatabase, migrations: MigrationFiles | list[Migration] | None = None, *,
                 lease_s: float = LEASE_S, batch_settings: BatchSettings | None = None,
                 retry_for_s: float = DEFAULT_RETRY_FOR_S, profile: ServerProfile | None = None,
                 report: Reporter = silent, url: str | None = None):
        found = discover() if migrations is None else migrations
        files = found if isinstance(found, MigrationFiles) else MigrationFiles(found)
        self.migrations: list[Migration] = files.migrations
        self.broken: list[BrokenFile] = files.broken
        self._database = database
        self._report = report
        self._url = url
        self._batch_settings = batch_settings or BatchSettings()
        self._retry = Retry(retry_for_s, report, ping=partial(database.command, "ping"))  # see migrator.retry
        paths = [m.path for m in self.migrations if m.path] + [file.path for file in self.broken]
        folder = files.folder or (paths[0].parent if paths else None)
        self._declared = cache(partial(load_declared, folder))  # read once, when first asked (schema_plan)
        self._lock = MigrationLock(database, lease_s, retry=self._retry, profile=profile, report=report)
        self._changelog = Changelog(database, self._retry, provenance(folder), stamp=self._lock.stamp,
                                    fence=self._fenced)
        self._checkpoints = Checkpoints(database, self._retry)
        self._controls = Controls(database, self._retry)
        self._hooks = Hooks(database, report=report, retry=self._retry)
        self._steps = Steps(database, self.migrations, self._changelog, self._lock, self._checkpoints, self._hooks,
                            self._retry, self._batch_settings, profile, report)

    async def _fenced(self, what: str, write: Callable[..., Awaitable[T]]) -> T:
        """A changelog record fenced like a batch: on servers with transactions, the stamp and the insert in one."""
        return await (await self._steps.fence()).run(what, write)

    # ----- reading the state -----

    async def status(self) -> list[plan.StatusRow]:
        """Each migration's row; one running now with its progress (the server's clock is read only then)."""
        history = await self._changelog.history()
        rows = plan.status_rows(self.migrations, history, self.broken)
        checkpoints = await self._checkpoints.all()
        holder = await self._lock.holder()
        requests = await self._controls.all()
        running = []
        for row in rows:
            paused = control.applies_to(requests, row.name)
            if row.state != plan.APPLIED and paused is not None and paused.state == control.PAUSED:
                row.paused_by, row.paused_since = paused.by, paused.at
            steps = plan.checkpoints_of(row, checkpoints.get(row.name, []))
            if row.state != plan.APPLIED and steps:
                row.checkpoint_done = sum(step.get("scanned", 0) for step in steps)
            if row.state == plan.RUNNING:
                self._mark_interrupted(row, holder, history[row.name])
            if row.state == plan.RUNNING:
                running.append((row, steps))
        if running:
            now = await self._retry("reading the server's clock", lambda: server_now(self._database))
            for row, steps in running:
                plan.add_progress(row, steps, now)
        return rows

    @staticmethod
    def _mark_interrupted(row: plan.StatusRow, holder: dict | None, entries: list[dict]) -> None:
        """A running row is interrupted once its runner no longer holds the lock, or at once when it is known dead
        (on this host, its pid gone: migrator.liveness); with the failure it recorded when it lost the lock."""
        holds = holder is not None and str(holder["owner"]).startswith(row.runner + ":")
        started = [entry for entry in entries if sets_state(entry)][-1]
        pid_space = holder.get("pid_space") if holder is not None and holds else started.get("pid_space")
        row.runner_state = liveness.runner_state(row.host, row.pid, pid_space)
        if not holds or row.runner_state == liveness.DEAD:
            row.state = plan.INTERRUPTED
            row.error = plan.lost_lock_error(entries)

    async def pending(self) -> list[Migration]:
        return plan.pending(self.migrations, await self._changelog.latest())

    async def applied(self) -> list[Migration]:
        """Applied migrations, newest first."""
        return plan.applied(self.migrations, await self._changelog.latest())

    async def verify(self, migration: Migration) -> Verification:
        return await self._hooks.verification(migration)

    async def history(self) -> list[dict]:
        """Every changelog entry, oldest first."""
        return await self._changelog.entries()

    async def lock_holder(self) -> Holder | None:
        """Who holds the lock now and whether that runner is alive, None when it is free."""
        return await self._lock.holder_state()

    # ----- pause, resume, cancel (migrator.control): requests a running walk honours at its next batch -----

    async def pause(self, name: str | None = None) -> control.Request:
        """Pause `name` (None: the migration running now, else every one): its walk waits at its next batch boundary,
        holding the lock, and a run started later starts paused, until `resume`. A request, no lock needed."""
        running = None if name else await self.running()
        return await self._controls.set(name or (running.name if running else control.ALL), control.PAUSED)

    async def resume(self, name: str | None = None) -> list[control.Request]:
        """Clear the requests of `name` and the pause of all (None: every request); those cleared (none: nothing was
        paused)."""
        return await self._controls.clear(name)

    async def cancel(self, name: str | None = None) -> control.Request | None:
        """Cancel the run of `name` (None: the one running now): its walk stops at its next batch boundary as after
        SIGTERM, resumable (exit 7 from the CLI). None when that migration is not running: nothing recorded."""
        running = await self.running()
        if running is None or name not in (None, running.name):
            return None
        return await self._controls.set(running.name, control.CANCELLED, running.runner)

    async def running(self) -> plan.StatusRow | None:
        """The row of the migration a live runner is applying or rolling back now, if any."""
        return next((row for row in await self.status() if row.state == plan.RUNNING), None)

    async def force_unlock(self) -> dict | None:
        """Free the lock of a runner that is not alive on this host (refused, exit 3, for one that is: it would go
        on writing beside the next runner); the epoch it removed, if any."""
        return await self._lock.force_unlock(spare_live=True)

    async def count_pending(self, migration: Migration) -> int | None:
        """How many documents `up` would change (`count_pending`, else what `touches("apply")` names, counted), or
        None when the migration cannot tell."""
        if migration.count_pending is None:
            return await prover.count_declared(self._database, migration)
        return int(await self._hooks.read(migration, "count_pending"))

    async def applied_files(self) -> tuple[list[Migration], list[Migration], dict[str, str]]:
        """(applied migrations whose file changed since, applied migrations oldest first, {applied one whose file is
        gone or broken: why it cannot be verified})."""
        latest = await self._changelog.latest()
        return (plan.changed(self.migrations, latest), list(reversed(plan.applied(self.migrations, latest))),
                await self._unverifiable())

    async def _unverifiable(self) -> dict[str, str]:
        return plan.unverifiable(plan.status_rows(self.migrations, await self._changelog.history(), self.broken))

    async def schema_plan(self) -> SchemaPlan | None:
        """The schema steps that would make the database as declared in the migrations folder's `_schema.py`, and
        the indexes there undeclared (migrator.schema.diff); None when nothing is declared. A spec module that cannot
        be read: MigrationError, exit 2."""
        declared = self._declared()
        if declared is None:
            return None
        created = record.created_indexes(await self._changelog.entries())
        collections = declared.collections + tuple(sorted({index.collection for index in created}))
        listed = await self._retry("listing the indexes", lambda: read_listed(self._database, collections))
        return plan_schema(declared, listed, created, await self._steps.server_profile())

    # ----- proving a migration on scratch copies (migrator.selftest): the real collections are only read -----

    async def selftest(self, migration: Migration, sample: int = prover.DEFAULT_SAMPLE,
                       faults: int | None = None) -> prover.Proof:
        """The self-test's checks; with `faults` (--chaos), up to that many fault points on the wire too."""
        refuse_if_broken(self.broken)
        return await prover.prove(self._database, migration, sample, self._batch_settings,
                                  await self._steps.server_profile(), self._report, faults)

    async def preview(self, migration: Migration, sample: int = prover.PREVIEW_SAMPLE) -> prover.Preview:
        refuse_if_broken(self.broken)
        return await prover.preview(self._database, migration, sample, self._batch_settings,
                                    await self._steps.server_profile(), self._report)

    async def estimate(self, migration: Migration, documents: int | None) -> prover.Estimate:
        """How fast `up` changes documents, timed on a scratch copy of a sample; can its filter use an index."""
        return await prover.estimate(self._database, migration, documents, self._batch_settings,
                                     await self._steps.server_profile(), report=self._report)

    async def scratch_leftovers(self) -> list[str]:
        """Scratch collections of another self-test, running now or killed."""
        return await prover.leftovers(self._database)

    # ----- applying -----

    async def apply_pending(self, options: Options | None = None) -> RunReport:
        """Every pending migration, in order; then the schema's steps, when it is declared and behind (apply_schema),
        in the same hold of the lock."""
        options = options or Options()
        pending = await self.plan_apply(options)
        report = RunReport(total=len(self.migrations), pending=len(pending))
        schema_behind = await self._schema_behind()
        if not pending and not schema_behind:
            return report
        self._check_backups(pending, "apply", options)
        async with self._lock.held(options.lock_timeout_s):
            latest = await self._changelog.latest()  # again: another runner may have applied some meanwhile
            pending = plan.pending(self.migrations, latest)
            if pending:
                await self._dump_database(options)
            for migration in pending:
                entry = latest.get(migration.name)
                if entry and plan.state_of(entry) == plan.RUNNING:  # we hold the lock: its runner died
                    runner = f"{entry.get('host', '?')}:{entry.get('pid', '?')}"
                    self._report(events.RunInterrupted(migration.name, runner, entry["at"]))
                self._lock.check()
                report.applied.append(await self._apply_backed_up(migration, options))
            # then the schema, planned again: the data migrations may have made a unique index possible
            report.schema = await self._apply_schema_held(options)
        return report

    async def plan_apply(self, options: Options | None = None) -> list[Migration]:
        """What --all would run, or its refusal (MigrationError): the checks of the real run and of --dry-run."""
        options = options or Options()
        refuse_if_broken(self.broken)
        latest = await self._changelog.latest()
        pending = plan.pending(self.migrations, latest)
        self._refuse_changed(self.migrations, latest, options.allow_changed)
        self._refuse_out_of_order(pending, latest, options.allow_out_of_order)
        for migration in pending:  # before any of them runs (the step refuses a draft too)
            refuse_if_draft(migration)
        return pending

    async def apply_one(self, migration: Migration, options: Options | None = None) -> ApplyResult:
        """One migration, applied or not (forward is idempotent), once those it depends on are applied."""
        options = options or Options()
        await self.plan_apply_one(migration, options)
        self._check_backups([migration], "apply", options)
        async with self._lock.held(options.lock_timeout_s):
            await self._dump_database(options)
            return await self._apply_backed_up(migration, options)

    async def plan_apply_one(self, migration: Migration, options: Options | None = None) -> None:
        """Refuse (MigrationError) what --migration NAME would refuse: the checks of the real run and of --dry-run."""
        options = options or Options()
        refuse_if_broken(self.broken)
        refuse_if_draft(migration)  # before the lock (the step refuses a draft too)
        latest = await self._changelog.latest()
        self._refuse_changed([migration], latest, options.allow_changed)
        self._refuse_out_of_order([migration], latest, options.allow_out_of_order)
        missing = [name for name in migration.depends_on if plan.state_of(latest.get(name)) != plan.APPLIED]
        if missing:
            raise MigrationError(f"{migration.name} depends on {', '.join(missing)}, not applied yet: run --all",
                                 ExitCode.USAGE)
        self._refuse_skipping(migration, latest, options.allow_out_of_order)

    async def _apply_backed_up(self, migration: Migration, options: Options) -> ApplyResult:
        self._report(events.Applying(migration.name, migration.description))
        backups = await self._take_backup(migration, "apply", options)
        result = await self._steps.apply(migration, backups)
        self._report(events.MigrationApplied(result, tuple(backups)))
        return result

    # ----- the schema (migrator.schema): indexes and validators as declared -----

    async def apply_schema(self, options: Options | None = None) -> SchemaResult | None:
        """Make the indexes and validators as declared (Engine.schema_plan's runnable steps), under the lock,
        recorded as the changelog's "schema"; None when nothing is declared or nothing is to be done. A unique
        index over duplicate documents is refused before anything changes (MigrationError, exit 1)."""
        options = options or Options()
        if not await self._schema_behind():
            return None
        async with self._lock.held(options.lock_timeout_s):
            return await self._apply_schema_held(options)

    async def plan_apply_schema(self) -> SchemaPlan | None:
        """What apply_schema would run (None: nothing declared), or its refusal (MigrationError, exit 1: a unique
        index over duplicates): the checks of the real run and of --dry-run."""
        planned = await self.schema_plan()
        if planned is not None:
            await (await self._builder()).refuse_duplicates(planned.runnable)
        return planned

    async def _schema_behind(self) -> bool:
        """Does the schema have steps to run? What this server cannot do is told (one line each), never run."""
        planned = await self.schema_plan()
        for step in planned.steps if planned is not None else ():
            if step.kind == SKIP:
                self._report(events.SchemaStepSkipped(step.collection, skipped_what(step), step.reason))
        return planned is not None and bool(planned.runnable)

    async def _apply_schema_held(self, options: Options) -> SchemaResult | None:
        planned = await self.schema_plan()  # again, under the lock: another runner may have been quicker
        if planned is None or not planned.runnable:
            return None
        builder = await self._builder(options)
        return await recorded_run(self._changelog, self._lock, builder, self._report, "apply", planned, planned.adopted)

    async def plan_schema_rollback(self) -> tuple[dict, SchemaPlan] | None:
        """The latest schema run not rolled back yet (its changelog entry) and the steps that undo it (drop what it
        created, build again what it dropped from the recorded definitions, set back the validators it replaced);
        None when there is none."""
        entry = record.last_run(await self._changelog.entries())
        if entry is None:
            return None
        before = entry["schema"].get("validators_before", {})
        return entry, rollback_plan(record.recorded(entry, "created"), record.recorded(entry, "dropped"), before)

    async def rollback_schema(self, options: Options | None = None) -> SchemaResult | None:
        """Undo the latest schema run (plan_schema_rollback), under the lock, recorded as a "schema" rollback;
        None when there is none (another runner may have undone it meanwhile)."""
        options = options or Options()
        async with self._lock.held(options.lock_timeout_s):
            planned = await self.plan_schema_rollback()
            if planned is None:
                return None
            entry, steps = planned
            builder = await self._builder(options)
            return await recorded_run(self._changelog, self._lock, builder, self._report, "rollback", steps,
                                      rolls_back=entry["run_id"])

    async def _builder(self, options: Options | None = None) -> Builder:
        return Builder(self._database, await self._steps.server_profile(), self._retry, self._lock.check,
                       self._report, (options or Options()).progress_interval_s)

    # ----- rolling back -----

    async def plan_rollback(self, select: Select, options: Options | None = None) -> list[Migration]:
        """What `select(migrations, latest changelog entries)` returns, last in the order first, every one
        checked (it has a rollback, its file is unchanged, nothing applied still depends on it, its backup can
        be taken); [] for none."""
        options = options or Options()
        refuse_if_broken(self.broken)
        latest = await self._changelog.latest()
        targets = select(self.migrations, latest)
        if targets:
            self._refuse_rollback(targets, latest, options, self._report)
            self._check_backups(targets, "rollback", options)
        return targets

    async def rollback(self, targets: list[Migration], options: Options | None = None) -> list[RollbackResult]:
        """Roll back what plan_rollback returned, under the lock; those another runner rolled back meanwhile
        are skipped. A failure among several says which were rolled back and which not."""
        options = options or Options()
        refuse_if_broken(self.broken)
        self._check_backups(targets, "rollback", options)  # a caller may come here without plan_rollback
        done: list[RollbackResult] = []
        async with self._lock.held(options.lock_timeout_s):
            latest = await self._changelog.latest()  # again, under the lock: another runner may have been quicker
            undoable = {m.name for m in plan.rollbackable(self.migrations, latest)}
            # checked again: a caller may come here without plan_rollback, or another runner applied a newer file
            self._refuse_rollback(targets, latest, options, silent)
            if undoable.intersection(m.name for m in targets):
                await self._dump_database(options)
            try:
                for migration in targets:
                    if migration.name not in undoable:
                        self._report(events.AlreadyRolledBack(migration.name))
                        continue
                    self._lock.check()
                    backups = await self._take_backup(migration, "rollback", options)
                    done.append(await self._steps.rollback(migration, purge=options.purge, backups=backups))
                    self._report(events.MigrationRolledBack(done[-1], tuple(backups)))
            except MigrationError as exc:
                if len(targets) == 1 or exc.stopped_by_signal:
                    raise  # stopped by a signal: its own exit code, and "run the same command again" holds
                names = [result.migration.name for result in done]
                left = [m.name for m in targets if m.name not in names]
                raise MigrationError(f"{exc}; rolled back: {', '.join(names) or 'none'}; not rolled back: "
                                     f"{', '.join(left)}", exc.exit_code if isinstance(exc, LockLost)
                                     else ExitCode.FAILED) from exc
        return done

    # ----- restoring a backup -----

    async def plan_restore(self, path: Path, options: Options | None = None) -> RestorePlan:
        """Read and check all of a backup file (and its post-images); refuse a backup of another database and
        one older than migrations applied since to its collection, unless `force`."""
        options, database = options or Options(), self._database.name
        file = backup.read(path, (await self._steps.server_profile()).refuses)
        post_images = backup.read_post_images(file)
        self._report(events.BackupRead(file, post_images, options.force))
        if file.database != database:
            if not options.force:
                raise MigrationError(f"refusing to restore {backup.shown(file.path)}: it is a backup of database "
                                     f"{file.database}, not {database}; nothing was changed (--force restores it "
                                     "here anyway)", ExitCode.USAGE)
            self._report(events.RestoringElsewhere(file.database, database))
        if file.count:
            await self._refuse_undoing(file, options.force, self._report)
        return RestorePlan(file, post_images, options.force)

    async def restore(self, planned: RestorePlan, options: Options | None = None) -> backup.Restored:
        """Put the planned backup's documents back under the lock (see Steps.restore); MigrationError (exit 4)
        when what was written does not read back as saved."""
        options, file = options or Options(), planned.file
        if not file.count:
            return backup.Restored()
        async with self._lock.held(options.lock_timeout_s):
            await self._refuse_undoing(file, planned.force, silent)  # again: another runner may have applied one
            restored = await self._steps.restore(file, planned.post_images, planned.force)
        restored.not_verified = await self._unverifiable()
        self._report(events.RestoreDone(restored, file))
        if problem := restored.problem(file):
            raise MigrationError(f"restored documents are not as in the backup: {problem}", ExitCode.VERIFY_FAILED)
        return restored

    async def _refuse_undoing(self, file: backup.BackupFile, force: bool, report: Reporter) -> None:
        """A backup older than migrations applied since to its collection would undo them: refused without force."""
        later = await self._steps.applied_since(file)
        if not later:
            return
        if not force:
            raise MigrationError(f"refusing to restore {backup.shown(file.path)}: it was taken at "
                                 f"{file.manifest['created_at']}, and {', '.join(later)} "
                                 f"{'was' if len(later) == 1 else 'were'} applied to {file.collection} since: "
                                 "the restore would undo their change there while the changelog still says applied; "
                                 "nothing was changed (roll them back first, or --force restores anyway and records "
                                 "those no longer in place as failed, for --all to apply again)", ExitCode.USAGE)
        report(events.RestoreUndoesLater(file, tuple(later)))

    # ----- adopting a database -----

    async def plan_mark_applied(self, migrations: list[Migration]) -> dict[str, Verification]:
        """{name: its verification now} of those not applied yet (a draft is refused): what mark_applied would
        record, and, with `force`, record although it does not verify (the command line asks first)."""
        refuse_if_broken(self.broken)
        for migration in migrations:
            refuse_if_draft(migration)
        latest = await self._changelog.latest()
        return {migration.name: await self.verify(migration) for migration in migrations
                if plan.state_of(latest.get(migration.name)) != plan.APPLIED}

    async def mark_applied(self, migrations: list[Migration], options: Options | None = None
                           ) -> dict[str, Verification]:
        """Record each as applied without running it, when it verifies (or with `force`); {name: its
        verification} of those recorded now."""
        options, marked = options or Options(), {}
        refuse_if_broken(self.broken)
        for migration in migrations:  # before the lock (the step refuses a draft too)
            refuse_if_draft(migration)
        async with self._lock.held(options.lock_timeout_s):
            latest = await self._changelog.latest()
            for migration in migrations:
                if plan.state_of(latest.get(migration.name)) == plan.APPLIED:
                    self._report(events.AlreadyApplied(migration.name))
                    continue
                marked[migration.name] = await self._steps.mark_applied(migration, options.force)
                self._report(events.MarkedApplied(migration.name, marked[migration.name]))
        return marked

    # ----- the refusals and the backup policy -----

    def _refuse_changed(self, migrations: list[Migration], latest: dict, allow: bool,
                        report: Reporter | None = None) -> None:
        """Every way of running a migration's code stops at an applied migration whose file changed since."""
        edited = plan.changed(migrations, latest)
        if edited and not allow:
            files = ", ".join(str(m.path.name) for m in edited if m.path)
            raise MigrationError(f"applied migration file changed since it ran: {files}; restore it, or write a new "
                                 "migration for the new change (--allow-changed runs anyway)")
        for migration in edited:
            (report or self._report)(events.AllowedChanged(migration.name))

    def _refuse_rollback(self, targets: list[Migration], latest: dict, options: Options, report: Reporter) -> None:
        """Each target has a rollback, its file is unchanged since it was applied, and nothing applied that
        depends on it stays."""
        self._refuse_changed(targets, latest, options.allow_changed, report)
        for migration in targets:
            check_rollback(migration, options.purge)
        _refuse_dependents(self.migrations, targets, latest)

    def _refuse_out_of_order(self, to_run: list[Migration], latest: dict, allow: bool) -> None:
        """A migration never run, ordered before one already applied, would run after it: refuse unless allowed."""
        early = plan.out_of_order(self.migrations, latest)
        named = [m.name for m in to_run if m.name in early]
        if named and not allow:
            raise MigrationError(f"{', '.join(named)} comes before {early[named[0]]} in the order, but "
                                 f"{early[named[0]]} is already applied: check its Date (or rename it), or run it "
                                 "anyway with --allow-out-of-order")
        for name in named:
            self._report(events.AllowedOutOfOrder(name, early[name]))

    def _refuse_skipping(self, migration: Migration, latest: dict, allow: bool) -> None:
        """Applying one ahead of earlier pending ones would leave those out of order (and --all would refuse them)."""
        if allow or plan.state_of(latest.get(migration.name)) == plan.APPLIED:
            return
        names = [m.name for m in self.migrations]
        before = self.migrations[:names.index(migration.name)] if migration.name in names else []
        earlier = [m.name for m in plan.pending(before, latest)]
        if earlier:
            raise MigrationError(f"{migration.name} comes after {', '.join(earlier)}, not applied yet: run --all, or "
                                 "apply it first anyway with --allow-out-of-order")

    def _check_backups(self, migrations: list[Migration], action: str, options: Options) -> None:
        """Before anything changes: refuse a backup that cannot be taken."""
        if options.backup:
            backup.require_declared(migrations, action, options.purge)
        if options.backup_full:
            backup.require_mongodump()
            if self._url is None:
                raise MigrationError("backup_full needs the server's URL: Engine(..., url=...)", ExitCode.USAGE)
        if options.backup or options.backup_full or (options.backup is None and action == "rollback"):
            backup.require_folder(options.backup_dir)

    async def _dump_database(self, options: Options) -> None:
        """backup_full: the whole database with mongodump, under the lock, before the first change."""
        if not options.backup_full or self._url is None:  # _check_backups refused backup_full without a URL
            return
        self._report(events.DatabaseDumping(self._database.name))
        path = await backup.dump_database(self._url, self._database.name, options.backup_dir)
        self._report(events.DatabaseDumped(self._database.name, path))

    async def _take_backup(self, migration: Migration, action: str, options: Options) -> list[backup.Saved]:
        """Save the documents `up`/`rollback` will change, right before it runs: with backup, and for rollbacks."""
        wanted = options.backup if options.backup is not None else action == "rollback"
        if not wanted:
            return []
        if options.backup is None and backup.touched(migration, action, options.purge) is None:
            self._report(events.NoTouchesDeclared(migration.name, options.backup_full))
            return []
        saved = await self._steps.save_backup(migration, action, options.backup_dir, options.purge)
        self._report(events.BackupSaved(migration.name, tuple(saved)))
        return saved


def _refuse_dependents(migrations: list[Migration], targets: list[Migration], latest: dict[str, dict]) -> None:
    """A migration cannot be rolled back while one that depends on it stays applied."""
    leaving = {m.name for m in targets}
    for target in targets:
        dependents = [m.name for m in migrations if target.name in m.depends_on and m.name not in leaving
                      and plan.state_of(latest.get(m.name)) == plan.APPLIED]
        if dependents:
            raise MigrationError(f"{', '.join(dependents)} depends on {target.name}: roll it back first "
                                 "(or use --rollback-to); nothing was rolled back", ExitCode.USAGE)

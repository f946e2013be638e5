"""The engine, the one door to change a database: apply pending, apply one, roll back, restore, mark applied.

Each workflow refuses what it must before anything changes (a draft, an applied migration whose file
changed, one out of order, a backup that cannot be taken), then holds the lock while it writes, reads
the changelog again under it (another runner may have been quicker), keeps the backup policy, verifies
and records every step (migrator.steps). It returns results and prints nothing: what must be told while
it runs goes to a Narrator (the CLI's logs it; the default tells no one). A workflow that asks first on
the command line is split in two: `plan_...` checks and says what would be done, then the doing.
From Python (see the README's "From Python"):

    engine = Engine(database, discover())
    report = await engine.apply_pending(Options())      # MigrationError: refused or failed
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from migrator import backup, plan
from migrator.backup import DEFAULT_DIR as DEFAULT_BACKUP_DIR
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, Verification, refuse_if_draft
from migrator.narrator import QUIET, Narrator
from migrator.steps import ApplyResult, RollbackResult, Steps

Select = Callable[[list[Migration], dict[str, dict]], list[Migration]]


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
class RunReport:
    """What apply_pending did: `pending` were pending when it started; `applied` ran under the lock (fewer
    when another runner applied some meanwhile)."""
    total: int
    pending: int
    applied: list[ApplyResult] = field(default_factory=list)


@dataclass
class RestorePlan:
    file: backup.BackupFile
    post_images: backup.PostImages | None
    force: bool


class Engine(Steps):
    """Steps (reading the state, the single steps) and the safe workflows built on them. `url`: the server's,
    needed only by `backup_full` (mongodump)."""

    def __init__(self, *args, url: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.url = url

    # ----- applying -----

    async def apply_pending(self, options: Options | None = None, narrator: Narrator = QUIET) -> RunReport:
        """Every pending migration, in order."""
        options = options or Options()
        _refuse_dry_run(options)
        latest = await self.changelog.latest()
        pending = plan.pending(self.migrations, latest)
        self._refuse_changed(self.migrations, latest, options.allow_changed, narrator)
        self._refuse_out_of_order(pending, latest, options.allow_out_of_order, narrator)
        for migration in pending:  # before any of them runs (_apply refuses a draft too)
            refuse_if_draft(migration)
        report = RunReport(total=len(self.migrations), pending=len(pending))
        if not pending:
            return report
        self.check_backups(pending, "apply", options)
        async with self.lock.held(options.lock_timeout_s):
            latest = await self.changelog.latest()  # again: another runner may have applied some meanwhile
            pending = plan.pending(self.migrations, latest)
            if pending:
                await self._dump_database(options, narrator)
            for migration in pending:
                if plan.state_of(latest.get(migration.name)) == plan.RUNNING:
                    narrator.interrupted(migration, latest[migration.name])  # we hold the lock: its runner died
                self.lock.check()
                report.applied.append(await self._apply_backed_up(migration, options, narrator))
        return report

    async def apply_one(self, migration: Migration, options: Options | None = None,
                        narrator: Narrator = QUIET) -> ApplyResult:
        """One migration, applied or not (forward is idempotent), once those it depends on are applied."""
        options = options or Options()
        _refuse_dry_run(options)
        refuse_if_draft(migration)  # before the lock (_apply refuses a draft too)
        latest = await self.changelog.latest()
        self._refuse_changed([migration], latest, options.allow_changed, narrator)
        self._refuse_out_of_order([migration], latest, options.allow_out_of_order, narrator)
        missing = [name for name in migration.depends_on if plan.state_of(latest.get(name)) != plan.APPLIED]
        if missing:
            raise MigrationError(f"{migration.name} depends on {', '.join(missing)}, not applied yet: run --all",
                                 ExitCode.USAGE)
        self.check_backups([migration], "apply", options)
        async with self.lock.held(options.lock_timeout_s):
            await self._dump_database(options, narrator)
            return await self._apply_backed_up(migration, options, narrator)

    async def _apply_backed_up(self, migration: Migration, options: Options, narrator: Narrator) -> ApplyResult:
        narrator.applying(migration)
        backups = await self._take_backup(migration, "apply", options, narrator)
        result = await self._apply(migration, backups)
        narrator.applied(result, backups)
        return result

    # ----- rolling back -----

    async def plan_rollback(self, select: Select, options: Options | None = None,
                            narrator: Narrator = QUIET) -> list[Migration]:
        """What `select(migrations, latest changelog entries)` returns, last in the order first, every one
        checked (it has a rollback, its file is unchanged, nothing applied still depends on it); [] for none."""
        options = options or Options()
        latest = await self.changelog.latest()
        targets = select(self.migrations, latest)
        if targets:
            self._refuse_rollback(targets, latest, options, narrator)
        return targets

    async def rollback(self, targets: list[Migration], options: Options | None = None,
                       narrator: Narrator = QUIET) -> list[RollbackResult]:
        """Roll back what plan_rollback returned, under the lock; those another runner rolled back meanwhile
        are skipped. A failure among several says which were rolled back and which not."""
        options = options or Options()
        self.check_backups(targets, "rollback", options)
        done: list[RollbackResult] = []
        async with self.lock.held(options.lock_timeout_s):
            latest = await self.changelog.latest()  # again, under the lock: another runner may have been quicker
            undoable = {m.name for m in plan.rollbackable(self.migrations, latest)}
            # checked again: a caller may come here without plan_rollback, or another runner applied a newer file
            self._refuse_rollback(targets, latest, options, QUIET)
            if undoable.intersection(m.name for m in targets):
                await self._dump_database(options, narrator)
            try:
                for migration in targets:
                    if migration.name not in undoable:
                        narrator.already_rolled_back(migration)
                        continue
                    self.lock.check()
                    backups = await self._take_backup(migration, "rollback", options, narrator)
                    done.append(await self._rollback(migration, purge=options.purge, backups=backups))
                    narrator.rolled_back(done[-1], backups)
            except MigrationError as exc:
                if len(targets) == 1 or exc.exit_code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
                    raise  # stopped by a signal: its own exit code, and "run the same command again" holds
                names = [result.migration.name for result in done]
                left = [m.name for m in targets if m.name not in names]
                raise MigrationError(f"{exc}; rolled back: {', '.join(names) or 'none'}; not rolled back: "
                                     f"{', '.join(left)}", ExitCode.FAILED) from exc
        return done

    # ----- restoring a backup -----

    async def plan_restore(self, path: Path, options: Options | None = None,
                           narrator: Narrator = QUIET) -> RestorePlan:
        """Read and check all of a backup file (and its post-images); refuse a backup of another database and
        one older than migrations applied since to its collection, unless `force`."""
        options, database = options or Options(), self.database.name
        file = backup.read(path, (await self.server_profile()).refuses)
        post_images = backup.read_post_images(file)
        narrator.backup_read(file, post_images, options.force)
        if file.database != database:
            if not options.force:
                raise MigrationError(f"refusing to restore {backup.shown(file.path)}: it is a backup of database "
                                     f"{file.database}, not {database}; nothing was changed (--force restores it "
                                     "here anyway)", ExitCode.USAGE)
            narrator.restoring_elsewhere(file, database)
        if file.count:
            await self._refuse_undoing(file, options.force, narrator)
        return RestorePlan(file, post_images, options.force)

    async def restore(self, planned: RestorePlan, options: Options | None = None,
                      narrator: Narrator = QUIET) -> backup.Restored:
        """Put the planned backup's documents back under the lock (see Steps._restore); MigrationError (exit 4)
        when what was written does not read back as saved."""
        options, file = options or Options(), planned.file
        if not file.count:
            return backup.Restored()
        async with self.lock.held(options.lock_timeout_s):
            await self._refuse_undoing(file, planned.force, QUIET)  # again: another runner may have applied one
            restored = await self._restore(file, planned.post_images, planned.force)
        narrator.restored(restored, file)
        if problem := restored.problem(file):
            raise MigrationError(f"restored documents are not as in the backup: {problem}", ExitCode.VERIFY_FAILED)
        return restored

    async def _refuse_undoing(self, file: backup.BackupFile, force: bool, narrator: Narrator) -> None:
        """A backup older than migrations applied since to its collection would undo them: refused without force."""
        later = await self.applied_since(file)
        if not later:
            return
        if not force:
            raise MigrationError(f"refusing to restore {backup.shown(file.path)}: it was taken at "
                                 f"{file.manifest['created_at']}, and {', '.join(later)} "
                                 f"{'was' if len(later) == 1 else 'were'} applied to {file.collection} since: "
                                 "the restore would undo their change there while the changelog still says applied; "
                                 "nothing was changed (roll them back first, or --force restores anyway and records "
                                 "those no longer in place as failed, for --all to apply again)", ExitCode.USAGE)
        narrator.undoing_forced(file, later)

    # ----- adopting a database -----

    async def mark_applied(self, migrations: list[Migration], options: Options | None = None,
                           narrator: Narrator = QUIET) -> dict[str, Verification]:
        """Record each as applied without running it, when it verifies (or with `force`, once the narrator
        lets it); {name: its verification} of those recorded now."""
        options, marked = options or Options(), {}
        for migration in migrations:  # before the lock (_mark_applied refuses a draft too)
            refuse_if_draft(migration)
        async with self.lock.held(options.lock_timeout_s):
            latest = await self.changelog.latest()
            for migration in migrations:
                if plan.state_of(latest.get(migration.name)) == plan.APPLIED:
                    narrator.already_applied(migration)
                    continue
                verification = await self.verify(migration)
                if not verification.ok and options.force:
                    narrator.forcing_unverified(migration, verification)
                marked[migration.name] = await self._mark_applied(migration, options.force, verification)
                narrator.marked(migration, marked[migration.name])
        return marked

    # ----- reading what --verify checks -----

    async def applied_files(self) -> tuple[list[Migration], list[Migration], list[str]]:
        """(applied migrations whose file changed since, applied migrations oldest first, applied ones whose
        file is gone)."""
        latest = await self.changelog.latest()
        gone = [row.name for row in plan.status_rows(self.migrations, await self.changelog.history())
                if row.missing_file]
        return (plan.changed(self.migrations, latest), list(reversed(plan.applied(self.migrations, latest))), gone)

    # ----- the refusals and the backup policy -----

    def _refuse_changed(self, migrations: list[Migration], latest: dict, allow: bool, narrator: Narrator) -> None:
        """Every way of running a migration's code stops at an applied migration whose file changed since."""
        edited = plan.changed(migrations, latest)
        if edited and not allow:
            files = ", ".join(str(m.path.name) for m in edited)
            raise MigrationError(f"applied migration file changed since it ran: {files}; restore it, or write a new "
                                 "migration for the new change (--allow-changed runs anyway)")
        for migration in edited:
            narrator.allowed_changed(migration)

    def _refuse_rollback(self, targets: list[Migration], latest: dict, options: Options, narrator: Narrator) -> None:
        """Each target has a rollback, its file is unchanged since it was applied, and nothing applied that
        depends on it stays."""
        self._refuse_changed(targets, latest, options.allow_changed, narrator)
        for migration in targets:
            self.check_rollback(migration, options.purge)
        _refuse_dependents(self.migrations, targets, latest)

    def _refuse_out_of_order(self, to_run: list[Migration], latest: dict, allow: bool, narrator: Narrator) -> None:
        """A migration never run, ordered before one already applied, would run after it: refuse unless allowed."""
        early = plan.out_of_order(self.migrations, latest)
        named = [m.name for m in to_run if m.name in early]
        if named and not allow:
            raise MigrationError(f"{', '.join(named)} comes before {early[named[0]]} in the order, but "
                                 f"{early[named[0]]} is already applied: check its Date (or rename it), or run it "
                                 "anyway with --allow-out-of-order")
        for name in named:
            narrator.allowed_out_of_order(name, early[name])

    def check_backups(self, migrations: list[Migration], action: str, options: Options) -> None:
        """Before anything changes: refuse a backup that cannot be taken."""
        if options.backup:
            backup.require_declared(migrations, action, options.purge)
        if options.backup_full:
            backup.require_mongodump()
            if self.url is None:
                raise MigrationError("backup_full needs the server's URL: Engine(..., url=...)", ExitCode.USAGE)
        if options.backup or options.backup_full or (options.backup is None and action == "rollback"):
            backup.require_folder(options.backup_dir)

    async def _dump_database(self, options: Options, narrator: Narrator) -> None:
        """backup_full: the whole database with mongodump, under the lock, before the first change."""
        if not options.backup_full:
            return
        narrator.dumping(self.database.name)
        path = await backup.dump_database(self.url, self.database.name, options.backup_dir)
        narrator.dumped(self.database.name, path)

    async def _take_backup(self, migration: Migration, action: str, options: Options,
                           narrator: Narrator) -> list[backup.Saved]:
        """Save the documents `up`/`rollback` will change, right before it runs: with backup, and for rollbacks."""
        wanted = options.backup if options.backup is not None else action == "rollback"
        if not wanted:
            return []
        if options.backup is None and backup.touched(migration, action, options.purge) is None:
            narrator.no_touches(migration, options.backup_full)
            return []
        saved = await self._save_backup(migration, action, options.backup_dir, options.purge)
        narrator.saved(migration, saved)
        return saved


def _refuse_dry_run(options: Options) -> None:
    """A dry run counts and changes nothing: the command line's, not a workflow that writes."""
    if options.dry_run:
        raise MigrationError("Options(dry_run=True) does not apply: engine.pending() and engine.count_pending() say "
                             "what would run; nothing was changed", ExitCode.USAGE)


def _refuse_dependents(migrations: list[Migration], targets: list[Migration], latest: dict[str, dict]) -> None:
    """A migration cannot be rolled back while one that depends on it stays applied."""
    leaving = {m.name for m in targets}
    for target in targets:
        dependents = [m.name for m in migrations if target.name in m.depends_on and m.name not in leaving
                      and plan.state_of(latest.get(m.name)) == plan.APPLIED]
        if dependents:
            raise MigrationError(f"{', '.join(dependents)} depends on {target.name}: roll it back first "
                                 "(or use --rollback-to); nothing was rolled back", ExitCode.USAGE)

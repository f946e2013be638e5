"""The engine's steps: applying, verifying, rolling back and restoring one migration or backup, each
recorded in the changelog; reading the state. Callers hold the lock: migrator.engine.Engine builds the
safe workflows on these steps, and is what to call from Python. Nothing here prints.
"""

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator import backup, plan
from migrator.batches import Batches, BatchSettings
from migrator.changelog import Changelog
from migrator.checkpoints import APPLY, ROLLBACK, Checkpoints
from migrator.clock import server_now
from migrator.discovery import discover
from migrator.errors import ExitCode, MigrationError
from migrator.events import Reporter, silent
from migrator.hooks import Hooks
from migrator.lock import LockLost, MigrationLock
from migrator.migration import Migration, Outcome, Verification, refuse_if_draft
from migrator.profile import ServerProfile, detect
from migrator.provenance import provenance
from migrator.redact import redact
from migrator.retry import DEFAULT_RETRY_FOR_S, Retry


@dataclass
class ApplyResult:
    migration: Migration
    outcome: Outcome
    after: Verification
    seconds: float


@dataclass
class RollbackResult:
    migration: Migration
    outcome: Outcome
    after: Verification | None  # None when the migration has no verify_rollback
    seconds: float


class Steps:
    def __init__(self, database: AsyncDatabase, migrations: list[Migration] | None = None, lease_s: float = 60.0,
                 batch_settings: BatchSettings | None = None, retry_for_s: float = DEFAULT_RETRY_FOR_S,
                 profile: ServerProfile | None = None, report: Reporter = silent):
        self.database = database
        self.migrations = discover() if migrations is None else migrations
        self.hooks = Hooks(database, report=report)
        self._profile = profile  # None: detected when first needed
        self.report = report  # migrator.events: how everything below tells what happens
        self.retry = Retry(retry_for_s, report)
        folder = self.migrations[0].path.parent if self.migrations and self.migrations[0].path else None
        self.changelog = Changelog(database, self.retry, provenance(folder))
        self.lock = MigrationLock(database, lease_s, retry=self.retry)
        self.checkpoints = Checkpoints(database, self.retry)
        self.batch_settings = batch_settings or BatchSettings()
        self.run_id = uuid.uuid4().hex[:12]

    # ----- reading the state -----

    async def status(self) -> list[plan.StatusRow]:
        """Each migration's row; one running now with its progress (the server's clock is read only then)."""
        rows = plan.status_rows(self.migrations, await self.changelog.history())
        checkpoints = await self.checkpoints.all()
        holder = await self.lock.holder()
        running = []
        for row in rows:
            steps = plan.checkpoints_of(row, checkpoints.get(row.name, []))
            if row.state != plan.APPLIED and steps:
                row.checkpoint_done = sum(step.get("scanned", 0) for step in steps)
            if row.state == plan.RUNNING and not (holder and holder["owner"].startswith(row.runner + ":")):
                row.state = plan.INTERRUPTED  # its runner no longer holds the lock: it died
            if row.state == plan.RUNNING:
                running.append((row, steps))
        if running:
            now = await self.retry("reading the server's clock", lambda: server_now(self.database))
            for row, steps in running:
                plan.add_progress(row, steps, now)
        return rows

    async def pending(self) -> list[Migration]:
        return plan.pending(self.migrations, await self.changelog.latest())

    async def applied(self) -> list[Migration]:
        """Applied migrations, newest first."""
        return plan.applied(self.migrations, await self.changelog.latest())

    async def verify(self, migration: Migration) -> Verification:
        return await self.hooks.verification(migration)

    async def history(self) -> list[dict]:
        """Every changelog entry, oldest first."""
        return await self.changelog.entries()

    async def lock_holder(self) -> dict | None:
        """The epoch that holds the lock now, None when it is free."""
        return await self.lock.holder()

    async def force_unlock(self) -> dict | None:
        """Free the lock whoever holds it (only if that runner is dead); the epoch it removed, if any."""
        return await self.lock.force_unlock()

    async def server_profile(self) -> ServerProfile:
        """What differs on this server (migrator.profile): the one the CLI detected, else asked once."""
        if self._profile is None:
            self._profile = await detect(self.database)
        return self._profile

    async def count_pending(self, migration: Migration) -> int | None:
        """How many documents `up` would change, or None when the migration cannot tell."""
        if migration.count_pending is None:
            return None
        return int(await self.hooks.call(migration, "count_pending"))

    # ----- changing the database (callers hold the lock) -----

    async def _save_backup(self, migration: Migration, action: str, folder: Path,
                           purge: bool = False) -> list[backup.Saved]:
        """Save whole the documents `up` ("apply") or `rollback` will change; pass them on to apply/rollback."""
        if action == "rollback":
            self.check_rollback(migration, purge)
        return await backup.save(self.database, migration, action, folder, purge)

    async def _apply(self, migration: Migration, backups: list[backup.Saved] = ()) -> ApplyResult:
        """Run `up`, verify, record. A failure is recorded too, and raised; a checkpoint of a batched
        `up` is kept until a run completes it."""
        refuse_if_draft(migration)

        async def forward() -> tuple[Outcome, Verification]:
            options = {"batches": await self._batches(migration)} if migration.accepts("up", "batches") else {}
            outcome = await self.hooks.outcome(migration, "up", **options)
            after = await self.verify(migration)
            if not after.ok:
                await self.checkpoints.clear(migration.name)  # `up` went all the way: a re-run starts over
                raise MigrationError(f"{migration.name}: verification failed after it ran{in_parens(after.counts)}")
            await self._record_post_images(backups)
            await self.lock.confirm()  # a runner whose lease ran out while `up` ran must not record it applied
            return outcome, after

        await self.changelog.record(migration.name, "apply", plan.RUNNING, checksum=migration.checksum,
                                    run_id=self.run_id)
        (outcome, after), seconds = await self._recording_failure(migration, "apply", backups, forward)
        await self.changelog.record(migration.name, "apply", plan.APPLIED, checksum=migration.checksum,
                                    duration_s=round(seconds, 3), matched=outcome.matched, modified=outcome.modified,
                                    run_id=self.run_id, **_backup_field(backups))
        await self.checkpoints.clear(migration.name)
        return ApplyResult(migration, outcome, after, seconds)

    async def _mark_applied(self, migration: Migration, force: bool = False,
                           verification: Verification | None = None) -> Verification:
        """Record as applied without running, when its verification passes (or with force).
        `verification`: one the caller has just made (to ask before forcing), instead of verifying again."""
        refuse_if_draft(migration)
        verification = verification or await self.verify(migration)
        if not verification.ok and not force:
            raise MigrationError(f"{migration.name} is not in place{in_parens(verification.counts)}: "
                                 "not recorded (--force records it anyway)", ExitCode.VERIFY_FAILED)
        await self.changelog.record(migration.name, "mark_applied", plan.APPLIED, checksum=migration.checksum,
                                    verified=verification.ok, run_id=self.run_id)
        await self.checkpoints.clear(migration.name)
        return verification

    @staticmethod
    def check_rollback(migration: Migration, purge: bool = False) -> None:
        if migration.rollback is None:
            raise MigrationError(f"{migration.name} has no rollback: undo it by hand or restore a backup",
                                 ExitCode.USAGE)
        if purge and not migration.accepts("rollback", "purge"):
            raise MigrationError(f"{migration.name}'s rollback has no purge option", ExitCode.USAGE)

    async def _rollback(self, migration: Migration, purge: bool = False,
                       backups: list[backup.Saved] = ()) -> RollbackResult:
        self.check_rollback(migration, purge)
        options = {"purge": purge} if purge else {}
        await self.changelog.record(migration.name, "rollback", plan.RUNNING, checksum=migration.checksum,
                                    run_id=self.run_id)  # a runner that dies leaves it interrupted, not applied

        async def backward() -> tuple[Outcome, Verification | None]:
            batched = migration.accepts("rollback", "batches")
            walk = {"batches": await self._batches(migration, ROLLBACK)} if batched else {}
            outcome = await self.hooks.outcome(migration, "rollback", **options, **walk)
            if migration.verify_rollback is None:
                await self._record_post_images(backups)
                await self.lock.confirm()
                return outcome, None
            check_options = options if migration.accepts("verify_rollback", "purge") else {}
            after = await self.hooks.verification(migration, "verify_rollback", **check_options)
            if not after.ok:
                await self.checkpoints.clear(migration.name)  # the rollback went all the way: a re-run starts over
                raise MigrationError(f"{migration.name}: rollback verification failed{in_parens(after.counts)}")
            await self._record_post_images(backups)
            await self.lock.confirm()
            return outcome, after

        (outcome, after), seconds = await self._recording_failure(migration, "rollback", backups, backward)
        await self.changelog.record(migration.name, "rollback", plan.ROLLED_BACK, checksum=migration.checksum,
                                    duration_s=round(seconds, 3), matched=outcome.matched, modified=outcome.modified,
                                    purge=purge, run_id=self.run_id, **_backup_field(backups))
        await self.checkpoints.clear(migration.name)  # a later apply starts from the beginning
        return RollbackResult(migration, outcome, after, seconds)

    async def _restore(self, file: backup.BackupFile, post_images: backup.PostImages | None = None,
                      force: bool = False) -> backup.Restored:
        """Put a backup's documents back exactly, a batch at a time, each read back to check; record it.
        With post-images, and without `force`, those the app changed or deleted since are left as they are.

        The migration's state becomes the one the backup was taken in: a backup taken before `apply`
        brings back the documents as they were before it (rolled_back), one before `rollback` as they
        were while it was applied. A restore that stops (an error, the lock lost, Ctrl-C or SIGTERM
        between batches) is recorded as failed with how far it got, then raised. After a whole restore
        every applied migration is verified again: each no longer in place is recorded as failed (so
        `--all` applies it again) and listed in `not_in_place`; `problem(file)` says what did not read
        back as saved.
        """
        started, done = time.monotonic(), backup.Restored()
        details = dict(checksum=file.manifest.get("migration_checksum"), file=str(Path(file.path).resolve()),
                       database=self.database.name, collection=file.collection, backup_of=file.action,
                       post_images=post_images is not None, force=force, run_id=self.run_id)
        try:
            await backup.restore(self.database, file, await self.server_profile(), done, self.lock.check,
                                 post_images, force, self.retry, self.report)
        except (MigrationError, PyMongoError) as exc:
            try:
                await self.changelog.record(file.migration, "restore", plan.FAILED, error=redact(exc),
                                            **done.record(file), **details)
            except (PyMongoError, MigrationError):
                pass  # the server is gone; the error being raised says why
            if isinstance(exc, MigrationError):
                raise
            raise MigrationError(f"restore failed after {done.restored} of {file.count} documents: {redact(exc)}; "
                                 "run the same restore again") from exc
        state = plan.ROLLED_BACK if file.action == "apply" else plan.APPLIED
        await self.checkpoints.clear(file.migration)  # they describe documents as they no longer are
        await self.changelog.record(file.migration, "restore", state, duration_s=round(time.monotonic() - started, 3),
                                    verified=not done.problem(file), **done.record(file), **details)
        done.not_in_place = await self._verify_after_restore(file)
        return done

    async def applied_since(self, file: backup.BackupFile) -> list[str]:
        """The applied migrations a restore of `file` would undo (see backup.applied_since)."""
        return backup.applied_since(file, self.migrations, await self.changelog.entries())

    async def _verify_after_restore(self, file: backup.BackupFile) -> list[tuple[str, str]]:
        """Verify every applied migration; record each no longer in place as failed. [(name, what verify said)]."""
        not_in_place = []
        for migration in reversed(await self.applied()):
            try:
                verification = await self.verify(migration)
                said = format_counts(verification.counts) or verification.note or "verify() said no"
            except MigrationError as exc:
                verification, said = Verification(ok=False), str(exc)
            if verification.ok:
                continue
            await self.changelog.record(
                migration.name, "restore", plan.FAILED, checksum=migration.checksum, run_id=self.run_id,
                file=str(Path(file.path).resolve()),
                error=f"no longer in place after the restore of {Path(file.path).resolve()} ({said}); "
                      "`--all` applies it again")
            not_in_place.append((migration.name, said))
        return not_in_place

    async def _record_post_images(self, backups: list[backup.Saved]) -> None:
        """The saved documents as the change left them, for a restore to tell the app's later changes apart."""
        for saved in backups:
            await backup.record_post_images(self.database, saved, await self.server_profile(), self.retry)

    async def _batches(self, migration: Migration, action: str = APPLY) -> Batches:
        async def check_lock(room_s: float = 0.0) -> None:
            if self.lock.epoch is not None:  # held: stop before writing more if it may be lost
                await self.lock.ensure_room(room_s)
        return Batches(self.database, migration.name, migration.checksum, self.batch_settings,
                       await self.server_profile(), check_lock, self.retry, action, report=self.report)

    async def _recording_failure(self, migration: Migration, action: str, backups, work):
        """Run `work`; a MigrationError is recorded in the changelog as a failure, then raised. (result, seconds)."""
        started = time.monotonic()
        try:
            result = await work()
        except MigrationError as exc:
            await self._record_failure(migration, action, exc, time.monotonic() - started, backups)
            raise
        return result, time.monotonic() - started

    async def _record_failure(self, migration: Migration, action: str, error: Exception, seconds: float,
                              backups: list[backup.Saved] = ()) -> None:
        # A runner that lost the lock records what happened without changing the migration's state,
        # which the lock's new holder owns (it may have applied it meanwhile).
        lost = {"lock_lost": True} if isinstance(error, LockLost) else {}
        try:
            await self.changelog.record(migration.name, action, plan.FAILED, checksum=migration.checksum,
                                        duration_s=round(seconds, 3), error=str(error), run_id=self.run_id,
                                        **_backup_field(backups), **lost)
        except (PyMongoError, MigrationError):
            pass  # the server is gone; the error being raised says why



def _backup_field(backups: list[backup.Saved]) -> dict:
    return {"backup": [saved.record() for saved in backups]} if backups else {}




def format_counts(counts: dict[str, int]) -> str:
    """`total=1,000, left=0`: numbers with thousands separators, like every number the toolkit prints."""
    return ", ".join(f"{key}={value:,}" if isinstance(value, int) and not isinstance(value, bool) else f"{key}={value}"
                     for key, value in counts.items())


def in_parens(counts: dict[str, int]) -> str:
    """` (total=1,000)`, or nothing when a verification gave no counts (a bare bool)."""
    return f" ({format_counts(counts)})" if counts else ""

"""The engine's single recorded steps: applying, verifying, rolling back and restoring one migration or
backup, each recorded in the changelog. Private to migrator.engine, which holds the lock around them and
builds the safe workflows on them: call the Engine. Nothing here prints.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TypeVar

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator import backup, plan
from migrator.batches import Batches, BatchSettings
from migrator.changelog import Changelog
from migrator.checkpoints import APPLY, ROLLBACK, Checkpoints
from migrator.control import Controls
from migrator.errors import ExitCode, MigrationError
from migrator.events import Reporter
from migrator.fencing import Fence, fence_for
from migrator.hooks import Hooks
from migrator.lock import LockLost, MigrationLock
from migrator.migration import (
    ApplyResult,
    Migration,
    Outcome,
    RollbackResult,
    Verification,
    format_counts,
    in_parens,
    refuse_if_draft,
)
from migrator.profile import ServerProfile, detect
from migrator.redact import redact
from migrator.retry import Retry
from migrator.scope import Scope

T = TypeVar("T")


def check_rollback(migration: Migration, purge: bool = False) -> None:
    if migration.rollback is None:
        raise MigrationError(f"{migration.name} has no rollback: undo it by hand or restore a backup",
                             ExitCode.USAGE)
    if purge and not migration.accepts("rollback", "purge"):
        raise MigrationError(f"{migration.name}'s rollback has no purge option", ExitCode.USAGE)


class Steps:
    """The parts are the engine's: its changelog, lock, checkpoints, hook runner and retries."""

    def __init__(self, database: AsyncDatabase, migrations: list[Migration], changelog: Changelog,
                 lock: MigrationLock, checkpoints: Checkpoints, hooks: Hooks, retry: Retry,
                 batch_settings: BatchSettings, profile: ServerProfile | None, report: Reporter):
        self.database, self.migrations = database, migrations
        self.changelog, self.lock, self.checkpoints, self.hooks = changelog, lock, checkpoints, hooks
        self.retry, self.batch_settings, self.report = retry, batch_settings, report
        self._profile = profile  # None: detected when first needed
        self.run_id = uuid.uuid4().hex[:12]

    async def server_profile(self) -> ServerProfile:
        """What differs on this server (migrator.profile): the one the CLI detected, else asked once."""
        if self._profile is None:
            self._profile = await detect(self.database)
        return self._profile

    # ----- changing the database (callers hold the lock) -----

    async def save_backup(self, migration: Migration, action: str, folder: Path,
                           purge: bool = False) -> list[backup.Saved]:
        """Save whole the documents `up` ("apply") or `rollback` will change; pass them on to apply/rollback."""
        if action == "rollback":
            check_rollback(migration, purge)
        return await backup.save(self.database, migration, action, folder, purge, self.retry)

    async def apply(self, migration: Migration, backups: Sequence[backup.Saved] = ()) -> ApplyResult:
        """Run `up`, verify, record. A failure is recorded too, and raised; a checkpoint of a batched
        `up` is kept until a run completes it."""
        refuse_if_draft(migration)

        async def forward() -> tuple[Outcome, Verification]:
            batches = await self._batches(migration) if migration.accepts("up", "batches") else None
            outcome = await self.hooks.outcome(migration, "up", **({"batches": batches} if batches else {}))
            # Only what the walks covered: documents the app's old version wrote since are for a catch-up run.
            scope = {"scope": Scope(batches.walked if batches else {})} if migration.accepts("verify", "scope") else {}
            after = await self.hooks.verification(migration, "verify", **scope)
            if not after.ok:
                await self._clear_checkpoints(migration.name)  # `up` went all the way: a re-run starts over
                raise MigrationError(f"{migration.name}: verification failed after it ran{in_parens(after.counts)}")
            await self._record_post_images(backups)
            await self.lock.confirm()  # a runner whose lease ran out while `up` ran must not record it applied
            return outcome, after

        await self.changelog.record(migration.name, "apply", plan.RUNNING, checksum=migration.checksum,
                                    run_id=self.run_id)
        (outcome, after), seconds = await self._recording_failure(migration, "apply", backups, forward)
        await self.changelog.record(migration.name, "apply", plan.APPLIED, checksum=migration.checksum,
                                    duration_s=round(seconds, 3), matched=outcome.matched, modified=outcome.modified,
                                    **_lower_bound(outcome),
                                    run_id=self.run_id, **_backup_field(backups))
        await self._clear_checkpoints(migration.name)
        return ApplyResult(migration, outcome, after, seconds)

    async def mark_applied(self, migration: Migration, force: bool = False) -> Verification:
        """Record as applied without running, when its verification passes (or with force)."""
        refuse_if_draft(migration)
        verification = await self.hooks.verification(migration)
        if not verification.ok and not force:
            raise MigrationError(f"{migration.name} is not in place{in_parens(verification.counts)}: "
                                 "not recorded (--force records it anyway)", ExitCode.VERIFY_FAILED)
        await self.changelog.record(migration.name, "mark_applied", plan.APPLIED, checksum=migration.checksum,
                                    verified=verification.ok, run_id=self.run_id)
        await self._clear_checkpoints(migration.name)
        return verification

    async def rollback(self, migration: Migration, purge: bool = False,
                       backups: Sequence[backup.Saved] = ()) -> RollbackResult:
        check_rollback(migration, purge)
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
                await self._clear_checkpoints(migration.name)  # the rollback went all the way: a re-run starts over
                raise MigrationError(f"{migration.name}: rollback verification failed{in_parens(after.counts)}")
            await self._record_post_images(backups)
            await self.lock.confirm()
            return outcome, after

        (outcome, after), seconds = await self._recording_failure(migration, "rollback", backups, backward)
        await self.changelog.record(migration.name, "rollback", plan.ROLLED_BACK, checksum=migration.checksum,
                                    duration_s=round(seconds, 3), matched=outcome.matched, modified=outcome.modified,
                                    **_lower_bound(outcome),
                                    purge=purge, run_id=self.run_id, **_backup_field(backups))
        await self._clear_checkpoints(migration.name)  # a later apply starts from the beginning
        return RollbackResult(migration, outcome, after, seconds)

    async def restore(self, file: backup.BackupFile, post_images: backup.PostImages | None = None,
                      force: bool = False) -> backup.Restored:
        """Put a backup's documents back exactly, a batch at a time, each read back to check; record it.
        With post-images, and without `force`, those the app changed or deleted since are left as they are.

        The migration's state becomes the one the backup was taken in: a backup taken before `apply`
        brings back the documents as they were before it (rolled_back), one before `rollback` as they
        were while it was applied. A restore that stops (an error, the lock lost, Ctrl-C or SIGTERM
        between batches) is recorded as failed with how far it got, then raised. After a whole restore
        every applied migration is verified again: each no longer in place is recorded as failed (so
        `--all` applies it again) and listed in `not_in_place`; `problem(file)` says what did not read
        back as saved. Its start is recorded first, like an apply's: a restore killed half-way stays
        visible (running, then interrupted) and fails the gates until it is done again or undone.
        """
        started, done = time.monotonic(), backup.Restored()
        details = dict(checksum=file.manifest.get("migration_checksum"), file=str(Path(file.path).resolve()),
                       database=self.database.name, collection=file.collection, backup_of=file.action,
                       post_images=post_images is not None, force=force, run_id=self.run_id)
        await self.changelog.record(file.migration, "restore", plan.RUNNING, **details)
        try:
            await backup.restore(self.database, file, await self.server_profile(), done, self.lock.check,
                                 post_images, force, self._bounded_by_lease, self.report)
        except (MigrationError, PyMongoError) as exc:
            with suppress(PyMongoError, MigrationError):  # the server is gone: the error being raised says why
                await self.changelog.record(file.migration, "restore", plan.FAILED, error=redact(exc),
                                            **done.record(file), **details)
            if isinstance(exc, MigrationError):
                raise
            raise MigrationError(f"restore failed after {done.restored} of {file.count} documents: {redact(exc)}; "
                                 "run the same restore again") from exc
        state = plan.ROLLED_BACK if file.action == "apply" else plan.APPLIED
        await self._clear_checkpoints(file.migration)  # they describe documents as they no longer are
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
        for migration in reversed(plan.applied(self.migrations, await self.changelog.latest())):
            try:
                verification = await self.hooks.verification(migration)
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

    async def _record_post_images(self, backups: Sequence[backup.Saved]) -> None:
        """The saved documents as the change left them, for a restore to tell the app's later changes apart."""
        for saved in backups:
            await backup.record_post_images(self.database, saved, await self.server_profile(), self.retry)

    async def fence(self, by_time_only: bool = False) -> Fence:
        """How this runner's writes are fenced by the lock it holds (migrator.fencing), on this server."""
        return fence_for(self.lock, await self.server_profile(), self.database, self.retry, by_time_only)

    async def _clear_checkpoints(self, name: str) -> None:
        """Fenced like a batch: a runner that lost the lock must not delete its successor's checkpoints."""
        await (await self.fence()).run(f"{name}: clearing the checkpoint", partial(self.checkpoints.clear, name, None))

    async def _bounded_by_lease(self, what: str, write: Callable[[], Awaitable[T]]) -> T:
        """A restore's batch (its writes, then its read-back): fenced by the lease's time, not one transaction."""
        return await (await self.fence(by_time_only=True)).run(what, lambda session: write())

    async def _batches(self, migration: Migration, action: str = APPLY) -> Batches:
        """Batches whose every write is fenced by the lock this runner holds (migrator.fencing)."""
        async def check_lock(room_s: float = 0.0) -> None:
            if self.lock.epoch is not None:  # held: renew first if the lease may not last the next batch
                await self.lock.ensure_room(room_s)
        return Batches(self.database, migration.name, migration.checksum, self.batch_settings,
                       await self.server_profile(), check_lock, self.retry, action, report=self.report,
                       fence=await self.fence(), controls=Controls(self.database, self.retry))

    async def _recording_failure(self, migration: Migration, action: str, backups: Sequence[backup.Saved],
                                 work: Callable[[], Awaitable[T]]) -> tuple[T, float]:
        """Run `work`; a MigrationError is recorded in the changelog as a failure, then raised. (result, seconds)."""
        started = time.monotonic()
        try:
            result = await work()
        except MigrationError as exc:
            await self._record_failure(migration, action, exc, time.monotonic() - started, backups)
            raise
        except asyncio.CancelledError:
            if self.lock.lost_reason:  # the lock's heartbeat stopped the work: MigrationLock.held raises LockLost
                await self._record_failure(migration, action, LockLost(f"lost the migration lock: "
                                           f"{self.lock.lost_reason}"), time.monotonic() - started, backups)
            raise
        return result, time.monotonic() - started

    async def _record_failure(self, migration: Migration, action: str, error: Exception, seconds: float,
                              backups: Sequence[backup.Saved] = ()) -> None:
        # A runner that lost the lock records what happened without changing the migration's state,
        # which the lock's new holder owns (it may have applied it meanwhile).
        lost = {"lock_lost": True} if isinstance(error, LockLost) else {}
        with suppress(PyMongoError, MigrationError):  # the server is gone: the error being raised says why
            await self.changelog.record(migration.name, action, plan.FAILED, checksum=migration.checksum,
                                        duration_s=round(seconds, 3), error=str(error), run_id=self.run_id,
                                        **_backup_field(backups), **lost)


def _lower_bound(outcome: Outcome) -> dict:
    """`modified` counts only the last try of a batch sent again (no transactions): say so in the record."""
    return {"modified_at_least": True} if outcome.modified_at_least else {}


def _backup_field(backups: Sequence[backup.Saved]) -> dict:
    return {"backup": [saved.record() for saved in backups]} if backups else {}

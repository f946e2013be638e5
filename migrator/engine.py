"""Applying, verifying and rolling back migrations on one database. Returns results; prints nothing."""

import time
from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, Outcome, Verification
from migrator.motor_compat import MotorStyleDatabase
from migrator.redact import redact


@dataclass
class ApplyResult:
    migration: Migration
    before: Verification
    outcome: Outcome
    after: Verification
    seconds: float


@dataclass
class RollbackResult:
    migration: Migration
    outcome: Outcome
    seconds: float


class Engine:
    def __init__(self, database: AsyncDatabase, migrations: list[Migration]):
        self.database = database
        self.migrations = migrations
        # What migrations are handed: PyMongo's async database, also usable in Motor's style.
        self.db = MotorStyleDatabase(database)

    async def apply(self, migration: Migration) -> ApplyResult:
        """Run `up`, then verify; a failed verification is a failed migration."""
        before = await self.verify(migration)
        started = time.monotonic()
        outcome = Outcome.of(await self._call(migration, "up"))
        seconds = time.monotonic() - started
        after = await self.verify(migration)
        if not after.ok:
            raise MigrationError(f"{migration.name}: verification failed after it ran ({format_counts(after.counts)})")
        return ApplyResult(migration, before, outcome, after, seconds)

    async def verify(self, migration: Migration) -> Verification:
        result = await self._call(migration, "verify")
        return result if isinstance(result, Verification) else Verification(ok=bool(result))

    async def count_pending(self, migration: Migration) -> int | None:
        """How many documents `up` would change, or None when the migration cannot tell."""
        if migration.count_pending is None:
            return None
        return int(await self._call(migration, "count_pending"))

    async def rollback(self, migration: Migration, purge: bool = False) -> RollbackResult:
        if migration.rollback is None:
            raise MigrationError(f"{migration.name} has no rollback: undo it by hand or restore a backup", ExitCode.USAGE)
        if purge and not migration.accepts("rollback", "purge"):
            raise MigrationError(f"{migration.name}'s rollback has no purge option", ExitCode.USAGE)
        started = time.monotonic()
        options = {"purge": purge} if purge else {}
        outcome = Outcome.of(await self._call(migration, "rollback", **options))
        return RollbackResult(migration, outcome, time.monotonic() - started)

    async def _call(self, migration: Migration, hook: str, **options):
        try:
            return await getattr(migration, hook)(self.db, **options)
        except MigrationError:
            raise
        except PyMongoError as exc:
            raise MigrationError(f"{migration.name}: {hook} failed: {redact(exc)}") from exc
        except Exception as exc:
            raise MigrationError(f"{migration.name}: {hook} failed: {type(exc).__name__}: {redact(exc)}") from exc


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key}={value}" for key, value in counts.items())

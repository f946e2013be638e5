"""Calling a migration's functions (up, verify, rollback, ...): the one way the engine and the self-test do it.

A hook is handed the database in PyMongo's async API, usable in Motor's style too. What it raises
becomes a MigrationError naming the migration and the hook (masked); what it returns becomes an Outcome
or a Verification, or a clear error when the toolkit cannot read it.
"""

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator.errors import MigrationError
from migrator.events import Reporter, silent
from migrator.migration import Migration, Outcome, Verification
from migrator.motor_compat import MotorStyleDatabase
from migrator.redact import redact
from migrator.stop import stoppable


class Hooks:
    """`where`: said after "failed" in errors, e.g. " on the scratch copies". Ctrl-C or SIGTERM while a hook
    awaits (outside its batches) cancels it (migrator.stop.stoppable: exit 130 or 143)."""

    def __init__(self, database: AsyncDatabase, where: str = "", report: Reporter = silent):
        self.db = MotorStyleDatabase(database)
        self.where = where
        self.report = report

    async def call(self, migration: Migration, hook: str, **options):
        try:
            return await stoppable(getattr(migration, hook)(self.db, **options), f"{migration.name}: {hook}",
                                   self.report)
        except MigrationError:
            raise
        except PyMongoError as exc:
            raise MigrationError(f"{migration.name}: {hook} failed{self.where}: {redact(exc)}") from exc
        except Exception as exc:
            raise MigrationError(f"{migration.name}: {hook} failed{self.where}: {type(exc).__name__}: "
                                 f"{redact(exc)}") from exc

    async def outcome(self, migration: Migration, hook: str, **options) -> Outcome:
        """Run a hook that changes documents (up, rollback)."""
        value = await self.call(migration, hook, **options)
        try:
            return Outcome.of(value)
        except TypeError as exc:
            raise MigrationError(f"{migration.name}: {hook} made its change but returned something the toolkit "
                                 f"cannot read: {exc}") from None

    async def verification(self, migration: Migration, hook: str = "verify", **options) -> Verification:
        """Run a read-only check (verify, verify_rollback): a bare bool is a Verification too."""
        value = await self.call(migration, hook, **options)
        return value if isinstance(value, Verification) else Verification(ok=bool(value))

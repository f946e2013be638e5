"""Calling a migration's functions (up, verify, rollback, ...): the one way the engine and the self-test do it.

A hook is handed the database in PyMongo's async API, usable in Motor's style too. What it raises
becomes a MigrationError naming the migration and the hook (masked); what it returns becomes an Outcome
or a Verification, or a clear error when the toolkit cannot read it. The read-only hooks (verify,
verify_rollback, count_pending) are run again whole on a transient error, like the toolkit's own
operations (migrator.retry): they finish the job, and a step-down then must not fail a migrated run.
"""

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator.errors import MigrationError
from migrator.events import Reporter, silent
from migrator.migration import Migration, Outcome, Verification
from migrator.motor_compat import MotorStyleDatabase
from migrator.redact import redact
from migrator.retry import Retry
from migrator.stop import stoppable


class Hooks:
    """`where`: said after "failed" in errors, e.g. " on the scratch copies". Ctrl-C or SIGTERM while a hook
    awaits (outside its batches) cancels it (migrator.stop.stoppable: exit 130 or 143)."""

    def __init__(self, database: AsyncDatabase, where: str = "", report: Reporter = silent,
                 retry: Retry | None = None):
        self.db = MotorStyleDatabase(database)
        self.where = where
        self.report = report
        self.retry = retry  # for the read-only hooks; None: each is run once

    async def call(self, migration: Migration, hook: str, **options):
        """Run a hook once."""
        return await self._run(migration, hook, options, read_only=False)

    async def read(self, migration: Migration, hook: str, **options):
        """Run a read-only hook (verify, verify_rollback, count_pending), again whole on a transient error."""
        return await self._run(migration, hook, options, read_only=True)

    async def _run(self, migration: Migration, hook: str, options: dict, read_only: bool):
        what = f"{migration.name}: {hook}"

        def run():
            return stoppable(getattr(migration, hook)(self.db, **options), what, self.report)
        try:
            if read_only and self.retry is not None:  # before the PyMongoError is wrapped: Retry must see it
                return await self.retry(what, run)
            return await run()
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
        value = await self.read(migration, hook, **options)
        return value if isinstance(value, Verification) else Verification(ok=bool(value))

"""A schema run, recorded like a migration's: its start (running) first, then applied (a rollback: rolled_back) or
failed, with what it created, dropped and adopted and how long it took (migrator.schema.record). Private to
migrator.engine, which holds the lock around it."""

import asyncio
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

from pymongo.errors import PyMongoError

from migrator import events, plan
from migrator.changelog import Changelog
from migrator.errors import MigrationError
from migrator.events import Reporter
from migrator.lock import LockLost, MigrationLock
from migrator.redact import redact
from migrator.schema.build import Builder
from migrator.schema.model import Index, SchemaPlan
from migrator.schema.record import NAME, SchemaRecord


@dataclass
class SchemaResult:
    """What a schema run did: "apply" or "rollback", its record, how long it took."""
    action: str
    record: SchemaRecord
    seconds: float


async def recorded_run(changelog: Changelog, lock: MigrationLock, builder: Builder, report: Reporter, action: str,
                       planned: SchemaPlan, adopted: Sequence[Index] = (), rolls_back: str = "") -> SchemaResult:
    """Refuse duplicates of a unique index first (nothing recorded: nothing changed), then run and record."""
    await builder.refuse_duplicates(planned.runnable)
    details = {"run_id": uuid.uuid4().hex[:12], **({"rolls_back": rolls_back} if rolls_back else {})}
    await changelog.record(NAME, action, plan.RUNNING, **details)  # a runner that dies leaves it interrupted
    record, started = SchemaRecord(adopted=list(adopted)), time.monotonic()

    async def failed(error: Exception) -> None:
        lost = {"lock_lost": True} if isinstance(error, LockLost) else {}
        with suppress(PyMongoError, MigrationError):  # the server is gone: the error being raised says why
            await changelog.record(NAME, action, plan.FAILED, duration_s=round(time.monotonic() - started, 3),
                                   error=redact(error), **{NAME: record.field()}, **details, **lost)
    try:
        await builder.run(planned, record)
        await lock.confirm()  # a runner whose lease ran out meanwhile must not record it done
    except MigrationError as exc:
        await failed(exc)
        raise
    except PyMongoError as exc:
        await failed(exc)
        raise MigrationError(f"schema {action} failed: {redact(exc)}; run the same command again") from exc
    except asyncio.CancelledError:
        if lock.lost_reason:  # the heartbeat stopped the build: MigrationLock.held raises LockLost
            await failed(LockLost(f"lost the migration lock: {lock.lost_reason}"))
        raise
    seconds = time.monotonic() - started
    await changelog.record(NAME, action, plan.APPLIED if action == "apply" else plan.ROLLED_BACK,
                           duration_s=round(seconds, 3), **{NAME: record.field()}, **details)
    report(events.SchemaDone(action, len(record.created), len(record.dropped), len(record.adopted),
                             len(record.validators), round(seconds, 3)))
    return SchemaResult(action, record, seconds)

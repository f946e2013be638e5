"""The database server's clock, and the write concern of the toolkit's own collections."""

from datetime import UTC, datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.write_concern import WriteConcern

# The lock, the changelog and the checkpoints must survive a failover: acknowledged by a majority,
# whatever the URL says, with a bound on the wait (a timeout is then retried: migrator.retry).
BOOKKEEPING_WRITE_CONCERN = WriteConcern(w="majority", wtimeout=10_000)


async def server_now(database: AsyncDatabase) -> datetime:
    """The one time all runners, on any host, agree on."""
    return as_utc((await database.command("hello"))["localTime"])


def as_utc(moment: datetime) -> datetime:
    """A time read without a zone (a client without tz_aware, an ISO text without offset) is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def bookkeeping(database: AsyncDatabase, name: str) -> AsyncCollection:
    return database.get_collection(name, write_concern=BOOKKEEPING_WRITE_CONCERN)

"""The database server's clock: the one time all runners, on any host, agree on."""

from datetime import datetime, timezone

from pymongo.asynchronous.database import AsyncDatabase


async def server_now(database: AsyncDatabase) -> datetime:
    local_time = (await database.command("hello"))["localTime"]
    return local_time if local_time.tzinfo else local_time.replace(tzinfo=timezone.utc)

"""Database start-up of the service: one PyMongo async client, Beanie on top."""

from beanie import init_beanie
from pymongo import AsyncMongoClient

from app.models import ChatMessage
from migrator.settings import Settings

DOCUMENT_MODELS = [ChatMessage]


def create_client(settings: Settings, timeout_ms: int = 5000) -> AsyncMongoClient:
    return AsyncMongoClient(
        settings.mongodb_url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        appname="flowise-proxy",
        tz_aware=True,
    )


async def init_db(settings: Settings) -> AsyncMongoClient:
    client = create_client(settings)
    # The indexes are the migrations' to build (`run_migrations.py --all`, from migrations/_schema.py), never each
    # pod's at start-up: a unique index over duplicates would stop every start.
    await init_beanie(database=client[settings.database_name], document_models=DOCUMENT_MODELS, skip_indexes=True)
    return client

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
    await init_beanie(database=client[settings.database_name], document_models=DOCUMENT_MODELS)
    return client

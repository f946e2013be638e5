"""A message of a chat session, as the proxy stores it."""

from datetime import UTC, datetime
from typing import Any

from beanie import Document
from pydantic import Field
from pymongo import ASCENDING, IndexModel


def _now() -> datetime:
    return datetime.now(UTC)


class ChatMessage(Document):
    chatflow_id: str
    session_id: str
    user_id: str
    role: str  # "user" or "assistant"
    content: str
    file_ids: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=_now)
    # Non-token events of a Flowise streaming response, e.g.
    # {"event": "usedTools", "data": [...]}, sourceDocuments, agentReasoning.
    # None on messages saved before the proxy kept them (see migrations/add_metadata_to_chat_messages.py).
    metadata: list[dict[str, Any]] | None = None

    class Settings:
        name = "chat_messages"
        # What the proxy's queries need: a session's history in time order, a user's messages. Built by the
        # migrations (`run_migrations.py --all`, declared in migrations/_schema.py), not at start-up; the compound
        # index also serves a lookup by session_id alone, so the bare session_id index is declared removed there.
        indexes = [
            IndexModel([("session_id", ASCENDING), ("created_at", ASCENDING)]),
            IndexModel([("user_id", ASCENDING)]),
        ]

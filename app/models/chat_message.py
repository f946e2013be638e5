"""A message of a chat session, as the proxy stores it."""

from datetime import UTC, datetime
from typing import Any

from beanie import Document
from pydantic import Field


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
        indexes = ["session_id"]

from app.models.chat_message import ChatMessage

__all__ = ["ChatMessage"]

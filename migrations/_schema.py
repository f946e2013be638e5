"""The schema as code: the indexes (and validators) the toolkit plans, builds and checks (docs/schema.md).

MODELS: the Beanie models, read without starting the app (Settings.name, Settings.indexes, Settings.validation).
INDEXES: {collection: [IndexModel, ...]} for collections no model declares.
REMOVED: {collection: [index, ...]}: indexes that may be dropped, after everything declared is built.
"""

from app.models.chat_message import ChatMessage

MODELS = [ChatMessage]

# Beanie built `session_id_1` at start-up before; the compound (session_id, created_at) index covers its queries.
REMOVED = {"chat_messages": ["session_id"]}

"""add_content_length_to_chat_messages

Date: 2026-12-05 04:00:00
Description: content_length = len(content) on chat_messages that lack it (a computed backfill)
"""
# The example of batches.update_each: an update computed from each document, in Python (FerretDB takes no
# update pipeline), walked in batches like update_many: checkpointed, resumable, fenced, with progress.

TO_CHANGE = {"content_length": {"$exists": False}}
TO_UNDO = {"content_length": {"$exists": True}}


def touches(action, purge=False):
    return {"chat_messages": TO_CHANGE if action == "apply" else TO_UNDO}


def content_length(message):  # the document as read (only `content`, and its _id); None would leave it as it is
    return {"$set": {"content_length": len(message["content"])}}


async def up(db, batches):
    return await batches.update_each("chat_messages", TO_CHANGE, content_length, projection={"content": 1})


async def verify(db):
    return await db.chat_messages.count_documents(TO_CHANGE) == 0


async def rollback(db, batches):
    return await batches.update_many("chat_messages", TO_UNDO, {"$unset": {"content_length": ""}})


async def verify_rollback(db):
    return await db.chat_messages.count_documents(TO_UNDO) == 0

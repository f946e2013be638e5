"""Add the optional `metadata` field to every chat message.

Date: 2025-07-15
Description: set metadata=null on chat_messages documents that lack the field
The proxy now keeps the non-token events of Flowise streaming responses (usedTools,
sourceDocuments, agentReasoning, ...) on each message as `metadata`. Messages saved before
have no such field; this sets it to null on each of them. Messages that already hold
metadata, and every other field, are left as they are.

Run on its own:  python migrations/add_metadata_to_chat_messages.py [--verify | --rollback | --dry-run]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find app/ and migrator/ when run as a script

from migrator import WHOLE, Outcome, Scope, Verification  # noqa: E402

COLLECTION = "chat_messages"
LACKS_FIELD = {"metadata": {"$exists": False}}
ADDED_BY_US = {"metadata": {"$type": "null"}}  # `{"metadata": None}` would also match a missing field
ANY_METADATA = {"metadata": {"$exists": True}}
# $max, not $set: null is below every other value, so a message that got metadata from the app after
# its batch was read keeps it (on FerretDB the filter is not checked again at the write).
ADD_NULL = {"$max": {"metadata": None}}
# The rollback removes only the null metadata it added: metadata the app wrote since stays (--purge removes it).
keeps_on_rollback = {COLLECTION: ["metadata"]}
# Its earlier versions made the same change (the later ones added batched rollbacks and the rolling-deploy scope):
# a database that applied one of them has this migration applied, not changed.
valid_checksums = [
    "05b6cabc6240f809b921f5d8ac166ee95d9e9f4987b907c1643558275f4c4701",
    "373921b5c221b171417dd2b55a396698707ccc108203c4ce4c643987c42b3cd9",
    "f4d6a203f65497c2dd05aea70864f1173a43552ca2cbb4780113eeb43df5f4fe",
    "766150416efdd7cb6df5dc5aa0daceedf380d065305495108cfde9099ef3bcfd",
    "507b832a37ab27ced6c0125a2604519a54d3094ffee6fc5cb40aa22c0ac787eb",
    "71c8f9e2a8def9e6014cf18fb03191d4616ae671ea251db722be4f50cf429cde",
]


def touches(action: str, purge: bool = False) -> dict[str, dict]:
    """The messages `up` ("apply") or `rollback` will change: what --backup saves before they run."""
    if action == "apply":
        return {COLLECTION: LACKS_FIELD}
    return {COLLECTION: ANY_METADATA if purge else ADDED_BY_US}


async def _exists(db) -> bool:
    return COLLECTION in await db.list_collection_names()


async def count_pending(db) -> int:
    return await db[COLLECTION].count_documents(LACKS_FIELD)


async def up(db, batches):
    if not await _exists(db):  # an update, even of nothing, creates the collection on FerretDB
        return None
    return await batches.update_many(COLLECTION, LACKS_FIELD, ADD_NULL)


async def verify(db, scope: Scope = WHOLE) -> Verification:
    """Right after `up`, only the messages its walk covered (`scope`): those a pod of the app's older version wrote
    since are left for a catch-up run. --verify checks them all."""
    within = scope.of(COLLECTION)
    # One pass over the collection, where two counts would read it twice.
    pipeline = [{"$group": {"_id": {"$type": "$metadata"}, "n": {"$sum": 1}}}]
    by_type = await db[COLLECTION].aggregate([{"$match": within}, *pipeline] if within else pipeline).to_list()
    total = sum(group["n"] for group in by_type)
    with_field = total - sum(group["n"] for group in by_type if group["_id"] == "missing")
    note = ""
    if total == 0:
        note = "collection is empty: nothing to migrate" if await _exists(db) else \
            f"collection {COLLECTION} not found: nothing to migrate"
    elif with_field < total and not within:
        note = (f"{total - with_field:,} messages lack metadata: written by a pod of the app's older version since "
                "the migration ran? Once every pod runs the new version, run "
                "`--migration add_metadata_to_chat_messages` again: it migrates only those")
    counts = {"total": total, "with_metadata": with_field, "without_metadata": total - with_field}
    return Verification(ok=with_field == total, counts=counts, note=note)


async def rollback(db, batches, purge: bool = False) -> Outcome:
    """Remove the null metadata this migration added; metadata the app wrote since stays unless purge.
    In batches, resumable; each write checks again that the message still matches, so metadata the app
    writes while the rollback runs is kept too."""
    if not await _exists(db):
        return Outcome(note=f"collection {COLLECTION} not found: nothing to roll back")
    messages = db[COLLECTION]
    with_field = await messages.count_documents(ANY_METADATA)
    added = await messages.count_documents(ADDED_BY_US)
    result = await batches.update_many(COLLECTION, ANY_METADATA if purge else ADDED_BY_US,
                                       {"$unset": {"metadata": ""}}, recheck_filter=True)
    written_by_app = with_field - added
    return Outcome(
        matched=result.matched,
        modified=result.modified,
        counts={"app_metadata_purged" if purge else "app_metadata_kept": written_by_app},
    )


async def verify_rollback(db, purge: bool = False) -> Verification:
    left = await db[COLLECTION].count_documents(ANY_METADATA if purge else ADDED_BY_US)
    return Verification(ok=left == 0, counts={"left_to_undo": left})


if __name__ == "__main__":
    from migrator.cli import exit_with, standalone_main

    exit_with(standalone_main(__file__))

"""The app's Beanie model on the real server, and migration code written in Motor's style."""

import asyncio
import textwrap

from app.database import init_db
from app.models import ChatMessage
from migrator.settings import Settings
from sample_messages import chat_messages


def test_chat_message_round_trips_metadata_through_beanie(server_url, db):
    async def scenario():
        client = await init_db(Settings(mongodb_url=server_url, database_name=db.name))
        try:
            events = [{"event": "usedTools", "data": [{"tool": "search"}]}, {"event": "sourceDocuments", "data": []}]
            await ChatMessage(chatflow_id="f", session_id="s", user_id="u", role="assistant", content="hi",
                              metadata=events).insert()
            await ChatMessage(chatflow_id="f", session_id="s", user_id="u", role="user", content="q").insert()
            found = await ChatMessage.find(ChatMessage.session_id == "s").sort("+created_at").to_list()
            return [(message.role, message.metadata) for message in found], events
        finally:
            await client.close()

    found, events = asyncio.run(scenario())
    assert sorted(found, key=lambda pair: pair[0]) == [("assistant", events), ("user", None)]
    assert db.chat_messages.count_documents({"metadata": None}) == 1


def test_a_migrated_old_message_loads_in_the_model(server_url, db, cli):
    old = chat_messages(1, with_metadata_every=0)[0]
    db.chat_messages.insert_one(old)
    assert cli("add_metadata_to_chat_messages.py").code == 0

    async def load():
        client = await init_db(Settings(mongodb_url=server_url, database_name=db.name))
        try:
            return await ChatMessage.find_one(ChatMessage.session_id == old["session_id"])
        finally:
            await client.close()

    message = asyncio.run(load())
    assert message.content == old["content"] and message.metadata is None


MOTOR_STYLE = '''
    """Motor-era migration, unchanged.

    Date: 2024-01-01
    """

    async def up(db):
        names = [index["name"] async for index in db.chat_messages.list_indexes()]
        by_role = {}
        async for group in db.chat_messages.aggregate([{"$group": {"_id": "$role", "n": {"$sum": 1}}}]):
            by_role[group["_id"]] = group["n"]
        everything = await db.chat_messages.find({}).sort("created_at", 1).to_list(0)
        summary = await db["summary"].find().to_list(length=None)
        assert "_id_" in names and not summary
        await db.summary.insert_one({"_id": "roles", **by_role, "seen": len(everything)})
        cursor = await db.chat_messages.aggregate([{"$count": "n"}])  # PyMongo's style works as well
        return await db.summary.update_one({"_id": "roles"}, {"$set": {"counted": (await cursor.to_list())[0]["n"]}})

    async def verify(db):
        return await db.summary.count_documents({"_id": "roles"}) == 1
    '''


def test_motor_style_migration_code_runs_unchanged(db, cli, tmp_path):
    (tmp_path / "motor_era.py").write_text(textwrap.dedent(MOTOR_STYLE))
    db.chat_messages.insert_many(chat_messages(6))

    result = cli("run_migrations.py", "--all", "--migrations-dir", str(tmp_path))

    assert result.code == 0, result
    assert db.summary.find_one({"_id": "roles"}) == {"_id": "roles", "user": 3, "assistant": 3, "seen": 6, "counted": 6}

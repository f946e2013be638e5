"""Chat messages shaped like the proxy's, for the local demo, the tests and the benchmarks.

    python scripts/sample_messages.py [--count N]   loads N messages (10% with metadata) into an empty
                                                     chat_messages of the configured database
"""

import argparse
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

EVENTS = [
    {"event": "usedTools", "data": [{"tool": "search", "toolInput": {"q": "price"}, "toolOutput": "42"}]},
    {"event": "sourceDocuments", "data": [{"pageContent": "Refund policy ...", "metadata": {"source": "faq.pdf"}}]},
    {"event": "agentReasoning", "data": [{"agentName": "planner", "messages": ["step 1"]}]},
]


def chat_messages(count: int, with_metadata_every: int = 10, seed: int = 7) -> list[dict]:
    """`count` messages; every `with_metadata_every`-th already holds metadata (0: none does)."""
    return list(generate_messages(count, with_metadata_every, seed))


def generate_messages(count: int, with_metadata_every: int = 10, seed: int = 7):
    """The same messages one at a time, for counts that should not sit in memory."""
    rng = random.Random(seed)
    text = "".join(rng.choice("abcdefghij klmnop") for _ in range(4000))
    start = datetime(2025, 6, 1, tzinfo=UTC)
    for i in range(count):
        message = {
            "chatflow_id": f"flow-{i % 7}",
            "session_id": f"session-{i // 4}",
            "user_id": f"user-{i % 31}",
            "role": "user" if i % 2 == 0 else "assistant",
            "content": text[(offset := rng.randrange(2000)):offset + rng.randint(20, 2000)],
            "file_ids": [],
            "created_at": start + timedelta(seconds=i),
        }
        if with_metadata_every and i % with_metadata_every == 0:
            message["metadata"] = [dict(EVENTS[i % len(EVENTS)])]
        yield message


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    from migrator.connection import INVALID_NAMESPACE
    from migrator.profile import profile_of
    from migrator.redact import redact
    from migrator.settings import SettingsError, load_settings

    parser = argparse.ArgumentParser(description="Load sample chat messages into an empty chat_messages collection.")
    parser.add_argument("--count", type=int, default=1000, help="how many messages (default: 1000)")
    args = parser.parse_args()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    client = MongoClient(settings.mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        collection = client[settings.database_name].chat_messages
        existing = collection.count_documents({})
        if existing:
            print(f"chat_messages already holds {existing} messages: nothing loaded")
            return 0
        for start in range(0, args.count, 1000):
            collection.insert_many(chat_messages(min(1000, args.count - start), seed=start))
        print(f"loaded {args.count} sample chat messages into {settings.database_name} "
              f"({redact(settings.mongodb_url)}), 1 in 10 with metadata")
        return 0
    except Exception as exc:
        if isinstance(exc, OperationFailure) and exc.code == INVALID_NAMESPACE:
            rule = profile_of(client.admin.command("buildInfo")).database_name_rule
            print(f"error: the server refuses the database name {settings.database_name!r} (MONGODB_DATABASE_NAME): "
                  f"{rule or redact(exc)}", file=sys.stderr)
            return 2
        print(f"error: {type(exc).__name__}: {redact(exc)}", file=sys.stderr)
        return 5
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())

"""Our local server: FerretDB's lookups by `_id` reach an index (localdb/idindex.go).

FerretDB v1.24.2 indexes `_ferretdb_sjson->"_id"` but queries `_ferretdb_sjson->'$._id'`; SQLite uses an
index only for the expression it was built on. These tests read the server's SQLite files directly.
"""

import sqlite3
import time

import pytest

LOOKUP = "_ferretdb_sjson->'$._id'"  # the expression FerretDB's find/update/delete by _id use


@pytest.fixture
def sqlite_file(local_server, db):
    if local_server is None:
        pytest.skip("MONGODB_URL names a server that is not our FerretDB")
    return local_server.data / f"{db.name}.sqlite"


def table_of(path, collection: str) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT table_name FROM _ferretdb_collections WHERE name = ?",
                                  (collection,)).fetchone()[0]


def plan_of_update_by_id(path, table: str) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute(f'EXPLAIN QUERY PLAN UPDATE "{table}" SET _ferretdb_sjson = ? WHERE {LOOKUP} = ?',
                                  ("{}", "x")).fetchall()
    return " ".join(row[-1] for row in rows)


def wait_for_index(path, table: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        plan = plan_of_update_by_id(path, table)
        if "USING INDEX" in plan or time.monotonic() > deadline:
            return plan
        time.sleep(0.05)


def test_an_update_by_id_uses_an_index_on_a_new_collection_and_after_it_is_recreated(db, sqlite_file):
    db.chat_messages.insert_many([{"n": i} for i in range(10)])
    table = table_of(sqlite_file, "chat_messages")
    assert f"USING INDEX {table}$localdb_id" in wait_for_index(sqlite_file, table)  # without it: SCAN

    db.drop_collection("chat_messages")
    db.chat_messages.insert_one({"n": 1})
    table = table_of(sqlite_file, "chat_messages")
    assert "USING INDEX" in wait_for_index(sqlite_file, table)


def test_the_extra_index_is_invisible_to_clients_and_changes_no_result(db, sqlite_file):
    ids = db.items.insert_many([{"n": i} for i in range(20)]).inserted_ids
    wait_for_index(sqlite_file, table_of(sqlite_file, "items"))

    assert [index["name"] for index in db.items.list_indexes()] == ["_id_"]
    assert db.items.find_one({"_id": ids[7]})["n"] == 7
    assert db.items.update_one({"_id": ids[3]}, {"$set": {"n": 33}}).modified_count == 1
    assert db.items.delete_one({"_id": ids[4]}).deleted_count == 1
    assert sorted(doc["n"] for doc in db.items.find()) == sorted([n for n in range(20) if n not in (3, 4)] + [33])

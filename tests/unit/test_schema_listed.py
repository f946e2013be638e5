"""The server's listIndexes / listCollections answers normalised (migrator/schema/listed.py), over recorded answers:
MongoDB 7.0's (as its documentation shows them, each kind of index) and FerretDB 1.24's (recorded from our server)."""

from pathlib import Path

from bson import json_util
from pymongo import ASCENDING, DESCENDING, GEOSPHERE, TEXT, IndexModel

from migrator.schema.listed import ID_INDEX, index_of, validator_of
from migrator.schema.model import FrozenDict, Index

ANSWERS = Path(__file__).parent / "answers"


def answers(name: str) -> dict[str, dict]:
    return {answer["name"]: answer for answer in json_util.loads((ANSWERS / name).read_text())}


MONGODB, FERRETDB = answers("mongodb-7.0-listIndexes.json"), answers("ferretdb-1.24-listIndexes.json")


def declared(*keys, **options) -> Index:
    return index_of("chat_messages", IndexModel(list(keys), **options).document)


def listed(answer: dict) -> Index:
    return index_of("chat_messages", answer)


def test_numbers_of_any_type_compare_equal_and_the_key_order_is_kept():
    index = listed(MONGODB["session_id_1_created_at_1"])  # 1.0 and Int64(1) in the answer
    assert index.keys == (("session_id", 1), ("created_at", 1))
    assert all(type(direction) is int for _, direction in index.keys)
    assert index == declared(("session_id", ASCENDING), ("created_at", ASCENDING))
    assert index != declared(("created_at", ASCENDING), ("session_id", ASCENDING))
    assert index != declared(("session_id", ASCENDING), ("created_at", DESCENDING))
    assert index.name == "session_id_1_created_at_1"


def test_v_ns_background_and_false_defaults_are_not_options():
    assert listed(MONGODB["legacy_1"]).options == ()  # v 1, ns, unique: false, sparse: false
    assert listed(MONGODB["legacy_1"]) == declared(("legacy", 1), unique=False, background=True)
    unique = listed(MONGODB["user_id_1"])  # with background: true
    assert unique.options == (("unique", True),)
    assert unique == declared(("user_id", 1), unique=True) != declared(("user_id", 1))


def test_sparse_partial_and_ttl_are_options_of_identity():
    assert listed(MONGODB["email_1"]) == declared(("email", 1), sparse=True) != declared(("email", 1))
    partial = listed(MONGODB["status_1"])
    assert partial == declared(("status", 1), partialFilterExpression={"rating": {"$gt": 5}})
    assert partial != declared(("status", 1), partialFilterExpression={"rating": {"$gt": 6}})
    assert partial.definition()["options"] == {"partialFilterExpression": {"rating": {"$gt": 5}}}
    ttl = listed(MONGODB["created_at_1"])  # Int64(3600)
    assert ttl == declared(("created_at", 1), expireAfterSeconds=3600) != declared(("created_at", 1))


def test_a_collation_is_compared_without_the_defaults_the_server_spells_out():
    collation = listed(MONGODB["category_fr"])
    assert collation.options == (("collation", FrozenDict([("locale", "fr")])),)
    assert collation == declared(("category", 1), collation={"locale": "fr"})
    assert collation == declared(("category", 1), collation={"locale": "fr", "strength": 3})
    assert collation != declared(("category", 1), collation={"locale": "fr", "strength": 2})
    assert declared(("category", 1), collation={"locale": "simple"}) == declared(("category", 1))


def test_hidden_is_not_an_option_and_the_id_index_is_named():
    assert listed(MONGODB["role_1"]) == declared(("role", 1))
    assert MONGODB[ID_INDEX]["key"] == {"_id": 1}


def test_2dsphere_and_text_indexes_as_declared():
    assert listed(MONGODB["location_2dsphere"]) == declared(("location", GEOSPHERE))
    text = listed(MONGODB["content_text"])  # _fts/_ftsx keys, weights, language defaults, textIndexVersion
    assert text.keys == (("content", "text"),) and text.options == ()
    assert text == declared(("content", TEXT))
    assert index_of("c", {"key": {"_fts": "text", "_ftsx": 1}, "weights": {"b": 1, "a": 5}}) == \
        index_of("c", IndexModel([("b", TEXT), ("a", TEXT)], weights={"a": 5}).document)


def test_a_definition_builds_the_same_index_again():
    for answer in MONGODB.values():
        index = listed(answer)
        assert Index.of_definition(index.definition(), "chat_messages") == index, answer["name"]


def test_ferretdb_answers_recorded_from_the_local_server():
    assert listed(FERRETDB["session_id_1"]) == declared(("session_id", 1))
    assert listed(FERRETDB["session_time"]) == declared(("session_id", 1), ("created_at", -1))
    assert listed(FERRETDB["user_id_1"]) == declared(("user_id", 1), unique=True)
    # built with sparse=True: FerretDB takes the option and ignores it (a sparse declaration is skipped there)
    assert listed(FERRETDB["zz_sparse"]) == declared(("zz", 1))


def test_validators_from_list_collections():
    mongodb = {answer["name"]: answer for answer in json_util.loads(
        (ANSWERS / "mongodb-7.0-listCollections.json").read_text())}
    assert validator_of(mongodb["chat_messages"]["options"]) == {
        "validator": {"$jsonSchema": {"bsonType": "object", "required": ["session_id"]}},
        "validationLevel": "moderate", "validationAction": "warn"}
    assert validator_of(mongodb["audit"]["options"]) == {"validator": {"$jsonSchema": {"bsonType": "object"}},
                                                         "validationLevel": "strict", "validationAction": "error"}
    assert validator_of(mongodb["plain"]["options"]) is None
    ferretdb = json_util.loads((ANSWERS / "ferretdb-1.24-listCollections.json").read_text())
    assert validator_of(ferretdb[0]["options"]) is None

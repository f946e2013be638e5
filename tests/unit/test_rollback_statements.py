"""What a batch of the stream path writes (migrator.batch_paths.write_bulks), and where a rollback's checkpoint is
kept apart from the `up`'s; no server."""

from pymongo import UpdateMany, UpdateOne

from migrator.batch_paths import write_bulks
from migrator.checkpoints import APPLY, ROLLBACK, Checkpoints
from migrator.profile import ferretdb, mongodb

FERRETDB = ferretdb()
FERRETDB_MAX_BULK, FERRETDB_MAX_IN = FERRETDB.max_bulk, FERRETDB.max_in

ADDED = {"metadata": {"$type": "null"}}
UNSET = {"$unset": {"metadata": ""}}


def test_on_mongodb_each_write_checks_the_filter_again_whatever_is_asked():
    for recheck in (False, True):
        assert write_bulks([1, 2], ADDED, UNSET, profile=mongodb(), recheck=recheck) == [
            [UpdateOne({"$and": [{"_id": 1}, ADDED]}, UNSET), UpdateOne({"$and": [{"_id": 2}, ADDED]}, UNSET)]]


def test_on_ferretdb_without_recheck_each_write_is_by_id_alone_in_bulks_of_50():
    ids = list(range(120))
    bulks = write_bulks(ids, ADDED, UNSET, profile=FERRETDB, recheck=False)

    assert [len(bulk) for bulk in bulks] == [50, 50, 20]
    assert [statement for bulk in bulks for statement in bulk] == [UpdateOne({"_id": _id}, UNSET) for _id in ids]


def test_on_ferretdb_a_recheck_is_one_update_many_of_the_filter_and_the_ids():
    assert write_bulks([3, "a", 5], ADDED, UNSET, profile=FERRETDB, recheck=True) == [
        [UpdateMany({"$and": [ADDED, {"_id": {"$in": [3, "a", 5]}}]}, UNSET)]]


def test_on_ferretdb_a_rechecked_batch_larger_than_one_in_list_is_split():
    ids = list(range(FERRETDB_MAX_IN * 2 + 1))
    bulks = write_bulks(ids, ADDED, UNSET, profile=FERRETDB, recheck=True)

    assert bulks == [[UpdateMany({"$and": [ADDED, {"_id": {"$in": ids[start:start + FERRETDB_MAX_IN]}}]}, UNSET)]
                     for start in (0, FERRETDB_MAX_IN, FERRETDB_MAX_IN * 2)]


def test_a_rollbacks_checkpoint_has_a_key_of_its_own_and_the_ups_key_is_unchanged():
    assert Checkpoints.key("add_metadata", 1) == Checkpoints.key("add_metadata", 1, APPLY) == "add_metadata/1"
    assert Checkpoints.key("add_metadata", 1, ROLLBACK) == "add_metadata/rollback/1"

"""What a walk covered (migrator.scope), and the bound a checkpoint carries: the verification right after `up`
checks those documents only, a later --verify all of them."""

from bson import ObjectId

from migrator.batches import RANGE
from migrator.checkpoints import Walk
from migrator.scope import NOTHING, WHOLE, Scope, up_to

LACKS = {"metadata": {"$exists": False}}


def test_the_whole_scope_adds_nothing_to_a_filter():
    assert WHOLE.of("chat_messages") == {}
    assert WHOLE.within("chat_messages", LACKS) == LACKS


def test_a_walked_collection_is_checked_up_to_the_walks_end_and_others_whole():
    end = ObjectId()
    scope = Scope({"chat_messages": up_to(end)})
    assert scope.of("chat_messages") == {"$nor": [{"_id": {"$gt": end}}]}  # also _ids of other types than end's
    assert scope.within("chat_messages", LACKS) == {"$and": [LACKS, {"$nor": [{"_id": {"$gt": end}}]}]}
    assert scope.within("chat_messages", {}) == {"$nor": [{"_id": {"$gt": end}}]}
    assert scope.of("chat_sessions") == {} and scope.within("chat_sessions", LACKS) == LACKS


def test_a_walk_of_an_empty_collection_covered_nothing():
    assert up_to(None) == NOTHING == {"_id": {"$in": []}}


def test_a_checkpoint_keeps_the_walks_bound_and_one_without_it_resumes_unbounded():
    end = ObjectId()
    walk = Walk("chat_messages", "sum", "work", RANGE, bounded=True, end_id=end)
    resumed = Walk("chat_messages", "sum", "work", RANGE)
    resumed.resume(walk.checkpoint())
    assert (resumed.bounded, resumed.end_id) == (True, end)
    older = {key: value for key, value in walk.checkpoint().items() if key not in ("bounded", "end_id")}
    again = Walk("chat_messages", "sum", "work", RANGE)
    again.resume(older)
    assert (again.bounded, again.end_id) == (False, None)

"""The state of a batched walk (migrator/batches.py): which path, which work a checkpoint belongs to, the counts
after each batch, the stop line; no server."""

import signal

import pytest

from migrator.batches import DEFAULT_SIZE, RANGE, STREAM, Batches, BatchSettings, _digest, default_path
from migrator.checkpoints import Checkpoints, Walk
from migrator.cli import runner_parser
from migrator.errors import MigrationError
from migrator.flags import batch_settings_from
from migrator.profile import ferretdb, mongodb
from migrator.progress import Progress
from migrator.stop import StopRequest
from migrator.throttle import ThrottleSettings


class NoDatabase:
    """Enough of a database to build Batches and Checkpoints; any use of it fails the test."""

    def get_collection(self, name, **options):
        return None

    def __getitem__(self, name):
        raise AssertionError("a unit test reached the database")


def batches(settings: BatchSettings | None = None, is_ferretdb=False) -> Batches:
    return Batches(NoDatabase(), "add_metadata", "sum", settings or BatchSettings(),
                   ferretdb() if is_ferretdb else mongodb())


def fresh_state() -> Walk:
    return Walk("chat_messages", "sum", "work", RANGE)


def test_the_path_is_the_servers_unless_one_is_asked_for():
    assert (default_path(ferretdb()), default_path(mongodb())) == (STREAM, RANGE)
    assert (batches(is_ferretdb=True).path, batches(is_ferretdb=False).path) == (STREAM, RANGE)
    assert batches(BatchSettings(path=RANGE), is_ferretdb=True).path == RANGE
    assert batches(BatchSettings(path=STREAM), is_ferretdb=False).path == STREAM


def test_the_batch_size_is_the_flags_or_the_default():
    assert batches().size == DEFAULT_SIZE == 1000
    assert batches(BatchSettings(size=250)).size == 250


def test_the_adaptive_batch_flags_reach_the_sizer_and_a_negative_target_is_refused(capsys):
    parser = runner_parser()
    off = batches(batch_settings_from(parser.parse_args(["--all", "--target-batch-ms", "0", "--min-batch-size", "20"])))
    assert (off.sizer.target_s, off.sizer.smallest, off.sizer.adapts) == (0, 20, False)
    sizer = batches(batch_settings_from(parser.parse_args(["--all", "--batch-size", "400"]))).sizer
    assert (sizer.largest, sizer.smallest, sizer.target_s, sizer.adapts) == (400, 50, 0.5, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["--all", "--target-batch-ms", "-5"])
    assert "argument --target-batch-ms: must be at least 0: '-5'" in capsys.readouterr().err


def test_the_work_digest_tells_one_update_from_another():
    work = _digest("chat_messages", {"metadata": {"$exists": False}}, {"$max": {"metadata": None}})
    assert len(work) == 16 and int(work, 16) >= 0
    assert _digest("chat_messages", {"metadata": {"$exists": False}}, {"$max": {"metadata": None}}) == work
    others = {_digest("messages", {"metadata": {"$exists": False}}, {"$max": {"metadata": None}}),
              _digest("chat_messages", {"metadata": None}, {"$max": {"metadata": None}}),
              _digest("chat_messages", {"metadata": {"$exists": False}}, {"$set": {"metadata": None}}),
              _digest("chat_messages", {"metadata": {"$exists": False}}, [{"$set": {"metadata": None}}])}
    assert len(others) == 4 and work not in others


def test_a_checkpoint_is_keyed_by_migration_and_step():
    assert Checkpoints.key("add_metadata", 2) == "add_metadata/2"
    assert Checkpoints.key("a/b", 1) != Checkpoints.key("a", 1)


def test_each_batch_adds_to_the_counts_and_moves_the_last_id():
    events = []
    walk, state, progress = batches(), fresh_state(), Progress("t", events.append)
    walk._batch_done(state, 1000, "id-1000", 990, 900, progress)
    walk._batch_done(state, 500, "id-1500", 500, 0, progress)
    assert (state.last_id, state.documents_done, state.matched, state.modified, state.batches) == \
        ("id-1500", 1500, 1490, 900, 2)
    assert state.checkpoint() == {"collection": "chat_messages", "checksum": "sum", "work": "work", "path": RANGE,
                                  "last_id": "id-1500", "scanned": 1500, "matched": 1490, "modified": 900,
                                  "batches": 2, "done": False, "bounded": False, "end_id": None}  # the names
    # earlier versions stored: they resume (unbounded, those of a version before the walk's bound)
    progress.finish()
    assert (progress.done, progress.modified) == (1500, 900)
    assert [(type(e).__name__, getattr(e, "done", None), getattr(e, "modified", None)) for e in events] == [
        ("ProgressMade", 1000, 900), ("ProgressMade", 1500, 900), ("ProgressEnded", None, None),
        ("WalkDone", 1500, 900)]


@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_stop_request_ends_the_walk_with_where_it_stopped(signum, code, name):
    walk = batches()
    assert walk._stop_if_asked(fresh_state()) is None  # no stop request: the walk goes on
    walk.stop.signal = signum
    with pytest.raises(MigrationError) as caught:
        walk._stop_if_asked(fresh_state())
    assert str(caught.value) == (f"add_metadata: stopped by {name} after 0 documents; nothing written yet: run the "
                                 "same command again to resume")
    assert caught.value.exit_code == code

    state = fresh_state()
    state.resume({"last_id": 41999, "scanned": 42000, "matched": 0, "modified": 0, "batches": 42})
    with pytest.raises(MigrationError, match=rf"stopped by {name} after 42,000 documents; checkpoint saved \(up to "
                                             r"_id 41999\)"):
        walk._stop_if_asked(state)


def test_a_stop_request_exits_130_for_ctrl_c_and_143_for_sigterm():
    stop = StopRequest()
    stop.signal = signal.SIGINT
    assert stop.exit_code == 130
    stop.signal = signal.SIGTERM
    assert stop.exit_code == 143


def test_the_batch_flags_reach_the_batch_settings():
    args = runner_parser().parse_args(["--all", "--batch-size", "250", "--max-rate", "90.5", "--write-concern", "1",
                                       "--batch-path", "range", "--progress-interval", "2", "--max-lag", "2.5",
                                       "--throttle-interval", "0.1"])
    throttle = ThrottleSettings(max_lag_s=2.5, interval_s=0.1)
    assert batch_settings_from(args) == BatchSettings(size=250, max_rate=90.5, write_concern="1", path=RANGE,
                                                      throttle=throttle)
    assert args.progress_interval == 2.0  # the CLI's (migrator.commands.progress_view), not the engine's
    assert batch_settings_from(runner_parser().parse_args(["--status"])) == BatchSettings()

"""The CLI's lines for the events under the engine (migrator/commands/progress_view.py); no server, no terminal."""

import dataclasses
import logging

import pytest

from migrator.commands.progress_view import ProgressView, event_line, progress_line
from migrator.events import (
    BatchDone,
    CheckpointOfAnotherVersion,
    Event,
    ProgressEnded,
    ProgressMade,
    RetryScheduled,
    StoppingAtOnce,
    StopRequested,
    WalkDone,
)
from migrator.output import log


def test_a_progress_line_has_the_counts_the_share_the_rate_and_the_time_left():
    made = ProgressMade("add_metadata", 40_000, total=100_000, modified=36_000, rate=2150.0)
    assert progress_line(made) == ("add_metadata: 40,000 of 100,000 documents (40%), 2,150 docs/s, 28 s left; "
                                   "36,000 modified")
    reading = WalkDone("add_metadata, reading the _ids", 30_000, unit="ids", counts_modified=False, rate=9800.0)
    assert progress_line(reading) == "add_metadata, reading the _ids: 30,000 ids, 9,800 ids/s"
    assert progress_line(ProgressMade("r", 350, total=300, estimated=True, modified=0)) == \
        "r: 350 of ~350 documents (100%), 0 docs/s; 0 modified"


def test_the_one_off_lines_and_their_levels():
    assert event_line(CheckpointOfAnotherVersion("m")) == \
        "m: the checkpoint was left by another version of the migration: starting over"
    assert event_line(RetryScheduled("m: batch 4", "AutoReconnect: reset", 0.25)) == \
        "m: batch 4: AutoReconnect: reset; retrying in 0.2 s"
    assert event_line(StopRequested("SIGINT")) == "SIGINT: stopping after the current batch (again to stop at once)"
    assert event_line(StoppingAtOnce("SIGTERM")) == \
        "SIGTERM again: stopping at once; the next run does the current batch again"
    assert (Event.level, CheckpointOfAnotherVersion.level, StoppingAtOnce.level) == ("info", "warning", "error")


@pytest.fixture
def lines():
    found = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: found.append((record.levelname, record.getMessage()))
    log.addHandler(handler)
    previous = log.level
    log.setLevel(logging.DEBUG)
    yield found
    log.setLevel(previous)
    log.removeHandler(handler)


def test_without_a_terminal_a_line_every_interval_and_the_final_counts_once(lines):
    view = ProgressView(interval_s=0, terminal=False)
    assert view.handle(ProgressMade("m", 0, total=10))  # the work begins: no line yet
    assert view.handle(ProgressMade("m", 5, total=10, modified=5, rate=5.0))
    assert view.handle(ProgressEnded("m"))
    assert view.handle(WalkDone("m", 10, total=10, modified=9, rate=5.0))
    assert view.handle(CheckpointOfAnotherVersion("m"))
    assert lines == [("INFO", "m: 5 of 10 documents (50%), 5 docs/s, 1 s left; 5 modified"),
                     ("INFO", "m: 10 of 10 documents (100%), 5 docs/s; 9 modified"),
                     ("WARNING", "m: the checkpoint was left by another version of the migration: starting over")]


def test_the_final_counts_are_not_logged_twice_when_the_last_interval_line_had_them(lines):
    view = ProgressView(interval_s=0, terminal=False)
    for done in (0, 5, 10):
        view.handle(ProgressMade("m", done, total=10, modified=done, rate=5.0))
    view.handle(ProgressEnded("m"))
    view.handle(WalkDone("m", 10, total=10, modified=10, rate=5.0))
    assert [line for _, line in lines] == ["m: 5 of 10 documents (50%), 5 docs/s, 1 s left; 5 modified",
                                           "m: 10 of 10 documents (100%), 5 docs/s; 10 modified"]


def test_an_event_it_does_not_know_is_left_to_the_caller(lines):
    assert ProgressView().handle(Event()) is False
    assert lines == []


def _every_event_class(base=Event):
    for cls in base.__subclasses__():
        yield cls
        yield from _every_event_class(cls)


SIMPLE = {"str": "x", "int": 1, "float": 1.0, "bool": False, "Any": 1, "int | None": 1}


def test_every_event_the_engine_can_report_is_rendered_by_the_command_line(caplog):
    """An event nobody renders would be lost without a word: the workflows' events have their lines in
    commands/narration.py; every other one (all of simple data) is shown by the progress view."""
    from migrator.commands import narration

    workflows = set(narration._LINE) | set(narration._LINES)
    view = ProgressView(terminal=False)
    shown_by_view = []
    for cls in _every_event_class():
        if cls in workflows or cls.__name__ == "ProgressEvent":  # the base of the progress events
            continue
        values = {f.name: SIMPLE[str(f.type)] for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        if cls is StoppingAtOnce:
            values["signal"] = "SIGINT"
        assert view.handle(cls(**values)), f"{cls.__name__} is rendered by nobody"
        shown_by_view.append(cls.__name__)
    assert len(workflows) >= 15 and len(shown_by_view) >= 8


def test_a_batch_done_is_a_debug_line_only(lines):
    assert ProgressView(terminal=False).handle(BatchDone("m", "chat_messages", 1200, 0.4321, 1100))
    assert lines == [("DEBUG", "m: batch of 1,200 documents of chat_messages in 0.432 s; 1,100 modified")]

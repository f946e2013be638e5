"""The machine-readable views of a run: --log-format json (every event, generically), the --metrics-file text,
--notify's stall watch. The real runs are in tests/test_machine_output.py."""

import dataclasses
import json
import logging
import math
import time
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
from bson import ObjectId
from prometheus_client.parser import text_string_to_metric_families

from migrator import backup, events, migration
from migrator.cli import runner_main
from migrator.commands.json_view import event_name
from migrator.commands.metrics import MetricsFile
from migrator.commands.narration import Narration
from migrator.commands.notify import Notifier, shown
from migrator.commands.progress_view import ProgressView
from migrator.output import JSON, log, setup_logging

DOCUMENTED = {"ts", "level", "event", "message"}
MANIFEST = {"database": "app", "collection": "chat_messages", "migration": "m1", "action": "apply",
            "created_at": "2026-01-01T00:00:00Z", "count": 3}
BY_NAME = {"manifest": MANIFEST, "runner": "deploy-7:4242", "label": "m1", "migration": "m1", "name": "m1"}
HINTS = {**vars(events), **vars(backup), **vars(migration)}


async def _noop(*args):
    return None


def sample(hint: Any, name: str) -> Any:
    """A value of the annotated type, for any event's field (a dataclass is built the same way)."""
    if name in BY_NAME and hint in (str, dict):
        return BY_NAME[name]
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return sample(next(arg for arg in args if arg is not type(None)), name)
    if origin in (tuple, list, set, frozenset):
        return origin([sample(args[0], name)])
    if origin is dict:
        return {"total": 3}
    if origin is Callable or hint is Callable or origin is typing.Callable:
        return _noop
    simple = {str: f"{name}-text", int: 3, float: 1.5, bool: True, Path: Path("/tmp/x.gz"), Any: ObjectId(),
              datetime: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    if hint in simple:
        return simple[hint]
    if dataclasses.is_dataclass(hint):
        return build(hint)
    raise AssertionError(f"no sample of {hint} for {name}")


def build(cls: type) -> Any:
    module = vars(__import__(cls.__module__, fromlist=["*"]))
    hint = lambda field: eval(field.type, {**module, **HINTS}) if isinstance(field.type, str) else field.type  # noqa: E731
    return cls(**{field.name: sample(hint(field), field.name) for field in dataclasses.fields(cls)
                  if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING})


def every_event() -> list[type]:
    found, todo = [], [events.Event]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        found.append(cls)
    return [cls for cls in found if cls is not events.Event and cls is not events.ProgressEvent]


@pytest.fixture
def json_log(capsys):
    saved = log.handlers[:], log.level, log.propagate
    setup_logging(log_format=JSON)
    yield lambda: [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    log.handlers[:], log.level, log.propagate = saved


@pytest.mark.parametrize("cls", every_event(), ids=lambda cls: cls.__name__)
def test_every_event_is_one_json_line_with_the_documented_fields_and_its_own(cls, json_log):
    event = build(cls)
    Narration(ProgressView(terminal=False), json=True)(event)
    [line] = json_log()
    assert line.keys() >= DOCUMENTED
    assert line["event"] == event_name(event)
    assert line["level"] in {"info", "warning", "error"}
    assert datetime.fromisoformat(line["ts"]).tzinfo is not None
    assert {field.name for field in dataclasses.fields(event)} <= line.keys()
    json.dumps(line)  # JSON-safe all through
    if hasattr(event, "migration") or hasattr(getattr(event, "result", None), "migration"):
        assert line["migration"] == "m1"


def test_names_fields_and_masking():
    assert event_name(events.ProgressMade("m", 1)) == "progress_made"
    assert event_name(events.RetryScheduled("w", "e", 1)) == "retry_scheduled"
    assert event_name(build(events.MigrationApplied)) == "migration_applied"


def test_a_password_in_an_event_and_a_log_line_is_masked_and_a_plain_log_line_is_an_event_too(json_log):
    narration = Narration(ProgressView(terminal=False), json=True)
    narration(events.RetryScheduled("batch", "AutoReconnect: mongodb://u:hunter2@h:27017 down", 0.5))
    log.info("at mongodb://admin:hunter2@db/")
    retry, plain = json_log()
    assert "hunter2" not in json.dumps([retry, plain])
    assert retry["error"] == "AutoReconnect: mongodb://u:****@h:27017 down" and retry["level"] == "warning"
    assert plain["event"] == "log" and plain["message"] == "at mongodb://admin:****@db/"


def test_progress_between_lines_still_says_its_counts_and_migration(json_log):
    narration = Narration(ProgressView(interval_s=60, terminal=False), json=True)
    narration(events.Applying("m1", "sets x"))
    narration(events.ProgressMade("m1", 40, total=100, rate=20.0))
    _, progress = json_log()
    assert progress["migration"] == "m1" and progress["done"] == 40 and progress["total"] == 100
    assert progress["message"].startswith("m1: 40 of 100 documents (40%)")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_metrics_text_parses_and_says_each_figure(tmp_path):
    clock = Clock()
    path = tmp_path / "run.prom"
    metrics = MetricsFile(path, interval_s=5, clock=clock)
    metrics.started('a"db')
    metrics.observe(events.Applying("m1", "x"), "m1")
    metrics.observe(events.ProgressMade("m1", 40, total=100, rate=20.0), "m1")
    metrics.observe(events.RetryScheduled("batch", "e", 0.1), "m1")
    metrics.observe(events.Throttled("m1", "replication lag", 14.2, 10.0, 1.5), "m1")  # 1.5 s before this wait
    metrics.observe(events.ThrottledTotal("m1", "chat_messages", 2.5, 2), "m1")  # the walk's end: 2.5 s in all
    metrics.observe(events.BatchDone("m1", "chat_messages", 100, 0.25, 100), "m1")
    samples = {sample.name: sample for family in text_string_to_metric_families(path.read_text())
               for sample in family.samples}
    assert samples["migration_documents_done"].value == 40
    assert samples["migration_documents_total"].value == 100
    assert samples["migration_rate_per_second"].value == 20
    assert samples["migration_eta_seconds"].value == 3
    assert samples["migration_retries_total"].value == 1
    assert samples["migration_throttled_seconds_total"].value == 2.5
    assert samples["migration_batch_duration_seconds"].value == 0.25
    assert samples["migration_state"].labels == {"migration": "m1", "database": 'a"db', "state": "running"}
    metrics.finish(1)
    [state] = [s for f in text_string_to_metric_families(path.read_text()) for s in f.samples
               if s.name == "migration_state"]
    assert state.labels["state"] == "failed"
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file, replaced


def test_progress_rewrites_the_metrics_file_at_most_every_interval(tmp_path):
    clock = Clock()
    metrics = MetricsFile(tmp_path / "run.prom", interval_s=5, clock=clock)
    metrics.started("app")
    metrics.observe(events.Applying("m1", "x"), "m1")
    metrics.observe(events.ProgressMade("m1", 10, total=100), "m1")
    assert "migration_documents_done{" + 'migration="m1",database="app"} 0' in metrics.path.read_text()
    clock.now += 5
    metrics.observe(events.ProgressMade("m1", 20, total=100), "m1")
    assert 'database="app"} 20' in metrics.path.read_text()
    assert math.isnan(MetricsFile(tmp_path / "x", 1).counts.setdefault("m", metrics.counts["m1"].__class__()).eta_s)


def test_a_stall_is_said_once_per_quiet_spell_and_progress_rearms_it():
    clock, posted = Clock(), []
    notifier = Notifier("http://hooks.example/T0/secret", stall_s=60, post=lambda url, body: posted.append(body),
                        clock=clock)
    assert notifier.stalled() is None
    clock.now += 61
    assert notifier.stalled() == 61
    assert notifier.stalled() is None  # said
    notifier.observe(events.ProgressMade("m1", 10), "m1")
    clock.now += 30
    assert notifier.stalled() is None
    notifier.observe(events.ProgressMade("m1", 10), "m1")  # the same counts: no progress
    clock.now += 31
    assert notifier.stalled() == 61


def test_the_stall_watcher_posts_a_stall_and_the_end_posts_the_outcome():
    posted: list[dict] = []
    notifier = Notifier("http://hooks.example/T0/secret", stall_s=0.1, post=lambda url, body: posted.append(body))
    notifier.started("app")
    time.sleep(0.5)
    notifier.finish(1, "m1: up failed")
    kinds = [body["event"] for body in posted]
    assert kinds[0] == "start" and kinds.count("stall") == 1 and kinds[-1] == "failure"
    assert posted[-1]["exit_code"] == 1 and posted[-1]["message"] == "m1: up failed"
    assert shown("http://hooks.example:8080/T0/secret?x=1") == "http://hooks.example:8080/****"


def test_a_notify_endpoint_that_fails_is_one_warning(caplog):
    def refuse(url, body):
        raise ConnectionRefusedError("Connection refused")

    notifier = Notifier("http://127.0.0.1:9/T0/secret", stall_s=600, post=refuse)
    with caplog.at_level(logging.WARNING, logger="migrator"):
        log.propagate = True
        try:
            notifier.started("app")
            notifier.finish(0)
        finally:
            log.propagate = False
    [warning] = [record.getMessage() for record in caplog.records]
    assert "http://127.0.0.1:9/****" in warning and "secret" not in warning


def test_a_run_that_fails_before_it_starts_is_a_failure_notification_too():
    posted: list[dict] = []
    Notifier("http://hooks.example/T0", stall_s=600, post=lambda url, body: posted.append(body)).finish(5, "no server")
    assert [(body["event"], body["exit_code"], body["message"]) for body in posted] == [("failure", 5, "no server")]


@pytest.mark.parametrize("argv, said", [
    (["--all", "--stall-minutes", "5"], "--stall-minutes goes with --notify"),
    (["--all", "--notify", "ftp://hooks/x"], "needs an http:// or https:// URL with a host"),
    (["--all", "--log-format", "xml"], "invalid choice: 'xml'"),
])
def test_bad_output_flags_are_one_usage_line(argv, said, capsys):
    with pytest.raises(SystemExit) as exit_:
        runner_main(argv)
    assert exit_.value.code == 2 and said in capsys.readouterr().err

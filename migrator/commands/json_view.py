"""--log-format json: each of the engine's events as one JSON object on stderr, with the text its log lines say.

Generic over migrator.events: an event's name is its class's in snake_case (ProgressMade: "progress_made") and its
fields are its dataclass fields, made JSON-safe and masked, so an event added later needs nothing here. The field
names are a contract: docs/production.md, "Machine-readable output".
"""

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import PurePath
from typing import Any

from migrator import events
from migrator.commands.progress_view import progress_line
from migrator.output import captured, json_line, write_json
from migrator.redact import redact

_WORD_START = re.compile(r"(?<!^)(?=[A-Z])")


def event_name(event: events.Event) -> str:
    """The stable name of an event: its class's, in snake_case (MigrationApplied: "migration_applied")."""
    return _WORD_START.sub("_", type(event).__name__).lower()


def migration_of(event: events.Event) -> str | None:
    """The migration an event is about, when it says: its `migration` field, or its result's."""
    for holder in (event, getattr(event, "result", None)):
        named = getattr(holder, "migration", None)
        if isinstance(named, str):
            return named
        if isinstance(name := getattr(named, "name", None), str):
            return name  # a Migration
    return None


def json_safe(value: Any) -> Any:
    """Plain JSON values, masked: datetimes ISO, paths and ObjectIds (any other object) as text, a migration by its
    name, dataclasses as objects; functions left out."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | PurePath):
        return redact(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return json_safe(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(name := getattr(value, "name", None), str) and callable(getattr(value, "up", None)):
            return name  # a Migration: its name says it; its functions are no data
        return {field.name: json_safe(getattr(value, field.name)) for field in dataclasses.fields(value)
                if not callable(getattr(value, field.name))}
    if isinstance(value, Mapping):
        return {redact(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    return redact(value)


def fields_of(event: events.Event, current: str | None = None) -> dict[str, Any]:
    """The event's own fields, JSON-safe, after `migration` when it is known (`current`: the one being applied)."""
    fields = json_safe(event)
    migration = migration_of(event) or current
    return {"migration": migration, **fields} if migration is not None else fields


def render(event: events.Event, narrate: Callable[[events.Event], None], current: str | None = None) -> None:
    """One JSON line for `event`: `narrate` says its text lines (kept, not written), which become its `message`."""
    with captured() as lines:
        narrate(event)
    level = max([logging.getLevelName(event.level.upper()), *(level for level, _ in lines)])
    message = "\n".join(text for _, text in lines)
    if not message and isinstance(event, events.ProgressEvent):
        message = redact(progress_line(event))  # said every event here, every --progress-interval in text
    write_json(json_line(logging.getLevelName(level).lower(), event_name(event), message, fields_of(event, current)))


def run_line(event: str, message: str, **fields: Any) -> None:
    """A line of the command itself, not of the engine (run_started, run_finished)."""
    level = "error" if fields.get("exit_code") else "info"
    write_json(json_line(level, event, redact(message), json_safe(fields)))

"""What changed in a document, field by field, and its values shown short and masked.

    changes({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": None})
    -> [Change("b.c", 2, 3), Change("d", MISSING, None)]

Values are compared as BSON, so 1, 1.0 and Int64(1) differ, as they do on the server. Embedded
documents are compared field by field; arrays whole.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bson
from bson import json_util

from migrator.redact import redact


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
ORDER = "(field order)"  # the path of a change that is only the order of fields
WIDTH = 60  # the most characters of a value shown


@dataclass
class Change:
    path: str
    before: Any = MISSING
    after: Any = MISSING

    @property
    def kind(self) -> str:
        if self.path == ORDER:
            return "reordered"
        return "added" if self.before is MISSING else "removed" if self.after is MISSING else "changed"

    def line(self) -> str:
        """`+ metadata: null`, `- x: 1`, `~ n: 1 -> 2`: masked, each value at most WIDTH characters."""
        if self.kind == "reordered":
            return "~ the same fields in another order"
        if self.kind == "added":
            return f"+ {self.path}: {shown(self.after)}"
        if self.kind == "removed":
            return f"- {self.path}: {shown(self.before)}"
        return f"~ {self.path}: {shown(self.before)} -> {shown(self.after)}"

    def as_json(self) -> dict:
        return {"field": self.path, "change": self.kind,
                **({"before": as_plain(self.before)} if self.before is not MISSING else {}),
                **({"after": as_plain(self.after)} if self.after is not MISSING else {})}


def value_at(document: Mapping, path: str) -> Any:
    """The value at a dotted path, or MISSING."""
    for part in path.split("."):
        if not isinstance(document, Mapping) or part not in document:
            return MISSING
        document = document[part]
    return document


def same(first: Any, second: Any) -> bool:
    if first is MISSING or second is MISSING:
        return first is second
    return bson.encode({"v": first}) == bson.encode({"v": second})


def changes(before: Mapping, after: Mapping, prefix: str = "") -> list[Change]:
    """The fields that differ, by dotted path, in the order of `before` (then the fields `after` adds)."""
    found = []
    for key in [*before, *(key for key in after if key not in before)]:
        old, new = before.get(key, MISSING), after.get(key, MISSING)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            found += changes(old, new, f"{prefix}{key}.")
        elif not same(old, new):
            found.append(Change(f"{prefix}{key}", old, new))
    return found


def raw_changes(before: bytes, after: bytes) -> list[Change]:
    """Of two BSON documents; a difference of field order alone is one Change of path ORDER."""
    found = changes(bson.decode(before), bson.decode(after))
    return found or ([Change(ORDER)] if before != after else [])


def shown(value: Any, width: int = WIDTH) -> str:
    """A value as a short line: JSON-like, masked (migrator.redact), cut at `width` characters."""
    if value is MISSING:
        text = "(missing)"
    elif isinstance(value, bson.ObjectId):
        text = f"ObjectId('{value}')"
    elif isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS, ensure_ascii=False)
    text = redact(text)  # before cutting: a password cut in half would no longer be recognised
    return text if len(text) <= width else text[:width - 3] + "..."


def as_plain(value: Any) -> Any:
    """A value for --json: relaxed Extended JSON, masked."""
    text = redact(json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS))
    try:
        return json.loads(text)
    except ValueError:  # the mask landed where JSON did not expect it: the masked text, then
        return text

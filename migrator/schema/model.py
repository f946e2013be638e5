"""The schema's words, shared by deciding (declared, listed, compared) and doing (built, dropped, recorded).

An index is identified by its collection, key pattern and options, never by its name: an existing index with the
same keys and options is adopted as it is. `options` holds only what changes what the index does (unique, sparse,
partialFilterExpression, expireAfterSeconds, collation, ...), each normalised so that a server's defaults compare
equal to a declaration that leaves them out; `hidden` is not an option of identity (hiding is a step of a drop).
"""

from dataclasses import dataclass, field
from typing import Any

Keys = tuple[tuple[str, Any], ...]  # (("session_id", 1), ("created_at", 1)): order matters
Options = tuple[tuple[str, Any], ...]  # sorted by name; values made hashable (dicts as sorted tuples)


@dataclass(frozen=True)
class Index:
    collection: str
    keys: Keys
    options: Options = ()
    name: str = field(default="", compare=False)  # the declared or listed name: shown, never compared

    def definition(self) -> dict:
        """What the changelog records and a rollback builds again: {"keys": [[field, dir], ...], "options": {...}}."""
        return {"keys": [list(key) for key in self.keys], "options": dict(_plain(self.options)), "name": self.name}


def _plain(options: Options) -> list[tuple[str, Any]]:
    return [(name, _thaw(value)) for name, value in options]


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        return {key: _thaw(item) for key, item in value}
    return value


# What a schema step does. CREATE builds `index`; DROP removes `index` (hidden first where the server can);
# REPLACE drops `previous` then builds `index` (same keys, other options); VALIDATOR sets `validator` on
# `collection`; SKIP is what the server cannot do (`reason` says why), shown in the plan, never run.
CREATE, DROP, REPLACE, VALIDATOR, SKIP = "create", "drop", "replace", "validator", "skip"


@dataclass(frozen=True)
class SchemaStep:
    kind: str
    collection: str
    index: Index | None = None
    previous: Index | None = None
    validator: dict | None = field(default=None, hash=False)
    reason: str = ""


@dataclass(frozen=True)
class SchemaPlan:
    """The steps that make the database as declared, and what is there undeclared (`unknown`: reported, kept)."""
    steps: tuple[SchemaStep, ...] = ()
    unknown: tuple[Index, ...] = ()

    @property
    def runnable(self) -> tuple[SchemaStep, ...]:
        return tuple(step for step in self.steps if step.kind != SKIP)

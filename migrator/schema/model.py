"""The schema's words, shared by deciding (declared, listed, compared) and doing (built, dropped, recorded).

An index is identified by its collection, key pattern and options, never by its name: an existing index with the
same keys and options is adopted as it is. `options` holds only what changes what the index does (unique, sparse,
partialFilterExpression, expireAfterSeconds, collation, ...), each normalised so that a server's defaults compare
equal to a declaration that leaves them out; `hidden` is not an option of identity (hiding is a step of a drop).
"""

from collections.abc import Mapping
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
        """What the changelog records and a rollback builds again: {"keys": [{"field": f, "direction": d}, ...],
        "options": {...}, "name": n} (not [[f, d], ...], nor {f: d}: FerretDB stores no nested arrays, and no field
        names with a dot)."""
        return {"keys": [{"field": name, "direction": direction} for name, direction in self.keys],
                "options": dict(_plain(self.options)), "name": self.name}

    @classmethod
    def of_definition(cls, definition: dict, collection: str | None = None) -> "Index":
        """The Index a definition describes (its collection given, or recorded in it)."""
        keys = tuple((str(key["field"]), freeze(key["direction"])) for key in definition["keys"])
        options = tuple(sorted((str(name), freeze(value)) for name, value in (definition.get("options") or {}).items()))
        return cls(collection or definition["collection"], keys, options, definition.get("name", ""))

    def shown(self) -> str:
        """`session_id_1_created_at_1 {session_id: 1, created_at: 1}, unique`: for a line of the plan or of --check."""
        keys = ", ".join(f"{name}: {direction}" for name, direction in self.keys)
        options = "".join(f", {name}" if value is True else f", {name}: {_shown(value)}"
                          for name, value in self.options)
        return f"{self.collection}.{self.server_name} {{{keys}}}{options}"

    @property
    def server_name(self) -> str:
        """Its declared or listed name, else the one the server gives an index built without one:
        `session_id_1_created_at_1`."""
        return self.name or "_".join(f"{name}_{direction}" for name, direction in self.keys)


class FrozenDict(tuple):
    """A document made hashable: its (name, value) pairs, sorted by name (a plain tuple is an array)."""


def freeze(value: Any) -> Any:
    """A BSON value as Options holds it: documents as FrozenDict, arrays as tuples, whole numbers of any type (1, 1.0,
    Int64(1)) as int, so that a server's answer and a declaration compare equal."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and float(value).is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return FrozenDict(sorted(((str(name), freeze(item)) for name, item in value.items()), key=lambda p: p[0]))
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def _plain(options: Options) -> list[tuple[str, Any]]:
    return [(name, _thaw(value)) for name, value in options]


def _thaw(value: Any) -> Any:
    """freeze undone: FrozenDict as a dict, a tuple as a list (BSON gives both back as they were declared)."""
    if isinstance(value, FrozenDict):
        return {key: _thaw(item) for key, item in value}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value


def _shown(value: Any) -> str:
    thawed = _thaw(value)
    return str(thawed).replace("'", "") if isinstance(thawed, dict | list) else str(thawed)


# What a schema step does. CREATE builds `index`; DROP removes `index` (hidden first where the server can), `reason`
# says why it may (created by the toolkit, or declared removed); REPLACE drops `previous` then builds `index` (same
# keys, other options), or builds first when `build_first` (the server keeps both meanwhile); VALIDATOR sets
# `validator` on `collection`; UNHIDE makes a declared index that is hidden (a drop stopped half-way, or by hand)
# serve queries again; SKIP is what the server cannot do (`reason` says why), shown in the plan, never run.
CREATE, DROP, REPLACE, VALIDATOR, UNHIDE, SKIP = "create", "drop", "replace", "validator", "unhide", "skip"


@dataclass(frozen=True)
class SchemaStep:
    kind: str
    collection: str
    index: Index | None = None
    previous: Index | None = None
    validator: dict | None = field(default=None, hash=False)
    reason: str = ""
    build_first: bool = False  # REPLACE: build `index`, then drop `previous` (else drop first)


@dataclass(frozen=True)
class SchemaPlan:
    """The steps that make the database as declared, and what is there undeclared (`unknown`: reported, kept);
    `adopted`: the declared indexes there already (kept as they are, never rebuilt)."""
    steps: tuple[SchemaStep, ...] = ()
    unknown: tuple[Index, ...] = ()
    adopted: tuple[Index, ...] = ()

    @property
    def runnable(self) -> tuple[SchemaStep, ...]:
        return tuple(step for step in self.steps if step.kind != SKIP)

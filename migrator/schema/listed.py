"""What the server has (listIndexes, listCollections), in the schema's words, each server default taken out.

One normaliser for both sides: a declaration (an IndexModel's document) and a server's answer go through `index_of`,
so that what the server adds by itself compares equal to a declaration that leaves it out: the index version `v`,
`ns`, `background`, `unique: false` / `sparse: false`, the collation's defaults for its locale (and its ICU
`version`), the internal versions of text and 2dsphere indexes, a text index's `_fts`/`_ftsx` keys (its fields, from
`weights`), numbers of any type (1, 1.0, Int64(1)). `hidden` is read separately: it is a state, not an identity.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from migrator.schema.model import Index, freeze

ID_INDEX = "_id_"  # never planned, never dropped
_NOT_OPTIONS = frozenset({"v", "key", "name", "ns", "background", "hidden", "dropDups", "textIndexVersion",
                          "2dsphereIndexVersion"})
_DEFAULTS: dict[str, Any] = {"unique": False, "sparse": False, "default_language": "english",
                             "language_override": "language", "bits": 26, "min": -180, "max": 180}
# ICU's defaults (https://www.mongodb.com/docs/manual/reference/collation/), which listIndexes spells out
_COLLATION_DEFAULTS: dict[str, Any] = {"caseLevel": False, "caseFirst": "off", "strength": 3, "numericOrdering": False,
                                       "alternate": "non-ignorable", "maxVariable": "punct", "normalization": False,
                                       "backwards": False}
_TEXT = "text"
DEFAULT_VALIDATION = {"validationLevel": "strict", "validationAction": "error"}


@dataclass(frozen=True)
class Listed:
    """The server's indexes of the collections asked about (`_id_` left out), which of them are hidden, and each
    collection's validator (normalised by validator_of; absent: none)."""
    indexes: tuple[Index, ...] = ()
    hidden: frozenset[Index] = frozenset()
    validators: dict[str, dict] = field(default_factory=dict, hash=False)


def index_of(collection: str, answer: Mapping) -> Index:
    """One index of a listIndexes answer (or an IndexModel's document) as an Index."""
    keys = list(answer["key"].items()) if isinstance(answer["key"], Mapping) else list(answer["key"])
    options = {name: value for name, value in answer.items() if name not in _NOT_OPTIONS}
    keys, options = _text_keys(keys, options)
    if "collation" in options:
        options["collation"] = _collation(options["collation"])
    kept = [(name, freeze(value)) for name, value in sorted(options.items())
            if value is not None and not (name in _DEFAULTS and freeze(value) == freeze(_DEFAULTS[name]))]
    return Index(collection, tuple((str(name), freeze(direction)) for name, direction in keys), tuple(kept),
                 str(answer.get("name", "")))


def _text_keys(keys: list, options: dict) -> tuple[list, dict]:
    """A text index as declared: its fields (as the server lists them in `weights`), sorted, at the place of its
    first text key; `weights` kept only where one is not 1."""
    fields = [name for name, direction in keys if direction == _TEXT]
    if ("_fts", _TEXT) in [(name, direction) for name, direction in keys]:
        fields = list((options.get("weights") or {}).keys())
        keys = [(name, direction) for name, direction in keys if name != "_ftsx"]
    if not fields:
        return keys, options
    first = next(place for place, (name, direction) in enumerate(keys) if direction == _TEXT)
    rest = [(name, direction) for name, direction in keys if direction != _TEXT]
    keys = rest[:first] + [(name, _TEXT) for name in sorted(fields)] + rest[first:]
    weights = {name: weight for name, weight in (options.get("weights") or {}).items() if freeze(weight) != 1}
    return keys, {**{k: v for k, v in options.items() if k != "weights"}, **({"weights": weights} if weights else {})}


def _collation(collation: Mapping) -> Mapping | None:
    """None for the simple binary comparison (as if there were none); else without its defaults and ICU version."""
    if collation.get("locale") == "simple":
        return None
    return {name: value for name, value in collation.items() if name != "version"
            and not (name in _COLLATION_DEFAULTS and freeze(value) == freeze(_COLLATION_DEFAULTS[name]))}


def validator_of(options: Mapping) -> dict | None:
    """A collection's validator from its listCollections `options` (or a declaration's), with the server's defaults
    written out: {"validator": {...}, "validationLevel": ..., "validationAction": ...}; None when it has none."""
    if not options.get("validator"):
        return None
    return {"validator": dict(options["validator"]),
            **{name: options.get(name) or default for name, default in DEFAULT_VALIDATION.items()}}


def same_validator(one: dict | None, other: dict | None) -> bool:
    return freeze(one) == freeze(other)


async def read_listed(database: AsyncDatabase, collections: Iterable[str]) -> Listed:
    """The indexes and validators of `collections` (one that does not exist has none)."""
    names = list(dict.fromkeys(collections))
    indexes, hidden, validators = [], set(), {}
    for collection in names:
        async for answer in await database[collection].list_indexes():
            if answer.get("name") == ID_INDEX:
                continue
            index = index_of(collection, answer)
            indexes.append(index)
            if answer.get("hidden"):
                hidden.add(index)
    if names:
        async for answer in await database.list_collections(filter={"name": {"$in": names}}):
            if (validator := validator_of(answer.get("options") or {})) is not None:
                validators[answer["name"]] = validator
    return Listed(tuple(indexes), frozenset(hidden), validators)

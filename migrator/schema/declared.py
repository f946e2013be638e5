"""What the schema should be: read from the spec module `_schema.py` of the migrations folder.

    from pymongo import IndexModel
    from app.models.chat_message import ChatMessage

    MODELS = [ChatMessage]      # Beanie Documents: Settings.name, Settings.indexes (and Settings.validation)
    INDEXES = {"audit": [IndexModel([("at", -1)], expireAfterSeconds=86400)]}  # collections not modelled
    REMOVED = {"chat_messages": ["session_id"]}  # may be dropped (after what is declared is built)

A model is read duck-typed, without init_beanie: its collection is `Settings.name` (else the class name); each of
`Settings.indexes` is a field name, a list of (field, direction), or a pymongo IndexModel, as Beanie takes them. A
model opts in to a validator with `Settings.validation = {"validationLevel": "moderate", "validationAction":
"warn"}` (either may be left out: strict, error; `True` for both defaults): a `$jsonSchema` derived from its fields
(migrator.schema.jsonschema). A spec module that cannot be read is one line naming it, exit 2, like a broken
migration file.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import IndexModel

from migrator.errors import ExitCode, MigrationError
from migrator.migration import import_file, parse_source
from migrator.redact import redact
from migrator.schema.jsonschema import json_schema
from migrator.schema.listed import DEFAULT_VALIDATION, index_of, validator_of
from migrator.schema.model import Index

SPEC_FILE = "_schema.py"
_LEVELS, _ACTIONS = ("off", "strict", "moderate"), ("error", "warn", "errorAndLog")


@dataclass(frozen=True)
class Declared:
    """The declared indexes (in declaration order), those declared removed, and validators by collection."""
    path: Path
    indexes: tuple[Index, ...] = ()
    removed: tuple[Index, ...] = ()
    validators: dict[str, dict] = field(default_factory=dict, hash=False)

    @property
    def collections(self) -> tuple[str, ...]:
        named = [index.collection for index in self.indexes + self.removed] + list(self.validators)
        return tuple(dict.fromkeys(named))


class _Refused(ValueError):
    """What is wrong with the spec module, in a few words."""


def load_declared(folder: Path | None) -> Declared | None:
    """The declared schema of `folder/_schema.py`; None when there is none (nothing is planned)."""
    path = folder / SPEC_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    parse_source(path, path.read_text(encoding="utf-8"))
    module = import_file(path)
    try:
        return _declared(path, module)
    except _Refused as exc:
        raise MigrationError(f"{path.name}: {exc}", ExitCode.USAGE) from None


def _declared(path: Path, module: Any) -> Declared:
    indexes: list[Index] = []
    validators: dict[str, dict] = {}
    for model in _listed(getattr(module, "MODELS", []), "MODELS must be a list of Beanie Document classes"):
        settings = getattr(model, "Settings", None)
        collection = getattr(settings, "name", None) or getattr(model, "__name__", None)
        if not isinstance(collection, str) or not isinstance(model, type):
            raise _Refused(f"MODELS holds {_shown(model)}, not a Beanie Document class")
        indexes += [_index(collection, item) for item in _listed(getattr(settings, "indexes", None) or [],
                                                                   f"{model.__name__}.Settings.indexes must be a list")]
        if (validation := getattr(settings, "validation", None)) not in (None, False):
            validators[collection] = _validator(model, validation)
    indexes += _by_collection(module, "INDEXES")
    removed = _by_collection(module, "REMOVED")
    for index in indexes:
        if indexes.count(index) > 1:
            raise _Refused(f"{index.shown()} is declared twice")
        if index in removed:
            raise _Refused(f"{index.shown()} is both declared and in REMOVED")
    return Declared(path, tuple(indexes), tuple(removed), validators)


def _listed(value: Any, rule: str) -> list:
    if not isinstance(value, list | tuple):
        raise _Refused(f"{rule}, not {_shown(value)}")
    return list(value)


def _by_collection(module: Any, name: str) -> list[Index]:
    value = getattr(module, name, {})
    rule = f"{name} must map collection names to lists of indexes, e.g. {{\"audit\": [IndexModel([(\"at\", -1)])]}}"
    if not isinstance(value, Mapping) or not all(isinstance(collection, str) and collection for collection in value):
        raise _Refused(f"{rule}, not {_shown(value)}")
    return [_index(collection, item) for collection, items in value.items() for item in _listed(items, rule)]


def _index(collection: str, item: Any) -> Index:
    """A field name, a list of (field, direction) or an IndexModel, as Beanie takes them."""
    try:
        document = (item if isinstance(item, IndexModel) else IndexModel(item)).document
    except (TypeError, ValueError) as exc:
        raise _Refused(f"index {_shown(item)} of {collection}: {exc}") from None
    if "hidden" in document:
        raise _Refused(f"index {_shown(item)} of {collection}: `hidden` is not declared (the toolkit hides an index "
                       "only on its way to a drop)")
    return index_of(collection, document)


def _validator(model: type, validation: Any) -> dict:
    chosen = dict(DEFAULT_VALIDATION) if validation is True else validation
    if not isinstance(chosen, Mapping) or set(chosen) - set(DEFAULT_VALIDATION):
        raise _Refused(f"{model.__name__}.Settings.validation must be True or a dict of validationLevel and "
                       f"validationAction, not {_shown(validation)}")
    level, action = (chosen.get(name, default) for name, default in DEFAULT_VALIDATION.items())
    if level not in _LEVELS or action not in _ACTIONS:
        raise _Refused(f"{model.__name__}.Settings.validation: validationLevel is one of {', '.join(_LEVELS)} and "
                       f"validationAction one of {', '.join(_ACTIONS)}, not {_shown(dict(chosen))}")
    try:
        schema = json_schema(model)
    except (TypeError, AttributeError) as exc:
        raise _Refused(f"{model.__name__}: no $jsonSchema can be derived from its fields: {exc}") from None
    declared = validator_of({"validator": schema, "validationLevel": level, "validationAction": action})
    assert declared is not None  # a schema was given
    return declared


def _shown(value: Any) -> str:
    return redact(repr(value))[:80]

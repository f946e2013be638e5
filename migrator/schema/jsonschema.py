"""A model's `$jsonSchema` validator, derived from its pydantic fields (duck-typed: `model_fields`).

Each field's BSON type from its annotation (str, int, float, bool, datetime, list[...], dict, a nested model, Literal,
Optional: also null; anything else: any type); the fields without a default are required. Documents may hold other
fields (no `additionalProperties: false`): a validator guards the fields the model reads, nothing more. The
document's `_id` and Beanie's own `revision_id` are left to the server.
"""

import types
from datetime import date, datetime
from typing import Any, Literal, Union, get_args, get_origin
from uuid import UUID

from bson import ObjectId

_BSON_TYPES: dict[Any, Any] = {str: "string", bool: "bool", int: ["int", "long"], float: ["double", "int", "long"],
                               datetime: "date", date: "date", bytes: "binData", UUID: "binData",
                               ObjectId: "objectId", dict: "object"}
_LEFT_TO_THE_SERVER = {"id", "revision_id"}


def json_schema(model: Any) -> dict:
    """{"$jsonSchema": {"bsonType": "object", "required": [...], "properties": {...}}}"""
    return {"$jsonSchema": _object(model)}


def _object(model: Any) -> dict:
    properties, required = {}, []
    for name, info in model.model_fields.items():
        if name in _LEFT_TO_THE_SERVER:
            continue
        key = info.alias or name
        properties[key] = _schema_of(info.annotation)
        if info.is_required():
            required.append(key)
    return {"bsonType": "object", **({"required": required} if required else {}), "properties": properties}


def _schema_of(annotation: Any) -> dict:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        others = [arg for arg in args if arg is not type(None)]
        schema = _schema_of(others[0]) if len(others) == 1 else {}
        if "bsonType" in schema and len(others) < len(args):
            kinds = schema["bsonType"] if isinstance(schema["bsonType"], list) else [schema["bsonType"]]
            schema = {**schema, "bsonType": [*kinds, "null"]}
        return schema
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset):
        return {"bsonType": "array", **({"items": _schema_of(args[0])} if args and args[0] is not Ellipsis else {})}
    if origin is dict:
        return {"bsonType": "object"}
    if hasattr(annotation, "model_fields"):
        return _object(annotation)
    return {"bsonType": _BSON_TYPES[annotation]} if annotation in _BSON_TYPES else {}

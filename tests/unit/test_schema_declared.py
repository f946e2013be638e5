"""The declared schema (migrator/schema/declared.py): the spec module `_schema.py` of a migrations folder, its models
read without init_beanie, and its errors as one line, exit 2, like a broken migration file. No server."""

import textwrap

import pytest

from conftest import MIGRATIONS
from migrator.discovery import discover
from migrator.errors import ExitCode, MigrationError
from migrator.schema.declared import SPEC_FILE, load_declared

HEADER = """
from datetime import datetime
from typing import Any, Literal
from beanie import Document
from pydantic import Field
from pymongo import IndexModel

class Note(Document):
    text: str
    tags: list[str] = Field(default_factory=list)
    at: datetime
    kind: Literal["a", "b"] = "a"
    extra: dict[str, Any] | None = None

    class Settings:
        name = "notes"
        indexes = ["text", [("at", -1), ("kind", 1)], IndexModel([("tags", 1)], unique=True, name="tags_unique")]
"""


def spec_in(tmp_path, body: str, header: str = HEADER):
    (tmp_path / SPEC_FILE).write_text(textwrap.dedent(header) + textwrap.dedent(body))
    return tmp_path


def test_the_projects_spec_declares_what_the_proxy_queries_and_removes_the_bare_session_index():
    declared = load_declared(MIGRATIONS)
    assert declared is not None
    assert [(index.collection, index.keys, index.options) for index in declared.indexes] == [
        ("chat_messages", (("session_id", 1), ("created_at", 1)), ()), ("chat_messages", (("user_id", 1),), ())]
    assert [index.keys for index in declared.removed] == [(("session_id", 1),)]
    assert declared.validators == {} and declared.collections == ("chat_messages",)
    assert discover(MIGRATIONS).folder == MIGRATIONS  # the engine finds the spec beside the migrations


def test_no_spec_module_nothing_declared(tmp_path):
    assert load_declared(tmp_path) is None and load_declared(None) is None


def test_models_indexes_and_removed_duck_typed(tmp_path):
    declared = load_declared(spec_in(tmp_path, """
        MODELS = [Note]
        INDEXES = {"audit": [IndexModel([("at", -1)], expireAfterSeconds=60)]}
        REMOVED = {"notes": ["old"]}
    """))
    assert declared is not None
    assert [(i.collection, i.keys, i.options, i.name) for i in declared.indexes] == [
        ("notes", (("text", 1),), (), "text_1"), ("notes", (("at", -1), ("kind", 1)), (), "at_-1_kind_1"),
        ("notes", (("tags", 1),), (("unique", True),), "tags_unique"),
        ("audit", (("at", -1),), (("expireAfterSeconds", 60),), "at_-1")]
    assert [(i.collection, i.keys) for i in declared.removed] == [("notes", (("old", 1),))]
    assert declared.collections == ("notes", "audit")


def test_a_model_opts_in_to_a_validator_derived_from_its_fields(tmp_path):
    declared = load_declared(spec_in(tmp_path, """
        Note.Settings.validation = {"validationLevel": "moderate"}
        MODELS = [Note]
    """))
    assert declared is not None
    assert declared.validators == {"notes": {"validator": {"$jsonSchema": {
        "bsonType": "object", "required": ["text", "at"], "properties": {
            "text": {"bsonType": "string"}, "tags": {"bsonType": "array", "items": {"bsonType": "string"}},
            "at": {"bsonType": "date"}, "kind": {"enum": ["a", "b"]},
            "extra": {"bsonType": ["object", "null"]}}}},
        "validationLevel": "moderate", "validationAction": "error"}}


@pytest.mark.parametrize(("body", "error"), [
    ("MODELS = [Note\n", "_schema.py: syntax error at line "),
    ("import no_such_module\n", "_schema.py: failed to load: ModuleNotFoundError: No module named 'no_such_module'"),
    ("MODELS = Note\n", "_schema.py: MODELS must be a list of Beanie Document classes, not <class"),
    ("MODELS = ['notes']\n", "_schema.py: MODELS holds 'notes', not a Beanie Document class"),
    ("INDEXES = {'audit': 'at'}\n", "_schema.py: INDEXES must map collection names to lists of indexes"),
    ("INDEXES = {'audit': [42]}\n", "_schema.py: index 42 of audit: "),
    ("INDEXES = {'audit': [IndexModel('at', hidden=True)]}\n", "`hidden` is not declared"),
    ("MODELS = [Note]\nREMOVED = {'notes': ['text']}\n", "notes.text_1 {text: 1} is both declared and in REMOVED"),
    ("INDEXES = {'a': ['x', [('x', 1)]]}\n", "_schema.py: a.x_1 {x: 1} is declared twice"),
    ("Note.Settings.validation = {'validationLevel': 'loose'}\nMODELS = [Note]\n",
     "Note.Settings.validation: validationLevel is one of off, strict, moderate"),
    ("import sys\nsys.exit(3)\n", "_schema.py: exited (SystemExit: 3) while being imported"),
])
def test_a_broken_spec_module_is_one_line_exit_2(tmp_path, body, error):
    with pytest.raises(MigrationError) as raised:
        load_declared(spec_in(tmp_path, body))
    assert raised.value.exit_code == ExitCode.USAGE
    assert error in str(raised.value) and "\n" not in str(raised.value)

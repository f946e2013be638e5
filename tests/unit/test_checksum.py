"""The checksum of a migration's code (migrator/checksum.py): reformatting is no change, code is; no server."""

import pytest

from conftest import write_migration
from migrator.checksum import code_checksum
from migrator.migration import load_migration

ORIGINAL = '''"""Sets a.

Date: 2025-01-01
"""


async def up(db):
    return await db.items.update_many({"a": {"$exists": False}}, {"$set": {"a": 1}})


async def verify(db):
    return await db.items.count_documents({"a": {"$exists": False}}) == 0
'''

REFORMATTED = '''"""Sets a.

Date: 2025-01-01
"""
# a comment at the top
async def up(db):   # trailing comment
    return await db.items.update_many(
        {'a': {'$exists': False}},   # single quotes, split lines
        {'$set': {'a': 1}},
    )
async def verify(db):


    return (await db.items.count_documents({"a": {"$exists": False}})) == 0
'''


def test_whitespace_comments_quotes_and_line_breaks_do_not_count():
    assert code_checksum(REFORMATTED) == code_checksum(ORIGINAL)


@pytest.mark.parametrize("edit", [
    lambda s: s.replace('{"$set": {"a": 1}}', '{"$set": {"a": 2}}'),  # a value
    lambda s: s.replace('"$set"', '"$setOnInsert"'),  # an operator
    lambda s: s.replace("update_many", "update_one"),  # a call
    lambda s: s.replace("== 0", "== 1"),  # the verification
    lambda s: s.replace("Sets a.", "Sets a, documented."),  # the docstring counts: it holds the Date
    lambda s: s + "\nasync def rollback(db):\n    return None\n",  # a new hook
    lambda s: s.replace("async def verify(db)", "async def verify(database)").replace("await db.items.count",
                                                                                     "await database.items.count"),
], ids=["value", "operator", "call", "verification", "docstring", "new hook", "renamed argument"])
def test_a_change_of_code_changes_the_checksum(edit):
    assert edit(ORIGINAL) != ORIGINAL
    assert code_checksum(edit(ORIGINAL)) != code_checksum(ORIGINAL)


def test_the_order_of_the_functions_counts():
    header, up, verify = ORIGINAL.split("\n\n\n")
    assert code_checksum("\n\n\n".join([header, verify, up])) != code_checksum(ORIGINAL)


def test_windows_line_endings_do_not_count():
    checksum = code_checksum(ORIGINAL)
    assert len(checksum) == 64 and int(checksum, 16) >= 0  # sha256, in hex
    assert code_checksum(ORIGINAL.replace("\n", "\r\n")) == checksum


def test_a_loaded_migration_carries_the_checksum_of_its_file(tmp_path):
    write_migration(tmp_path, "sets_a")
    path = tmp_path / "sets_a.py"
    migration = load_migration(path)
    assert migration.checksum == code_checksum(path.read_text())
    path.write_text("# reformatted\n" + path.read_text().replace("):\n", "):  # same code\n\n"))
    assert load_migration(path).checksum == migration.checksum

"""A checksum of a migration's code that reformatting does not change.

The code is parsed and its syntax tree hashed, so whitespace, comments and line breaks do not
count; docstrings and code do. Empty fields are dropped so that Python versions that add new,
empty node fields (3.12's `type_params`) hash the same code alike. A top-level
`keeps_on_rollback = ...` does not count either: it tells --selftest what the rollback keeps and
changes nothing the migration does, so declaring it in an applied migration is not an edit of it; nor does
`field_order_matters = False` (for --selftest too), nor `valid_checksums = [...]`, the checksums of the file's
earlier versions that did the same change.
"""

import ast
import hashlib
import json


def _canonical(node):
    if isinstance(node, ast.AST):
        fields = {}
        for key, value in ast.iter_fields(node):
            if value is None or (isinstance(value, list) and not value):
                continue
            fields[key] = _canonical(value)
        return [type(node).__name__, fields]
    if isinstance(node, list):
        return [_canonical(item) for item in node]
    return repr(node)


# read by the toolkit's checks only, not the migration
_DECLARATIONS = {"keeps_on_rollback", "field_order_matters", "valid_checksums"}


def _is_declaration(statement: ast.stmt) -> bool:
    targets = statement.targets if isinstance(statement, ast.Assign) else \
        [statement.target] if isinstance(statement, ast.AnnAssign) else []
    return bool(targets) and all(isinstance(t, ast.Name) and t.id in _DECLARATIONS for t in targets)


def code_checksum(source: str) -> str:
    tree = ast.parse(source)
    tree.body = [statement for statement in tree.body if not _is_declaration(statement)]
    return hashlib.sha256(json.dumps(_canonical(tree), sort_keys=True).encode()).hexdigest()

"""A checksum of a migration's code that reformatting does not change.

The code is parsed and its syntax tree hashed, so whitespace, comments and line breaks do not
count; docstrings and code do. Empty fields are dropped so that Python versions that add new,
empty node fields (3.12's `type_params`) hash the same code alike.
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


def code_checksum(source: str) -> str:
    tree = ast.parse(source)
    return hashlib.sha256(json.dumps(_canonical(tree), sort_keys=True).encode()).hexdigest()

"""What a migration is, and how one is read from its file.

A migration file is a module with a docstring holding `Date: YYYY-MM-DD` (its place in the order)
and `Description: ...`, and these async functions of the database:
    up(db)             forward; safe to run again. `up(db, batches)` is handed a migrator.batches.Batches
                       that walks a large collection resumably: `await batches.update_many(coll, filter, update)`
    verify(db)         read-only: is the change in place? returns Verification (or a bool)
    rollback(db)       optional; may accept `purge` to remove data written since
    verify_rollback(db)  optional, read-only: is the change gone after a rollback? (may accept `purge`)
    count_pending(db)  optional; how many documents `up` would change (for --dry-run)
and optionally `depends_on = ["other_migration", ...]`, and one plain (not async) function:
    touches(action, purge=False) -> {collection: filter}
                       the documents `up` (action "apply") or `rollback` (action "rollback", with
                       `purge` as given to it) will change, by collection: what --backup saves whole
                       before it runs (see migrator/backup.py). Without it, --backup refuses the
                       migration (--backup-full dumps the whole database instead).
"""

import ast
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from migrator.checksum import code_checksum
from migrator.errors import ExitCode, MigrationError
from migrator.redact import redact

HOOKS = ("up", "verify", "rollback", "count_pending", "verify_rollback")
_DATE = re.compile(r"^\s*Date:\s*(\d{4}-\d{2}-\d{2})\s*$", re.MULTILINE)
_DESCRIPTION = re.compile(r"^\s*Description:\s*(.+)$", re.MULTILINE)


@dataclass
class Verification:
    ok: bool
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass
class Outcome:
    matched: int = 0
    modified: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""

    @classmethod
    def of(cls, value: Any) -> "Outcome":
        """Accept what a migration returns: an Outcome, nothing, a driver's write result (Motor style:
        update, delete, insert, bulk write; read by their count attributes), or the index name that
        `create_index` returns."""
        if isinstance(value, Outcome):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(note=f"index {value} in place")
        if not any(hasattr(value, attribute) for attribute in _RESULT_ATTRIBUTES):
            raise TypeError(f"expected an Outcome, a write result or None, got {type(value).__name__}")
        counts = {name: getattr(value, attribute) for name, attribute in _OTHER_COUNTS
                  if getattr(value, attribute, None)}
        if getattr(value, "inserted_ids", None):  # insert_many
            counts["inserted"] = len(value.inserted_ids)
        if getattr(value, "inserted_id", None) is not None:  # insert_one
            counts["inserted"] = 1
        if getattr(value, "upserted_id", None) is not None:  # an update_one/update_many that inserted
            counts["upserted"] = 1
        modified = getattr(value, "modified_count", None) or 0
        return cls(matched=getattr(value, "matched_count", None) or 0, modified=modified + sum(counts.values()),
                   counts=counts)


_OTHER_COUNTS = (("inserted", "inserted_count"), ("upserted", "upserted_count"), ("deleted", "deleted_count"))
_RESULT_ATTRIBUTES = ("matched_count", "modified_count", "inserted_id", "inserted_ids",
                      *(attribute for _, attribute in _OTHER_COUNTS))


Hook = Callable[..., Awaitable[Any]]


@dataclass
class Migration:
    name: str
    date: str
    description: str
    up: Hook
    verify: Hook
    rollback: Hook | None = None
    count_pending: Hook | None = None
    verify_rollback: Hook | None = None
    touches: Callable[..., dict[str, dict]] | None = None
    depends_on: tuple[str, ...] = ()
    path: Path | None = None
    checksum: str = ""

    def accepts(self, hook: str, option: str) -> bool:
        function = getattr(self, hook)
        return function is not None and option in inspect.signature(function).parameters


def _declared_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def load_migration(path: Path) -> Migration | None:
    """Read one file: its Migration, None if it is not a migration, MigrationError if it is broken."""
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise MigrationError(f"{path.name}: syntax error at line {exc.lineno}: {exc.msg}", ExitCode.USAGE) from None
    declared = _declared_names(tree)
    if "migration" not in declared and not declared.intersection(HOOKS):
        return None

    module = _import(path)
    declared_object = getattr(module, "migration", None)
    if isinstance(declared_object, Migration):
        migration = declared_object
    else:
        migration = _from_functions(module, path, ast.get_docstring(tree) or "")
    migration.path, migration.checksum = path, code_checksum(source)
    return migration


def _import(path: Path):
    module_name = f"migrations.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise MigrationError(f"{path.name}: failed to load: {type(exc).__name__}: {redact(exc)}", ExitCode.USAGE) from exc
    return module


def _from_functions(module, path: Path, docstring: str) -> Migration:
    hooks = {}
    for hook in HOOKS:
        function = getattr(module, hook, None)
        if function is not None and not inspect.iscoroutinefunction(function):
            raise MigrationError(f"{path.name}: {hook}() must be an `async def` function", ExitCode.USAGE)
        hooks[hook] = function
    for required in ("up", "verify"):
        if hooks[required] is None:
            raise MigrationError(f"{path.name}: missing `async def {required}(db)`", ExitCode.USAGE)
    date = _DATE.search(docstring)
    if not date:
        raise MigrationError(f"{path.name}: its docstring needs a line `Date: YYYY-MM-DD` (its place in the order)", ExitCode.USAGE)
    description = _DESCRIPTION.search(docstring)
    summary = description.group(1).strip() if description else (docstring.strip().splitlines() or [""])[0]
    touches = getattr(module, "touches", None)
    if touches is not None and (not callable(touches) or inspect.iscoroutinefunction(touches)):
        raise MigrationError(f"{path.name}: touches() must be a plain `def` function", ExitCode.USAGE)
    depends_on = getattr(module, "depends_on", ())
    if isinstance(depends_on, str):
        depends_on = (depends_on,)
    return Migration(
        name=path.stem,
        date=date.group(1),
        description=summary,
        depends_on=tuple(depends_on),
        touches=touches,
        path=path,
        **hooks,
    )

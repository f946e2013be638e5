"""What a migration is, and how one is read from its file.

A migration file is a module with a docstring holding `Date: YYYY-MM-DD HH:MM[:SS]` (its place in the order;
a plain `YYYY-MM-DD` counts as the start of that day) and `Description: ...`, and these async functions
of the database:
    up(db)             forward; safe to run again. `up(db, batches)` is handed a migrator.batches.Batches
                       that walks a large collection resumably: `await batches.update_many(coll, filter, update)`
    verify(db)         read-only: is the change in place? returns Verification (or a bool); `verify(db, scope)`
                       checks only what `up`'s walks covered, right after it (migrator.scope)
    rollback(db)       optional; may accept `purge` to remove data written since
    verify_rollback(db)  optional, read-only: is the change gone after a rollback? (may accept `purge`)
    count_pending(db)  optional; how many documents `up` would change (for --dry-run)
and optionally `depends_on = ["other_migration", ...]` (names of migrations that must run first),
`keeps_on_rollback = {collection: [field, ...]}` (fields its rollback leaves in place by design, such
as data the app wrote since: --selftest lets them differ after a rollback), `field_order_matters = False`
(its rollback may give a document back with its fields in another order, as `$rename` does: --selftest then
compares them ignoring the order), `valid_checksums = ["<sha256>",
...]` (earlier versions of this file that did the same change: a database that applied one of them is not
"changed"; Liquibase's validCheckSum), and one plain (not async)
function:
    touches(action, purge=False) -> {collection: filter}
                       the documents `up` (action "apply") or `rollback` (action "rollback", with
                       `purge` as given to it) will change, by collection: what --backup saves whole
                       before it runs (see migrator/backup/). Without it, --backup refuses the
                       migration (--backup-full dumps the whole database instead).

A file fresh from `--new` is a draft (see `draft_reasons`): it is listed, but refuses to run until edited.
Importing a file must only define things: one that exits, raises or runs the command line while being
imported (it lacks `if __name__ == "__main__":`) is refused, named, with one line.
"""

import ast
import importlib.util
import inspect
import os
import re
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from migrator.checksum import code_checksum
from migrator.errors import ExitCode, MigrationError
from migrator.redact import redact

HOOKS = ("up", "verify", "rollback", "count_pending", "verify_rollback")
_DATE = re.compile(r"^\s*Date:[ \t]*(.*?)\s*$", re.MULTILINE)
_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?")
DATE_FORMS = "YYYY-MM-DD HH:MM (or HH:MM:SS), or YYYY-MM-DD for the start of that day"
_DATE_FORMATS = {10: "%Y-%m-%d", 16: "%Y-%m-%d %H:%M", 19: "%Y-%m-%d %H:%M:%S"}  # by length
_DESCRIPTION = re.compile(r"^\s*Description:\s*(.+)$", re.MULTILINE)
_CHECKSUM = re.compile(r"[0-9a-f]{64}")

# What the --new template carries until its author edits it (migration_template.py.txt says so too).
DRAFT_MARKER = re.compile(r"^\s*DRAFT:", re.MULTILINE)
PLACEHOLDER_DESCRIPTION = "TODO:"
PLACEHOLDER_FIELD = "TODO_field"
CLI_ENTRY_POINTS = {"standalone_main", "runner_main"}


@dataclass
class Verification:
    ok: bool
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""


def format_counts(counts: dict[str, int]) -> str:
    """`total=1,000, left=0`: numbers with thousands separators, like every number the toolkit prints."""
    return ", ".join(f"{key}={value:,}" if isinstance(value, int) and not isinstance(value, bool) else f"{key}={value}"
                     for key, value in counts.items())


def in_parens(counts: dict[str, int]) -> str:
    """` (total=1,000)`, or nothing when a verification gave no counts (a bare bool)."""
    return f" ({format_counts(counts)})" if counts else ""


@dataclass
class Outcome:
    matched: int = 0
    modified: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""
    # `modified` counts only what the last try of a resent batch changed (no transactions: migrator.batches)
    modified_at_least: bool = False
    counted: bool = True  # False: the migration returned None, so nothing says how many it changed

    @classmethod
    def of(cls, value: Any) -> "Outcome":
        """Accept what a migration returns: an Outcome, nothing, a driver's write result (Motor style:
        update, delete, insert, bulk write; read by their count attributes), or the index name that
        `create_index` returns."""
        if isinstance(value, Outcome):
            return value
        if value is None:
            return cls(counted=False)
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


@dataclass
class ApplyResult:
    """What applying a migration did: its outcome, its verification right after, how long it took."""
    migration: "Migration"
    outcome: Outcome
    after: Verification
    seconds: float


@dataclass
class RollbackResult:
    migration: "Migration"
    outcome: Outcome
    after: Verification | None  # None when the migration has no verify_rollback
    seconds: float


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
    keeps_on_rollback: dict[str, tuple[str, ...]] = field(default_factory=dict)
    field_order_matters: bool = True  # False: --selftest's "reversible" accepts the fields in another order
    valid_checksums: tuple[str, ...] = ()  # earlier versions of its file that did the same change
    path: Path | None = None
    checksum: str = ""
    draft_reasons: tuple[str, ...] = ()  # what is left to edit of the --new template: a draft never runs

    @property
    def draft(self) -> bool:
        return bool(self.draft_reasons)

    @property
    def file_name(self) -> str:
        return self.path.name if self.path else self.name

    def is_version(self, checksum: str | None) -> bool:
        """Was a changelog entry of `checksum` made by this file, or by an earlier version it declares valid?
        (None: an entry of a version that recorded none.)"""
        return checksum is None or checksum == self.checksum or checksum in self.valid_checksums

    def accepts(self, hook: str, option: str) -> bool:
        function = getattr(self, hook)
        return function is not None and option in inspect.signature(function).parameters


@dataclass(frozen=True)
class BrokenFile:
    """A migration file that cannot be read (a syntax error, a failed import, bad declarations) or placed in the
    order (a dependency that does not exist, a cycle): the commands that only look show it, and nothing runs or is
    recorded while one is in the folder (refuse_if_broken)."""
    name: str
    path: Path
    error: str  # one line, naming the file: `broken.py: syntax error at line 5: expected ':'`


def parse_date(text: str) -> datetime | None:
    """A `Date:` as a datetime: `YYYY-MM-DD HH:MM` or `YYYY-MM-DD HH:MM:SS` (or with a T), or `YYYY-MM-DD` at
    00:00; None if invalid."""
    if not _DATE_SHAPE.fullmatch(text):
        return None
    try:
        return datetime.strptime(text.replace("T", " "), _DATE_FORMATS[len(text)])
    except ValueError:
        return None


def date_of(migration: Migration) -> datetime:
    """Its place in the order; a MigrationError (exit 2) naming the file when its Date is not a date."""
    when = parse_date(migration.date) if isinstance(migration.date, str) else None
    if when is None:
        raise MigrationError(f"{migration.file_name}: Date {redact(repr(migration.date))} is not a valid date: "
                             f"write {DATE_FORMS}", ExitCode.USAGE)
    return when


def refuse_if_draft(migration: Migration) -> None:
    """Every path that runs or records a migration passes here: a draft is refused, exit 2, before any write."""
    if migration.draft:
        raise MigrationError(f"{migration.file_name} is a draft (template not edited), so it does not run: "
                             f"{'; '.join(migration.draft_reasons)}; nothing was changed", ExitCode.USAGE)


def refuse_if_broken(broken: Sequence[BrokenFile]) -> None:
    """Nothing runs or is recorded while a migration file is broken (it may be pending, and the order matters): one
    line naming each, exit 2."""
    if not broken:
        return
    one = len(broken) == 1
    them = "it" if one else "them"
    raise MigrationError(f"{'a migration file is' if one else f'{len(broken)} migration files are'} broken: "
                         f"{'; '.join(file.error for file in broken)}: fix {them} or move {them} out of the migrations "
                         "folder; nothing runs until then, and nothing was changed", ExitCode.USAGE)


def parse_source(path: Path, source: str) -> ast.Module:
    """A file of the migrations folder parsed; a syntax error is one line naming it (exit 2)."""
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise MigrationError(f"{path.name}: syntax error at line {exc.lineno}: {exc.msg}", ExitCode.USAGE) from None


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
    tree = parse_source(path, source)
    declared = _declared_names(tree)
    if "migration" not in declared and not declared.intersection(HOOKS):
        return None
    module = import_file(path)
    declared_object = getattr(module, "migration", None)
    if isinstance(declared_object, Migration):
        migration = declared_object
    else:
        migration = _from_functions(module, path, ast.get_docstring(tree) or "")
    migration.path, migration.checksum = path, code_checksum(source)
    date_of(migration)
    migration.depends_on = _migration_names(migration.depends_on, path)
    migration.keeps_on_rollback = _kept_fields(migration.keeps_on_rollback, path)
    if not isinstance(migration.field_order_matters, bool):
        raise MigrationError(f"{path.name}: field_order_matters must be True or False, not "
                             f"{redact(repr(migration.field_order_matters))[:80]}", ExitCode.USAGE)
    migration.valid_checksums = _checksums(migration.valid_checksums, path)
    migration.draft_reasons = _draft_reasons(tree, ast.get_docstring(tree) or "", migration.description)
    return migration


def _draft_reasons(tree: ast.Module, docstring: str, description: str) -> tuple[str, ...]:
    """What is left to edit of the --new template: its DRAFT line and its placeholders."""
    reasons = []
    if DRAFT_MARKER.search(docstring):
        reasons.append("delete the `DRAFT:` line of its docstring")
    if description.startswith(PLACEHOLDER_DESCRIPTION):
        reasons.append("write its Description")
    if any(isinstance(node, ast.Constant) and node.value == PLACEHOLDER_FIELD for node in ast.walk(tree)):
        reasons.append(f'replace "{PLACEHOLDER_FIELD}" with the field it changes')
    return tuple(reasons)


def _migration_names(depends_on, path: Path) -> tuple[str, ...]:
    names = [depends_on] if isinstance(depends_on, str) else depends_on
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) and name for name in names):
        raise MigrationError(f"{path.name}: depends_on must be a list of migration names, e.g. depends_on = "
                             f"[\"add_metadata_to_chat_messages\"], not {redact(repr(depends_on))}", ExitCode.USAGE)
    return tuple(name.removesuffix(".py") for name in names)


def _checksums(checksums, path: Path) -> tuple[str, ...]:
    """`valid_checksums`: a list of the checksums (64 hex digits) of earlier versions of the file."""
    if isinstance(checksums, (list, tuple)) and all(isinstance(c, str) and _CHECKSUM.fullmatch(c) for c in checksums):
        return tuple(checksums)
    raise MigrationError(f"{path.name}: valid_checksums must be a list of checksums of earlier versions (64 hex "
                         "digits each, as --status --json or the changelog shows them), not "
                         f"{redact(repr(checksums))[:80]}", ExitCode.USAGE)


def _kept_fields(kept, path: Path) -> dict[str, tuple[str, ...]]:
    """`keeps_on_rollback`: {collection: [field, ...]} (a single field may be given as a string)."""
    def fields_of(value) -> tuple[str, ...] | None:
        names = [value] if isinstance(value, str) else value
        if isinstance(names, (list, tuple)) and all(isinstance(name, str) and name for name in names):
            return tuple(names)
        return None
    if isinstance(kept, dict) and all(isinstance(name, str) and name for name in kept):
        fields = {collection: fields_of(value) for collection, value in kept.items()}
        if all(names is not None for names in fields.values()):
            return {collection: names for collection, names in fields.items() if names is not None}
    raise MigrationError(f"{path.name}: keeps_on_rollback must map collections to the fields its rollback keeps, "
                         f"e.g. {{\"chat_messages\": [\"metadata\"]}}, not {redact(repr(kept))}", ExitCode.USAGE)


class _ImportedAgain(BaseException):
    """A migration file loaded again while it is being imported: it runs the CLI at import. A BaseException,
    so that the inner run of the CLI does not report it, and the outer import names the file once."""


_importing: set[Path] = set()


def import_file(path: Path):
    """Import a file of the migrations folder as `migrations.<stem>`; one that fails, exits or runs the command line
    while being imported is one line naming it (MigrationError, exit 2)."""
    if path in _importing:
        raise _ImportedAgain
    module_name = f"migrations.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise MigrationError(f"{path.name}: cannot be imported", ExitCode.USAGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _importing.add(path)
    real_exit = os._exit
    os._exit = partial(_exit_at_import, path, real_exit)  # type: ignore[assignment]
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        del sys.modules[module_name]
        raise
    except BaseException as exc:  # SystemExit included: a file being imported must not end the runner
        del sys.modules[module_name]
        raise MigrationError(f"{path.name}: {_import_failure(exc)}", ExitCode.USAGE) from exc
    finally:
        os._exit = real_exit
        _importing.discard(path)
    return module


class _ExitAtImport(Exception):
    pass


def _exit_at_import(path: Path, real_exit: Callable[[int], Any], code: int) -> None:
    """os._exit called by the file itself while it is imported would end the runner unseen, with its code (0 too);
    from anywhere else (the toolkit's second Ctrl-C) it exits as ever."""
    if sys._getframe(1).f_code.co_filename == str(path):
        raise _ExitAtImport(f"exited (os._exit({code})) while being imported: a migration file must only define "
                            "things at import, and run code in its functions")
    real_exit(code)


def _import_failure(exc: BaseException) -> str:
    entry_point = _cli_entry_point(exc)
    if entry_point or isinstance(exc, _ImportedAgain):
        called = f"{entry_point}()" if entry_point else "the command line"
        return (f"calls {called} when imported: put the lines that run the file on its own under "
                "`if __name__ == \"__main__\":`, as the template does")
    if isinstance(exc, _ExitAtImport):
        return str(exc)
    if isinstance(exc, SystemExit):
        return (f"exited (SystemExit: {redact(exc.code)}) while being imported: a migration file must only define "
                f"things at import, and run code in its functions")
    return f"failed to load: {type(exc).__name__}: {redact(exc)}"


def _cli_entry_point(exc: BaseException) -> str | None:
    """The command line's entry point the file ran while being imported (it ended in an exit or an error)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return next((frame.name for frame in frames
                 if frame.name in CLI_ENTRY_POINTS and Path(frame.filename).name == "cli.py"), None)


def _from_functions(module, path: Path, docstring: str) -> Migration:
    hooks: dict[str, Any] = {}
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
        raise MigrationError(f"{path.name}: its docstring needs a line `Date: ...` (its place in the order): "
                             f"{DATE_FORMS}", ExitCode.USAGE)
    description = _DESCRIPTION.search(docstring)
    summary = description.group(1).strip() if description else (docstring.strip().splitlines() or [""])[0]
    touches = getattr(module, "touches", None)
    if touches is not None and (not callable(touches) or inspect.iscoroutinefunction(touches)):
        raise MigrationError(f"{path.name}: touches() must be a plain `def` function", ExitCode.USAGE)
    return Migration(
        name=path.stem,
        date=date.group(1),
        description=summary,
        depends_on=getattr(module, "depends_on", ()),
        keeps_on_rollback=getattr(module, "keeps_on_rollback", {}),
        field_order_matters=getattr(module, "field_order_matters", True),
        valid_checksums=getattr(module, "valid_checksums", ()),
        touches=touches,
        path=path,
        **hooks,
    )

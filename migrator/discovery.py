"""Finding the migrations in a folder: every `*.py` not starting with `_` that declares one."""

from dataclasses import dataclass, field
from pathlib import Path

from migrator.errors import ExitCode, MigrationError
from migrator.migration import BrokenFile, Migration, load_migration
from migrator.order import order_migrations

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


@dataclass
class MigrationFiles:
    """What a folder holds: its migrations, in the order they run, and its broken files (`Engine(database,
    discover())` takes both: it shows the broken ones and runs nothing while there are any)."""
    migrations: list[Migration]
    broken: list[BrokenFile] = field(default_factory=list)
    folder: Path | None = None  # where they were found (its `_schema.py`: migrator.schema.declared)


def discover(folder: Path = MIGRATIONS_DIR) -> MigrationFiles:
    """All migrations of `folder`, in the order they run, and the files that cannot be read or ordered, each with
    its error. Only a missing folder raises (exit 2)."""
    if not folder.is_dir():
        raise MigrationError(f"migrations folder {folder} not found", ExitCode.USAGE)
    found, broken = [], []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            migration = load_migration(path)
        except MigrationError as exc:
            broken.append(BrokenFile(path.stem, path, str(exc)))
            continue
        if migration is not None:
            found.append(migration)
    ordered, unplaced = order_migrations(found, {file.name for file in broken})
    broken += [BrokenFile(m.name, m.path or folder / m.file_name, f"{m.file_name}: {why}") for m, why in unplaced]
    return MigrationFiles(ordered, sorted(broken, key=lambda file: file.path), folder)


def find(migrations: list[Migration], name: str) -> Migration:
    name = name.removesuffix(".py")
    for migration in migrations:
        if migration.name == name:
            return migration
    known = ", ".join(m.name for m in migrations) or "none"
    raise MigrationError(f"unknown migration {name!r} (known: {known})", ExitCode.USAGE)

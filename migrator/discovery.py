"""Finding the migrations in a folder: every `*.py` not starting with `_` that declares one."""

from pathlib import Path

from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, load_migration
from migrator.order import order_migrations

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migrations of `folder`, in the order they run. A broken file stops discovery, named."""
    if not folder.is_dir():
        raise MigrationError(f"migrations folder {folder} not found", ExitCode.USAGE)
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        migration = load_migration(path)
        if migration is not None:
            found.append(migration)
    return order_migrations(found)


def find(migrations: list[Migration], name: str) -> Migration:
    name = name.removesuffix(".py")
    for migration in migrations:
        if migration.name == name:
            return migration
    known = ", ".join(m.name for m in migrations) or "none"
    raise MigrationError(f"unknown migration {name!r} (known: {known})", ExitCode.USAGE)

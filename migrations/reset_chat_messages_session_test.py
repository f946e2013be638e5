"""Empty the test database: chat_messages and the toolkit's own bookkeeping collections.

Refuses a database whose name does not end in `_test` unless --force; asks first unless --yes.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # find app/ and migrator/ when run as a script

from migrator import changelog, checkpoints, control, lock  # noqa: E402
from migrator.cli import exit_with, run  # noqa: E402
from migrator.commands import Context  # noqa: E402
from migrator.connection import connect  # noqa: E402
from migrator.discovery import MigrationFiles  # noqa: E402
from migrator.errors import ExitCode, MigrationError  # noqa: E402
from migrator.flags import add_common_options  # noqa: E402
from migrator.output import confirm, log  # noqa: E402

COLLECTIONS = ("chat_messages", changelog.COLLECTION, lock.COLLECTION, checkpoints.COLLECTION, control.COLLECTION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reset_chat_messages_session_test.py", description=__doc__)
    parser.add_argument("--force", action="store_true", help="allow a database whose name does not end in _test")
    add_common_options(parser)
    args = parser.parse_args(argv)

    def only_test_databases(settings) -> None:
        if not settings.database_name.endswith("_test") and not args.force:
            raise MigrationError(f"refusing to reset {settings.database_name!r}: its name does not end in _test "
                                 "(--force to reset it anyway)", ExitCode.USAGE)

    async def reset(ctx: Context) -> int:
        # Not a migration: it empties the database past the engine (no lock, no changelog), with its own client.
        confirm(f"delete every document of {', '.join(COLLECTIONS)} in {ctx.settings.database_name}", args.yes)
        client, database = await connect(ctx.settings.mongodb_url, ctx.settings.database_name, args.server_timeout)
        try:
            existing = set(await database.list_collection_names())
            for name in COLLECTIONS:
                if name in existing:
                    count = await database[name].count_documents({})
                    await database.drop_collection(name)
                    log.info("dropped %s (%d documents)", name, count)
        finally:
            await client.close()
        log.info("database %s reset", database.name)
        return ExitCode.OK

    return run(args, lambda: MigrationFiles([]), reset, check=only_test_databases)


if __name__ == "__main__":
    exit_with(main())

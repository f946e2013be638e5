"""--restore FILE: the engine checks all of the backup, the user confirms, the engine puts it back."""

from pathlib import Path

from migrator import backup
from migrator.commands.narration import Context
from migrator.errors import ExitCode
from migrator.output import confirm, log


async def restore(ctx: Context, path: Path, yes: bool = False) -> int:
    """--restore FILE: put a backup's documents back exactly, after checking all of the file; asks first.
    Those the app changed or deleted since the migration (told by its post-images) are left alone, but with --force."""
    engine, database = ctx.engine, ctx.settings.database_name
    planned = await engine.plan_restore(path, ctx.options)
    file = planned.file
    if not file.count:
        log.info("nothing to restore: the backup holds no documents")
        return ExitCode.OK
    spared = " (but those the app changed or deleted since)" if planned.post_images and not planned.force else ""
    confirm(f"replace {file.count} documents of {database}.{file.collection}{spared} with their versions from "
            f"{backup.shown(file.path)}", yes)
    restored = await engine.restore(planned, ctx.options)
    if restored.skipped:
        log.info("restored %s of %s documents of %s and read them back: each as in the backup; %s left as the "
                 "app has them", f"{restored.restored:,}", f"{file.count:,}", file.collection, f"{restored.skipped:,}")
    else:
        log.info("restored %s documents of %s and read them back: count and checksum match the backup",
                 f"{restored.restored:,}", file.collection)
    state = "rolled back" if file.action == "apply" else "applied"
    log.info("%s is recorded as %s again, as when the backup was taken", file.migration, state)
    return ExitCode.OK

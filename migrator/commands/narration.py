"""What the commands are handed, and the lines they print about the engine's work, as it happens."""

from dataclasses import dataclass

from migrator import backup
from migrator.engine import ApplyResult, Engine, Narrator, Options, RollbackResult
from migrator.migration import Migration, Verification
from migrator.output import confirm, log
from migrator.settings import Settings
from migrator.steps import format_counts, in_parens

__all__ = ["Context", "Narration", "Options"]


@dataclass
class Context:
    engine: Engine
    settings: Settings
    options: Options


class Narration(Narrator):
    """The engine's events as log lines; asks before recording a migration that is not in place."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def allowed_changed(self, migration: Migration) -> None:
        log.warning("%s: changed since it was applied (--allow-changed)", migration.name)

    def allowed_out_of_order(self, name: str, after: str) -> None:
        log.warning("%s: runs after %s, which comes later in the order (--allow-out-of-order)", name, after)

    def dumping(self, database_name: str) -> None:
        log.info("backup: dumping database %s with mongodump ...", database_name)

    def dumped(self, database_name: str, path) -> None:
        log.info("backup: database %s dumped to %s (to put it back: mongorestore --gzip --archive=%s --drop)",
                 database_name, backup.shown(path), backup.shown(path))

    def interrupted(self, migration: Migration, entry: dict) -> None:
        """A start recorded, and no end, while we hold the lock: the runner that started it died."""
        log.warning("%s: interrupted: its runner %s:%s died while running it (started %s UTC); running it again",
                    migration.name, entry.get("host", "?"), entry.get("pid", "?"), f"{entry['at']:%Y-%m-%d %H:%M:%S}")

    def applying(self, migration: Migration) -> None:
        log.info("%s: applying (%s)", migration.name, migration.description)

    def no_touches(self, migration: Migration, backup_full: bool) -> None:
        log.warning("%s: declares no touches(), so its documents are not saved before the rollback%s", migration.name,
                    "" if backup_full else " (--backup-full dumps the whole database)")

    def saved(self, migration: Migration, saved: list[backup.Saved]) -> None:
        if not saved:
            log.info("%s: backup: its touches() declares no documents: nothing to save", migration.name)
        for one in saved:
            if one.path is None:
                log.info("%s: backup: no document of %s to save: no file written", migration.name, one.collection)
            else:
                log.info("%s: backup: %d documents of %s saved to %s", migration.name, one.count, one.collection,
                         backup.shown(one.path))

    def applied(self, result: ApplyResult, backups: list[backup.Saved]) -> None:
        report_apply(result)
        report_post_images(result.migration, backups)

    def already_rolled_back(self, migration: Migration) -> None:
        log.info("%s: already rolled back by another runner", migration.name)

    def rolled_back(self, result: RollbackResult, backups: list[backup.Saved]) -> None:
        report_rollback(result)
        report_post_images(result.migration, backups)

    def already_applied(self, migration: Migration) -> None:
        log.info("%s: already applied", migration.name)

    def forcing_unverified(self, migration: Migration, verification: Verification) -> None:
        log.warning("%s: NOT in place%s", migration.name, in_parens(verification.counts))
        confirm(f"record {migration.name} as applied on database {self.ctx.settings.database_name} although its "
                "change is not in place", self.ctx.options.yes)

    def marked(self, migration: Migration, verification: Verification) -> None:
        how = "verified" if verification.ok else "NOT verified, --force"
        log.info("%s: marked as applied without running it (%s%s)", migration.name, how,
                 f": {format_counts(verification.counts)}" if verification.counts else "")

    def backup_read(self, file: backup.BackupFile, post_images: backup.PostImages | None, force: bool) -> None:
        log.info("%s: %d documents of %s.%s, saved before the %s of %s at %s (checksum verified)",
                 backup.shown(file.path), file.count, file.database, file.collection, file.action, file.migration,
                 file.manifest["created_at"])
        warn_of_format(file, post_images, force)

    def restoring_elsewhere(self, file: backup.BackupFile, database_name: str) -> None:
        log.warning("--force: restoring a backup of database %s into %s", file.database, database_name)

    def undoing_forced(self, file: backup.BackupFile, later: list[str]) -> None:
        log.warning("--force: restoring %s although %s %s applied to %s since it was taken", backup.shown(file.path),
                    ", ".join(later), "was" if len(later) == 1 else "were", file.collection)

    def restored(self, restored: backup.Restored, file: backup.BackupFile) -> None:
        for name, said in restored.not_in_place:
            log.warning("%s: no longer in place after the restore (%s): recorded as failed; --all applies it again",
                        name, said)
        report_left_alone(restored, file)


def report_apply(result: ApplyResult) -> None:
    name, outcome = result.migration.name, result.outcome
    for note in dict.fromkeys([outcome.note, result.after.note]):
        if note:
            log.info("%s: %s", name, note)
    if outcome.modified:
        log.info("%s: modified %s documents (%s matched%s) in %.2f s", name, f"{outcome.modified:,}",
                 f"{outcome.matched:,}", f", {format_counts(outcome.counts)}" if outcome.counts else "", result.seconds)
    else:
        log.info("%s: modified 0 documents: nothing to change", name)
    counts = result.after.counts
    log.info("%s: after: %sverified", name, f"{format_counts(counts)}: " if counts else "")


def report_rollback(result: RollbackResult) -> None:
    name, outcome = result.migration.name, result.outcome
    log.info("%s: rolled back: %s documents changed in %.2f s%s", name, f"{outcome.modified:,}", result.seconds,
             in_parens(outcome.counts))
    if outcome.note:
        log.info("%s: %s", name, outcome.note)
    if result.after is not None:
        log.info("%s: rollback verified%s", name, in_parens(result.after.counts))


def report_post_images(migration: Migration, backups: list[backup.Saved]) -> None:
    for saved in backups:
        if saved.post_images:
            log.info("%s: backup: the %d documents as the migration left them recorded in %s", migration.name,
                     saved.count, backup.shown(saved.post_images))
        elif saved.path:
            log.warning("%s: backup: the documents as the migration left them could not be recorded (%s): a restore "
                        "of %s cannot tell the app's later changes apart", migration.name, saved.post_images_error,
                        backup.shown(saved.path))


def all_applied(count: int) -> str:
    return "the one migration is applied" if count == 1 else f"all {count:,} migrations are applied"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def warn_of_format(file: backup.BackupFile, post_images: backup.PostImages | None, force: bool) -> None:
    """One WARNING line for what a backup without post-images cannot do."""
    if post_images is None and not force:
        log.warning("%s: it has no post-images (the documents as the migration left them: its migration did not "
                    "complete), so changes the app made since cannot be told apart: every document is put back",
                    backup.shown(file.path))


def report_left_alone(restored: backup.Restored, file: backup.BackupFile) -> None:
    """The documents the app changed or deleted since the migration: one WARNING line each kind."""
    for listed, what, undo in ((restored.changed, "changed by the app since the migration: left as they are",
                                "overwrites them"),
                               (restored.deleted, "deleted by the app since the migration: not put back",
                                "inserts them again")):
        if listed.count:
            more = ", ..." if listed.count > len(listed.first) else ""
            log.warning("%s of %s %s %s (_id %s%s); --force %s", plural(listed.count, "document"), file.collection,
                        "was" if listed.count == 1 else "were", what, ", ".join(listed.first), more, undo)

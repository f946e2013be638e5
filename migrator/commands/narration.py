"""What the commands are handed, and the CLI's one reporter: the engine's events as log lines, as they happen."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrator import backup, events, liveness
from migrator.commands import json_view
from migrator.commands.metrics import MetricsFile
from migrator.commands.notify import Notifier
from migrator.commands.progress_view import LEVELS, ProgressView
from migrator.commands.rows import runner_stopped
from migrator.engine import Engine, Options
from migrator.migration import ApplyResult, Migration, RollbackResult, format_counts, in_parens
from migrator.output import log, plural
from migrator.settings import Settings

__all__ = ["Context", "Narration"]


@dataclass
class Context:
    engine: Engine
    settings: Settings
    options: Options  # what the engine reads; the command line's own choices are the commands' arguments


class Narration:
    """The CLI's one reporter (an events.Reporter): the workflows' events become the log lines below; every
    other event (batches, retries, a stop requested, progress) goes to migrator.commands.progress_view. The
    other views see every event too: `json` (--log-format json: one JSON line each, migrator.commands.json_view),
    `metrics` (--metrics-file) and `notifier` (--notify). `started` and `finished` bracket the command."""

    def __init__(self, view: ProgressView | None = None, json: bool = False, metrics: MetricsFile | None = None,
                 notifier: Notifier | None = None):
        self.view = view or ProgressView()
        self.json, self.metrics, self.notifier = json, metrics, notifier
        self.migration: str | None = None  # the one being applied: progress and retries are about it

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.Applying):
            self.migration = event.migration
        migration = json_view.migration_of(event) or self.migration
        if migration is None and isinstance(event, events.ProgressEvent) and event.unit == "documents":
            migration = event.label  # a rollback's walk: it says no migration before, its label is its name
        for watcher in (self.metrics, self.notifier):
            if watcher is not None:
                watcher.observe(event, migration)
        if self.json:
            json_view.render(event, self._narrate, migration)
        else:
            self._narrate(event)
        if isinstance(event, events.MigrationApplied | events.MigrationRolledBack):
            self.migration = None

    def _narrate(self, event: events.Event) -> None:
        if (line := _LINE.get(type(event))) is not None:
            log.log(LEVELS[event.level], "%s", line(event))
        elif (lines := _LINES.get(type(event))) is not None:
            lines(event)
        elif not self.view.handle(event):
            log.warning("an event the command line does not render: %s", event)

    def started(self, database: str) -> None:
        """Connected, before the command's work: the metrics file's first write, the start notification."""
        if self.json:
            json_view.run_line("run_started", f"connected to database {database}", database=database)
        if self.metrics is not None:
            self.metrics.started(database)
        if self.notifier is not None:
            self.notifier.started(database)

    def finished(self, exit_code: int, error: str = "") -> None:
        """The command's end, whatever it was (`error`: the line that said why it failed)."""
        if self.metrics is not None:
            self.metrics.finish(exit_code)
        if self.notifier is not None:
            self.notifier.finish(exit_code, error)
        if self.json:
            json_view.run_line("run_finished", error or "done", exit_code=int(exit_code), ok=exit_code == 0)


def _saved(event: events.BackupSaved) -> None:
    if not event.saved:
        log.info("%s: backup: its touches() declares no documents: nothing to save", event.migration)
    for one in event.saved:
        if one.path is None:
            log.info("%s: backup: no document of %s to save: no file written", event.migration, one.collection)
        else:
            log.info("%s: backup: %s documents of %s saved to %s", event.migration, f"{one.count:,}", one.collection,
                     backup.shown(one.path))


def _marked(event: events.MarkedApplied) -> None:
    verification = event.verification
    how = "verified" if verification.ok else "NOT verified, --force"
    log.info("%s: marked as applied without running it (%s%s)", event.migration, how,
             f": {format_counts(verification.counts)}" if verification.counts else "")


def _backup_read(event: events.BackupRead) -> None:
    file = event.file
    log.info("%s: %s documents of %s.%s, saved before the %s of %s at %s (checksum verified)",
             backup.shown(file.path), f"{file.count:,}", file.database, file.collection, file.action, file.migration,
             file.manifest["created_at"])
    warn_of_format(file, event.post_images, event.force)


def _restored(event: events.RestoreDone) -> None:
    for name, said in event.restored.not_in_place:
        log.warning("%s: no longer in place after the restore (%s): recorded as failed; --all applies it again",
                    name, said)
    for name, why in event.restored.not_verified.items():
        log.warning("%s: applied, but %s: it could not be verified after the restore", name, why)
    report_left_alone(event.restored, event.file)


def _applied(event: events.MigrationApplied) -> None:
    report_apply(event.result)
    report_post_images(event.result.migration, event.backups)


def _rolled_back(event: events.MigrationRolledBack) -> None:
    report_rollback(event.result)
    report_post_images(event.result.migration, event.backups)


def _schema_done(event: events.SchemaDone) -> str:
    counts = ((event.created, "created"), (event.dropped, "dropped"), (event.adopted, "adopted"))
    done = [f"{plural(count, 'index', 'indexes')} {what}" for count, what in counts if count]
    if event.validators:
        done.append(plural(event.validators, "validator") + " set")
    what = "schema rolled back" if event.action == "rollback" else "schema applied"
    return f"{what}: {', '.join(done) or 'nothing changed'} in {event.seconds:.1f} s (recorded as \"schema\")"


_LINE: dict[type, Callable[[Any], str]] = {  # one line, at the event's level
    events.AllowedChanged: lambda e: f"{e.migration}: changed since it was applied (--allow-changed)",
    events.AllowedOutOfOrder: lambda e: f"{e.migration}: runs after {e.after}, which comes later in the order "
                                        "(--allow-out-of-order)",
    events.DatabaseDumping: lambda e: f"backup: dumping database {e.database} with mongodump ...",
    events.DatabaseDumped: lambda e: f"backup: database {e.database} dumped to {backup.shown(e.path)} (to put it "
                                     f"back: mongorestore --gzip --archive={backup.shown(e.path)} --drop)",
    events.WaitingForLock: lambda e: f"waiting up to {e.timeout_s:g} s (--lock-timeout) for the migration lock, held "
                                     f"by {e.holder}",
    events.RunInterrupted: lambda e: f"{e.migration}: interrupted: "
                                     f"{runner_stopped(e.runner, liveness.state_of_runner(e.runner))} "
                                     f"(started {e.started_at:%Y-%m-%d %H:%M:%S} UTC); running it again",
    events.Paused: lambda e: f"{e.migration}: paused by {e.by} since {e.since:%Y-%m-%d %H:%M:%S} UTC (--pause): "
                             "holding the lock, writing nothing, until --resume",
    events.Resumed: lambda e: f"{e.migration}: resumed after {e.paused_s:g} s paused (by {e.by})",
    events.CancelRequested: lambda e: f"{e.migration}: cancelled by {e.by} (--cancel): stopping at this batch "
                                      "boundary",
    events.Applying: lambda e: f"{e.migration}: applying ({e.description})",
    events.NoTouchesDeclared: lambda e: f"{e.migration}: declares no touches(), so its documents are not saved "
                                        "before the rollback"
                                        + ("" if e.backup_full else " (--backup-full dumps the whole database)"),
    events.AlreadyRolledBack: lambda e: f"{e.migration}: already rolled back by another runner",
    events.AlreadyApplied: lambda e: f"{e.migration}: already applied",
    events.RestoringElsewhere: lambda e: f"--force: restoring a backup of database {e.backup_of} into {e.database}",
    events.IndexBuilding: lambda e: f"{e.collection}: building index {e.index} ({plural(e.documents, 'document')}) ...",
    events.IndexBuilt: lambda e: f"{e.collection}: index {e.index} built in {e.seconds:.1f} s",
    events.IndexDropped: lambda e: f"{e.collection}: index {e.index} "
                                   + ("dropped (hidden first)" if e.hidden_first and e.found
                                      else "dropped" if e.found else "not there any more: nothing to drop"),
    events.IndexUnhidden: lambda e: f"{e.collection}: index {e.index} unhidden: it serves queries again",
    events.ValidatorSet: lambda e: f"{e.collection}: validator {'removed' if e.cleared else 'set'}",
    events.SchemaStepSkipped: lambda e: f"{e.collection}: {e.what}: skipped: {e.reason}",
    events.SchemaDone: _schema_done,
    events.RestoreUndoesLater: lambda e: f"--force: restoring {backup.shown(e.file.path)} although "
                                         f"{', '.join(e.later)} {'was' if len(e.later) == 1 else 'were'} applied to "
                                         f"{e.file.collection} since it was taken",
}
_LINES: dict[type, Callable[[Any], None]] = {  # several lines, or none
    events.BackupSaved: _saved,
    events.MigrationApplied: _applied,
    events.MigrationRolledBack: _rolled_back,
    events.MarkedApplied: _marked,
    events.BackupRead: _backup_read,
    events.RestoreDone: _restored,
}


def _at_least(outcome) -> str:
    """A batch was sent again without transactions: what its lost first try changed is not counted."""
    return "at least " if outcome.modified_at_least else ""


def report_apply(result: ApplyResult) -> None:
    name, outcome = result.migration.name, result.outcome
    for note in dict.fromkeys([outcome.note, result.after.note]):
        if note:
            log.info("%s: %s", name, note)
    if outcome.modified:
        log.info("%s: modified %s%s documents (%s matched%s) in %.2f s", name, _at_least(outcome),
                 f"{outcome.modified:,}", f"{outcome.matched:,}",
                 f", {format_counts(outcome.counts)}" if outcome.counts else "", result.seconds)
    elif not outcome.counted:  # `up` returned None: it may have changed documents all the same
        log.info("%s: up ran in %.2f s; it returned no counts (return its write result or an Outcome to have them)",
                 name, result.seconds)
    else:
        log.info("%s: modified 0 documents: nothing to change", name)
    counts = result.after.counts
    log.info("%s: after: %sverified", name, f"{format_counts(counts)}: " if counts else "")


def report_rollback(result: RollbackResult) -> None:
    name, outcome = result.migration.name, result.outcome
    log.info("%s: rolled back: %s%s documents changed in %.2f s%s", name, _at_least(outcome), f"{outcome.modified:,}",
             result.seconds, in_parens(outcome.counts))
    if outcome.note:
        log.info("%s: %s", name, outcome.note)
    if result.after is not None:
        log.info("%s: rollback verified%s", name, in_parens(result.after.counts))


def report_post_images(migration: Migration, backups: tuple[backup.Saved, ...]) -> None:
    for saved in backups:
        if saved.post_images:
            log.info("%s: backup: the %s documents as the migration left them recorded in %s", migration.name,
                     f"{saved.count:,}", backup.shown(saved.post_images))
        elif saved.path:
            log.warning("%s: backup: the documents as the migration left them could not be recorded (%s): a restore "
                        "of %s cannot tell the app's later changes apart", migration.name, saved.post_images_error,
                        backup.shown(saved.path))


def all_applied(count: int) -> str:
    return "the one migration is applied" if count == 1 else f"all {count:,} migrations are applied"


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

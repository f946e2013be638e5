"""Putting a backup's documents back exactly, a batch at a time, each batch read back; which migrations a
restore would undo."""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from pymongo import InsertOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from migrator import plan
from migrator.backup.current import batch_size, current_documents
from migrator.backup.file import (
    SHOWN,
    BackupFile,
    Entry,
    Retrying,
    once,
    shown,
    shown_id,
)
from migrator.backup.post_images import PostImages
from migrator.backup.save import touched
from migrator.clock import as_utc
from migrator.errors import MigrationError
from migrator.events import Reporter, silent
from migrator.migration import Migration
from migrator.profile import ServerProfile
from migrator.progress import Progress
from migrator.rawbson import RAW
from migrator.redact import redact
from migrator.retry import is_transient
from migrator.stop import StopRequest


def applied_since(file: BackupFile, migrations: list[Migration], entries: list[dict]) -> list[str]:
    """The migrations still applied that were applied after the backup was taken and touch (or may touch) its
    collection: a restore would undo their change there. Entries: the changelog's, oldest first."""
    latest = {entry["name"]: entry for entry in entries}
    later = [entry["name"] for entry in entries
             if entry["state"] == plan.APPLIED and as_utc(entry["at"]) > file.created_at]
    known = {migration.name: migration for migration in migrations}
    found = []
    for name in dict.fromkeys(later):
        if name in (file.migration, plan.SCHEMA) or plan.state_of(latest[name]) != plan.APPLIED:
            continue  # the backup's own migration gets the state the backup was taken in; indexes hold no documents
        if name not in known:
            found.append(f"{name} (its file is gone or broken: may touch it)")
            continue
        try:
            declared = touched(known[name], "apply")
        except MigrationError:
            found.append(f"{name} (its touches() fails: may touch it)")
            continue
        if declared is None:
            found.append(f"{name} (declares no touches(): may touch it)")
        elif file.collection in declared:
            found.append(name)
    return found


# ----- restoring -----

ALREADY, REPLACE, INSERT, CHANGED, DELETED = "already", "replace", "insert", "changed", "deleted"
WRITES = (REPLACE, INSERT)
UNKNOWN = object()  # no post-image to compare with: every document is put back


def verdict(saved: bytes, now: bytes | None, after) -> str:
    """What a restore does with one document: `saved` in the backup, `now` on the server (None: absent),
    `after` its post-image (a digest, None: the migration deleted it, UNKNOWN: none recorded)."""
    if now == saved:
        return ALREADY
    if after is not UNKNOWN and (hashlib.sha256(now).hexdigest() if now is not None else None) != after:
        return CHANGED if now is not None else DELETED
    return REPLACE if now is not None else INSERT


@dataclass
class Listed:
    """How many documents, and the first few _ids (as shown)."""
    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, _id) -> None:
        self.count += 1
        if len(self.first) < SHOWN:
            self.first.append(shown_id(_id))


@dataclass
class Restored:
    """How far a restore got: documents written (replaced or inserted), already as in the backup, left alone
    because the app changed or deleted them since, and of those written, read back and as in the backup."""
    written: int = 0
    inserted: int = 0
    already: int = 0
    found: int = 0
    differing: list = field(default_factory=list)  # _id of each document written that is not as in the backup
    changed: Listed = field(default_factory=Listed)
    deleted: Listed = field(default_factory=Listed)
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    not_in_place: list[tuple[str, str]] = field(default_factory=list)  # after it: (migration, what verify said)
    not_verified: dict[str, str] = field(default_factory=dict)  # applied, its file gone or broken: {migration: why}

    @property
    def restored(self) -> int:
        """Documents now as in the backup."""
        return self.written + self.already

    @property
    def skipped(self) -> int:
        return self.changed.count + self.deleted.count

    def record(self, file: BackupFile) -> dict:
        """What the changelog keeps of it, also of a restore that stopped half-way."""
        return {"modified": self.written, "restored": self.restored, "left": file.count - self.restored - self.skipped,
                "skipped": {"changed": vars(self.changed), "deleted": vars(self.deleted)}}

    def problem(self, file: BackupFile) -> str:
        """"" if every document written read back as in the backup (and, when none was left alone, count and
        checksum of the whole match), else what differs."""
        whole = self.skipped or (self.restored == file.count and self.digest.hexdigest() == file.manifest["sha256"])
        if self.found == self.written and not self.differing and whole:
            return ""
        first = f" (first: _id {shown_id(self.differing[0])})" if self.differing else ""
        return (f"{self.found} of {self.written} documents written found, {len(self.differing)} not as in the "
                f"backup{first}{'' if self.differing else ', checksum differs'}")

    def add(self, file: BackupFile, batch: list[Entry], verdicts: list[str], back: list[bytes | None]) -> None:
        written = iter(back)
        for entry, what in zip(batch, verdicts, strict=True):
            if what == ALREADY:
                self.already += 1
                self.digest.update(entry.raw)
            elif what in WRITES:
                self.written += 1
                self.inserted += what == INSERT
                self._compare(file, entry, next(written))
            else:
                (self.changed if what == CHANGED else self.deleted).add(entry.id)

    def _compare(self, file: BackupFile, entry: Entry, now: bytes | None) -> None:
        if now is None:
            self.differing.append(entry.id)
            return
        self.found += 1
        self.digest.update(now)
        if now != entry.raw:
            self.differing.append(entry.id)


async def restore(database: AsyncDatabase, file: BackupFile, profile: ServerProfile, done: Restored,
                  before_batch: Callable[[], None] = lambda: None, post_images: PostImages | None = None,
                  force: bool = False, retry: Retrying = once, report: Reporter = silent) -> Restored:
    """Put the documents back as they were (see the module's docstring for which), reading each batch back
    right after writing it; `done` counts as it goes. Between batches `before_batch` may raise, and Ctrl-C or
    SIGTERM stops the restore (MigrationError with exit 130 or 143)."""
    collection, stop = database.get_collection(file.collection, codec_options=RAW), StopRequest(report)
    progress = Progress(f"restore of {file.collection}", report)
    progress.set_total(file.count)
    afters = post_images.digests() if post_images is not None and not force else None
    try:
        with stop.handled():
            for number, batch in enumerate(file.batches(batch_size(profile)), 1):
                before_batch()
                _stop_if_asked(stop, file, done)
                after = [next(afters) for _ in batch] if afters else [UNKNOWN] * len(batch)
                verdicts, back = await retry(f"restore of {file.collection}, batch {number}",
                                             partial(_restore_batch, collection, batch, after, profile, file, done))
                done.add(file, batch, verdicts, back)
                progress.advance(len(batch), sum(what in WRITES for what in verdicts))
    finally:
        progress.end()
        if afters:
            afters.close()
    return done


async def _restore_batch(collection: AsyncCollection, batch: list[Entry], after: list, profile: ServerProfile,
                         file: BackupFile, done: Restored) -> tuple[list[str], list[bytes | None]]:
    """Read the batch's documents as they are, write those to write, read those back: (verdicts, read back).
    Safe to run again: a document already written reads as in the backup."""
    current = await current_documents(collection, [entry.id for entry in batch], profile)
    verdicts = [verdict(entry.raw, now, post) for entry, now, post in zip(batch, current, after, strict=True)]
    writing = [entry for entry, what in zip(batch, verdicts, strict=True) if what in WRITES]
    if writing:
        await _write(collection, [ReplaceOne({"_id": entry.id}, entry.document) if what == REPLACE
                                  else InsertOne(entry.document)
                                  for entry, what in zip(batch, verdicts, strict=True) if what in WRITES],
                     [entry.id for entry in writing], file, done)
    return verdicts, await current_documents(collection, [entry.id for entry in writing], profile)


def _stop_if_asked(stop: StopRequest, file: BackupFile, done: Restored) -> None:
    if stop.signal is not None:
        raise MigrationError(f"restore of {shown(file.path)} stopped by {stop.signal_name} after "
                             f"{done.restored:,} of {file.count:,} documents (restored and read back; the others "
                             "not): run the same restore again to finish", stop.exit_code)


async def _write(collection: AsyncCollection, writes: list, ids: list, file: BackupFile, done: Restored) -> None:
    try:
        await collection.bulk_write(writes, ordered=True)
    except Exception as exc:  # a server's error answer can even break the driver's result parsing (KeyError)
        if is_transient(exc):
            raise  # the batch is tried again whole
        reached = done.restored + done.skipped
        raise MigrationError(f"restore stopped in documents {reached + 1}-{reached + len(writes)} of "
                             f"{file.count} ({write_error(exc, ids)}): the {done.restored} before "
                             "them are restored, maybe some of those too; fix the cause and run the same "
                             "restore again") from exc


def write_error(exc: Exception, ids: list) -> str:
    """What the server said of a failed bulk write, naming the document by its `_id`: never the error's whole
    details, whose `op` holds the document's raw BSON (bytes, and data)."""
    if not isinstance(exc, BulkWriteError):
        return f"{type(exc).__name__}: {redact(exc).split(', full error:')[0]}"
    details = exc.details or {}
    errors = details.get("writeErrors") or details.get("writeConcernErrors") or [{}]
    first = errors[0]
    index = first.get("index")
    which = f" at _id {shown_id(ids[index])}" if isinstance(index, int) and index < len(ids) else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"BulkWriteError{which}: code {first.get('code')}: {redact(first.get('errmsg', ''))}{more}"


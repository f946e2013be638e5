"""Backups of the documents a migration will change, and putting them back exactly.

A backup file, `<db>-<collection>-<migration>-<action>-<UTC time>.bson.gz` (format 3), is gzip'd:
    line 1     the manifest, JSON: format, migration, migration_checksum, action (apply/rollback), purge,
               database, collection, filter, count, sha256, created_at (the server's clock),
               toolkit_version, manifest_sha256
    then       every document the migration will change, whole, as it was: its raw BSON as the server
               sent it, one after the other (each starts with its length). The collection is read with
               codec options of its own (RawBSONDocument, UUIDs unspecified, DATETIME_AUTO), whatever the
               URL says, so every BSON type comes back byte for byte: UUIDs of subtype 3 and 4,
               Decimal128, dates outside years 1-9999, int64, documents up to 16 MB.
`sha256` is over the documents' bytes, in order (`zcat F | tail -c +N | sha256sum`, N past the first line);
`manifest_sha256` over the manifest without that field, as `json.dumps(sort_keys=True, separators=(",", ":"))`
writes it, so an edited manifest (its action, database, count, sha256...) is refused too. Files of formats
1 and 2 (`.jsonl.gz`: canonical Extended JSON lines) still restore, read as they were written; format 1
lacks `manifest_sha256` and restores with a warning that its manifest is not covered.
The documents stream from a cursor into a gzip member of their own; the manifest, known at the end,
is then written in front of it (a gzip file may hold several members): memory stays flat. Nothing to
save (no document matches, or no collection): no file.

Post-images. Once the `up` (or rollback) a backup was taken for has completed and verified, the digest
of each saved document as the migration left it is written next to the backup, `<same name>.after.gz`:
line 1 a manifest (format, backup (its file name), backup_sha256 and backup_manifest_sha256 (the
backup's `sha256` and `manifest_sha256`: it belongs to that backup only), count, sha256 of the lines
that follow, created_at, manifest_sha256 as above), then one line per document of the backup, in its
order: the hex sha256 of the document's raw BSON as it is after the migration, or `absent` if the
migration deleted it. A migration that failed half-way leaves no post-images (nor do formats 1 and 2).

A migration says what it will change with `touches(action, purge=False) -> {collection: filter}`
(`{}`: nothing). A restore checks the whole file (and its post-images) first; then, a batch at a time,
it reads the documents of the batch as they are now (by _id), decides for each, writes, and reads back
what it wrote:
    as in the backup already                        nothing to write
    as the migration left it (its post-image)       ReplaceOne by _id, without upsert
    absent, and the migration deleted it            InsertOne
    changed by the app since (another digest)       left as it is, listed
    deleted by the app since                        not put back, listed
`force`, or a backup without post-images, replaces every document still there and inserts the others.
No upsert: a sharded collection whose shard key is not `_id` refuses an upsert without the full shard
key, and a replace by `_id` alone is always allowed. A change the app makes between the read and the
write of the same batch is not seen. A batch is retried whole on a transient error (it reads the
documents again). Batches are of 50 on FerretDB (bigger bulks, or many statements at once, can
deadlock it) and 1,000 on MongoDB, and of 32 MB at most. `mongodump`, when installed, takes a
whole-database archive instead (--backup-full).
"""

import asyncio
import contextlib
import gzip
import hashlib
import json
import math
import os
import shutil
import signal
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Awaitable, Callable, Iterator

import bson
from bson import DBRef, Decimal128, MaxKey, MinKey, json_util
from bson.binary import UuidRepresentation
from bson.code import Code
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from pymongo import InsertOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator import __version__, plan
from migrator.batches import FERRETDB_MAX_BULK, StopRequest
from migrator.clock import server_now
from migrator.connection import server_info
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration
from migrator.progress import DEFAULT_INTERVAL_S, Progress
from migrator.redact import redact
from migrator.retry import is_transient

FORMAT = "flowise-proxy-migrations backup 3"  # raw BSON
FORMAT_2 = "flowise-proxy-migrations backup 2"  # canonical Extended JSON lines
FORMAT_1 = "flowise-proxy-migrations backup 1"  # JSON lines; its manifest is not covered by a checksum
POST_IMAGES_FORMAT = "flowise-proxy-migrations post-images 1"
SUFFIX, POST_IMAGES_SUFFIX = ".bson.gz", ".after.gz"
ABSENT = "absent"  # a post-image line: the migration deleted the document
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "backups"
BATCH = 1000  # documents per restore batch on MongoDB (FerretDB: FERRETDB_MAX_BULK)
BATCH_BYTES = 32 * 1024 * 1024  # and at most this much BSON in one batch
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024 + 16 * 1024  # the server's 16 MiB, and its internal slack
MAX_MANIFEST_BYTES = 1024 * 1024  # a first line longer than this is no manifest
READ_BACK_AT_ONCE = 4  # find_one by _id in flight at once, on FerretDB
SHOWN = 5  # _ids listed of the documents a restore left alone
# How every document is read and written here, whatever the client's options: bytes as the server has them.
RAW = CodecOptions(document_class=RawBSONDocument, uuid_representation=UuidRepresentation.UNSPECIFIED,
                   datetime_conversion=DatetimeConversion.DATETIME_AUTO)
DECODED = CodecOptions(uuid_representation=UuidRepresentation.UNSPECIFIED,
                       datetime_conversion=DatetimeConversion.DATETIME_AUTO, tz_aware=True)
CANONICAL = json_util.CANONICAL_JSON_OPTIONS.with_options(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
MANIFEST_FIELDS = {"migration": str, "action": str, "database": str, "collection": str, "count": int,
                   "sha256": str, "created_at": str}
POST_IMAGES_FIELDS = {"backup_sha256": str, "backup_manifest_sha256": str, "count": int, "sha256": str}
ACTIONS = ("apply", "rollback")
TOOLS = ("MongoDB Database Tools: apt package mongodb-database-tools, "
         "or https://www.mongodb.com/try/download/database-tools")

Retrying = Callable[[str, Callable[[], Awaitable]], Awaitable]


async def once(what: str, operation: Callable[[], Awaitable]):
    """No retries (migrator.retry.Retry retries transient errors)."""
    return await operation()


def shown(path: Path) -> str:
    """A path as the user reads it: relative to the current folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def shown_id(value) -> str:
    """An _id as a log line shows it: short, masked like every line (migrator.redact)."""
    text = json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS) if not isinstance(value, str) \
        else json.dumps(value)
    return redact(text if len(text) <= 40 else text[:39] + "…")


def line_of(document: dict) -> bytes:
    """A document as formats 1 and 2 wrote it."""
    return json_util.dumps(document, json_options=CANONICAL).encode() + b"\n"


def _stamp(when: datetime | None = None) -> str:
    return f"{when or datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"


def post_images_path(path: Path) -> Path | None:
    """Where the post-images of a backup go; None for a file of format 1 or 2 (never has them)."""
    path = Path(path)
    return path.with_name(path.name[:-len(SUFFIX)] + POST_IMAGES_SUFFIX) if path.name.endswith(SUFFIX) else None


# ----- what a migration will touch -----

def touched(migration: Migration, action: str, purge: bool = False) -> dict[str, dict] | None:
    """{collection: filter} that `up` ("apply") or `rollback` will change; None when it does not say."""
    if migration.touches is None:
        return None
    try:
        options = {"purge": purge} if migration.accepts("touches", "purge") else {}
        declared = migration.touches(action, **options)
    except Exception as exc:
        raise MigrationError(f"{migration.name}: touches() failed: {type(exc).__name__}: {exc}", ExitCode.USAGE) from exc
    if not isinstance(declared, dict) or not all(isinstance(v, dict) for v in declared.values()):
        raise MigrationError(f"{migration.name}: touches() must return {{collection: filter}}", ExitCode.USAGE)
    return declared


def require_declared(migrations: list[Migration], action: str, purge: bool = False) -> None:
    """--backup: every migration must say what it touches, checked before anything changes."""
    silent = [m.name for m in migrations if touched(m, action, purge) is None]
    if silent:
        raise MigrationError(f"--backup: {', '.join(silent)} does not declare touches(action, purge) (the documents "
                             f"it changes), so there is nothing to save; nothing was changed (add "
                             f"`def touches(action, purge=False): return {{collection: filter}}` to it, or "
                             f"`return {{}}` if it changes no documents; --backup-full dumps the whole database "
                             f"with mongodump instead)", ExitCode.USAGE)


def require_folder(folder: Path) -> None:
    """Refuse, before anything changes, a backup folder that cannot be made or written to."""
    folder = Path(folder)
    existing = next(path for path in (folder.absolute(), *folder.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise MigrationError(f"backup folder {folder}: {existing} is a file, not a folder; nothing was changed "
                             "(choose another --backup-dir or $MIGRATIONS_BACKUP_DIR)", ExitCode.USAGE)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MigrationError(f"backup folder {folder}: {existing} is not writable; nothing was changed "
                             "(choose another --backup-dir or $MIGRATIONS_BACKUP_DIR)", ExitCode.USAGE)


# ----- saving -----

@dataclass
class Saved:
    path: Path | None  # None: nothing to save, no file written
    collection: str
    count: int
    sha256: str
    post_images: Path | None = None  # written once the migration completed (record_post_images)
    post_images_error: str = ""  # why they could not be written

    def record(self) -> dict:
        """What the changelog entry keeps of it."""
        return {"path": str(self.path) if self.path else None, "collection": self.collection, "count": self.count,
                "sha256": self.sha256, "post_images": str(self.post_images) if self.post_images else None}


async def save(database: AsyncDatabase, migration: Migration, action: str, folder: Path,
               purge: bool = False) -> list[Saved]:
    """Save whole every document `migration` will change; MigrationError (nothing changed) if that fails."""
    collections = touched(migration, action, purge)
    if collections is None:
        require_declared([migration], action, purge)
    return [await _save_one(database, migration, action, purge, name, query, Path(folder))
            for name, query in collections.items()]


def seal(manifest: dict) -> dict:
    """The manifest as written: plain JSON, with `manifest_sha256` over the rest of it."""
    plain = json.loads(json_util.dumps({k: v for k, v in manifest.items() if k != "manifest_sha256"}))
    return {**plain, "manifest_sha256": manifest_digest(plain)}


def manifest_digest(manifest: dict) -> str:
    rest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _encoded_filter(database: AsyncDatabase, migration: Migration, collection: str, query: dict) -> RawBSONDocument:
    """The filter as the app's options encode it (a native UUID in it needs the URL's uuidRepresentation)."""
    try:
        return RawBSONDocument(bson.encode(query, codec_options=database.codec_options), RAW)
    except (BSONError, ValueError, TypeError) as exc:
        raise MigrationError(f"{migration.name}: touches() gives {collection} a filter that cannot be sent to the "
                             f"server ({type(exc).__name__}: {exc}); nothing was changed", ExitCode.USAGE) from None


async def _save_one(database: AsyncDatabase, migration: Migration, action: str, purge: bool,
                    collection: str, query: dict, folder: Path) -> Saved:
    digest, count = hashlib.sha256(), 0
    encoded = _encoded_filter(database, migration, collection, query)
    try:
        created_at = await server_now(database)  # the changelog's clock: a restore compares the two
        path = folder / f"{database.name}-{collection}-{migration.name}-{action}-{_stamp(created_at)}{SUFFIX}"
        body = path.with_name(path.name + ".part")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with gzip.open(body, "wb", compresslevel=6) as out:
                async for document in database.get_collection(collection, codec_options=RAW).find(encoded):
                    out.write(document.raw)
                    digest.update(document.raw)
                    count += 1
            if not count:
                return Saved(None, collection, 0, digest.hexdigest())
            manifest = seal({"format": FORMAT, "migration": migration.name, "migration_checksum": migration.checksum,
                             "action": action, "purge": purge, "database": database.name, "collection": collection,
                             "filter": bson.decode(encoded.raw, DECODED), "count": count,
                             "sha256": digest.hexdigest(), "created_at": created_at.isoformat(),
                             "toolkit_version": __version__})
            _assemble(path, manifest, body)
        finally:
            body.unlink(missing_ok=True)
    except OSError as exc:
        raise MigrationError(f"backup of {collection} failed, nothing was changed: {exc}") from None
    except PyMongoError as exc:
        raise MigrationError(f"backup of {collection} failed, nothing was changed: {redact(exc)}") from None
    return Saved(path, collection, count, digest.hexdigest())


def _assemble(path: Path, manifest: dict, body: Path) -> None:
    """`path`: the manifest's gzip member, then the gzip'd `body`; whole or not at all."""
    whole = path.with_name(path.name + ".tmp")
    try:
        with open(whole, "wb") as out, open(body, "rb") as documents:
            out.write(gzip.compress(json.dumps(manifest).encode() + b"\n"))
            shutil.copyfileobj(documents, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(whole, path)
    finally:
        with contextlib.suppress(OSError):
            whole.unlink(missing_ok=True)


# ----- post-images: the saved documents as the migration left them -----

async def record_post_images(database: AsyncDatabase, saved: Saved, is_ferretdb: bool | None,
                             retry: Retrying = once) -> None:
    """Once the migration completed: write the digest of each saved document as it is now next to the backup.
    Sets `saved.post_images`, or `saved.post_images_error` (the backup then restores without them)."""
    if saved.path is None:
        return
    try:
        if is_ferretdb is None:
            is_ferretdb = (await server_info(database)).is_ferretdb
        saved.post_images = await _write_post_images(database, Path(saved.path), is_ferretdb, retry)
    except (OSError, PyMongoError, MigrationError, BSONError, ValueError) as exc:
        saved.post_images_error = f"{type(exc).__name__}: {redact(exc)}"


async def _write_post_images(database: AsyncDatabase, path: Path, is_ferretdb: bool, retry: Retrying) -> Path:
    with gzip.open(path, "rb") as stream:
        file = BackupFile(path, json.loads(stream.readline()))
    collection = database.get_collection(file.collection, codec_options=RAW)
    target, digest, count = post_images_path(path), hashlib.sha256(), 0
    body = target.with_name(target.name + ".part")
    try:
        with gzip.open(body, "wb", compresslevel=6) as out:
            for batch in file.batches(batch_size(is_ferretdb)):
                ids = [entry.id for entry in batch]
                for now in await retry(f"post-images of {file.collection}", lambda: _current(collection, ids,
                                                                                            is_ferretdb)):
                    line = f"{hashlib.sha256(now).hexdigest() if now is not None else ABSENT}\n".encode()
                    out.write(line)
                    digest.update(line)
                    count += 1
        manifest = seal({"format": POST_IMAGES_FORMAT, "backup": path.name, "backup_sha256": file.manifest["sha256"],
                         "backup_manifest_sha256": file.manifest["manifest_sha256"], "count": count,
                         "sha256": digest.hexdigest(), "created_at": (await server_now(database)).isoformat()})
        _assemble(target, manifest, body)
    finally:
        body.unlink(missing_ok=True)
    return target


@dataclass
class PostImages:
    path: Path
    manifest: dict

    def digests(self) -> Iterator[str | None]:
        """Each document's digest as the migration left it (None: it deleted it), in the backup's order."""
        with gzip.open(self.path, "rb") as lines:
            next(lines)
            for line in lines:
                text = line.decode().strip()
                yield None if text == ABSENT else text


def read_post_images(file: "BackupFile") -> PostImages | None:
    """The post-images of a backup, every line checked; None when it has none. MigrationError (exit 2) when
    they are there but cannot be trusted."""
    path = post_images_path(file.path)
    if file.manifest["format"] != FORMAT or path is None or not path.is_file():
        return None

    def refuse(why: str) -> MigrationError:
        return MigrationError(f"refusing to restore {shown(file.path)}: its post-images {shown(path)} {why}; nothing "
                              "was changed (move that file away to restore without them: changes the app made since "
                              "then cannot be told apart)", ExitCode.USAGE)

    digest, count = hashlib.sha256(), 0
    try:
        with gzip.open(path, "rb") as lines:
            manifest = json.loads(next(lines, b"{}"))
            if problem := _post_images_problem(manifest, file):
                raise refuse(problem)
            for line in lines:
                text = line.decode("ascii").strip()
                if text != ABSENT and (len(text) != 64 or text.strip("0123456789abcdef")):
                    raise refuse(f"has an invalid line {count + 2}")
                digest.update(line)
                count += 1
    except (OSError, EOFError, zlib.error) as exc:
        raise refuse(f"is not a readable gzip file, truncated or corrupt ({exc})") from None
    except (ValueError, UnicodeDecodeError):
        raise refuse(f"has an invalid line {count + 2}") from None
    if count != file.count or digest.hexdigest() != manifest["sha256"]:
        raise refuse(f"holds {count} lines for {file.count} documents, or was changed after it was written")
    return PostImages(path, manifest)


def _post_images_problem(manifest, file: "BackupFile") -> str:
    if not isinstance(manifest, dict) or manifest.get("format") != POST_IMAGES_FORMAT:
        return "does not start with the manifest of post-images of this toolkit"
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        return "has a manifest that was changed after it was written"
    if any(not isinstance(manifest.get(key), kind) for key, kind in POST_IMAGES_FIELDS.items()):
        return f"lacks one of {', '.join(POST_IMAGES_FIELDS)}"
    if (manifest["backup_sha256"], manifest["backup_manifest_sha256"]) != (file.manifest["sha256"],
                                                                           file.manifest["manifest_sha256"]):
        return "belongs to another backup"
    return ""


# ----- reading and checking a backup file -----

FERRETDB_REFUSES = (Decimal128, MinKey, MaxKey, Code, DBRef)  # it drops the connection, or refuses the key


def ferretdb_refuses(value, where: str = "") -> str:
    """Why FerretDB would refuse this value, "" if it takes it (a refused write stops a restore half done)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if "." in key or key.startswith("$"):
                return f"the key {where}{key!r}"
            if why := ferretdb_refuses(item, f"{where}{key}."):
                return why
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, list):
                return f"a nested array at {where}{index}"
            if why := ferretdb_refuses(item, f"{where}{index}."):
                return why
    elif isinstance(value, float) and not math.isfinite(value):
        return f"{value} at {where.rstrip('.')}"
    elif isinstance(value, FERRETDB_REFUSES):
        return f"a {type(value).__name__} at {where.rstrip('.')}"
    return ""


@dataclass
class Entry:
    """One document of a backup file."""
    raw: bytes  # its BSON, as it is written back
    counted: bytes  # what the file's checksum covers of it: the BSON (format 3), the JSON line (1, 2)

    @cached_property
    def document(self) -> RawBSONDocument:
        return RawBSONDocument(self.raw, RAW)

    @property
    def id(self):
        return self.document["_id"]


class BadBackup(ValueError):
    pass


def _raw_documents(stream) -> Iterator[bytes]:
    """The BSON documents that follow the manifest, one at a time."""
    while head := stream.read(4):
        size = int.from_bytes(head, "little")
        if len(head) < 4 or not 5 <= size <= MAX_DOCUMENT_BYTES:
            raise BadBackup("it does not hold a BSON document's length")
        document = head + stream.read(size - 4)
        if len(document) < size or document[-1] != 0:
            raise BadBackup("it is cut short or is not BSON")
        yield document


@dataclass
class BackupFile:
    path: Path
    manifest: dict

    @property
    def database(self) -> str:
        return self.manifest["database"]

    @property
    def collection(self) -> str:
        return self.manifest["collection"]

    @property
    def migration(self) -> str:
        return self.manifest["migration"]

    @property
    def action(self) -> str:
        return self.manifest["action"]

    @property
    def count(self) -> int:
        return self.manifest["count"]

    @property
    def created_at(self) -> datetime:
        return _aware(datetime.fromisoformat(self.manifest["created_at"]))

    @property
    def manifest_covered(self) -> bool:
        """False for a file of format 1: only its documents are covered by a checksum."""
        return self.manifest["format"] != FORMAT_1

    @property
    def is_raw(self) -> bool:
        return self.manifest["format"] == FORMAT

    def counted(self, raw: bytes) -> bytes:
        """A document's BSON as this file's checksum covers it."""
        return raw if self.is_raw else line_of(bson.decode(raw, DECODED))

    def entries(self) -> Iterator[Entry]:
        """Every document, in file order; call only on a file `read` accepted."""
        with gzip.open(self.path, "rb") as stream:
            stream.readline()
            if self.is_raw:
                yield from (Entry(raw, raw) for raw in _raw_documents(stream))
                return
            for line in stream:
                yield Entry(bson.encode(json_util.loads(line, json_options=CANONICAL), codec_options=DECODED), line)

    def batches(self, size: int = BATCH) -> Iterator[list[Entry]]:
        """The entries `size` (and BATCH_BYTES) at most at a time."""
        batch, weight = [], 0
        for entry in self.entries():
            batch.append(entry)
            weight += len(entry.raw)
            if len(batch) == size or weight >= BATCH_BYTES:
                yield batch
                batch, weight = [], 0
        if batch:
            yield batch


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def manifest_problem(manifest) -> str:
    """What is wrong with a backup's manifest, "" if nothing."""
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, FORMAT_2, FORMAT_1):
        return "its first line is not the manifest of a backup of this toolkit"
    if manifest["format"] != FORMAT_1 and manifest.get("manifest_sha256") != manifest_digest(manifest):
        return "manifest checksum mismatch: its manifest was changed after the backup was written"
    missing = [key for key in MANIFEST_FIELDS if key not in manifest]
    if missing:
        return f"its manifest lacks {', '.join(missing)}"
    wrong = [key for key, kind in MANIFEST_FIELDS.items()
             if not isinstance(manifest[key], kind) or isinstance(manifest[key], bool)]
    if wrong:
        return f"its manifest's {', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not of the right type"
    if manifest["action"] not in ACTIONS:
        return f"its manifest's action is {manifest['action']!r}, not one of {', '.join(ACTIONS)}"
    try:
        datetime.fromisoformat(manifest["created_at"])
    except ValueError:
        return f"its manifest's created_at {manifest['created_at']!r} is not an ISO time"
    return ""


def read(path: Path, refuses: Callable[[dict], str] | None = None) -> BackupFile:
    """A backup file whose every document was read and checked; MigrationError (exit 2) otherwise."""
    path = Path(path)

    def refuse(why: str) -> MigrationError:
        return MigrationError(f"refusing to restore {shown(path)}: {why}; nothing was changed", ExitCode.USAGE)

    if not path.is_file():
        raise refuse("no such file")
    digest, count, what = hashlib.sha256(), 0, "its first line"
    try:
        with gzip.open(path, "rb") as stream:
            first = stream.readline(MAX_MANIFEST_BYTES)
            manifest = json.loads(first) if first.endswith(b"\n") else None
            if problem := manifest_problem(manifest):
                raise refuse(problem)
            file = BackupFile(path, manifest)
            what = "document 1"
            for entry in file.entries():
                document = bson.decode(entry.raw, DECODED)
                if "_id" not in document:
                    raise refuse(f"{what} has no _id")
                if refuses and (why := refuses(document)):
                    raise refuse(f"the server would refuse document {shown_id(document['_id'])} ({why})")
                digest.update(entry.counted)
                count += 1
                what = f"document {count + 1}"
    except (OSError, EOFError, zlib.error) as exc:
        raise refuse(f"not a readable gzip file, truncated or corrupt ({exc})") from None
    except (ValueError, TypeError, KeyError, IndexError, BSONError) as exc:
        raise refuse(f"{what} is not valid ({type(exc).__name__}: {exc})") from None
    if count != manifest["count"]:
        raise refuse(f"it holds {count} documents, its manifest says {manifest['count']}")
    if digest.hexdigest() != manifest["sha256"]:
        raise refuse("checksum mismatch: the documents were changed after the backup was written")
    return file


def applied_since(file: BackupFile, migrations: list[Migration], entries: list[dict]) -> list[str]:
    """The migrations still applied that were applied after the backup was taken and touch (or may touch) its
    collection: a restore would undo their change there. Entries: the changelog's, oldest first."""
    latest = {entry["name"]: entry for entry in entries}
    later = [entry["name"] for entry in entries
             if entry["state"] == plan.APPLIED and _aware(entry["at"]) > file.created_at]
    known = {migration.name: migration for migration in migrations}
    found = []
    for name in dict.fromkeys(later):
        if name == file.migration or plan.state_of(latest[name]) != plan.APPLIED:
            continue  # the backup's own migration gets the state the backup was taken in
        if name not in known:
            found.append(f"{name} (its file is gone: may touch it)")
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
        for entry, what in zip(batch, verdicts):
            if what == ALREADY:
                self.already += 1
                self.digest.update(entry.counted)
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
        self.digest.update(file.counted(now))
        if now != entry.raw:
            self.differing.append(entry.id)


def batch_size(is_ferretdb: bool) -> int:
    return FERRETDB_MAX_BULK if is_ferretdb else BATCH


async def restore(database: AsyncDatabase, file: BackupFile, is_ferretdb: bool, done: Restored,
                  before_batch: Callable[[], None] = lambda: None,
                  progress_interval_s: float = DEFAULT_INTERVAL_S, post_images: PostImages | None = None,
                  force: bool = False, retry: Retrying = once) -> Restored:
    """Put the documents back as they were (see the module's docstring for which), reading each batch back
    right after writing it; `done` counts as it goes. Between batches `before_batch` may raise, and Ctrl-C or
    SIGTERM stops the restore (MigrationError with exit 130 or 143)."""
    collection, stop = database.get_collection(file.collection, codec_options=RAW), StopRequest()
    progress = Progress(f"restore of {file.collection}", interval_s=progress_interval_s)
    progress.set_total(file.count)
    stop.before_exit = progress.close
    afters = post_images.digests() if post_images is not None and not force else None
    try:
        with stop.handled():
            for number, batch in enumerate(file.batches(batch_size(is_ferretdb)), 1):
                before_batch()
                _stop_if_asked(stop, file, done)
                after = [next(afters) for _ in batch] if afters else [UNKNOWN] * len(batch)
                verdicts, back = await retry(f"restore of {file.collection}, batch {number}",
                                             lambda: _restore_batch(collection, batch, after, is_ferretdb, file, done))
                done.add(file, batch, verdicts, back)
                progress.advance(len(batch), sum(what in WRITES for what in verdicts))
    finally:
        progress.close()
        if afters:
            afters.close()
    return done


async def _restore_batch(collection: AsyncCollection, batch: list[Entry], after: list, is_ferretdb: bool,
                         file: BackupFile, done: Restored) -> tuple[list[str], list[bytes | None]]:
    """Read the batch's documents as they are, write those to write, read those back: (verdicts, read back).
    Safe to run again: a document already written reads as in the backup."""
    current = await _current(collection, [entry.id for entry in batch], is_ferretdb)
    verdicts = [verdict(entry.raw, now, post) for entry, now, post in zip(batch, current, after)]
    writing = [entry for entry, what in zip(batch, verdicts) if what in WRITES]
    if writing:
        await _write(collection, [ReplaceOne({"_id": entry.id}, entry.document) if what == REPLACE
                                  else InsertOne(entry.document)
                                  for entry, what in zip(batch, verdicts) if what in WRITES], file, done)
    return verdicts, await _current(collection, [entry.id for entry in writing], is_ferretdb)


def _stop_if_asked(stop: StopRequest, file: BackupFile, done: Restored) -> None:
    if stop.signal is not None:
        raise MigrationError(f"restore of {shown(file.path)} stopped by {signal.Signals(stop.signal).name} after "
                             f"{done.restored:,} of {file.count:,} documents (restored and read back; the others "
                             "not): run the same restore again to finish", stop.exit_code)


async def _write(collection: AsyncCollection, writes: list, file: BackupFile, done: Restored) -> None:
    try:
        await collection.bulk_write(writes, ordered=True)
    except Exception as exc:  # FerretDB's error answers can even break the driver's result parsing (KeyError)
        if is_transient(exc):
            raise  # the batch is tried again whole
        reached = done.restored + done.skipped
        raise MigrationError(f"restore stopped in documents {reached + 1}-{reached + len(writes)} of "
                             f"{file.count} ({type(exc).__name__}: {redact(exc)}): the {done.restored} before "
                             "them are restored, maybe some of those too; fix the cause and run the same "
                             "restore again") from exc


async def _current(collection: AsyncCollection, ids: list, is_ferretdb: bool) -> list[bytes | None]:
    """The raw BSON of the documents of `ids` as they are now, in that order (None: not found)."""
    if not ids:
        return []
    if is_ferretdb:
        # Only `{_id: value}` reaches FerretDB's index (`$in` reads the whole table), and many statements
        # at once can deadlock it: a few lookups by _id at a time.
        at_once = asyncio.Semaphore(READ_BACK_AT_ONCE)

        async def one(_id):
            async with at_once:
                document = await collection.find_one({"_id": _id})
                return document.raw if document is not None else None
        return list(await asyncio.gather(*(one(_id) for _id in ids)))
    found = {_key(document["_id"]): document.raw async for document in collection.find({"_id": {"$in": ids}})}
    return [found.get(_key(_id)) for _id in ids]


def _key(value) -> bytes:
    """A hashable stand-in for an _id of any type (an embedded document included)."""
    return bson.encode({"_id": value}, codec_options=RAW)


# ----- a whole-database dump with mongodump -----

def require_mongodump() -> str:
    tool = shutil.which("mongodump")
    if tool is None:
        raise MigrationError(f"--backup-full needs mongodump, which is not on PATH: install the {TOOLS}; "
                             "nothing was changed", ExitCode.USAGE)
    return tool


async def dump_database(url: str, database_name: str, folder: Path) -> Path:
    """`mongodump --db --archive --gzip`; the URL goes in a private config file, never on the command line."""
    tool = require_mongodump()
    path = Path(folder) / f"{database_name}-{_stamp()}.archive.gz"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, config = tempfile.mkstemp(suffix=".yaml")  # readable by this user only
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps({"uri": url}))  # JSON is YAML
        try:
            process = await asyncio.create_subprocess_exec(
                tool, f"--config={config}", f"--db={database_name}", f"--archive={path}", "--gzip",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, errors = await process.communicate()
        finally:
            os.unlink(config)
    except OSError as exc:
        raise MigrationError(f"mongodump could not run, nothing was changed: {redact(exc)}") from None
    if process.returncode != 0:
        path.unlink(missing_ok=True)
        last = (errors.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise MigrationError(f"mongodump failed (exit {process.returncode}), nothing was changed: {redact(last)}")
    return path

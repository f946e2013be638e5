"""Backups of the documents a migration will change, and putting them back exactly.

A backup file, `<db>-<collection>-<migration>-<action>-<UTC time>.jsonl.gz`, is gzip'd JSON lines:
    line 1     the manifest: format, migration, migration_checksum, action (apply/rollback), purge,
               database, collection, filter, count, sha256, created_at, toolkit_version
    lines 2..  every document the migration will change, whole, as it was, in canonical Extended JSON
               (bson.json_util), so ObjectId, datetime, Int64, Decimal128, binary... come back as such
`sha256` is over the document lines, each with its newline, in order (`zcat F | tail -n +2 | sha256sum`).
The documents stream from a cursor into a gzip member of their own; the manifest, known at the end,
is then written in front of it (a gzip file may hold several members): memory stays flat.

A migration says what it will change with `touches(action, purge=False) -> {collection: filter}`.
A restore checks the whole file first, writes in ordered batches of ReplaceOne(_id, upsert), then
reads every document back by _id and compares count and checksum. `mongodump`, when installed,
takes a whole-database archive instead (--backup-full).
"""

import asyncio
import gzip
import hashlib
import json
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from bson import DBRef, Decimal128, MaxKey, MinKey, json_util
from bson.code import Code
from bson.errors import BSONError
from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator import __version__
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration
from migrator.redact import redact

FORMAT = "flowise-proxy-migrations backup 1"
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "backups"
BATCH = 1000
CANONICAL = json_util.CANONICAL_JSON_OPTIONS
TOOLS = ("MongoDB Database Tools: apt package mongodb-database-tools, "
         "or https://www.mongodb.com/try/download/database-tools")


def shown(path: Path) -> str:
    """A path as the user reads it: relative to the current folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def line_of(document: dict) -> bytes:
    return json_util.dumps(document, json_options=CANONICAL).encode() + b"\n"


def _stamp() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"


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
                             f"it changes), so there is nothing to save; nothing was changed (--backup-full dumps the "
                             f"whole database with mongodump instead)", ExitCode.USAGE)


# ----- saving -----

@dataclass
class Saved:
    path: Path
    collection: str
    count: int
    sha256: str

    def record(self) -> dict:
        """What the changelog entry keeps of it."""
        return {"path": str(self.path), "collection": self.collection, "count": self.count, "sha256": self.sha256}


async def save(database: AsyncDatabase, migration: Migration, action: str, folder: Path,
               purge: bool = False) -> list[Saved]:
    """Save whole every document `migration` will change; MigrationError (nothing changed) if that fails."""
    collections = touched(migration, action, purge)
    if collections is None:
        require_declared([migration], action, purge)
    return [await _save_one(database, migration, action, purge, name, query, Path(folder))
            for name, query in collections.items()]


async def _save_one(database: AsyncDatabase, migration: Migration, action: str, purge: bool,
                    collection: str, query: dict, folder: Path) -> Saved:
    created_at = datetime.now(timezone.utc)
    path = folder / f"{database.name}-{collection}-{migration.name}-{action}-{_stamp()}.jsonl.gz"
    documents, whole = path.with_name(path.name + ".part"), path.with_name(path.name + ".tmp")
    digest, count = hashlib.sha256(), 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with gzip.open(documents, "wb", compresslevel=6) as out:
            async for document in database[collection].find(query):
                line = line_of(document)
                out.write(line)
                digest.update(line)
                count += 1
        manifest = {"format": FORMAT, "migration": migration.name, "migration_checksum": migration.checksum,
                    "action": action, "purge": purge, "database": database.name, "collection": collection,
                    "filter": query, "count": count, "sha256": digest.hexdigest(),
                    "created_at": created_at.isoformat(), "toolkit_version": __version__}
        with open(whole, "wb") as out, open(documents, "rb") as body:
            out.write(gzip.compress(json_util.dumps(manifest).encode() + b"\n"))
            shutil.copyfileobj(body, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(whole, path)
    except OSError as exc:
        raise MigrationError(f"backup of {collection} failed, nothing was changed: {exc}") from None
    except PyMongoError as exc:
        raise MigrationError(f"backup of {collection} failed, nothing was changed: {redact(exc)}") from None
    finally:
        documents.unlink(missing_ok=True)
        whole.unlink(missing_ok=True)
    return Saved(path, collection, count, digest.hexdigest())


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
    def count(self) -> int:
        return self.manifest["count"]

    def batches(self) -> Iterator[list[tuple[bytes, dict]]]:
        """(line, document) pairs in file order, BATCH at a time; call only on a file `read` accepted."""
        with gzip.open(self.path, "rb") as lines:
            next(lines)
            batch = []
            for line in lines:
                batch.append((line, json_util.loads(line, json_options=CANONICAL)))
                if len(batch) == BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch


def read(path: Path, refuses: Callable[[dict], str] | None = None) -> BackupFile:
    """A backup file whose every line was read and checked; MigrationError (exit 2) otherwise."""
    path = Path(path)

    def refuse(why: str) -> MigrationError:
        return MigrationError(f"refusing to restore {shown(path)}: {why}; nothing was changed", ExitCode.USAGE)

    if not path.is_file():
        raise refuse("no such file")
    digest, count = hashlib.sha256(), -1  # -1: the manifest line
    try:
        with gzip.open(path, "rb") as lines:
            manifest = json.loads(next(lines, b"{}"))
            count = 0
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise refuse("its first line is not the manifest of a backup of this toolkit")
            for line in lines:
                document = json_util.loads(line, json_options=CANONICAL)
                if not isinstance(document, dict) or "_id" not in document:
                    raise refuse(f"line {count + 2} is not a document with an _id")
                if refuses and (why := refuses(document)):
                    raise refuse(f"the server would refuse document {document['_id']!r} ({why})")
                digest.update(line)
                count += 1
    except (OSError, EOFError, zlib.error) as exc:
        raise refuse(f"not a readable gzip file, truncated or corrupt ({exc})") from None
    except (ValueError, TypeError, KeyError, BSONError) as exc:
        raise refuse(f"line {count + 2} is not valid (Extended) JSON ({type(exc).__name__})") from None
    if count != manifest.get("count"):
        raise refuse(f"it holds {count} documents, its manifest says {manifest.get('count')}")
    if digest.hexdigest() != manifest.get("sha256"):
        raise refuse("checksum mismatch: the documents were changed after the backup was written")
    return BackupFile(path, manifest)


# ----- restoring -----

async def restore(database: AsyncDatabase, backup: BackupFile, between_batches: Callable[[], None]) -> int:
    """Put every document back as it was (replaced whole by _id, or inserted again); the count written."""
    collection, written = database[backup.collection], 0
    for batch in backup.batches():
        between_batches()
        try:
            await collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for _, d in batch], ordered=True)
        except Exception as exc:  # FerretDB's error answers can even break the driver's result parsing (KeyError)
            raise MigrationError(f"restore stopped in documents {written + 1}-{written + len(batch)} of {backup.count}"
                                 f" ({type(exc).__name__}: {redact(exc)}): the {written} before them are restored, "
                                 "maybe some of those too; fix the cause and run the same restore again") from exc
        written += len(batch)
    return written


async def check_restored(database: AsyncDatabase, backup: BackupFile) -> str:
    """Read every document back by _id: "" if count and checksum match the backup, else what differs."""
    collection = database[backup.collection]
    digest, found, differs = hashlib.sha256(), 0, []
    for batch in backup.batches():
        current = await asyncio.gather(*(collection.find_one({"_id": d["_id"]}) for _, d in batch))
        for (line, document), now in zip(batch, current):
            if now is None:
                differs.append(document["_id"])
                continue
            found += 1
            digest.update(line_of(now))
            if line_of(now) != line:
                differs.append(document["_id"])
    if found == backup.count and digest.hexdigest() == backup.manifest["sha256"]:
        return ""
    return (f"{found} of {backup.count} documents found, checksum differs, {len(differs)} not as in the backup "
            f"(first: _id {differs[0]!r})")


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

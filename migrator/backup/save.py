"""Saving the documents a migration will change (what it declares it touches), before it runs; the
whole-database dump with mongodump."""

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import bson
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator.backup.file import DECODED, FORMAT, SUFFIX, TOOLS, Retrying, once, seal, stamp
from migrator.clock import server_now
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration
from migrator.rawbson import RAW
from migrator.redact import redact
from migrator.version import __version__

# ----- what a migration will touch -----

def touched(migration: Migration, action: str, purge: bool = False) -> dict[str, dict] | None:
    """{collection: filter} that `up` ("apply") or `rollback` will change; None when it does not say."""
    if migration.touches is None:
        return None
    try:
        options = {"purge": purge} if migration.accepts("touches", "purge") else {}
        declared = migration.touches(action, **options)
    except Exception as exc:
        raise MigrationError(f"{migration.name}: touches() failed: {type(exc).__name__}: {exc}",
                             ExitCode.USAGE) from exc
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
               purge: bool = False, retry: Retrying = once) -> list[Saved]:
    """Save whole every document `migration` will change; MigrationError (nothing changed) if that fails.
    A read that meets a transient error (a failover; a getMore whose connection dropped) is read again whole
    by `retry` (migrator.retry.Retry), into a file begun again: the backup is exact or not written."""
    collections = touched(migration, action, purge)
    if collections is None:
        require_declared([migration], action, purge)  # raises: it declares nothing
        return []
    return [await _save_one(database, migration, action, purge, name, query, Path(folder), retry)
            for name, query in collections.items()]


def _encoded_filter(database: AsyncDatabase, migration: Migration, collection: str, query: dict) -> RawBSONDocument:
    """The filter as the app's options encode it (a native UUID in it needs the URL's uuidRepresentation)."""
    try:
        return RawBSONDocument(bson.encode(query, codec_options=database.codec_options), RAW)
    except (BSONError, ValueError, TypeError) as exc:
        raise MigrationError(f"{migration.name}: touches() gives {collection} a filter that cannot be sent to the "
                             f"server ({type(exc).__name__}: {exc}); nothing was changed", ExitCode.USAGE) from None


async def _save_one(database: AsyncDatabase, migration: Migration, action: str, purge: bool,
                    collection: str, query: dict, folder: Path, retry: Retrying) -> Saved:
    encoded = _encoded_filter(database, migration, collection, query)
    try:
        created_at = await retry("reading the server's clock", partial(server_now, database))  # a restore compares it
        path = folder / f"{database.name}-{collection}-{migration.name}-{action}-{stamp(created_at)}{SUFFIX}"
        body = path.with_name(path.name + ".part")
        folder.mkdir(parents=True, exist_ok=True)

        async def read() -> tuple["hashlib._Hash", int]:  # whole, again after a transient error
            digest, count = hashlib.sha256(), 0
            with gzip.open(body, "wb", compresslevel=6) as out:
                async for document in database.get_collection(collection, codec_options=RAW).find(encoded):
                    out.write(document.raw)
                    digest.update(document.raw)
                    count += 1
            return digest, count
        try:
            digest, count = await retry(f"backup of {collection}", read)
            if not count:
                return Saved(None, collection, 0, digest.hexdigest())
            manifest = seal({"format": FORMAT, "migration": migration.name, "migration_checksum": migration.checksum,
                             "action": action, "purge": purge, "database": database.name, "collection": collection,
                             "filter": bson.decode(encoded.raw, DECODED), "count": count,
                             "sha256": digest.hexdigest(), "created_at": created_at.isoformat(),
                             "toolkit_version": __version__})
            assemble(path, manifest, body)
        finally:
            body.unlink(missing_ok=True)
    except OSError as exc:
        raise MigrationError(f"backup of {collection} failed, nothing was changed: {exc}") from None
    except PyMongoError as exc:
        raise MigrationError(f"backup of {collection} failed, nothing was changed: {redact(exc)}") from None
    return Saved(path, collection, count, digest.hexdigest())


def assemble(path: Path, manifest: dict, body: Path) -> None:
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
    path = Path(folder) / f"{database_name}-{stamp()}.archive.gz"
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

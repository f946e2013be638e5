"""Backups of the documents a migration will change, and putting them back exactly.

A backup file, `<db>-<collection>-<migration>-<action>-<UTC time>.jsonl.gz`, is gzip'd JSON lines:
    line 1     the manifest: format, migration, migration_checksum, action (apply/rollback), purge,
               database, collection, filter, count, sha256, created_at (the server's clock),
               toolkit_version, manifest_sha256
    lines 2..  every document the migration will change, whole, as it was, in canonical Extended JSON
               (bson.json_util), so ObjectId, datetime, Int64, Decimal128, binary... come back as such
`sha256` is over the document lines, each with its newline, in order (`zcat F | tail -n +2 | sha256sum`);
`manifest_sha256` over the manifest without that field, as `json.dumps(sort_keys=True, separators=(",", ":"))`
writes it, so an edited manifest (its action, database, count, sha256...) is refused too. Files of format 1
lack `manifest_sha256`: they still restore, with a warning that their manifest is not covered.
The documents stream from a cursor into a gzip member of their own; the manifest, known at the end,
is then written in front of it (a gzip file may hold several members): memory stays flat. Nothing to
save (no document matches, or no collection): no file.

A migration says what it will change with `touches(action, purge=False) -> {collection: filter}`
(`{}`: nothing). A restore checks the whole file first, then, a batch at a time, writes ReplaceOne(_id,
upsert) in order and reads the batch back by _id; at the end count and checksum must match. Batches are
of 50 on FerretDB (bigger bulks, or many statements at once, can deadlock it) and 1,000 on MongoDB.
`mongodump`, when installed, takes a whole-database archive instead (--backup-full).
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
from pathlib import Path
from typing import Callable, Iterator

from bson import DBRef, Decimal128, MaxKey, MinKey, json_util
from bson.code import Code
from bson.errors import BSONError
from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator import __version__, plan
from migrator.batches import FERRETDB_MAX_BULK, StopRequest
from migrator.clock import server_now
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration
from migrator.progress import DEFAULT_INTERVAL_S, Progress
from migrator.redact import redact

FORMAT = "flowise-proxy-migrations backup 2"
FORMAT_1 = "flowise-proxy-migrations backup 1"  # its manifest is not covered by a checksum
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "backups"
BATCH = 1000  # documents per restore batch on MongoDB (FerretDB: FERRETDB_MAX_BULK)
READ_BACK_AT_ONCE = 4  # find_one by _id in flight at once, on FerretDB
CANONICAL = json_util.CANONICAL_JSON_OPTIONS
MANIFEST_FIELDS = {"migration": str, "action": str, "database": str, "collection": str, "count": int,
                   "sha256": str, "created_at": str}
ACTIONS = ("apply", "rollback")
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


def _stamp(when: datetime | None = None) -> str:
    return f"{when or datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"


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

    def record(self) -> dict:
        """What the changelog entry keeps of it."""
        return {"path": str(self.path) if self.path else None, "collection": self.collection, "count": self.count,
                "sha256": self.sha256}


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


async def _save_one(database: AsyncDatabase, migration: Migration, action: str, purge: bool,
                    collection: str, query: dict, folder: Path) -> Saved:
    digest, count = hashlib.sha256(), 0
    try:
        created_at = await server_now(database)  # the changelog's clock: a restore compares the two
        path = folder / f"{database.name}-{collection}-{migration.name}-{action}-{_stamp(created_at)}.jsonl.gz"
        documents, whole = path.with_name(path.name + ".part"), path.with_name(path.name + ".tmp")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with gzip.open(documents, "wb", compresslevel=6) as out:
                async for document in database[collection].find(query):
                    line = line_of(document)
                    out.write(line)
                    digest.update(line)
                    count += 1
            if not count:
                return Saved(None, collection, 0, digest.hexdigest())
            manifest = seal({"format": FORMAT, "migration": migration.name, "migration_checksum": migration.checksum,
                             "action": action, "purge": purge, "database": database.name, "collection": collection,
                             "filter": query, "count": count, "sha256": digest.hexdigest(),
                             "created_at": created_at.isoformat(), "toolkit_version": __version__})
            with open(whole, "wb") as out, open(documents, "rb") as body:
                out.write(gzip.compress(json.dumps(manifest).encode() + b"\n"))
                shutil.copyfileobj(body, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(whole, path)
        finally:
            for leftover in (documents, whole):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
    except OSError as exc:
        raise MigrationError(f"backup of {collection} failed, nothing was changed: {exc}") from None
    except PyMongoError as exc:
        raise MigrationError(f"backup of {collection} failed, nothing was changed: {redact(exc)}") from None
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
        return self.manifest["format"] == FORMAT

    def batches(self, size: int = BATCH) -> Iterator[list[tuple[bytes, dict]]]:
        """(line, document) pairs in file order, `size` at a time; call only on a file `read` accepted."""
        with gzip.open(self.path, "rb") as lines:
            next(lines)
            batch = []
            for line in lines:
                batch.append((line, json_util.loads(line, json_options=CANONICAL)))
                if len(batch) == size:
                    yield batch
                    batch = []
            if batch:
                yield batch


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def manifest_problem(manifest) -> str:
    """What is wrong with a backup's manifest, "" if nothing."""
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, FORMAT_1):
        return "its first line is not the manifest of a backup of this toolkit"
    if manifest["format"] == FORMAT and manifest.get("manifest_sha256") != manifest_digest(manifest):
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
            if problem := manifest_problem(manifest):
                raise refuse(problem)
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
    if count != manifest["count"]:
        raise refuse(f"it holds {count} documents, its manifest says {manifest['count']}")
    if digest.hexdigest() != manifest["sha256"]:
        raise refuse("checksum mismatch: the documents were changed after the backup was written")
    return BackupFile(path, manifest)


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

@dataclass
class Restored:
    """How far a restore got: documents written, and of those read back, found and as in the backup."""
    written: int = 0
    found: int = 0
    differing: list = field(default_factory=list)  # _id of each document not as in the backup
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    not_in_place: list[tuple[str, str]] = field(default_factory=list)  # after it: (migration, what verify said)

    def problem(self, file: BackupFile) -> str:
        """"" if every document read back as in the backup (count and checksum), else what differs."""
        if self.found == file.count and not self.differing and self.digest.hexdigest() == file.manifest["sha256"]:
            return ""
        first = f" (first: _id {self.differing[0]!r})" if self.differing else ""
        return (f"{self.found} of {file.count} documents found, {len(self.differing)} not as in the backup{first}"
                f"{'' if self.differing else ', checksum differs'}")


def batch_size(is_ferretdb: bool) -> int:
    return FERRETDB_MAX_BULK if is_ferretdb else BATCH


async def restore(database: AsyncDatabase, file: BackupFile, is_ferretdb: bool, done: Restored,
                  before_batch: Callable[[], None] = lambda: None,
                  progress_interval_s: float = DEFAULT_INTERVAL_S) -> Restored:
    """Put every document back as it was (replaced whole by _id, or inserted again), reading each batch back
    right after writing it; `done` counts as it goes. Between batches `before_batch` may raise, and Ctrl-C or
    SIGTERM stops the restore (MigrationError with exit 130 or 143)."""
    collection, stop = database[file.collection], StopRequest()
    progress = Progress(f"restore of {file.collection}", interval_s=progress_interval_s)
    progress.set_total(file.count)
    stop.before_exit = progress.close
    try:
        with stop.handled():
            for batch in file.batches(batch_size(is_ferretdb)):
                before_batch()
                _stop_if_asked(stop, file, done)
                await _write(collection, batch, file, done)
                _compare(batch, await _read_back(collection, [d["_id"] for _, d in batch], is_ferretdb), done)
                progress.advance(len(batch), len(batch))
    finally:
        progress.close()
    return done


def _stop_if_asked(stop: StopRequest, file: BackupFile, done: Restored) -> None:
    if stop.signal is not None:
        raise MigrationError(f"restore of {shown(file.path)} stopped by {signal.Signals(stop.signal).name} after "
                             f"{done.written:,} of {file.count:,} documents (restored and read back; the others "
                             "not): run the same restore again to finish", stop.exit_code)


async def _write(collection: AsyncCollection, batch: list[tuple[bytes, dict]], file: BackupFile,
                 done: Restored) -> None:
    try:
        await collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for _, d in batch], ordered=True)
    except Exception as exc:  # FerretDB's error answers can even break the driver's result parsing (KeyError)
        raise MigrationError(f"restore stopped in documents {done.written + 1}-{done.written + len(batch)} of "
                             f"{file.count} ({type(exc).__name__}: {redact(exc)}): the {done.written} before "
                             "them are restored, maybe some of those too; fix the cause and run the same "
                             "restore again") from exc
    done.written += len(batch)


async def _read_back(collection: AsyncCollection, ids: list, is_ferretdb: bool) -> list[dict | None]:
    """The documents of `ids` as they are now, in that order (None: not found)."""
    if is_ferretdb:
        # Only `{_id: value}` reaches FerretDB's index (`$in` reads the whole table), and many statements
        # at once can deadlock it: a few lookups by _id at a time.
        at_once = asyncio.Semaphore(READ_BACK_AT_ONCE)

        async def one(_id):
            async with at_once:
                return await collection.find_one({"_id": _id})
        return list(await asyncio.gather(*(one(_id) for _id in ids)))
    found = {_key(document["_id"]): document async for document in collection.find({"_id": {"$in": ids}})}
    return [found.get(_key(_id)) for _id in ids]


def _key(value) -> str:
    """A hashable stand-in for an _id of any type (an embedded document included)."""
    return json_util.dumps({"_id": value}, json_options=CANONICAL)


def _compare(batch: list[tuple[bytes, dict]], current: list[dict | None], done: Restored) -> None:
    for (line, document), now in zip(batch, current):
        if now is None:
            done.differing.append(document["_id"])
            continue
        done.found += 1
        now_line = line_of(now)
        done.digest.update(now_line)
        if now_line != line:
            done.differing.append(document["_id"])


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

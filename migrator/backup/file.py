"""A backup file as written on disk: its name, the manifest, reading and checking every document (the
format: see migrator.backup)."""

import gzip
import hashlib
import json
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import bson
from bson import json_util
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument

from migrator.clock import as_utc
from migrator.errors import ExitCode, MigrationError
from migrator.rawbson import RAW
from migrator.redact import redact

FORMAT = "flowise-proxy-migrations backup 3"  # raw BSON; the one format a restore reads
BACKUP_FORMATS = "flowise-proxy-migrations backup "  # what every format of this toolkit's backups starts with
POST_IMAGES_FORMAT = "flowise-proxy-migrations post-images 1"
SUFFIX, POST_IMAGES_SUFFIX = ".bson.gz", ".after.gz"
ABSENT = "absent"  # a post-image line: the migration deleted the document
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "backups"
BATCH = 1000  # documents per restore batch (fewer where the server profile says max_bulk)
BATCH_BYTES = 32 * 1024 * 1024  # and at most this much BSON in one batch
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024 + 16 * 1024  # the server's 16 MiB, and its internal slack
MAX_MANIFEST_BYTES = 1024 * 1024  # a first line longer than this is no manifest
SHOWN = 5  # _ids listed of the documents a restore left alone
DECODED: CodecOptions = CodecOptions(uuid_representation=UuidRepresentation.UNSPECIFIED,
                       datetime_conversion=DatetimeConversion.DATETIME_AUTO, tz_aware=True)
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


def stamp(when: datetime | None = None) -> str:
    return f"{when or datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"


def post_images_path(path: Path) -> Path | None:
    """Where the post-images of a backup go; None for a file not named like a backup (never has them)."""
    path = Path(path)
    return path.with_name(path.name[:-len(SUFFIX)] + POST_IMAGES_SUFFIX) if path.name.endswith(SUFFIX) else None


def seal(manifest: dict) -> dict:
    """The manifest as written: plain JSON, with `manifest_sha256` over the rest of it."""
    plain = json.loads(json_util.dumps({k: v for k, v in manifest.items() if k != "manifest_sha256"}))
    return {**plain, "manifest_sha256": manifest_digest(plain)}


def manifest_digest(manifest: dict) -> str:
    rest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ----- reading and checking a backup file -----

@dataclass
class Entry:
    """One document of a backup file."""
    raw: bytes  # its BSON, as it is written back (and as the file's checksum covers it)

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
        return as_utc(datetime.fromisoformat(self.manifest["created_at"]))

    def entries(self) -> Iterator[Entry]:
        """Every document, in file order; call only on a file `read` accepted."""
        with gzip.open(self.path, "rb") as stream:
            stream.readline()
            yield from (Entry(raw) for raw in _raw_documents(stream))

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


def manifest_problem(manifest) -> str:
    """What is wrong with a backup's manifest, "" if nothing."""
    kind = manifest.get("format") if isinstance(manifest, dict) else None
    if isinstance(kind, str) and kind.startswith(BACKUP_FORMATS) and kind != FORMAT:
        return f"it is a backup of another format ({kind}): this version restores only {FORMAT}"
    if kind != FORMAT:
        return "its first line is not the manifest of a backup of this toolkit"
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
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

    if path.is_dir():
        newest = sorted(path.glob("*.bson.gz"), key=lambda found: found.stat().st_mtime, reverse=True)[:5]
        raise refuse("it is a directory: name one backup file in it" + (
            f", e.g. (newest first) {', '.join(found.name for found in newest)}" if newest else " (it holds none)"))
    if not path.is_file():
        raise refuse("no such file")
    if path.name.endswith(".part"):
        raise refuse("incomplete backup: it was being written when its run stopped")
    digest, count, what = hashlib.sha256(), 0, "its first line"
    try:
        with gzip.open(path, "rb") as stream:
            first = stream.readline(MAX_MANIFEST_BYTES)
            manifest = json.loads(first) if first.endswith(b"\n") else {}
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
                digest.update(entry.raw)
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

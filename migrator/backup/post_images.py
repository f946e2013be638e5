"""Post-images: the digest of each saved document as the migration left it, written next to its backup once
the migration completed, and read back (every line checked) before a restore."""

import gzip
import hashlib
import json
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bson.errors import BSONError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from migrator.backup.current import batch_size, current_documents
from migrator.backup.file import (
    ABSENT,
    POST_IMAGES_FIELDS,
    POST_IMAGES_FORMAT,
    SUFFIX,
    BackupFile,
    Retrying,
    manifest_digest,
    once,
    post_images_path,
    seal,
    shown,
)
from migrator.backup.save import Saved, assemble
from migrator.clock import server_now
from migrator.errors import ExitCode, MigrationError
from migrator.profile import ServerProfile
from migrator.rawbson import RAW
from migrator.redact import redact

# ----- post-images: the saved documents as the migration left them -----

async def record_post_images(database: AsyncDatabase, saved: Saved, profile: ServerProfile,
                             retry: Retrying = once) -> None:
    """Once the migration completed: write the digest of each saved document as it is now next to the backup.
    Sets `saved.post_images`, or `saved.post_images_error` (the backup then restores without them)."""
    if saved.path is None:
        return
    try:
        saved.post_images = await _write_post_images(database, Path(saved.path), profile, retry)
    except (OSError, PyMongoError, MigrationError, BSONError, ValueError) as exc:
        saved.post_images_error = f"{type(exc).__name__}: {redact(exc)}"


async def _write_post_images(database: AsyncDatabase, path: Path, profile: ServerProfile, retry: Retrying) -> Path:
    with gzip.open(path, "rb") as stream:
        file = BackupFile(path, json.loads(stream.readline()))
    collection = database.get_collection(file.collection, codec_options=RAW)
    target, digest, count = post_images_path(path), hashlib.sha256(), 0
    if target is None:
        raise ValueError(f"{shown(path)} is not named like a backup ({SUFFIX})")
    body = target.with_name(target.name + ".part")
    try:
        with gzip.open(body, "wb", compresslevel=6) as out:
            for batch in file.batches(batch_size(profile)):
                ids = [entry.id for entry in batch]
                now_documents = await retry(f"post-images of {file.collection}",
                                            partial(current_documents, collection, ids, profile))
                for now in now_documents:
                    line = f"{hashlib.sha256(now).hexdigest() if now is not None else ABSENT}\n".encode()
                    out.write(line)
                    digest.update(line)
                    count += 1
        manifest = seal({"format": POST_IMAGES_FORMAT, "backup": path.name, "backup_sha256": file.manifest["sha256"],
                         "backup_manifest_sha256": file.manifest["manifest_sha256"], "count": count,
                         "sha256": digest.hexdigest(), "created_at": (await retry("reading the server's clock",
                                                                partial(server_now, database))).isoformat()})
        assemble(target, manifest, body)
    finally:
        body.unlink(missing_ok=True)
    return target


@dataclass
class PostImages:
    path: Path
    manifest: dict

    def digests(self) -> Generator[str | None, None, None]:
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
    if path is None or not path.is_file():
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

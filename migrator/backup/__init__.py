"""Backups of the documents a migration will change, and putting them back exactly.

Modules: file (the format, reading and checking a backup), save (saving before a change; mongodump),
current (a batch's documents as they are now on the server), post_images (the documents as the migration
left them), restoring (putting them back). Their public names are all importable from here.

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
writes it, so an edited manifest (its action, database, count, sha256...) is refused too. A restore reads
this format only (`flowise-proxy-migrations backup 3`); a file of another format is refused, in one line.
The documents stream from a cursor into a gzip member of their own; the manifest, known at the end,
is then written in front of it (a gzip file may hold several members): memory stays flat. Nothing to
save (no document matches, or no collection): no file.

Post-images. Once the `up` (or rollback) a backup was taken for has completed and verified, the digest
of each saved document as the migration left it is written next to the backup, `<same name>.after.gz`:
line 1 a manifest (format, backup (its file name), backup_sha256 and backup_manifest_sha256 (the
backup's `sha256` and `manifest_sha256`: it belongs to that backup only), count, sha256 of the lines
that follow, created_at, manifest_sha256 as above), then one line per document of the backup, in its
order: the hex sha256 of the document's raw BSON as it is after the migration, or `absent` if the
migration deleted it. A migration that failed half-way leaves no post-images.

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
documents again). Batches are of 1,000 documents, fewer where the server takes smaller bulks
(profile.max_bulk), and of 32 MB at most. `mongodump`, when installed, takes a
whole-database archive instead (--backup-full).
"""

from migrator.backup.file import (
                                  ABSENT,
                                  BATCH,
                                  DECODED,
                                  DEFAULT_DIR,
                                  FORMAT,
                                  POST_IMAGES_FORMAT,
                                  SUFFIX,
                                  BackupFile,
                                  Entry,
                                  manifest_digest,
                                  manifest_problem,
                                  post_images_path,
                                  read,
                                  seal,
                                  shown,
                                  shown_id,
)
from migrator.backup.post_images import PostImages, read_post_images, record_post_images
from migrator.backup.restoring import Restored, applied_since, restore, verdict
from migrator.backup.save import (
                                  Saved,
                                  dump_database,
                                  require_declared,
                                  require_folder,
                                  require_mongodump,
                                  save,
                                  touched,
)

__all__ = ["ABSENT", "BATCH", "DECODED", "DEFAULT_DIR", "FORMAT", "POST_IMAGES_FORMAT",
           "SUFFIX", "BackupFile", "Entry", "PostImages", "Restored", "Saved", "applied_since", "dump_database",
           "manifest_digest", "manifest_problem", "post_images_path", "read",
           "read_post_images", "record_post_images", "require_declared", "require_folder", "require_mongodump",
           "restore", "save", "seal", "shown", "shown_id", "touched", "verdict"]

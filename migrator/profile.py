"""What differs between servers, detected once at connection: the one place that knows FerretDB.

The engine and everything under it read capabilities from a ServerProfile ("an `_id` range is a scan
here", "at most 50 statements a bulk"), never the server's name. MongoDB's documented behaviour is the
default; FerretDB v1 (our local and test server, on SQLite) is the exception, measured:
- only a filter of `{_id: value}` alone reaches its index: an `_id` range, `$in` and `{_id, other keys}`
  read the whole collection, so large walks read the matching ids once and write by `_id`;
- a bulk of about 100 statements, or many statements at once, can deadlock it (each keeps its SQLite
  query open until the command ends, on a pool of 100 connections), and it must not hold a cursor open
  while the same client writes;
- it refuses some values MongoDB takes (nested arrays, keys with `.` or `$`, NaN, Decimal128, ...),
  and takes only Latin letters, digits, `_` and `-` in database names;
- its query plans (explain) name no index stages;
- it has no transactions, no `$$NOW` in a filter's `$expr` nor pipeline updates, and its updates are not atomic
  (it reads, then writes each document): the lock compares times read from its clock, and fences writes by time;
- it builds unique and compound indexes of 1 / -1 keys, and nothing else: no partial, TTL, collation, hidden or
  text/2dsphere index (NotImplemented), `sparse` taken but ignored (listed without it), no validators (no collMod).
A replica set member or a mongos has transactions: there, each batch and the final record are fenced by one.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bson import DBRef, Decimal128, MaxKey, MinKey
from bson.code import Code
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError


@dataclass(frozen=True)
class ServerProfile:
    label: str  # for the log: "MongoDB 7.0.12"
    version: str
    # Only `{_id: value}` alone is answered from an index: `_id` ranges, `$in` and compound filters scan.
    id_lookup_only: bool = False
    # Statements in one bulk write, and lookups in flight at once; None: as many as fit in a command.
    max_bulk: int | None = None
    max_in: int | None = None
    lookups_at_once: int | None = None
    # Why the server would refuse a value to write ("" if it takes it): a refused write stops a restore half done.
    refuses: Callable[[Any], str] | None = None
    # What the server takes as a database name, when it says less than MongoDB's error does.
    database_name_rule: str | None = None
    explain_names_indexes: bool = True
    # `$$NOW` in an `$expr` filter and pipeline updates: expiry decided on the server's own clock, atomically.
    server_clock: bool = True
    # Multi-document transactions (a replica set member or a mongos, not a standalone server): fenced writes.
    transactions: bool = False
    # The schema (migrator.schema): the kinds of index it builds, validators, hiding an index before a drop (4.4+),
    # createIndexes' commitQuorum (a replica set or mongos of 4.4+). What it lacks is planned as a skipped step.
    partial_indexes: bool = True
    sparse_indexes: bool = True
    ttl_indexes: bool = True
    collation_indexes: bool = True
    special_index_keys: bool = True  # text, 2dsphere, hashed, ...: not only 1 and -1
    hidden_indexes: bool = True
    validators: bool = True
    commit_quorum: bool = False
    # A replica set member: its replication lag and flow control are watched between batches (migrator.throttle).
    replica_set: bool = False


def at_least(version: str, wanted: tuple[int, ...]) -> bool:
    """"7.0.12" at least (4, 4); a version that does not parse counts as recent."""
    parts = version.split(".")
    if not all(part.isdigit() for part in parts[:len(wanted)]):
        return True
    return tuple(int(part) for part in parts[:len(wanted)]) >= wanted


def mongodb(version: str = "?") -> ServerProfile:
    return ServerProfile(label=f"MongoDB {version}", version=version, hidden_indexes=at_least(version, (4, 4)))


_REFUSED_TYPES = (Decimal128, MinKey, MaxKey, Code, DBRef)  # it drops the connection, or refuses the key


def _ferretdb_refuses(value: Any, where: str = "") -> str:
    if isinstance(value, dict):
        for key, item in value.items():
            if "." in key or key.startswith("$"):
                return f"the key {where}{key!r}"
            if why := _ferretdb_refuses(item, f"{where}{key}."):
                return why
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, list):
                return f"a nested array at {where}{index}"
            if why := _ferretdb_refuses(item, f"{where}{index}."):
                return why
    elif isinstance(value, float) and not math.isfinite(value):
        return f"{value} at {where.rstrip('.')}"
    elif isinstance(value, _REFUSED_TYPES):
        return f"a {type(value).__name__} at {where.rstrip('.')}"
    return ""


def ferretdb(version: str = "?") -> ServerProfile:
    return ServerProfile(label=f"FerretDB (MongoDB {version} wire protocol)", version=version, id_lookup_only=True,
                         max_bulk=50, max_in=10_000, lookups_at_once=4, refuses=_ferretdb_refuses,
                         database_name_rule="FerretDB takes only Latin letters, digits, _ and - (at most 63)",
                         explain_names_indexes=False, server_clock=False, partial_indexes=False,
                         sparse_indexes=False, ttl_indexes=False, collation_indexes=False, special_index_keys=False,
                         hidden_indexes=False, validators=False)


def profile_of(build_info: dict, hello: dict | None = None) -> ServerProfile:
    """From `buildInfo` and, for what depends on the topology, `hello` (None: taken as a standalone server)."""
    version = str(build_info.get("version", "?"))
    profile = ferretdb(version) if "ferretdbVersion" in build_info else mongodb(version)
    hello = hello or {}  # transactions by topology alone (FerretDB is a standalone server; a test proxy says not)
    clustered = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
    return replace(profile, transactions=clustered and hello.get("logicalSessionTimeoutMinutes") is not None,
                   commit_quorum=clustered and at_least(version, (4, 4)), replica_set=bool(hello.get("setName")))


async def detect(database: AsyncDatabase) -> ServerProfile:
    """The profile of the server `database` is on (`buildInfo` and `hello`)."""
    return profile_of(await database.command("buildInfo"), await database.command("hello"))


async def detect_or_none(database: AsyncDatabase) -> ServerProfile | None:
    """detect, for an error message: None when the server will not even say what it is."""
    try:
        return await detect(database)
    except PyMongoError:
        return None

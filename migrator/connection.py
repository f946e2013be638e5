"""Opening the database: the runner's own client options, fast and clear failures.

The URL is the app's, and its options suit the app, not a migration: the runner reads from the
primary (the lock and the changelog must not be stale), has every write acknowledged by a majority and
journaled, with its own bound on the wait for replication (never w=0, which hides a lost lock insert; never
the URL's wtimeoutMS or journal), has the driver retry what it can, and sets no socket or operation
timeout (a batch may take long; an election takes seconds). The URL's options that only fit another read
preference (staleness, tags, hedge) are dropped, not refused: the app reads from secondaries, the runner
does not. The short --server-timeout bounds the first contact only; later, the wait for a server is bounded by
--retry-for too (a server selection timeout no longer than it: see migrator.retry).
"""

import asyncio
import re
from typing import Any
from urllib.parse import unquote_plus

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    InvalidName,
    InvalidURI,
    OperationFailure,
)
from pymongo.server_type import SERVER_TYPE
from pymongo.uri_parser_shared import _validate_uri

from migrator.errors import ExitCode, MigrationError
from migrator.profile import detect_or_none
from migrator.redact import redact
from migrator.retry import DEFAULT_RETRY_FOR_S

AUTHENTICATION_FAILED = (18, 8000)  # MongoDB's AuthenticationFailed; Atlas answers bad credentials with 8000
WRITE_TIMEOUT_MS = 10_000  # a write's wait for a majority; a timeout (64) is transient, so retried (migrator.retry)
RUNNER_OPTIONS: dict[str, Any] = {"readPreference": "primary", "w": "majority", "journal": True,
                                  "wTimeoutMS": WRITE_TIMEOUT_MS, "retryWrites": True, "retryReads": True,
                                  "socketTimeoutMS": None, "timeoutMS": None}
# What only fits a read preference other than primary: PyMongo refuses them beside the runner's primary.
OTHER_READ_PREFERENCE_ONLY = frozenset({"maxstalenessseconds", "readpreferencetags", "hedge"})
INVALID_NAMESPACE = 73  # the answer to a database name the server will not take
SERVER_SELECTION = "serverSelectionTimeoutMS"
DRIVER_SERVER_SELECTION_S = 30.0  # PyMongo's default


def parse_url(url: str, validate: bool = True) -> dict[str, Any]:
    """The parts of a MongoDB URL (nodelist, database, options, fqdn, ...) without a DNS lookup:
    PyMongo's parse_uri resolves a mongodb+srv:// name, so a DNS hiccup would look like a bad setting.
    Raises InvalidURI, ConfigurationError or ValueError."""
    return _validate_uri(url, validate=validate)


def _split(url: str) -> tuple[str, list[str]]:
    """(the URL up to its options, its `name=value` options as written)."""
    scheme, _, rest = url.partition("://")
    hosts, slash, path = rest.partition("/")
    path, _, query = path.partition("?")
    return f"{scheme}://{hosts}{slash}{path}", [pair for pair in re.split("[&;]", query) if pair]


def runner_url(url: str) -> str:
    """The URL without the options that only fit another read preference than the runner's primary."""
    head, pairs = _split(url)
    kept = [pair for pair in pairs if pair.partition("=")[0].lower() not in OTHER_READ_PREFERENCE_ONLY]
    return head + ("?" + "&".join(kept) if kept else "") if kept != pairs else url


def server_selection_ms(options: dict, retry_for_s: float = DEFAULT_RETRY_FOR_S) -> float:
    """How long an operation waits for a server: the URL's serverSelectionTimeoutMS (PyMongo's 30 s by default), at
    most --retry-for (0: no retries, the URL's), so that no try outlives the retries' budget."""
    url_s = options.get(SERVER_SELECTION, DRIVER_SERVER_SELECTION_S)
    return 1000 * (min(url_s, retry_for_s) if retry_for_s > 0 else url_s)


def ignored_options(url: str, retry_for_s: float = DEFAULT_RETRY_FOR_S) -> dict[str, str]:
    """The URL's options that the runner replaces with its own or drops: {option as written: value as written}."""
    options = parse_url(runner_url(url), validate=False)["options"]
    ours = {name.lower(): value for name, value in RUNNER_OPTIONS.items()}
    ours[SERVER_SELECTION.lower()] = server_selection_ms(options, retry_for_s) / 1000  # parsed: in seconds
    ignored: dict[str, str] = {}
    for pair in _split(url)[1]:
        name, _, value = pair.partition("=")
        lowered = name.lower()
        if lowered in OTHER_READ_PREFERENCE_ONLY or (
                lowered in ours and str(options.get(lowered)).lower() != str(ours[lowered]).lower()):
            ignored[name] = unquote_plus(value) if name not in ignored else f"{ignored[name]},{unquote_plus(value)}"
    return ignored


async def connect(url: str, database_name: str, timeout_s: float = 5.0,
                  retry_for_s: float = DEFAULT_RETRY_FOR_S) -> tuple[AsyncMongoClient, AsyncDatabase]:
    """A client whose server answered `ping` within `timeout_s`; MigrationError (exit 5) when it cannot be
    reached. Later operations wait for a server as long as the URL's serverSelectionTimeoutMS (30 s by default),
    at most `retry_for_s` (the runner's --retry-for)."""
    shown, url = redact(url), runner_url(url)
    try:
        parts = parse_url(url)
    except (InvalidURI, ConfigurationError, ValueError, OSError) as exc:  # OSError: an unreadable tlsCAFile
        raise MigrationError(f"MONGODB_URL is not a valid MongoDB URL ({shown}): {redact(exc)}",
                             ExitCode.USAGE) from exc
    hosts = parts["fqdn"] or ", ".join(f"{h}:{p}" for h, p in parts["nodelist"])
    try:
        client: AsyncMongoClient = AsyncMongoClient(
            url, appname="flowise-proxy-migrations", tz_aware=True,
            serverSelectionTimeoutMS=server_selection_ms(parts["options"], retry_for_s), **RUNNER_OPTIONS)
    except (ConfigurationError, ValueError, TypeError, OSError) as exc:
        raise MigrationError(f"MONGODB_URL has an invalid option ({shown}): {redact(exc)}", ExitCode.USAGE) from exc
    try:
        database = client[database_name]
    except InvalidName as exc:  # load_settings checks the name first; this is for other callers
        await client.close()
        raise MigrationError(f"MONGODB_DATABASE_NAME {database_name!r} is not valid: {exc}", ExitCode.USAGE) from exc
    try:
        with pymongo.timeout(timeout_s):
            await database.command("ping")
    except OperationFailure as exc:
        if exc.code == INVALID_NAMESPACE:
            server_says = redact((exc.details or {}).get("errmsg") or exc)
            profile = await detect_or_none(client.admin)
            rule = (profile and profile.database_name_rule) or server_says
            await client.close()
            raise MigrationError(f"the server at {hosts} refuses the database name {database_name!r} "
                                 f"(MONGODB_DATABASE_NAME): {rule}; choose another name", ExitCode.USAGE) from exc
        await client.close()
        if exc.code in AUTHENTICATION_FAILED:
            raise MigrationError(
                f"authentication to {hosts} failed ({shown}): check the user name, password and authSource",
                ExitCode.UNREACHABLE,
            ) from exc  # --debug shows the driver's error, masked like every log line
        raise MigrationError(f"the server at {hosts} refused `ping`: {redact(exc)}", ExitCode.UNREACHABLE) from exc
    except ConnectionFailure as exc:
        why = await _why_unanswered(client, parts)
        await client.close()
        raise MigrationError(
            f"cannot reach MongoDB at {hosts} within {timeout_s:g} s ({shown}): "
            + (why or "is the server running, and are MONGODB_URL's host and port right?"),
            ExitCode.UNREACHABLE,
        ) from exc
    except ConfigurationError as exc:  # the URL was checked: here it is the SRV lookup of a mongodb+srv:// name
        await client.close()
        raise MigrationError(f"cannot reach MongoDB at {hosts} ({shown}): {redact(exc)}: check the host name "
                             "and the network's DNS", ExitCode.UNREACHABLE) from exc
    return client, database


async def _why_unanswered(client: AsyncMongoClient, parts: dict) -> str:
    """What is wrong when a server takes connections but the driver found none it could use: a replica set name
    the server is not a member of, a TLS handshake it does not answer. "" when no server takes a connection."""
    options = parts["options"]
    if not parts["nodelist"] or not await _takes_connections(*parts["nodelist"][0]):
        return ""
    servers = client.topology_description.server_descriptions().values()
    if any(server.server_type != SERVER_TYPE.Unknown for server in servers):  # some answered `hello`
        return ("servers answer, but none is a primary the runner can use: an election under way, or a majority "
                "of the replica set down?")
    errors = [str(server.error) for server in servers if server.error is not None]
    said = f" ({redact(errors[0])})" if errors else ""
    if options.get("tls") or options.get("ssl"):
        return (f"the server takes connections, but the TLS handshake did not complete{said}: MONGODB_URL asks for TLS "
                "(tls=true); does the server use TLS, and are tlsCAFile and the host name right?")
    if options.get("replicaset") and not options.get("directconnection"):
        name = options["replicaset"]
        return (f"a server takes connections there, but none is a member of the replica set {name!r} that "
                f"MONGODB_URL names (replicaSet={name}){said}: name the server's own set, or remove replicaSet for a "
                "standalone server")
    return f"the server takes connections but does not answer as MongoDB{said}" if errors else ""


async def _takes_connections(host: str, port: int, timeout_s: float = 2.0) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True

"""Opening the database: the runner's own client options, fast and clear failures.

The URL is the app's, and its options suit the app, not a migration: the runner reads from the
primary (the lock and the changelog must not be stale), has every write acknowledged by a majority
(never w=0, which hides a lost lock insert), has the driver retry what it can, and sets no socket or
operation timeout (a batch may take long; an election takes seconds). The short --server-timeout
bounds the first contact only.
"""

from typing import Any

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
from pymongo.uri_parser_shared import _validate_uri

from migrator.errors import ExitCode, MigrationError
from migrator.profile import detect_or_none
from migrator.redact import redact

AUTHENTICATION_FAILED = (18, 8000)  # MongoDB's AuthenticationFailed; Atlas answers bad credentials with 8000
RUNNER_OPTIONS: dict[str, Any] = {"readPreference": "primary", "w": "majority", "retryWrites": True, "retryReads": True,
                  "socketTimeoutMS": None, "timeoutMS": None}
INVALID_NAMESPACE = 73  # the answer to a database name the server will not take


def parse_url(url: str, validate: bool = True) -> dict[str, Any]:
    """The parts of a MongoDB URL (nodelist, database, options, fqdn, ...) without a DNS lookup:
    PyMongo's parse_uri resolves a mongodb+srv:// name, so a DNS hiccup would look like a bad setting.
    Raises InvalidURI, ConfigurationError or ValueError."""
    return _validate_uri(url, validate=validate)


def ignored_options(url: str) -> dict[str, str]:
    """The URL's options that the runner replaces with its own: {option as written: its value}."""
    options = parse_url(url, validate=False)["options"]
    ours = {name.lower(): value for name, value in RUNNER_OPTIONS.items()}
    return {options.cased_key(name): str(value) for name, value in options.items()
            if name.lower() in ours and str(value).lower() != str(ours[name.lower()]).lower()}


async def connect(url: str, database_name: str, timeout_s: float = 5.0) -> tuple[AsyncMongoClient, AsyncDatabase]:
    """A client whose server answered `ping` within `timeout_s`; MigrationError (exit 5) when it cannot be
    reached. Later operations wait as long as the URL's serverSelectionTimeoutMS (30 s by default)."""
    shown = redact(url)
    try:
        parts = parse_url(url)
    except (InvalidURI, ConfigurationError, ValueError, OSError) as exc:  # OSError: an unreadable tlsCAFile
        raise MigrationError(f"MONGODB_URL is not a valid MongoDB URL ({shown}): {redact(exc)}",
                             ExitCode.USAGE) from exc
    hosts = parts["fqdn"] or ", ".join(f"{h}:{p}" for h, p in parts["nodelist"])
    try:
        client: AsyncMongoClient = AsyncMongoClient(url, appname="flowise-proxy-migrations", tz_aware=True,
                                                    **RUNNER_OPTIONS)
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
        await client.close()
        raise MigrationError(
            f"cannot reach MongoDB at {hosts} within {timeout_s:g} s ({shown}): is the server running, "
            "and are MONGODB_URL's host and port right?",
            ExitCode.UNREACHABLE,
        ) from exc
    except ConfigurationError as exc:  # the URL was checked: here it is the SRV lookup of a mongodb+srv:// name
        await client.close()
        raise MigrationError(f"cannot reach MongoDB at {hosts} ({shown}): {redact(exc)}: check the host name "
                             "and the network's DNS", ExitCode.UNREACHABLE) from exc
    return client, database

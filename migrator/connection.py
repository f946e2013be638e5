"""Opening the database: fast, clear failures, and what kind of server it is."""

from dataclasses import dataclass

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (ConfigurationError, ConnectionFailure, InvalidName, InvalidURI, OperationFailure,
                            PyMongoError)
from pymongo.uri_parser import parse_uri

from migrator.errors import ExitCode, MigrationError
from migrator.redact import redact, remember_secret_of

AUTHENTICATION_FAILED = 18
INVALID_NAMESPACE = 73  # MongoDB's and FerretDB's answer to a database name the server will not take
FERRETDB_DATABASE_NAMES = "FerretDB takes only Latin letters, digits, _ and - (at most 63)"


@dataclass(frozen=True)
class ServerInfo:
    version: str
    is_ferretdb: bool

    @property
    def label(self) -> str:
        return f"FerretDB (MongoDB {self.version} wire protocol)" if self.is_ferretdb else f"MongoDB {self.version}"


async def connect(url: str, database_name: str, timeout_s: float = 5.0) -> tuple[AsyncMongoClient, AsyncDatabase]:
    """A client whose server answered `ping`; MigrationError (exit 5) when it cannot be reached."""
    remember_secret_of(url)
    shown = redact(url)
    try:
        hosts = ", ".join(f"{h}:{p}" for h, p in parse_uri(url, validate=True)["nodelist"]) or "the SRV hosts"
    except (InvalidURI, ConfigurationError, ValueError, OSError) as exc:  # OSError: an unreadable tlsCAFile
        raise MigrationError(f"MONGODB_URL is not a valid MongoDB URL ({shown}): {redact(exc)}", ExitCode.USAGE) from exc
    timeout_ms = int(timeout_s * 1000)
    try:
        client = AsyncMongoClient(
            url,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            appname="flowise-proxy-migrations",
            tz_aware=True,
        )
    except (ConfigurationError, ValueError, TypeError, OSError) as exc:
        raise MigrationError(f"MONGODB_URL has an invalid option ({shown}): {redact(exc)}", ExitCode.USAGE) from exc
    try:
        database = client[database_name]
    except InvalidName as exc:  # load_settings checks the name first; this is for other callers
        await client.close()
        raise MigrationError(f"MONGODB_DATABASE_NAME {database_name!r} is not valid: {exc}", ExitCode.USAGE) from exc
    try:
        await database.command("ping")
    except OperationFailure as exc:
        if exc.code == INVALID_NAMESPACE:
            server_says = redact((exc.details or {}).get("errmsg") or exc)
            rule = FERRETDB_DATABASE_NAMES if await _is_ferretdb(client) else server_says
            await client.close()
            raise MigrationError(f"the server at {hosts} refuses the database name {database_name!r} "
                                 f"(MONGODB_DATABASE_NAME): {rule}; choose another name", ExitCode.USAGE) from exc
        await client.close()
        if exc.code == AUTHENTICATION_FAILED:
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
    return client, database


async def _is_ferretdb(client: AsyncMongoClient) -> bool:
    try:
        return "ferretdbVersion" in await client.admin.command("buildInfo")
    except PyMongoError:
        return False


async def server_info(database: AsyncDatabase) -> ServerInfo:
    build = await database.command("buildInfo")
    return ServerInfo(version=str(build.get("version", "?")), is_ferretdb="ferretdbVersion" in build)

"""Settings of the service: the environment first, then the env file, then defaults.

The env file is `.env`, or the file named by `ENV_FILE` (e.g. `ENV_FILE=.env.test`).
"""

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values
from pymongo.errors import ConfigurationError, InvalidURI
from pymongo.uri_parser import parse_uri

from migrator.redact import remember_secret_of

REPO_ROOT = Path(__file__).resolve().parents[1]


class SettingsError(ValueError):
    """A setting is missing or invalid."""


@dataclass(frozen=True)
class Settings:
    mongodb_url: str
    database_name: str
    env_file: Path | None = None


def _find_env_file(name: str) -> Path | None:
    for base in (Path.cwd(), REPO_ROOT):
        path = base / name
        if path.is_file():
            return path
    return None


def load_settings(env_file: str | None = None) -> Settings:
    """Read MONGODB_URL and MONGODB_DATABASE_NAME; real environment variables win over the file."""
    requested = env_file or os.environ.get("ENV_FILE")
    path = _find_env_file(requested or ".env")
    if requested and path is None:
        raise SettingsError(f"env file {requested!r} not found (looked in {Path.cwd()} and {REPO_ROOT})")
    from_file = {k: v for k, v in (dotenv_values(path) if path else {}).items() if v}

    url = os.environ.get("MONGODB_URL") or from_file.get("MONGODB_URL")
    if not url:
        raise SettingsError("MONGODB_URL is not set: set it in the environment or in .env (ENV_FILE names another file)")
    remember_secret_of(url)  # from here on, every masked output hides its password, even repeated on its own
    try:
        url_database = parse_uri(url, validate=False)["database"]
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise SettingsError(f"MONGODB_URL is not a valid MongoDB URL: {exc}") from None
    name = os.environ.get("MONGODB_DATABASE_NAME") or from_file.get("MONGODB_DATABASE_NAME") or url_database
    if not name:
        raise SettingsError("MONGODB_DATABASE_NAME is not set and MONGODB_URL names no database")
    return Settings(mongodb_url=url, database_name=name, env_file=path)

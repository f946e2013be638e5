"""The toolkit's settings (the service reads the same): the environment first, then the env file, then defaults.

The env file is `.env`, or the file named by `ENV_FILE` (e.g. `ENV_FILE=.env.test`). It must be UTF-8
(with or without the byte-order mark Windows Notepad writes); every error about it names it.
"""

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from pymongo.errors import ConfigurationError, InvalidURI

from migrator.connection import parse_url
from migrator.redact import redact, remember_secret_of

REPO_ROOT = Path(__file__).resolve().parents[1]

# MongoDB's documented rules for a database name on Linux and Unix ("Limits and Thresholds"), checked
# before connecting. Servers refuse more (Windows: also *<>:|?; some take fewer characters, as
# profile.database_name_rule says): the server's refusal is reported at run time (migrator.connection).
_FORBIDDEN_IN_DATABASE_NAME = {"/": "/", "\\": "\\", ".": ".", " ": "a space", '"': '"', "$": "$", "\x00": "NUL"}
_MAX_DATABASE_NAME_BYTES = 63
_DATABASE_NAME_RULE = (f"a MongoDB database name has at most {_MAX_DATABASE_NAME_BYTES} bytes and none of "
                       '/ \\ . " $, a space or NUL')


class SettingsError(ValueError):
    """A setting is missing or invalid."""


@dataclass(frozen=True)
class Settings:
    mongodb_url: str
    database_name: str
    env_file: Path | None = None
    file_values: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def get(self, name: str, default: str = "") -> str:
        """Another setting, in the same order: the environment, then the env file, then `default`."""
        return os.environ.get(name) or self.file_values.get(name) or default


def _find_env_file(name: str) -> Path | None:
    for base in (Path.cwd(), REPO_ROOT):
        path = base / name
        if path.is_file():
            return path
    return None


def read_env_file(path: Path) -> dict[str, str]:
    """The non-empty NAME=value settings of an env file, as python-dotenv reads them."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SettingsError(f"{path} is not UTF-8 (save it as UTF-8)") from None
    except OSError as exc:
        raise SettingsError(f"cannot read the env file {path}: {exc.strerror}") from None
    if "\x00" in text:  # UTF-16 without a byte-order mark decodes, with a NUL after every letter
        raise SettingsError(f"{path} is not UTF-8 (save it as UTF-8)")
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:  # python-dotenv would skip the line with a warning that does not name the file
            raise SettingsError(f"{path}, line {binding.original.line}: not a NAME=value line (check its quotes)")
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v}


def _source(name: str, path: Path | None) -> str:
    return "the environment" if os.environ.get(name) else str(path)


SERVER_DATABASES = ("admin", "local", "config")  # the server's own: never a migration's target


def check_database_name(name: str, source: str) -> None:
    """SettingsError unless `name` keeps MongoDB's documented rules and is not one of the server's own."""
    if name.lower() in SERVER_DATABASES:
        raise SettingsError(f"MONGODB_DATABASE_NAME {name!r} (from {source}) is one of the server's own databases "
                            f"({', '.join(SERVER_DATABASES)}): name the app's database (MONGODB_DATABASE_NAME, or "
                            "the path of MONGODB_URL; `/admin` there is often only where the user is defined: "
                            "write `?authSource=admin` instead)")
    forbidden = [shown for character, shown in _FORBIDDEN_IN_DATABASE_NAME.items() if character in name]
    if forbidden:
        raise SettingsError(f"MONGODB_DATABASE_NAME {name!r} (from {source}) contains {', '.join(forbidden)}: "
                            f"{_DATABASE_NAME_RULE}")
    size = len(name.encode("utf-8"))
    if size > _MAX_DATABASE_NAME_BYTES:
        raise SettingsError(f"MONGODB_DATABASE_NAME {name[:20]!r}... (from {source}) is {size} bytes long: "
                            f"{_DATABASE_NAME_RULE}")


def load_settings(env_file: str | None = None) -> Settings:
    """Read MONGODB_URL and MONGODB_DATABASE_NAME; real environment variables win over the file."""
    requested = env_file or os.environ.get("ENV_FILE")
    path = _find_env_file(requested or ".env")
    if requested and path is None:
        places = " and ".join(str(base) for base in dict.fromkeys((Path.cwd(), REPO_ROOT)))
        raise SettingsError(f"env file {requested!r} not found"
                            + ("" if Path(requested).is_absolute() else f" (looked in {places})"))
    from_file = read_env_file(path) if path else {}

    url = (os.environ.get("MONGODB_URL") or from_file.get("MONGODB_URL") or "").strip()
    if not url:
        where = path or "a .env file (ENV_FILE names another file)"
        raise SettingsError(f"MONGODB_URL is not set: set it in the environment or in {where}")
    remember_secret_of(url)  # the one place: from here on, every masked output knows where its password ends
    try:
        url_database = parse_url(url, validate=False)["database"]  # no DNS lookup: that is the connection's job
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise SettingsError(f"MONGODB_URL is not a valid MongoDB URL (from {_source('MONGODB_URL', path)}): "
                            f"{redact(exc)}") from None
    name = os.environ.get("MONGODB_DATABASE_NAME") or from_file.get("MONGODB_DATABASE_NAME")
    source = _source("MONGODB_DATABASE_NAME", path)
    if not name:
        name, source = url_database, "the path of MONGODB_URL"
    if not name:
        raise SettingsError("MONGODB_DATABASE_NAME is not set and MONGODB_URL names no database")
    check_database_name(name, source)
    return Settings(mongodb_url=url, database_name=name, env_file=path, file_values=from_file)

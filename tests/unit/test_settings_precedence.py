"""Settings (migrator/settings.py), no server: the environment over the env file over the URL's path, and
what is refused before connecting; the URL is read without a DNS lookup (migrator/connection.py)."""

import pytest

from migrator.connection import ignored_options, parse_url
from migrator.settings import SettingsError, load_settings

SETTINGS = ("MONGODB_URL", "MONGODB_DATABASE_NAME", "ENV_FILE")


@pytest.fixture
def env_file(tmp_path, monkeypatch):
    """A clean environment in an empty folder; returns a writer of the env file that ENV_FILE names."""
    monkeypatch.chdir(tmp_path)
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "settings.env"
    path.write_text("")
    monkeypatch.setenv("ENV_FILE", str(path))

    def write(text: str | bytes):
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
    return write


def test_settings_environment_wins_over_the_file(tmp_path, monkeypatch):
    (tmp_path / "x.env").write_text("MONGODB_URL=mongodb://file-host/filedb\nMONGODB_DATABASE_NAME=from_file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MONGODB_DATABASE_NAME", raising=False)
    monkeypatch.setenv("MONGODB_URL", "mongodb://env-host/envdb")
    settings = load_settings("x.env")
    assert (settings.mongodb_url, settings.database_name) == ("mongodb://env-host/envdb", "from_file")


def test_settings_take_the_database_from_the_url_and_env_file_from_env(tmp_path, monkeypatch):
    (tmp_path / ".env.test").write_text("MONGODB_URL=mongodb://h:27020/flowise_proxy_test?authSource=admin\n")
    monkeypatch.chdir(tmp_path)
    for name in ("MONGODB_URL", "MONGODB_DATABASE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENV_FILE", ".env.test")
    assert load_settings().database_name == "flowise_proxy_test"


def test_settings_refuse_an_invalid_url(monkeypatch):
    monkeypatch.setenv("MONGODB_URL", "http://nope")
    with pytest.raises(SettingsError, match="not a valid MongoDB URL"):
        load_settings()


def test_the_database_name_in_the_environment_wins_over_the_file_and_the_url(env_file, monkeypatch):
    env_file("MONGODB_URL=mongodb://h/urldb\nMONGODB_DATABASE_NAME=filedb\n")
    monkeypatch.setenv("MONGODB_DATABASE_NAME", "envdb")
    assert load_settings().database_name == "envdb"


def test_the_database_name_in_the_file_wins_over_the_path_of_the_url(env_file, monkeypatch):
    env_file("MONGODB_DATABASE_NAME=filedb\n")
    monkeypatch.setenv("MONGODB_URL", "mongodb://h/urldb")
    settings = load_settings()
    assert (settings.mongodb_url, settings.database_name) == ("mongodb://h/urldb", "filedb")


def test_an_env_file_given_as_an_argument_wins_over_env_file(env_file, tmp_path):
    env_file("MONGODB_URL=mongodb://h/named_by_env_file\n")
    (tmp_path / "flag.env").write_text("MONGODB_URL=mongodb://h/named_by_the_flag\n")
    settings = load_settings("flag.env")
    assert (settings.database_name, settings.env_file) == ("named_by_the_flag", tmp_path / "flag.env")


def test_an_env_file_that_is_not_there_is_named(env_file, monkeypatch):
    monkeypatch.setenv("ENV_FILE", "nowhere.env")
    with pytest.raises(SettingsError, match="env file 'nowhere.env' not found"):
        load_settings()


def test_no_url_anywhere_says_where_to_set_it(env_file):
    path = env_file("MONGODB_DATABASE_NAME=app\n")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == f"MONGODB_URL is not set: set it in the environment or in {path}"


def test_no_database_name_and_none_in_the_url_is_refused(env_file, monkeypatch):
    monkeypatch.setenv("MONGODB_URL", "mongodb://h:27017/?authSource=admin")
    with pytest.raises(SettingsError, match="MONGODB_DATABASE_NAME is not set and MONGODB_URL names no database"):
        load_settings()


def test_spaces_around_the_url_and_a_byte_order_mark_are_dropped(env_file):
    env_file("\ufeffMONGODB_URL=  mongodb://h/app  \n".encode("utf-8"))
    settings = load_settings()
    assert (settings.mongodb_url, settings.database_name) == ("mongodb://h/app", "app")


@pytest.mark.parametrize("content, message", [
    ("MONGODB_URL=mongodb://h/app\nMONGODB_DATABASE_NAME='unclosed\n", ", line 2: not a NAME=value line"),
    ("MONGODB_URL=mongodb://h/app\n".encode("utf-16"), " is not UTF-8 (save it as UTF-8)"),
    ("MONGODB_URL=mongodb://h/app\n".encode("utf-16-le"), " is not UTF-8 (save it as UTF-8)"),
])
def test_an_unreadable_env_file_is_named_with_what_to_do(env_file, content, message):
    path = env_file(content)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == f"{path}{message}" + (" (check its quotes)" if "line" in message else "")


@pytest.mark.parametrize("name, why", [
    ("app db", "contains a space"), ("app.db", "contains ."), ("x" * 64, "is 64 bytes long"),
    ("local", "one of the server's own databases"),
])
def test_a_database_name_mongodb_would_refuse_is_refused_before_connecting(env_file, monkeypatch, name, why):
    monkeypatch.setenv("MONGODB_URL", "mongodb://h/")
    monkeypatch.setenv("MONGODB_DATABASE_NAME", name)
    with pytest.raises(SettingsError, match=why):
        load_settings()


def test_other_settings_come_from_the_environment_then_the_file_then_the_default(env_file, monkeypatch):
    env_file("MONGODB_URL=mongodb://h/app\nMONGODB_TIMEOUT_MS=700\nREQUIRE_MIGRATIONS=1\n")
    monkeypatch.setenv("REQUIRE_MIGRATIONS", "0")
    settings = load_settings()
    assert settings.get("REQUIRE_MIGRATIONS") == "0"
    assert settings.get("MONGODB_TIMEOUT_MS", "5000") == "700"
    assert settings.get("NOT_SET_ANYWHERE", "default") == "default"


def test_the_password_of_the_url_never_reaches_a_settings_error(env_file, monkeypatch):
    monkeypatch.setenv("MONGODB_URL", "mongodb://u:Pq8-hidden@h:notaport/app")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "not a valid MongoDB URL (from the environment)" in str(caught.value)
    assert "Pq8-hidden" not in str(caught.value)


def test_settings_read_an_srv_url_without_a_dns_lookup(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENV_FILE", raising=False)
    monkeypatch.setenv("MONGODB_URL", "mongodb+srv://u:p@cluster0.nothing-here.invalid/appdb?retryWrites=true")
    monkeypatch.delenv("MONGODB_DATABASE_NAME", raising=False)
    assert load_settings().database_name == "appdb"  # parse_uri would fail here: the name does not resolve
    assert parse_url("mongodb+srv://cluster0.nothing-here.invalid/")["fqdn"] == "cluster0.nothing-here.invalid"


def test_settings_refuse_admin_even_with_an_explicit_name(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGODB_URL", "mongodb://localhost:27017/")
    monkeypatch.setenv("MONGODB_DATABASE_NAME", "Admin")
    with pytest.raises(SettingsError, match="one of the server's own databases"):
        load_settings()


def test_ignored_options_names_only_what_the_runner_replaces():
    assert ignored_options("mongodb://h/?w=0&readPreference=secondary&appname=app&maxPoolSize=5") == \
        {"w": "0", "readPreference": "secondary"}
    assert ignored_options("mongodb://h/?w=majority&readPreference=primary&retryWrites=true") == {}


def test_a_missing_env_file_is_named_once():
    from migrator.settings import SettingsError, load_settings
    with pytest.raises(SettingsError) as caught:
        load_settings("/nonexistent.env")
    assert str(caught.value) == "env file '/nonexistent.env' not found"

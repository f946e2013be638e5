"""Pure parts, no server: order, masking, settings precedence, results."""

import pytest

from migrator.settings import SettingsError, load_settings
from migrator.errors import MigrationError
from migrator.migration import Migration, Outcome
from migrator.order import order_migrations
from migrator.redact import redact, remember_secret_of


async def _noop(db):
    return True


def m(name, date="2025-01-01", depends_on=()):
    return Migration(name=name, date=date, description="", up=_noop, verify=_noop, depends_on=tuple(depends_on))


def names(migrations):
    return [x.name for x in migrations]


def test_order_is_by_date_then_name():
    assert names(order_migrations([m("b", "2025-02-01"), m("c"), m("a", "2025-03-01"), m("aa")])) == ["aa", "c", "b", "a"]


def test_a_dependency_moves_a_migration_after_what_it_needs():
    ordered = order_migrations([m("early", "2025-01-01", ["late"]), m("late", "2025-06-01"), m("mid", "2025-03-01")])
    assert names(ordered) == ["mid", "late", "early"]


@pytest.mark.parametrize("migrations, message", [
    ([m("a"), m("a")], "two migrations are named 'a'"),
    ([m("a", depends_on=["ghost"])], "a depends on ghost, which does not exist"),
    ([m("a", depends_on=["b"]), m("b", depends_on=["a"]), m("c")], "cycle: a, b"),
])
def test_order_errors_are_usage_errors(migrations, message):
    with pytest.raises(MigrationError, match=message) as caught:
        order_migrations(migrations)
    assert caught.value.exit_code == 2


def test_redact_masks_userinfo_and_a_password_where_it_stands():
    assert redact("mongodb://admin:p%40ss@h:1/db?x=1") == "mongodb://admin:****@h:1/db?x=1"
    assert redact("mongodb+srv://u:v@cluster.example/") == "mongodb+srv://u:****@cluster.example/"
    assert redact("mongodb://h:1/db") == "mongodb://h:1/db"
    remember_secret_of("mongodb://admin:Zq9-distinct@h/")
    assert redact("server said: bad password=Zq9-distinct") == "server said: bad password=****"


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


def test_outcome_accepts_driver_results_and_refuses_others():
    class Result:
        matched_count, modified_count = 3, 2
    assert Outcome.of(Result()) == Outcome(matched=3, modified=2)
    assert Outcome.of(None) == Outcome()
    with pytest.raises(TypeError):
        Outcome.of(42)

"""The runner owns its client options whatever the app's URL says, and reads the URL without DNS."""

import time

import pytest

from conftest import SCRIPT, assert_nothing_lost, load, run_here

RUNNER = "run_migrations.py"


def with_options(url: str, options: str) -> str:
    return url + ("&" if "?" in url else ("?" if url.endswith("/") else "/?")) + options


@pytest.mark.slow
def test_app_sized_options_in_the_url_do_not_reach_the_runner(db, env):
    before = load(db, 5_000)
    app_url = with_options(env["MONGODB_URL"], "readPreference=secondaryPreferred&retryWrites=false"
                                               "&socketTimeoutMS=200&timeoutMS=300")
    result = run_here(SCRIPT, "--batch-size", "5000", "--progress-interval", "600", env={**env, "MONGODB_URL": app_url})

    assert result.code == 0, result
    [line] = [line for line in result.output.splitlines() if "its own client options" in line]
    for option in ("readPreference=secondaryPreferred", "retryWrites=false", "socketTimeoutMS=200", "timeoutMS=300"):
        assert option in line
    assert_nothing_lost(db, before)


def test_an_srv_name_that_does_not_resolve_is_exit_5_within_the_timeout_masked(cli, env):
    env["MONGODB_URL"] = "mongodb+srv://deploy:Srv-Secr3t@cluster0.nothing-here.invalid/?retryWrites=true"
    started = time.monotonic()
    result = cli(RUNNER, "--status", "--server-timeout", "3", env=env)
    assert result.code == 5, result
    assert time.monotonic() - started < 30
    [line] = [line for line in result.output.splitlines() if "ERROR" in line]
    assert "cluster0.nothing-here.invalid" in line and "DNS" in line
    assert "Srv-Secr3t" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("path", ["/admin", "/local", "/config"])
def test_a_server_database_as_the_target_is_exit_2(cli, env, server_url, path):
    del env["MONGODB_DATABASE_NAME"]
    env["MONGODB_URL"] = server_url.rstrip("/") + path
    result = cli(RUNNER, "--status", env=env)
    assert result.code == 2, result
    [line] = [line for line in result.output.splitlines() if "ERROR" in line]
    assert f"'{path[1:]}'" in line and "authSource=admin" in line

